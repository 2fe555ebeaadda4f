"""Data sources by name: `build_source("dtd", root=...)`, `build_source("world_fewshot")`.

Each source module registers its builders with `@register("name")` at import time; `build_source` imports the
modules that hold builders (`jaxprompt.data.sources` and the shapes world's `jaxprompt.world.tasks`), so callers
never need to. The imports are deferred to the first look-up because those modules import `register` from here.
"""

from __future__ import annotations

import inspect
from typing import Callable

from jaxprompt.data.types import Source

_BUILDERS: dict[str, Callable[..., Source]] = {}


def register(name: str):
  """Decorator: `@register("dtd") def build_dtd(root, **options) -> Source`."""

  def decorate(builder):
    if name in _BUILDERS and _BUILDERS[name] is not builder:
      raise ValueError(f"data source {name!r} registered twice")
    _BUILDERS[name] = builder
    return builder

  return decorate


def _import_source_modules():
  """Imports every module that registers builders (each registers at its first import)."""
  from jaxprompt.data import sources  # noqa: F401  pylint: disable=import-outside-toplevel
  from jaxprompt.world import tasks  # noqa: F401  pylint: disable=import-outside-toplevel


def known_sources() -> list[str]:
  _import_source_modules()
  return sorted(_BUILDERS)


def build_source(name: str, **options) -> Source:
  """Builds the registered source `name`; options (root, seed, ...) go to its builder."""
  _import_source_modules()
  if name not in _BUILDERS:
    raise KeyError(f"unknown data source {name!r}; known sources: {', '.join(sorted(_BUILDERS))}")
  builder = _BUILDERS[name]
  parameters = inspect.signature(builder).parameters
  if "root" in parameters and parameters["root"].default is inspect.Parameter.empty and not options.get("root"):
    raise ValueError(f"data source {name!r} reads files from disk: set its root (config argument root=/data, or "
                     "--config.data.root=/data)")
  return builder(**options)
