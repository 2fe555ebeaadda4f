"""The report's markdown tables across runs (cells mean +- std over seeds), laid out like the papers':

    b2n_table        base-to-novel: rows datasets + two Average rows (MEAN_HM, RPO's convention; HM_OF_MEANS,
                     CoCoOp's and MaPLe's), columns B / N / HM per method, plus published columns
    fewshot_tables   all-class few-shot: per method, rows datasets + Average, columns shots (+ published)
    target_table     domain generalisation / cross-dataset (`target/<dataset>` metrics): rows methods
    multitask_table  rows tasks + mean + trainable parameters, columns methods
    ablation_table   a method run with several option values: rows datasets + Average, columns the variants
    generic_table    every metric per group (continual, demo, ...)

A table function returns its markdown (and, for the first two, the rows as records for report.json). One run's own
table (results.md) is `report.run_tables`.
"""

from __future__ import annotations

from typing import Sequence

from jaxprompt.report import published
from jaxprompt.report.groups import Group, by_label, dataset_average, dataset_rank, hm_of_means, main_metric, mean_of

MEAN_HM, HM_OF_MEANS = "Average (mean of per-dataset HM)", "Average (HM of mean B and N)"


def cell(mean: float | None, std: float | None = None) -> str:
  """A table cell: `12.34 ± 0.56`, `12.34` without a std, `-` without a value."""
  if mean is None:
    return "-"
  return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A markdown table."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def pub(protocol: str, method: str, dataset: str, metric: str) -> str:
  """The published value's cell, `-` when no paper reports it."""
  found = published.lookup(protocol, method, dataset, metric)
  return cell(found[1]) if found else "-"


def b2n_table(groups: Sequence[Group], ddof: int) -> tuple[str, list[dict]]:
  """Base-to-novel: rows datasets + both Average rows; columns B / N / HM per method (+ published)."""
  labels = by_label(groups)
  datasets = sorted({g.dataset for g in groups}, key=dataset_rank)
  header, rows, records = ["dataset"], [], []
  for label, gs in labels.items():
    header += [f"{label} B", f"{label} N", f"{label} HM"]
    if published.has_method("base2novel", gs[0].method):
      header += [f"{gs[0].method} B (published)", f"{gs[0].method} N (published)", f"{gs[0].method} HM (published)"]
  for dataset in datasets:
    row = [dataset]
    for label, gs in labels.items():
      g = next((g for g in gs if g.dataset == dataset), None)
      for metric in ("base", "novel", "hm"):
        row.append(cell(g.mean(metric), g.std(metric, ddof)) if g else "-")
        if g:
          records.append(dict(table="base2novel", row=dataset, column=f"{label} {metric}", mean=g.mean(metric),
                              std=g.std(metric, ddof), seeds=g.seeds))
      if published.has_method("base2novel", gs[0].method):
        row += [pub("base2novel", gs[0].method, dataset, m) for m in ("base", "novel", "hm")]
    rows.append(row)
  for name, hm_fn, hm_key in ((MEAN_HM, mean_of("hm"), "mean_hm"), (HM_OF_MEANS, hm_of_means, "hm_of_means")):
    row = [name]
    for label, gs in labels.items():
      note = "" if len(gs) == len(datasets) else f" ({len(gs)}/{len(datasets)} datasets)"
      for metric, fn in (("base", mean_of("base")), ("novel", mean_of("novel")), ("hm", hm_fn)):
        value, std = dataset_average(gs, fn, ddof)
        row.append(cell(value, std) + note)
        records.append(dict(table="base2novel", row=name, column=f"{label} {metric}", mean=value, std=std,
                            datasets=len(gs)))
      if published.has_method("base2novel", gs[0].method):
        row += [pub("base2novel", gs[0].method, "average", m) for m in ("base", "novel", hm_key)]
    rows.append(row)
  return markdown(header, rows), records


