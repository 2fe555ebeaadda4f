"""`python -m jaxprompt.report RUNS_DIR [--out DIR] [--ddof 1]` (see `jaxprompt.report.build`)."""

import sys

from jaxprompt.report.build import main

if __name__ == "__main__":
  sys.exit(main())
