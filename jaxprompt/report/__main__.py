"""`python -m jaxprompt.report RUNS_DIR [--out DIR]` (see `jaxprompt.report.groups`)."""

import sys

from jaxprompt.report.groups import main

if __name__ == "__main__":
  sys.exit(main())
