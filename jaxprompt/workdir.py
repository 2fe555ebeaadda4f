"""A workdir is one experiment: its recorded config, a lock held by the one run using it, atomic files, and the
checks a resume or a sweep relies on. Every path goes through `etils.epath`, so `gs://bucket/run` works like a
local directory (with gcsfs installed).

    with workdir.open_run(config, "runs/coop_dtd") as run:   # lock, config check, config.json, history.jsonl
      ...                                                     # the run; `run.path` is the workdir's epath.Path

Files (beside the ones `report.run_files` and `checkpoint` write):
    <workdir>/config.json    the resolved config of the experiment (written only after the check below passes)
    <workdir>/history.jsonl  one JSON object per event: start, config_change (allowed), exit (ok / stopped / error)
    <workdir>/.lock          {"host", "pid", "pid_start", "started", "token"} of the run holding the workdir

Which config keys determine results: every key except `NEUTRAL_KEYS` (how a run logs, checkpoints, evaluates in
batches, which devices and processes it uses, and the switches of this check itself). A re-run whose
result-determining keys differ from config.json stops before writing anything, naming each key with both values;
`--config.train.allow_config_change=True` continues anyway and records the change in history.jsonl. A key present
on one side only counts as a difference (shown as <absent>).

The lock: local workdirs create it with a hard link (atomic create-if-absent, complete content). A lock whose holder
is on this host and no longer alive (PID gone, or the PID now belongs to a process started at another time) is
stale and taken over with one log line. A holder on another host cannot be checked from here: the error says to
delete the lock by hand if that run is gone. On gs:// the lock is created with a generation precondition
(`ifGenerationMatch=0`, create-if-absent on real GCS) and read back to check it is ours; an emulator that ignores
preconditions (gcp-storage-emulator does) leaves a window between two runs starting in the same instant. In a
multi-host run only process 0 takes the lock and writes; every process checks the config.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import socket
import sys
import time
import uuid
from typing import Any, Mapping

import numpy as np
from etils import epath

log = logging.getLogger(__name__)

PathLike = str | os.PathLike
CONFIG, HISTORY, LOCK, RESULTS, METRICS = "config.json", "history.jsonl", ".lock", "results.json", "metrics.jsonl"
NEUTRAL_KEYS = frozenset({
    "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.stop_after",
    "train.allow_config_change", "data.eval_batch_size", "data.workers", "eval_only", "eval_prompts", "multihost",
    "num_devices", "train.tensorboard", "train.eval_every_epochs", "eval_checkpoint", "eval_dir",
})
"""Config keys that do not change a run's results (may differ between runs of one workdir)."""
ABSENT = "<absent>"


class WorkdirError(RuntimeError):
  """A workdir that cannot be used as asked: the message is one line naming the file and the way out."""


class ConfigChangedError(WorkdirError):
  """A re-run whose result-determining config differs from the workdir's config.json."""


class WorkdirLockedError(WorkdirError):
  """Another run holds the workdir's lock."""


# --- paths and atomic files -------------------------------------------------------------------------------------------
def as_path(path: PathLike) -> epath.Path:
  """An epath.Path; local paths made absolute (orbax wants them so)."""
  path = epath.Path(path)
  return path if is_remote(path) else epath.Path(os.path.abspath(os.fspath(path)))


