"""What one run writes for people and for the report: metrics lines, progress lines and one results schema.

    <workdir>/metrics.jsonl   `MetricsLog`: one JSON object per logged step
    <workdir>/tensorboard/    `MetricsLog(workdir, tensorboard=True)`: the same scalars as TensorBoard event files
    <workdir>/results.json    `results_record(...)` written by `write_results`, the same schema for every run kind:
        {"schema": 1, "kind": "single" | "multitask" | "continual" | "demo",
         "run": {"method", "dataset", "shots", "seed", "protocol", "backbone", "options"},
         "metrics": {name: float}, "trainable_params": int, "time_s": float, ...extras}
      run.method is the name the report groups by: `method_label` for single-task runs ("coop", "coop+lamm"), the
      multi-task names ("mmap-mt", "coop-mt", "coop-st", "zeroshot"), "demo" for a demo. run.options holds the
      settings a sweep ablates as dotted keys (`method_options`, e.g. {"method.rpo.k": 24}). Extras are per kind:
      steps and corrupt_images (single), tasks, partition and trainable_share_percent (multitask), tasks (continual),
      rows (demo; its metrics are "<method>/<metric>", `demo_metrics`).
    <workdir>/results.md      the kind's table (`report.run_tables`)
    <workdir>/evaluations/    one JSON per evaluation set (`report.evaluation_files`)
    stderr                    `Progress` (training) and `EvalProgress` (evaluation) lines

Only process 0 writes (`is_writer`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from jaxprompt import trees
from jaxprompt import workdir as workdirs
from jaxprompt.report import event_files
from jaxprompt.report.run_tables import results_table

log = logging.getLogger(__name__)

SCHEMA = 1
KINDS = ("single", "multitask", "continual", "demo")
RUN_KEYS = ("method", "dataset", "shots", "seed", "protocol", "backbone", "options")
RECORD_KEYS = ("schema", "kind", "run", "metrics", "trainable_params", "time_s")
TENSORBOARD_DIR = "tensorboard"

__all__ = ["is_writer", "MetricsLog", "method_label", "method_options", "results_record", "demo_metrics",
           "write_results", "results_table", "harmonic_mean", "window_means", "Progress",
           "EvalProgress"]


def is_writer() -> bool:
  """Only process 0 writes files in a multi-host run."""
  return jax.process_index() == 0


class MetricsLog:
  """Appends one JSON object per line to `<workdir>/metrics.jsonl`; with `tensorboard=True` also writes the
  record's scalars to a TensorBoard event file under `<workdir>/tensorboard/` (`report.event_files`).

  write(record): record = {"step": int, ...}; every numeric scalar except `step` and `epoch` (derived from the step)
  becomes a TensorBoard scalar of that name at that step: the trainer's loss terms, lr, grad_norm, accuracy,
  val/accuracy, and `images_per_s` when the caller passes it. Lists, strings and booleans go to metrics.jsonl only.
  Raises ValueError when tensorboard is on and the record has no int `step`.
  """

  def __init__(self, workdir: str, tensorboard: bool = False):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.events = event_files.EventFile(os.path.join(workdir, TENSORBOARD_DIR)) if tensorboard else None

  def write(self, record: dict[str, Any]) -> None:
    if not is_writer():
      return
    plain = {k: _plain(v) for k, v in record.items()}
    if self.events is not None and (not isinstance(plain.get("step"), int) or isinstance(plain["step"], bool)):
      raise ValueError(f"metrics record step={plain.get('step')!r}: TensorBoard needs an int step "
                       f"(record keys {sorted(plain)})")
    workdirs.append_text(self.path, json.dumps(plain) + "\n")  # local or gs://
    if self.events is not None:
      self.events.write_scalars(plain["step"], {
          name: value for name, value in plain.items() if name not in ("step", "epoch")
          and isinstance(value, (int, float)) and not isinstance(value, bool)})


def _plain(value):
  if isinstance(value, (np.generic, np.ndarray, jax.Array)):
    value = np.asarray(value).item() if np.asarray(value).size == 1 else np.asarray(value).tolist()
  return value


# --- the results schema -------------------------------------------------------------------------------------------------
def method_label(method_config: Mapping) -> str:
  """The method's name in results and tables: the registry name, or `<base>+lamm` for LAMM on a base method (as the
  papers name it). `method_config` is `config.method`."""
  name = method_config["name"]
  base = method_config["lamm"]["base"] if name == "lamm" else None
  return f"{base}+lamm" if base not in (None, "none", "") else name


def method_options(method_config: Mapping) -> dict[str, Any]:
  """The active method's own options as dotted keys (what sweeps ablate), e.g. {"method.rpo.k": 24}; for LAMM also
  its base method's options."""
  names = [method_config["name"]] + ([method_config["lamm"]["base"]] if method_config["name"] == "lamm" else [])
  options = {}
  for name in names:
    if name in method_config:
      block = method_config[name]
      block = block.to_dict() if hasattr(block, "to_dict") else dict(block)
      options.update({f"method.{name}.{path.replace('/', '.')}": value
                      for path, value in trees.flatten(block).items()})
  return options


