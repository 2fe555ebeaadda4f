"""The workdir is the state: orbax checkpoints of everything a run needs to continue bit-identically, and a small
prompt-only export that evaluation can load on its own.

A checkpoint holds `state` (trainable tree, optimiser state, step, RNG key data) and `loader` (the data iterator's
JSON state). `prompts.npz` holds only the trainable tree (flattened by '/'-joined leaf path) and `prompts.json` what
is needed to rebuild the method (method name, its config block, class names). Paths go through `etils.epath`
(`gs://` works like a local directory); the exports are written atomically.

Resuming falls back: a latest checkpoint that is empty, lacks a file every complete checkpoint has (`REQUIRED`), or
fails to restore (corrupt data) is moved aside to `checkpoints/bad-<step>-<time>/` (kept, never deleted) once an
older one restores, with one log line per checkpoint moved. When none restores, nothing is moved and the error is
one line naming the directory and each checkpoint's problem.
"""

from __future__ import annotations

import io
import logging
import os
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxprompt import parallel, trees
from jaxprompt import workdir as workdir_files

log = logging.getLogger(__name__)

Params = dict[str, Any]
REQUIRED = ("_CHECKPOINT_METADATA", "state/_METADATA", "state/manifest.ocdbt", "loader/metadata")
"""Files every complete checkpoint of `Checkpoints` holds (orbax's metadata, the OCDBT manifest, the loader JSON);
on gs:// also orbax's commit marker `commit_success.txt` (there is no atomic rename to mark completion)."""
COMMIT_MARKER = "commit_success.txt"


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be saved or restored: one line naming the directory or checkpoint and what to do."""


class Checkpoints:
  """orbax CheckpointManager over `<workdir>/checkpoints` with a `state` pytree and a `loader` JSON item."""

  def __init__(self, workdir: str | os.PathLike, keep: int = 2):
    workdir_files.use_storage_emulator()
    self.directory = workdir_files.as_path(workdir) / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "loader"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Params, loader_state: dict) -> None:
    try:
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                      loader=ocp.args.JsonSave(loader_state)), force=True)
    except Exception as error:
      raise CheckpointError(f"saving checkpoint {self.path(step)} failed ({_first_line(error)}); check that "
                            f"{self.directory} is writable and has space") from error

  def restore(self, target: Params, step: int | None = None) -> tuple[Params, dict]:
    """Restores onto `target`'s structure, dtypes and shardings; returns (state, loader_state).

    step=None: the newest checkpoint that restores, moving newer bad ones aside (see the module docstring).
    """
    if step is not None:
      try:
        return self._restore(step, target)
      except Exception as error:
        raise CheckpointError(f"checkpoint {self.path(step)} does not restore ({_first_line(error)}); restore "
                              "another step or move it aside") from error
    state, loader_state, _ = self._restore_newest(target)
    return state, loader_state

  def restore_latest(self, target: Params) -> tuple[Params, dict, int] | None:
    """(state, loader_state, step) of the newest good checkpoint (with fallback), None when there is none at all."""
    return self._restore_newest(target) if self.manager.all_steps() else None

  def _restore_newest(self, target: Params) -> tuple[Params, dict, int]:
    bad = []
    for candidate in sorted(self.manager.all_steps(), reverse=True):
      problem = self.problem(candidate)
      if problem is None:
        try:
          state, loader_state = self._restore(candidate, target)
        except Exception as error:  # orbax / TensorStore / JSON errors of a corrupt checkpoint
          problem = f"does not restore: {_first_line(error)}"
        else:
          for bad_step, bad_problem in bad:
            moved = self.move_aside(bad_step) if jax.process_index() == 0 else "bad-*"  # one process moves
            log.warning("checkpoint %s is unusable (%s): moved to %s; resuming from step %d", self.path(bad_step),
                        bad_problem, moved, candidate)
          if bad:
            self.manager.reload()
          return state, loader_state, candidate
      bad.append((candidate, problem))
    if not bad:
      raise CheckpointError(f"no checkpoint in {self.directory} to restore")
    listed = "; ".join(f"step {step}: {problem}" for step, problem in bad)
    raise CheckpointError(f"no usable checkpoint in {self.directory} ({listed}); move them aside or delete the "
                          "directory to start over")

  def _restore(self, step: int, target: Params) -> tuple[Params, dict]:
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 loader=ocp.args.JsonRestore()))
    return restored["state"], restored["loader"]

  def problem(self, step: int) -> str | None:
    """Why checkpoint `step` is incomplete (empty, a required file missing), None when it looks complete."""
    directory = self.directory / str(step)
    if not directory.exists() or not any(directory.iterdir()):
      return "empty directory"
    required = REQUIRED + ((COMMIT_MARKER,) if workdir_files.is_remote(directory) else ())
    missing = [name for name in required if not (directory / name).exists()]
    return f"missing {', '.join(missing)}" if missing else None

  def move_aside(self, step: int) -> str:
    """Renames checkpoint `step` to `bad-<step>-<time>` in the same directory; returns the new path."""
    name = f"bad-{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    while (self.directory / name).exists():
      name += "x"
    source, destination = os.fspath(self.directory / str(step)), os.fspath(self.directory / name)
    if workdir_files.is_remote(source):
      # Object stores have no directory rename: copy every object, then delete the originals (a failed copy leaves
      # them in place). Spelled out because gcsfs's mv first tries the per-object moveTo call, which emulators lack.
      import fsspec  # noqa: PLC0415
      fs = fsspec.filesystem(source.split("://")[0])
      fs.copy(source, destination, recursive=True)
      fs.rm(source, recursive=True)
    else:
      os.rename(source, destination)
    return destination

  def path(self, step: int) -> str:
    return os.fspath(self.directory / str(step))

  def wait(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as error:
      raise CheckpointError(f"writing a checkpoint under {self.directory} failed ({_first_line(error)}); check "
                            "that it is writable and has space") from error

  def close(self) -> None:
    self.manager.close()


def _first_line(error: BaseException) -> str:
  """An exception as one short line: type, first line, TensorStore's spec dump cut off."""
  text = (str(error).strip().splitlines() or [""])[0].split(" [tensorstore_spec=")[0]
  return f"{type(error).__name__}: {text[:300]}"


