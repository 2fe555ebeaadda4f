"""The demo driver (`run_kind="demo"`): several methods on one task, trained briefly, one table at the end.

Each method runs as an ordinary single-task run in `<workdir>/<method>/` (so each resumes, and each has its own
results.json); a method whose run already finished is read back, not re-run. The table (accuracy, trainable
parameters, time) is printed and written to `<workdir>/results.md`; `<workdir>/results.json` is an ordinary results
record (kind "demo", metrics "<method>/<metric>", the rows kept), so the report aggregates demo runs too.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ml_collections

from jaxprompt import train
from jaxprompt import workdir as workdirs
from jaxprompt.report import groups, run_files


def method_run_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The single-task config of one demo method: the shared run config plus the method's recipe."""
  sub = ml_collections.ConfigDict(config.to_dict())
  sub.run_kind = "single"
  sub.method.name = name
  if name in config.demo.recipes:
    sub.update_from_flattened_dict(groups.dotted(config.demo.recipes[name].to_dict()))
  return sub


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or reads back) every demo method; writes and returns the demo's results (one row per method)."""
  return train.held_run(config, workdir, _run)


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  start_time = time.time()
  rows = []
  for name in config.demo.methods:
    method_dir = os.path.join(workdir, name)
    start = time.time()
    if workdirs.is_finished(method_dir):
      results = workdirs.read_json(workdirs.as_path(method_dir) / "results.json")
    else:
      results = train.run(method_run_config(config, name), method_dir)
    rows.append({"method": results["run"]["method"], "metrics": results["metrics"],
                 "trainable_params": results["trainable_params"], "time_s": results.get("time_s", time.time() - start)})
  run = train.run_info(config, method="demo", protocol="demo", options={"demo.methods": list(config.demo.methods)})
  results = run_files.results_record(kind="demo", run=run, metrics=run_files.demo_metrics(rows),
                                     trainable_params=sum(row["trainable_params"] for row in rows),
                                     time_s=time.time() - start_time, rows=rows)
  run_files.write_results(workdir, results)
  print(run_files.results_table(results), flush=True)
  return results
