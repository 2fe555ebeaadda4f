"""What a run writes for people: JSON-lines metrics, a progress line, `results.json` and a markdown table."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)


def is_writer() -> bool:
  """Only process 0 writes files in a multi-host run."""
  return jax.process_index() == 0


class MetricsLog:
  """Appends one JSON object per line to `<workdir>/metrics.jsonl`."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")

  def write(self, record: dict[str, Any]) -> None:
    if not is_writer():
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")


def _plain(value):
  if isinstance(value, (np.generic, np.ndarray, jax.Array)):
    value = np.asarray(value).item() if np.asarray(value).size == 1 else np.asarray(value).tolist()
  return value


class Progress:
  """A progress line: epoch, step, loss, lr, images/s and ETA (printed every `log_every` steps)."""

  def __init__(self, total_steps: int, steps_per_epoch: int, batch_size: int, start_step: int):
    self.total, self.per_epoch, self.batch = total_steps, steps_per_epoch, batch_size
    self.start_step, self.start_time = start_step, time.time()
    self.last_step, self.last_time = start_step, self.start_time

  def line(self, step: int, metrics: dict[str, float]) -> str:
    now = time.time()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    done = (step - self.start_step) / max(now - self.start_time, 1e-9)
    eta = (self.total - step) / done if done > 0 else math.inf
    epoch = (step - 1) // self.per_epoch + 1 if step else 0
    extras = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("loss", "lr"))
    return (f"epoch {epoch}/{math.ceil(self.total / self.per_epoch)} step {step}/{self.total} "
            f"loss={metrics.get('loss', float('nan')):.4f} lr={metrics.get('lr', float('nan')):.3g} {extras} "
            f"| {rate * self.batch:.1f} img/s | ETA {_duration(eta)}")

  def log(self, step: int, metrics: dict[str, float]) -> None:
    if is_writer():
      print(self.line(step, metrics), file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def write_results(workdir: str, results: dict[str, Any], table: str | None = None) -> None:
  """`results.json` (machine-readable) and `results.md` (`table`, default one run's metrics table) in the workdir."""
  if not is_writer():
    return
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=str)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(results_table(results) if table is None else table)
  log.info("results written to %s", os.path.join(workdir, "results.json"))


def results_table(results: dict[str, Any]) -> str:
  """A markdown table of one run's metrics."""
  run = results["run"]
  lines = [f"# {run['method']} on {run['dataset']} ({run['protocol']}, {run['shots']} shots, seed {run['seed']})", "",
           "| metric | value |", "|---|---|"]
  lines += [f"| {name} | {value:.2f} |" for name, value in results["metrics"].items()]
  lines += [f"| trainable parameters | {results['trainable_params']:,} |", f"| time (s) | {results['time_s']:.1f} |",
            ""]
  return "\n".join(lines)


def harmonic_mean(base: float, novel: float) -> float:
  return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0
