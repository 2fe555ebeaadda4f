"""Nested-dict parameter trees <-> flat {'a/b/c': leaf} dicts (checkpoints, exports, weight conversion)."""

from __future__ import annotations

from typing import Any

Tree = dict[str, Any]


def flatten(tree: Tree, prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': x}} -> {'a/b': x}."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, dict):
      flat.update(flatten(value, path))
    else:
      flat[path] = value
  return flat


def unflatten(flat: dict[str, Any]) -> Tree:
  """{'a/b': x} -> {'a': {'b': x}}."""
  tree: Tree = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree
