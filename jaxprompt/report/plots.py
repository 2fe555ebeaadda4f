"""The report's PNG plots, and the grouping heat map of a multi-task run.

    shot_curves       main metric vs shots (log2 axis), one PNG per (protocol, dataset) and one for the average,
                      with the published curve dashed where a paper has one
    bar_plots         grouped bars with std-over-seeds error bars: one per ablated method, one per (protocol, shots)
    affinity_heatmap  a grouping result's T x T task-affinity matrix with its partition (`<workdir>/grouping.png`)

Figures are `matplotlib.figure.Figure` objects rendered straight to PNG (Agg): nothing here touches pyplot's global
state or the caller's backend, at import or at call.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxprompt.report import published
from jaxprompt.report.groups import Group, ablation_sets, by_label, dataset_average, dataset_rank, main_metric, mean_of


def file_name(*parts: str) -> str:
  """A file-system-safe PNG name from the parts."""
  return re.sub(r"[^A-Za-z0-9._+-]+", "_", "_".join(parts)).strip("_") + ".png"


def curve_sets(groups: Sequence[Group]) -> dict[str, list[Group]]:
  """protocol -> its groups, for protocols where some method was run at more than one number of shots."""
  out = {}
  for protocol in sorted({g.protocol for g in groups}):
    gs = [g for g in groups if g.protocol == protocol]
    if any(len({g.shots for g in same}) > 1 for same in by_label(gs).values()):
      out[protocol] = gs
  return out


def shot_curves(groups: Sequence[Group], out_dir: str, ddof: int = 0) -> list[str]:
  """Main metric vs shots, one PNG per (protocol, dataset) and one for the dataset average; returns the paths."""
  paths = []
  os.makedirs(out_dir, exist_ok=True)
  for protocol, gs in curve_sets(groups).items():
    metric = main_metric(gs[0])
    datasets = sorted({g.dataset for g in gs}, key=dataset_rank)
    for dataset in datasets + ["average"]:
      fig = Figure(figsize=(5.5, 4))
      ax = fig.subplots()
      for label, same in by_label(gs).items():
        shots = sorted({g.shots for g in same})
        points = []
        for k in shots:
          at_k = [g for g in same if g.shots == k and (dataset == "average" or g.dataset == dataset)]
          if dataset == "average":
            if len(at_k) == len({g.dataset for g in same}):  # only shots where every dataset ran
              points.append((k, *dataset_average(at_k, mean_of(metric), ddof)))
          elif at_k:
            points.append((k, at_k[0].mean(metric), at_k[0].std(metric, ddof)))
        color = None
        if points:
          xs, ys, errs = zip(*points)
          line = ax.errorbar(xs, ys, yerr=[e or 0.0 for e in errs], marker="o", capsize=3, label=label)
          color = line.lines[0].get_color()
        pub = [(k, published.lookup(protocol, same[0].method, dataset, f"accuracy@{k}")) for k in shots]
        pub = [(k, found[1]) for k, found in pub if found]
        if pub:
          ax.plot(*zip(*pub), linestyle="--", marker="x", color=color, label=f"{same[0].method} (published)")
      all_shots = sorted({g.shots for g in gs})
      ax.set_xscale("log", base=2)
      ax.set_xticks(all_shots, [str(k) for k in all_shots])
      ax.set_xlabel("shots per class")
      ax.set_ylabel(f"{metric} (%)")
      ax.set_title(f"{protocol}: {dataset}")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
      path = os.path.join(out_dir, file_name(protocol, dataset))
      fig.tight_layout()
      fig.savefig(path, dpi=100)
      paths.append(path)
  return paths


def bar_plot(groups: Sequence[Group], title: str, path: str, ddof: int = 0) -> str:
  """Grouped bars: x = datasets + Average, one bar per label, error bars = std over seeds."""
  labels = by_label(groups)
  metric = main_metric(groups[0])
  datasets = sorted({g.dataset for g in groups}, key=dataset_rank)
  columns = datasets + (["Average"] if len(datasets) > 1 else [])
  width = 0.8 / len(labels)
  fig = Figure(figsize=(max(5.0, 1.1 * len(columns) + 2), 4))
  ax = fig.subplots()
  for i, (label, gs) in enumerate(labels.items()):
    heights, errs = [], []
    for column in columns:
      if column == "Average":
        value, std = dataset_average(gs, mean_of(metric), ddof)
      else:
        g = next((g for g in gs if g.dataset == column), None)
        value, std = (g.mean(metric), g.std(metric, ddof)) if g else (0.0, None)
      heights.append(value or 0.0)
      errs.append(std or 0.0)
    xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(columns))]
    ax.bar(xs, heights, width, yerr=errs, capsize=3, label=label)
  ax.set_xticks(range(len(columns)))
  ax.set_xticklabels(columns, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel(f"{metric} (%)")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path


def bar_plots(groups: Sequence[Group], out_dir: str, ddof: int = 0) -> list[str]:
  """One ablation plot per method run with several option sets, and one plot of every method per (protocol, shots)."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for (protocol, method, shots), gs in ablation_sets(groups).items():
    path = os.path.join(out_dir, file_name("ablation", protocol, method, f"{shots}shots"))
    paths.append(bar_plot(gs, f"{method} ablation ({protocol}, {shots} shots)", path, ddof))
  for protocol in sorted({g.protocol for g in groups}):
    for shots in sorted({g.shots for g in groups if g.protocol == protocol}):
      gs = [g for g in groups if g.protocol == protocol and g.shots == shots]
      if gs:
        path = os.path.join(out_dir, file_name("methods", protocol, f"{shots}shots"))
        paths.append(bar_plot(gs, f"methods ({protocol}, {shots} shots)", path, ddof))
  return paths


def affinity_heatmap(result: dict, path: str) -> str:
  """The grouping result's `affinity` (T x T, in [-1, 1]) as a heat map over its `tasks`, every cell annotated, the
  `partition` (groups of task indices) in the title; written to `path`, which is returned."""
  names, matrix = result["tasks"], np.asarray(result["affinity"])
  groups = "|".join(",".join(str(t) for t in group) for group in result["partition"])
  fig = Figure(figsize=(1.2 * len(names) + 2, 1.2 * len(names) + 1))
  ax = fig.subplots()
  image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
  ax.set_yticks(range(len(names)), names)
  for i in range(len(names)):
    for j in range(len(names)):
      ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
  ax.set_title("task gradient affinity; groups " + groups)
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  return path