def fewshot_tables(groups: Sequence[Group], ddof: int) -> tuple[str, list[dict]]:
  """All-class few-shot: per method, rows datasets + Average, columns shots (+ published where known)."""
  parts, records = [], []
  for label, gs in by_label(groups).items():
    method, shots = gs[0].method, sorted({g.shots for g in gs})
    datasets = sorted({g.dataset for g in gs}, key=dataset_rank)
    def published_at(dataset, k):
      found = published.lookup("all", method, dataset, f"accuracy@{k}")
      if found is None and method == "zeroshot":
        found = published.lookup("all", method, dataset, "accuracy")
      return found
    with_pub = [k for k in shots if any(published_at(d, k) for d in datasets + ["average"])]
    header = ["dataset"]
    for k in shots:
      header += [f"{k} shots"] + ([f"{k} (published)"] if k in with_pub else [])
    rows = []
    for dataset in datasets + ["Average"]:
      row = [dataset]
      for k in shots:
        at_k = [g for g in gs if g.shots == k]
        if dataset == "Average":
          mean, std = dataset_average(at_k, mean_of("accuracy"), ddof)
          note = "" if len(at_k) == len(datasets) else f" ({len(at_k)}/{len(datasets)} datasets)"
        else:
          g = next((g for g in at_k if g.dataset == dataset), None)
          mean, std, note = (g.mean("accuracy"), g.std("accuracy", ddof), "") if g else (None, None, "")
        row.append(cell(mean, std) + note)
        records.append(dict(table="fewshot", method=label, row=dataset, shots=k, mean=mean, std=std))
        if k in with_pub:
          found = published_at("average" if dataset == "Average" else dataset, k)
          row.append(cell(found[1]) if found else "-")
      rows.append(row)
    parts.append(f"### {label}\n\n" + markdown(header, rows))
  return "\n\n".join(parts), records


def target_table(groups: Sequence[Group], ddof: int) -> str:
  """Domain generalisation / cross-dataset: rows methods (+ published), columns source + targets + target mean."""
  targets = sorted({m for g in groups for m in g.values if m.startswith("target/")})
  columns = ["accuracy"] + targets + ["target_mean"]
  header = ["method", "source", "shots"] + [c.replace("target/", "") for c in columns]
  rows = []
  for g in groups:
    rows.append([g.label, g.dataset, str(g.shots)] + [cell(g.mean(c), g.std(c, ddof)) for c in columns])
    if published.has_method("all", g.method) and published.lookup("all", g.method, g.dataset, "target_mean"):
      rows.append([f"{g.method} (published)", g.dataset, ""] + [pub("all", g.method, g.dataset, c) for c in columns])
  return markdown(header, rows)


def multitask_table(groups: Sequence[Group], ddof: int) -> str:
  """Multi-task: rows tasks + mean + trainable params; columns methods."""
  labels = by_label(groups)
  tasks = sorted({m for g in groups for m in g.values if m.startswith("task/")})
  header = ["task"] + list(labels)
  rows = [[t.replace("task/", "")] + [cell(gs[0].mean(t), gs[0].std(t, ddof)) for gs in labels.values()]
          for t in tasks]
  rows.append(["**mean**"] + [cell(gs[0].mean("mean"), gs[0].std("mean", ddof)) for gs in labels.values()])
  rows.append(["trainable params"] + [f"{gs[0].params[0]:,}" if gs[0].params[0] is not None else "-"
                                      for gs in labels.values()])
  return markdown(header, rows)


def ablation_table(groups: Sequence[Group], ddof: int) -> str:
  """Rows datasets + Average, columns the option variants, the protocol's main metric."""
  labels = by_label(groups)
  metric = main_metric(groups[0])
  datasets = sorted({g.dataset for g in groups}, key=dataset_rank)
  rows = []
  for dataset in datasets:
    row = [dataset]
    for gs in labels.values():
      g = next((g for g in gs if g.dataset == dataset), None)
      row.append(cell(g.mean(metric), g.std(metric, ddof)) if g else "-")
    rows.append(row)
  rows.append(["Average"] + [cell(*dataset_average(gs, mean_of(metric), ddof)) for gs in labels.values()])
  return f"metric: {metric}\n\n" + markdown(["dataset"] + list(labels), rows)


def generic_table(groups: Sequence[Group], ddof: int) -> str:
  """Rows groups (label, dataset, shots, seeds), columns every metric any of them has."""
  metrics = sorted({m for g in groups for m in g.values})
  rows = [[g.label, g.dataset, str(g.shots), str(len(g.seeds))] + [cell(g.mean(m), g.std(m, ddof)) for m in metrics]
          for g in groups]
  return markdown(["method", "dataset", "shots", "seeds"] + metrics, rows)
