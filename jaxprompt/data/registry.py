"""Data sources by name: `build_source("dtd", root=...)`, `build_source("world_fewshot")`.

Each source module registers its builders with `@register("name")` at import time; `build_source` imports the
modules that hold builders, so callers never need to.
"""

from __future__ import annotations

import importlib
from typing import Callable

from jaxprompt.data.types import Source

_BUILDERS: dict[str, Callable[..., Source]] = {}

# Modules whose import registers builders. Listed here (not discovered) so the registry reads top to bottom.
_SOURCE_MODULES = (
    "jaxprompt.data.sources",
    "jaxprompt.world.tasks",
)


def register(name: str):
  """Decorator: `@register("dtd") def build_dtd(root, **options) -> Source`."""

  def decorate(builder):
    if name in _BUILDERS and _BUILDERS[name] is not builder:
      raise ValueError(f"data source {name!r} registered twice")
    _BUILDERS[name] = builder
    return builder

  return decorate


def _import_source_modules():
  for module in _SOURCE_MODULES:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as error:
      if error.name != module:  # a real missing dependency inside the module: surface it
        raise


def known_sources() -> list[str]:
  _import_source_modules()
  return sorted(_BUILDERS)


def build_source(name: str, **options) -> Source:
  """Builds the registered source `name`; options (root, seed, ...) go to its builder."""
  _import_source_modules()
  if name not in _BUILDERS:
    raise KeyError(f"unknown data source {name!r}; known sources: {', '.join(sorted(_BUILDERS))}")
  return _BUILDERS[name](**options)
