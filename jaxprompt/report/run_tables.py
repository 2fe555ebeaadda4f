"""The markdown table of one run's `results.md`, one layout per run kind (`results["kind"]`).

    single      metric | value, then trainable parameters and time
    multitask   the groups (when grouped), task | accuracy (and the mean), parameters with their share of ViT-B/16
    continual   rows "after task t" x columns task0..task{T-1}, union of seen; forgetting, parameters, time
    demo        one row per method: its metrics, trainable parameters, time

Every function takes the results record (`run_files.results_record`) and returns the text, ending in a newline.
Tables across runs (mean +- std over seeds) are `report.tables`.
"""

from __future__ import annotations

from typing import Any, Callable

Results = dict[str, Any]

CLIP_B16_PARAMS = 149.6e6
"""ViT-B/16 CLIP's parameter count, the denominator of the MmAP paper's parameter shares."""


def single_table(results: Results) -> str:
  """metric | value for one single-task run."""
  run = results["run"]
  lines = [f"# {run['method']} on {run['dataset']} ({run['protocol']}, {run['shots']} shots, seed {run['seed']})", "",
           "| metric | value |", "|---|---|"]
  lines += [f"| {name} | {value:.2f} |" for name, value in results["metrics"].items()]
  lines += [f"| trainable parameters | {results['trainable_params']:,} |", f"| time (s) | {results['time_s']:.1f} |",
            ""]
  return "\n".join(lines)


def multitask_table(results: Results) -> str:
  """Per-task accuracy and the mean, trainable parameters and their share of CLIP ViT-B/16's 149.6M.

  Needs the extras `tasks` (names), `partition` (list of groups of task indices, or None) and
  `trainable_share_percent`.
  """
  run = results["run"]
  lines = [f"# {run['method']} on {run['dataset']} (multi-task, {run['shots']} shots, seed {run['seed']})", ""]
  if results.get("partition"):
    lines += ["groups: " + " | ".join("[" + ", ".join(results["tasks"][t] for t in group) + "]"
                                      for group in results["partition"]), ""]
  lines += ["| task | accuracy |", "|---|---|"]
  lines += [f"| {name.replace('task/', '')} | {value:.2f} |" for name, value in results["metrics"].items()]
  lines += [f"| trainable parameters | {results['trainable_params']:,} "
            f"({results['trainable_share_percent']:.4f} % of 149.6M) |", f"| time (s) | {results['time_s']:.1f} |", ""]
  return "\n".join(lines)


def continual_rows(metrics: dict[str, float], num_tasks: int) -> list[list[str]]:
  """Rows "after task t" x columns task0..task{T-1}, union (blank for tasks not yet seen), from the metrics
  `after<t>/task<s>` and `after<t>/union`."""
  rows = []
  for t in range(1, num_tasks + 1):
    cells = [f"{metrics[f'after{t}/task{s}']:.2f}" if s < t else "" for s in range(num_tasks)]
    rows.append([f"after task {t}"] + cells + [f"{metrics[f'after{t}/union']:.2f}"])
  return rows


def continual_table(results: Results) -> str:
  """The accuracy after each task on every seen task and their union, then forgetting. Needs the extra `tasks`
  (per task, its class names)."""
  run, metrics, tasks = results["run"], results["metrics"], results["tasks"]
  header = ["", *[f"task{s} ({len(c)} classes)" for s, c in enumerate(tasks)], "union of seen"]
  lines = [f"# continual {run['method']} on {run['dataset']} ({run['shots']} shots, seed {run['seed']})", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in continual_rows(metrics, len(tasks))]
  lines += ["", f"forgetting (max drop on earlier tasks): {metrics['forgetting']:.2f} points; trainable parameters "
            f"{results['trainable_params']:,}; time {results['time_s']:.1f} s", ""]
  return "\n".join(lines)


def demo_table(results: Results) -> str:
  """One row per demo method. Needs the extra `rows`: [{"method", "metrics", "trainable_params", "time_s"}]."""
  run, rows = results["run"], results["rows"]
  metric_names = list(rows[0]["metrics"]) if rows else []
  header = "| method | " + " | ".join(metric_names) + " | trainable params | time (s) |"
  lines = [f"# Demo: {run['dataset']}, {run['shots']} shots, seed {run['seed']}, backbone {run['backbone']}", "",
           header, "|" + "---|" * (len(metric_names) + 3)]
  for row in rows:
    values = " | ".join(f"{row['metrics'][m]:.1f}" for m in metric_names)
    lines.append(f"| {row['method']} | {values} | {row['trainable_params']:,} | {row['time_s']:.1f} |")
  return "\n".join(lines) + "\n"


TABLES: dict[str, Callable[[Results], str]] = {
    "single": single_table, "multitask": multitask_table, "continual": continual_table, "demo": demo_table}
"""Run kind -> the layout of its results.md."""


def results_table(results: Results) -> str:
  """The table of `results["kind"]`."""
  kind = results.get("kind")
  if kind not in TABLES:
    raise ValueError(f"results kind={kind!r}: expected one of {sorted(TABLES)} (build results with results_record)")
  return TABLES[kind](results)
