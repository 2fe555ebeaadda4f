"""Prompt methods behind one face (see `base.py`): `build(name, config, backbone, classnames)` for one method,
`build_for_run(config.method, backbone, classnames, templates)` for a run's, `mmap_mt.build(mode, ...)` for the
multi-task models.

Importing a method module registers it under its name.
"""

from jaxprompt.methods import cocoop, coop, ivlp, lamm, maple, mmap, rpo, vpt, zeroshot  # noqa: F401  (registers)
from jaxprompt.methods import mmap_mt  # noqa: F401  (the multi-task models; needs the registered methods)
from jaxprompt.methods.base import Method, build, build_for_run, default_config, register, registered

__all__ = ["Method", "build", "build_for_run", "default_config", "mmap_mt", "register", "registered"]
