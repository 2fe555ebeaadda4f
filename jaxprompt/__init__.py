"""jaxprompt: prompt learning on a frozen CLIP in JAX/Flax."""

import os

# jaxprompt uses transformers' Flax CLIP classes on purpose (pinned to transformers<5); silence their deprecation
# notice unless the user asked for transformers' warnings.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

__version__ = "0.1.0"