def results_record(*, kind: str, run: Mapping[str, Any], metrics: Mapping[str, float], trainable_params: int,
                   time_s: float, **extra) -> dict[str, Any]:
  """The `results.json` of every run kind (see the module docstring); extras are kept as given.

  Raises ValueError naming an unknown kind, the first missing or unknown `run` key, a non-numeric metric or an
  extra that would overwrite a schema key.
  """
  if kind not in KINDS:
    raise ValueError(f"results kind={kind!r}: expected one of {KINDS}")
  missing = [key for key in RUN_KEYS if key not in run]
  if missing:
    raise ValueError(f"results run block lacks {missing[0]!r} (needs {', '.join(RUN_KEYS)})")
  unknown = [key for key in run if key not in RUN_KEYS]
  if unknown:
    raise ValueError(f"results run block has unknown key {unknown[0]!r} (it holds {', '.join(RUN_KEYS)}; pass "
                     "anything else as an extra)")
  clash = [key for key in extra if key in RECORD_KEYS]
  if clash:
    raise ValueError(f"results extra {clash[0]!r} would overwrite a schema key")
  values = {}
  for name, value in metrics.items():
    try:
      values[name] = float(value)
    except (TypeError, ValueError):
      raise ValueError(f"results metric {name!r}={value!r} is not a number") from None
  return {"schema": SCHEMA, "kind": kind, "run": {key: run[key] for key in RUN_KEYS}, "metrics": values,
          "trainable_params": int(trainable_params), "time_s": float(time_s), **extra}


def demo_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """A demo's rows [{"method", "metrics", ...}] as one metrics dict {"<method>/<metric>": value}."""
  return {f"{row['method']}/{name}": float(value) for row in rows for name, value in row["metrics"].items()}


def write_results(workdir: str, results: dict[str, Any]) -> None:
  """`results.json` and `results.md` (the table of `results["kind"]`), each written atomically: a sweep takes an
  existing results.json as a finished run."""
  if not is_writer():
    return
  table = results_table(results)
  _write_atomic(os.path.join(workdir, "results.json"), json.dumps(results, indent=2, default=str))
  _write_atomic(os.path.join(workdir, "results.md"), table)
  log.info("results written to %s", os.path.join(workdir, "results.json"))


def _write_atomic(path: str, text: str) -> None:
  workdirs.write_text_atomic(path, text)  # local: temp + rename; gs://: one upload


def harmonic_mean(base: float, novel: float) -> float:
  """2BN / (B + N), 0 when both are 0 (base-to-novel's HM)."""
  return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


