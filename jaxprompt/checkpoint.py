"""The workdir is the state: orbax checkpoints of everything a run needs to continue bit-identically, and a small
prompt-only export that evaluation can load on its own.

A checkpoint holds `state` (trainable tree, optimiser state, step, RNG key data) and `loader` (the data iterator's
JSON state). `prompts.npz` holds only the trainable tree (flattened by '/'-joined leaf path) and `prompts.json` what
is needed to rebuild the method (method name, its config block, class names).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxprompt import trees

Params = dict[str, Any]


class Checkpoints:
  """orbax CheckpointManager over `<workdir>/checkpoints` with a `state` pytree and a `loader` JSON item."""

  def __init__(self, workdir: str, keep: int = 2):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "loader"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Params, loader_state: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    loader=ocp.args.JsonSave(loader_state)), force=True)

  def restore(self, target: Params, step: int | None = None) -> tuple[Params, dict]:
    """Restores onto `target`'s structure, dtypes and shardings; returns (state, loader_state)."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 loader=ocp.args.JsonRestore()))
    return restored["state"], restored["loader"]

  def path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def flatten_tree(tree: Params) -> dict[str, np.ndarray]:
  """{'a': {'b': x}} -> {'a/b': numpy x}."""
  return {path: np.asarray(jax.device_get(value)) for path, value in trees.flatten(tree).items()}


def export_prompts(workdir: str, trainable: Params, metadata: dict) -> str:
  """Writes `prompts.npz` (the trainable tree only) and `prompts.json` (method, config block, class names)."""
  path = os.path.join(workdir, "prompts.npz")
  np.savez(path, **flatten_tree(trainable))
  with open(os.path.join(workdir, "prompts.json"), "w") as f:
    json.dump(metadata, f, indent=2, default=str)
  return path


def load_prompts(path: str) -> tuple[Params, dict]:
  """Reads a prompt export: (trainable tree, metadata)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"prompt export {path} not found")
  with np.load(path) as archive:
    trainable = trees.unflatten({key: archive[key] for key in archive.files})
  meta_path = os.path.join(os.path.dirname(path), "prompts.json")
  metadata = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
  return trainable, metadata
