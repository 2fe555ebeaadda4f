"""Prompt methods behind one face (see `base.py`); `build(name, config, backbone, classnames)`.

Importing a method module registers it under its name.
"""

from jaxprompt.methods import cocoop, coop, ivlp, lamm, maple, mmap, rpo, vpt, zeroshot  # noqa: F401  (registers)
from jaxprompt.methods.base import Method, build, default_config, register, registered

__all__ = ["Method", "build", "default_config", "register", "registered"]
