"""jaxprompt: prompt learning on a frozen CLIP in JAX/Flax.

    import jaxprompt
    classifier = jaxprompt.load_run("runs/coop_dtd")      # a trained run's prompts (see jaxprompt/predict.py)
    classifier.predict(["cat.jpg"], k=3)

`load_run` is imported on first use, so `import jaxprompt` stays light (no JAX until a run is loaded).
"""

import os

# jaxprompt uses transformers' Flax CLIP classes on purpose (pinned to transformers<5); silence their deprecation
# notice unless the user asked for transformers' warnings.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def flax_only_transformers() -> None:
  """Our command lines call this first: transformers then skips importing PyTorch and TensorFlow (about 4 s per
  process). jaxprompt needs only transformers' Flax CLIP classes and reads torch files with torch itself. Not done
  on `import jaxprompt`, which must leave a user's own transformers (with its PyTorch classes) as it was."""
  os.environ.setdefault("USE_TORCH", "0")
  os.environ.setdefault("USE_TF", "0")

__version__ = "0.1.0"

_LAZY = {"load_run": "jaxprompt.predict", "load_export": "jaxprompt.predict", "Classifier": "jaxprompt.predict"}
"""Public names served by `__getattr__` from the module that defines them."""


def __getattr__(name):
  if name in _LAZY:
    import importlib  # noqa: PLC0415
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'jaxprompt' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAZY))