def is_remote(path: PathLike) -> bool:
  return "://" in os.fspath(path)


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
  """Writes `data` so that readers see the old file or the whole new one, never a part (local: temp + os.replace;
  gs://: one object upload, atomic already). The parent directory is created."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(path):
    path.write_bytes(data)
    return
  partial = f"{os.fspath(path)}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  try:
    with open(partial, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(partial, os.fspath(path))
  except BaseException:
    if os.path.exists(partial):
      os.remove(partial)
    raise


def write_text_atomic(path: PathLike, text: str) -> None:
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: PathLike, obj: Any, indent: int | None = 2) -> None:
  """json.dumps(obj) (non-JSON values by str) written atomically; the text is complete before anything is written."""
  write_text_atomic(path, json.dumps(obj, indent=indent, default=str))


def write_npz_atomic(path: PathLike, arrays: Mapping[str, np.ndarray]) -> None:
  """An .npz of `arrays` built in memory, then written atomically (a failing array leaves the old file as it was)."""
  buffer = io.BytesIO()
  np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
  write_bytes_atomic(path, buffer.getvalue())


def append_text(path: PathLike, text: str) -> None:
  """Appends `text` (local: one append write; gs://, where objects cannot grow: the whole file rewritten in one
  upload, so readers see the old or the new content). For metrics.jsonl-sized files."""
  path = as_path(path)
  if not is_remote(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.fspath(path), "a") as f:
      f.write(text)
    return
  old = path.read_text() if path.exists() else ""
  write_text_atomic(path, old + text)


def read_json(path: PathLike) -> Any:
  return json.loads(as_path(path).read_text())


# --- config: which keys determine results ---------------------------------------------------------------------------
def config_dict(config) -> dict[str, Any]:
  """A ConfigDict (or mapping) as plain JSON values, the form config.json holds."""
  if hasattr(config, "to_json_best_effort"):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(dict(config), default=str))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"optim": {"lr": 0.01}} -> {"optim.lr": 0.01}; an empty block stays one key ({} value)."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping) and value:
      flat.update(flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def config_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{dotted key: (recorded value, current value)} over the result-determining keys that differ, sorted by key."""
  old, new = flatten(recorded), flatten(current)
  keys = sorted((set(old) | set(new)) - NEUTRAL_KEYS)
  return {key: (old.get(key, ABSENT), new.get(key, ABSENT)) for key in keys
          if old.get(key, ABSENT) != new.get(key, ABSENT)}


def _describe(differences: Mapping[str, tuple[Any, Any]]) -> str:
  return ", ".join(f"{key}: {json.dumps(old, default=str)} (recorded) vs {json.dumps(new, default=str)} (this run)"
                   for key, (old, new) in differences.items())


def _allow_change(config) -> bool:
  try:
    return bool(config["train"]["allow_config_change"])
  except (KeyError, TypeError, AttributeError):
    return False


