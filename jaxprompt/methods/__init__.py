"""Prompt methods behind one face (see `base.py`); `build(name, config, backbone, classnames)`."""

import importlib

from jaxprompt.methods.base import Method, build, default_config, register, registry

# Importing a method module registers it. Modules that do not exist yet are skipped only if they are truly absent.
for _module in ("zeroshot", "coop", "cocoop", "vpt", "ivlp", "maple", "rpo", "lamm", "mmap"):
  try:
    importlib.import_module(f"jaxprompt.methods.{_module}")
  except ModuleNotFoundError as _error:
    if _error.name != f"jaxprompt.methods.{_module}":
      raise

__all__ = ["Method", "build", "default_config", "register", "registry"]
