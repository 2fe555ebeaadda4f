"""Everything a run writes for people and everything that aggregates runs: `python -m jaxprompt.report RUNS_DIR`."""

from jaxprompt.report.groups import *  # noqa: F401,F403
from jaxprompt.report.groups import build_report, load_results, aggregate, main  # noqa: F401
