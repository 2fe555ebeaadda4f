"""`python -m jaxprompt.convert ...`: see `jaxprompt/convert/__init__.py`."""

import sys

from jaxprompt.convert.cli import main

sys.exit(main())