def flatten_tree(tree: Params) -> dict[str, np.ndarray]:
  """{'a': {'b': x}} -> {'a/b': numpy x}."""
  return {path: np.asarray(jax.device_get(value)) for path, value in trees.flatten(tree).items()}


def export_prompts(workdir: str | os.PathLike, trainable: Params, metadata: dict) -> str:
  """Writes `prompts.npz` (the trainable tree only) and `prompts.json` (method, config block, class names), each
  atomically; returns the npz path."""
  directory = workdir_files.as_path(workdir)
  workdir_files.write_npz_atomic(directory / "prompts.npz", flatten_tree(trainable))
  workdir_files.write_json_atomic(directory / "prompts.json", metadata)
  return os.fspath(directory / "prompts.npz")


def load_prompts(path: str | os.PathLike) -> tuple[Params, dict]:
  """Reads a prompt export: (trainable tree, metadata)."""
  path = workdir_files.as_path(path)
  if not path.exists():
    raise FileNotFoundError(f"prompt export {path} not found")
  with np.load(io.BytesIO(path.read_bytes())) as archive:
    trainable = trees.unflatten({key: archive[key] for key in archive.files})
  meta_path = path.parent / "prompts.json"
  metadata = workdir_files.read_json(meta_path) if meta_path.exists() else {}
  return trainable, metadata


def load_for_eval(path: str, init: Callable[[jax.Array], Params], name: str, mesh) -> Params:
  """The trainable tree to evaluate, read from the prompt export at `path` and checked against `init`'s shapes.

  A method with nothing to train (zero-shot) needs no file. A tree that does not fit is a one-line error naming
  the file, the method and both shape trees.
  """
  shapes = jax.eval_shape(init, jax.random.key(0))
  if not jax.tree_util.tree_leaves(shapes):
    return {}
  trainable, _ = load_prompts(path)
  got = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), trainable)
  want = jax.tree_util.tree_map(lambda x: tuple(x.shape), shapes)
  if got != want:
    raise ValueError(f"prompts at {path} do not fit method {name}: got {got}, expected {want}")
  return parallel.replicate(jax.tree_util.tree_map(np.asarray, trainable), mesh)
