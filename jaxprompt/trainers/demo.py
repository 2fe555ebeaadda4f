"""The demo driver (`run_kind="demo"`): several methods on one task, trained briefly, one table at the end.

Each method runs as an ordinary single-task run in `<workdir>/<method>/` (so each resumes, and each has its own
results.json); a method whose run already finished is read back, not re-run. The table (accuracy, trainable
parameters, time) is printed and written to `<workdir>/demo.md` and `<workdir>/results.json`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import ml_collections

from jaxprompt import train
from jaxprompt.report import run_files as reporting


def method_run_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The single-task config of one demo method: the shared run config plus the method's recipe."""
  sub = ml_collections.ConfigDict(config.to_dict())
  sub.run_kind = "single"
  sub.method.name = name
  if name in config.demo.recipes:
    sub.update_from_flattened_dict(_flatten(config.demo.recipes[name]))
  if name == "zeroshot":
    sub.eval_only = True
  return sub


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  os.makedirs(workdir, exist_ok=True)
  rows = []
  for name in config.demo.methods:
    method_dir = os.path.join(workdir, name)
    done = os.path.join(method_dir, "results.json")
    start = time.time()
    if os.path.exists(done):
      with open(done) as f:
        results = json.load(f)
    else:
      results = train.run(method_run_config(config, name), method_dir)
    rows.append({"method": results["run"]["method"], "metrics": results["metrics"],
                 "trainable_params": results["trainable_params"], "time_s": results.get("time_s", time.time() - start)})
  table = demo_table(config, rows)
  if reporting.is_writer():
    with open(os.path.join(workdir, "demo.md"), "w") as f:
      f.write(table)
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump({"run": {"protocol": "demo", "dataset": config.data.name, "shots": config.data.shots,
                         "seed": config.seed, "backbone": config.backbone}, "rows": rows}, f, indent=2)
  print(table, flush=True)
  return {"rows": rows}


def demo_table(config, rows) -> str:
  metric_names = list(rows[0]["metrics"]) if rows else []
  header = "| method | " + " | ".join(metric_names) + " | trainable params | time (s) |"
  lines = [f"# Demo: {config.data.name}, {config.data.shots} shots, seed {config.seed}, backbone {config.backbone}", "",
           header, "|" + "---|" * (len(metric_names) + 3)]
  for row in rows:
    values = " | ".join(f"{row['metrics'][m]:.1f}" for m in metric_names)
    lines.append(f"| {row['method']} | {values} | {row['trainable_params']:,} | {row['time_s']:.1f} |")
  return "\n".join(lines) + "\n"


def _flatten(tree: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """A nested recipe {"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(_flatten(value, path + "."))
    else:
      flat[path] = value
  return flat