# --- the lock ---------------------------------------------------------------------------------------------------------
def _pid_start(pid: int) -> str | None:
  """The process's start time in clock ticks since boot (Linux /proc), None where unknown."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _pid_alive(pid: int, start: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  now = _pid_start(pid)
  return start is None or now is None or now == start


_HELD: dict[str, "Lock"] = {}  # locks this process holds, by path


class Lock:
  """`<workdir>/.lock`: acquire() fails at once naming the holder, takes over a stale one; release() removes it."""

  def __init__(self, workdir: PathLike):
    self.path = as_path(workdir) / LOCK
    self.token = uuid.uuid4().hex
    self.record = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid()),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": self.token}

  def acquire(self) -> "Lock":
    key = os.fspath(self.path)
    if key in _HELD:
      raise WorkdirLockedError(f"{self.path}: this process already runs in {self.path.parent}")
    if not self._create():
      holder = self._holder()
      if not self._stale(holder):
        raise WorkdirLockedError(
            f"{self.path.parent} is in use by host {holder.get('host')} pid {holder.get('pid')} since "
            f"{holder.get('started')}; wait for that run to end, or if it is gone delete {self.path}")
      log.warning("taking over the stale lock %s of host %s pid %s (started %s; that process is gone)", self.path,
                  holder.get("host"), holder.get("pid"), holder.get("started"))
      self._remove()
      if not self._create():
        holder = self._holder()
        raise WorkdirLockedError(f"{self.path.parent} was just taken by host {holder.get('host')} pid "
                                 f"{holder.get('pid')}")
    _HELD[key] = self
    return self

  def release(self) -> None:
    if _HELD.pop(os.fspath(self.path), None) is None:
      return
    if self._holder().get("token") == self.token:
      self._remove()

  def _create(self) -> bool:
    """Creates the lock if absent (atomically, with its whole content); False when one exists."""
    data = json.dumps(self.record).encode()
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(self.path):
      import fsspec  # gcsfs: create-if-absent is an upload with ifGenerationMatch=0
      if self.path.exists():
        return False
      try:
        fsspec.filesystem(os.fspath(self.path).split("://")[0]).pipe_file(os.fspath(self.path), data, mode="create")
      except FileExistsError:
        return False
      return self._holder().get("token") == self.token
    partial = f"{os.fspath(self.path)}.{self.token}"
    with open(partial, "wb") as f:
      f.write(data)
    try:
      os.link(partial, os.fspath(self.path))
      return True
    except FileExistsError:
      return False
    finally:
      os.remove(partial)

  def _holder(self) -> dict[str, Any]:
    try:
      holder = json.loads(self.path.read_text())
      return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
      return {}

  def _stale(self, holder: Mapping[str, Any]) -> bool:
    """The holder is gone: unreadable lock, or this host and (this process without holding it, or a dead PID)."""
    if not holder:
      return True
    if holder.get("host") != self.record["host"]:
      return False
    if holder.get("pid") == os.getpid():
      return True  # this process does not hold it (checked in acquire): left by an earlier incarnation of the PID
    return not _pid_alive(int(holder.get("pid", -1)), holder.get("pid_start"))

  def _remove(self) -> None:
    try:
      self.path.unlink()
    except FileNotFoundError:
      pass


@atexit.register
def _release_all() -> None:
  for lock in list(_HELD.values()):
    lock.release()


# --- the run ----------------------------------------------------------------------------------------------------------
def _is_writer() -> bool:
  import jax  # only here: the sweep imports this module without starting JAX
  return jax.process_index() == 0


class Run:
  """An open workdir: `path`, the `changes` allowed at start ({key: (old, new)}); a context manager that releases
  the lock and records how the run ended (ok, stopped by SystemExit, or the error's type and first line)."""

  def __init__(self, path: epath.Path, lock: Lock | None, changes: dict[str, tuple[Any, Any]], writer: bool):
    self.path, self.lock, self.changes, self.writer = path, lock, changes, writer

  def record(self, event: str, **fields) -> None:
    if self.writer:
      append_history(self.path, event, **fields)

  def close(self, status: str = "ok") -> None:
    if self.lock is None:
      return
    try:
      self.record("exit", status=status)
    finally:
      self.lock.release()
      self.lock = None

  def __enter__(self) -> "Run":
    return self

  def __exit__(self, kind, error, traceback) -> None:
    if kind is None:
      self.close("ok")
    elif issubclass(kind, SystemExit):
      self.close(f"stopped: {error}")
    else:
      self.close(f"error: {kind.__name__}: {str(error).splitlines()[0] if str(error) else ''}")


def open_run(config, workdir: PathLike, *, writer: bool | None = None) -> Run:
  """Takes the workdir's lock, checks `config` against config.json, then writes config.json and a history entry.

  Raises WorkdirLockedError (another run holds it) or ConfigChangedError (result-determining keys differ and
  `config.train.allow_config_change` is off); in both cases nothing in the workdir was written or changed.
  writer: whether this process writes (default: JAX process 0); other processes only check the config.
  """
  use_storage_emulator()
  path = as_path(workdir)
  writer = _is_writer() if writer is None else writer
  lock = Lock(path).acquire() if writer else None
  try:
    current = config_dict(config)
    config_path = path / CONFIG
    recorded_text = config_path.read_text() if config_path.exists() else None
    changes = {}
    if recorded_text is not None:
      try:
        recorded = json.loads(recorded_text)
      except ValueError:
        recorded = None
        if not _allow_change(config):
          raise ConfigChangedError(f"{config_path} is unreadable; use a new --workdir, or pass "
                                   "--config.train.allow_config_change=True to record this run's config over it")
      changes = (config_differences(recorded, current) if recorded is not None
                 else {CONFIG: ("<unreadable>", "this run's config")})
      if changes and not _allow_change(config):
        raise ConfigChangedError(
            f"{config_path} records another experiment: {_describe(changes)}; use a new --workdir, or pass "
            "--config.train.allow_config_change=True to continue here (the change is recorded in history.jsonl)")
    run = Run(path, lock, changes, writer)
    if writer:
      text = config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort") else json.dumps(
          current, indent=2)
      if text != recorded_text:
        write_text_atomic(config_path, text)
      run.record("start", resumed=recorded_text is not None, argv=sys.argv)
      if changes:
        log.warning("%s: config changed as allowed by train.allow_config_change: %s", config_path,
                    _describe(changes))
        run.record("config_change", changes={key: list(values) for key, values in changes.items()})
    return run
  except BaseException:
    if lock is not None:
      lock.release()
    raise