# --- progress lines -----------------------------------------------------------------------------------------------------
def window_means(window: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """Per metric, the mean over the steps of the window that have it (first-seen order)."""
  sums: dict[str, list[float]] = {}
  for metrics in window:
    for name, value in metrics.items():
      sums.setdefault(name, []).append(float(value))
  return {name: float(np.mean(values)) for name, values in sums.items()}


class Progress:
  """The training progress line, printed by `log(step, window_metrics)` each time the loop logs:

      epoch 2/10 step 40/200 loss=1.2345 lr=0.00195 accuracy=0.5125 (mean of 20 steps) | 512.0 img/s | ETA 0:01:05

  window_metrics: the per-step metric dicts since the previous line. Every metric is its mean over that window,
  except `lr`, the schedule's value at the window's last step. img/s is measured over the window. The ETA comes
  from the rate since the end of the first logged window, so the first window's compilation is left out; the first
  line therefore shows `ETA ?`. batch_size: images per step (all tasks of a multi-task step together).
  After each line, `images_per_s` holds that window's rate (the trainer logs it as the `images_per_s` metric).
  """

  def __init__(self, total_steps: int, steps_per_epoch: int, batch_size: int, start_step: int, *,
               clock: Callable[[], float] = time.monotonic):
    self.total, self.per_epoch, self.batch = total_steps, steps_per_epoch, batch_size
    self.clock = clock
    self.last_step, self.last_time = start_step, clock()
    self.rate_from: tuple[int, float] | None = None  # (step, time) at the end of the first logged window
    self.images_per_s = math.nan

  def line(self, step: int, window_metrics: Sequence[Mapping[str, float]]) -> str:
    """The line for the window ending at `step` (advances the window)."""
    now = self.clock()
    images_per_s = self.images_per_s = (step - self.last_step) * self.batch / max(now - self.last_time, 1e-9)
    if self.rate_from is None:
      self.rate_from, eta = (step, now), math.nan
    else:
      first_step, first_time = self.rate_from
      eta = (self.total - step) * (now - first_time) / (step - first_step) if step > first_step else math.nan
    self.last_step, self.last_time = step, now
    means = window_means(window_metrics)
    if window_metrics and "lr" in window_metrics[-1]:
      means["lr"] = float(window_metrics[-1]["lr"])
    epoch = (step - 1) // self.per_epoch + 1 if step else 0
    shown = [f"loss={means.get('loss', math.nan):.4f}", f"lr={means.get('lr', math.nan):.3g}"]
    shown += [f"{name}={value:.4g}" for name, value in means.items() if name not in ("loss", "lr")]
    return (f"epoch {epoch}/{math.ceil(self.total / self.per_epoch)} step {step}/{self.total} {' '.join(shown)} "
            f"(mean of {len(window_metrics)} steps) | {images_per_s:.1f} img/s | ETA {_duration(eta)}")

  def log(self, step: int, window_metrics: Sequence[Mapping[str, float]]) -> None:
    line = self.line(step, window_metrics)
    if is_writer():
      print(line, file=sys.stderr, flush=True)


class EvalProgress:
  """Progress through one evaluation set, `update(done)` after each batch:

      eval base: 12/40 batches | 3.2 batches/s | ETA 0:00:08        (at most every `every_s` seconds)
      eval base: 40/40 batches in 0:00:13                            (at the last batch)

  The rate is measured from the first update on, so the first batch's compilation is left out of the ETA.
  """

  def __init__(self, name: str, total_batches: int, *, every_s: float = 10.0,
               clock: Callable[[], float] = time.monotonic):
    self.name, self.total, self.every_s, self.clock = name, total_batches, every_s, clock
    self.start = self.last_line = clock()
    self.rate_from: tuple[int, float] | None = None

  def update(self, done: int) -> str | None:
    """Records `done` batches finished; prints and returns a line when one is due, else returns None."""
    now = self.clock()
    if self.rate_from is None:
      self.rate_from = (done, now)
    if done < self.total and now - self.last_line < self.every_s:
      return None
    self.last_line = now
    if done >= self.total:
      line = f"eval {self.name}: {done}/{self.total} batches in {_duration(now - self.start)}"
    else:
      first_done, first_time = self.rate_from
      rate = (done - first_done) / (now - first_time) if done > first_done and now > first_time else math.nan
      eta = (self.total - done) / rate if rate > 0 else math.nan
      speed = f"{rate:.1f}" if math.isfinite(rate) else "?"
      line = f"eval {self.name}: {done}/{self.total} batches | {speed} batches/s | ETA {_duration(eta)}"
    if is_writer():
      print(line, file=sys.stderr, flush=True)
    return line


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