def append_history(workdir: PathLike, event: str, **fields) -> None:
  """Adds {"event", "time", "host", "pid", **fields} as one line of history.jsonl."""
  entry = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
           "pid": os.getpid(), **fields}
  append_text(as_path(workdir) / HISTORY, json.dumps(entry, default=str) + "\n")


def history(workdir: PathLike) -> list[dict[str, Any]]:
  path = as_path(workdir) / HISTORY
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# --- resume and sweep checks ----------------------------------------------------------------------------------------
def rewind_metrics(workdir: PathLike, step: int) -> int:
  """Drops metrics.jsonl lines with "step" > `step` (and a torn last line), so a resumed run logs no step twice.

  Call it right after restoring (step = the restored step, 0 for a fresh start). Returns the lines dropped.
  """
  path = as_path(workdir) / METRICS
  if not path.exists():
    return 0
  lines, kept = path.read_text().splitlines(), []
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue  # a line cut short by a kill
    if not isinstance(record, dict) or record.get("step", 0) <= step:
      kept.append(line)
  dropped = len(lines) - len(kept)
  if dropped:
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    log.info("%s: dropped %d lines after the restored step %d", path, dropped, step)
  return dropped


def is_finished(workdir: PathLike) -> bool:
  """Whether `<workdir>/results.json` is a complete results record (parses, has every schema key, the schema
  version and a known kind): what a sweep may skip. A truncated or foreign file is not finished."""
  from jaxprompt.report import run_files  # noqa: PLC0415  (imports jax; only needed here)
  path = as_path(workdir) / RESULTS
  try:
    record = json.loads(path.read_text())
  except (OSError, ValueError):
    return False
  return (isinstance(record, dict) and all(key in record for key in run_files.RECORD_KEYS)
          and record["schema"] == run_files.SCHEMA and record["kind"] in run_files.KINDS
          and isinstance(record["run"], dict) and isinstance(record["metrics"], dict))


def use_storage_emulator() -> None:
  """Points TensorStore (orbax's array storage) at $STORAGE_EMULATOR_HOST, the variable gcsfs and the Google Cloud
  clients honour, so one command runs against an emulator and real GCS alike. No-op when the variable is unset.
  Called by `open_run` and `checkpoint.Checkpoints` before any gs:// access."""
  host = os.environ.get("STORAGE_EMULATOR_HOST", "")
  if host in ("", "default"):
    return
  url = host if host.startswith(("http://", "https://")) else f"http://{host}"
  os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", url)
  os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")  # TensorStore's fixed token; emulators ignore it
  # gcsfs's zonal/hierarchical bucket probe speaks gRPC, which emulators lack (read when gcsfs is first imported).
  os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
  os.environ.setdefault("NO_GCE_CHECK", "true")  # google-auth: no probing for a metadata server (seconds each)
