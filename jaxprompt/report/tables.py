"""The report's markdown tables across runs (cells mean +- std over seeds), laid out like the papers':

    b2n_table        base-to-novel: rows datasets + two Average rows (MEAN_HM, RPO's; HM_OF_MEANS, CoCoOp's and
                     MaPLe's), columns per method B / N / HM by the papers' convention / HM as jaxprompt averages it,
                     plus published columns
    fewshot_tables   all-class few-shot: per method, rows datasets + Average, columns shots (+ published)
    target_table     domain generalisation / cross-dataset (`target/<dataset>` metrics): rows methods
    multitask_table  rows tasks + mean + trainable parameters, columns methods
    ablation_table   a method run with several option values: rows datasets + Average, columns the variants
    generic_table    every metric per group (continual, demo, ...)

A table function returns its markdown (and, for the first two, the rows as records for report.json). One run's own
table (results.md) is `report.run_tables`.

How the papers form base-to-novel numbers (read in KaiyangZhou/CoOp, KaiyangZhou/Dassl.pytorch and
muzairkhattak/multimodal-prompt-learning):
  - Each seed's run logs Dassl's evaluator line `* accuracy: {acc:.1f}%` (dassl/evaluation/evaluator.py at commit
    87556a7; some other revisions print two decimals). Base accuracy comes from the train_base run's log, novel from
    the test_new run's; CoCoOp's COCOOP.md and MaPLe's docs/RUN.md run parse_test_res.py once on each.
  - `parse_test_res.py DIR` reads, per seed folder, the last `* accuracy: (number)%` after the end signal
    ("Finished training", or "=> result" with `--test-log`) by regex, parses that text as a float, and prints the
    mean over seeds with numpy's population std (`np.std`). A seed therefore counts at 0.1 resolution and B and N
    are means of rounded seeds: RPO's 76.70, 62.13 and 97.97 are thirds of a 0.1 grid.
  - The script forms no HM: the papers' per-dataset HM is 2BN/(B+N) of those seed-averaged B and N (nine of RPO's
    eleven match it to 0.01). The average row averages B and N over the datasets and takes the HM of the averages
    (CoCoOp, MaPLe: their baselines' rows match it, tests/test_report.py), or averages the per-dataset HMs (RPO:
    77.78, against 77.94 for the HM of its averaged B and N).
jaxprompt's trainer instead records each seed's unrounded `hm` and the report averages those per-seed HMs. b2n_table
shows both: B, N and "HM (of mean B, N; seeds rounded to 0.1)" by the papers' convention (the default, the one to
compare with published numbers), and "HM (mean of per-seed HM)" beside it. In the average rows the papers' HM
column applies the row's convention to the papers' per-dataset numbers, and the per-seed column computes the row's
statistic for each seed from unrounded accuracies, then averages over seeds. Every +- is the population std (ddof
as chosen) over seeds of the statistic computed per seed under the same convention.
"""

from __future__ import annotations

from typing import Sequence

from jaxprompt.report import published
from jaxprompt.report.groups import (Group, by_label, dataset_average, dataset_rank, hm_of_means, main_metric,
                                    mean_of, mean_of_hms, per_seed_average)

MEAN_HM, HM_OF_MEANS = "Average (mean of per-dataset HM)", "Average (HM of mean B and N)"
PAPERS_HM, PER_SEED_HM = "HM (of mean B, N; seeds rounded to 0.1)", "HM (mean of per-seed HM)"
"""The base-to-novel table's two HM columns: the papers' convention, and jaxprompt's mean of per-seed HMs."""


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
  """Base-to-novel: rows datasets + both Average rows; per method the columns B, N, PAPERS_HM, PER_SEED_HM (+ the
  published B, N, HM). Records: columns "<label> base|novel|hm" (the papers' convention) and "<label> hm_per_seed"."""
  labels = by_label(groups)
  datasets = sorted({g.dataset for g in groups}, key=dataset_rank)
  header, rows, records = ["dataset"], [], []
  for label, gs in labels.items():
    header += [f"{label} B", f"{label} N", f"{label} {PAPERS_HM}", f"{label} {PER_SEED_HM}"]
    if published.has_method("base2novel", gs[0].method):
      header += [f"{gs[0].method} B (published)", f"{gs[0].method} N (published)", f"{gs[0].method} HM (published)"]
  for dataset in datasets:
    row = [dataset]
    for label, gs in labels.items():
      g = next((g for g in gs if g.dataset == dataset), None)
      columns = (("base", lambda t: t[dataset]["base"], True), ("novel", lambda t: t[dataset]["novel"], True),
                 ("hm", hm_of_means, True), ("hm_per_seed", None, False))
      for name, fn, papers in columns:
        if g is None:
          row.append("-")
          continue
        value, std = dataset_average([g], fn, ddof, rounded=True) if papers else (g.mean("hm"), g.std("hm", ddof))
        row.append(cell(value, std))
        records.append(dict(table="base2novel", row=dataset, column=f"{label} {name}", mean=value, std=std,
                            seeds=g.seeds))
      if published.has_method("base2novel", gs[0].method):
        row += [pub("base2novel", gs[0].method, dataset, m) for m in ("base", "novel", "hm")]
    rows.append(row)
  for name, papers_fn, per_seed_fn, hm_key in ((MEAN_HM, mean_of_hms, mean_of("hm"), "mean_hm"),
                                              (HM_OF_MEANS, hm_of_means, hm_of_means, "hm_of_means")):
    row = [name]
    for label, gs in labels.items():
      note = "" if len(gs) == len(datasets) else f" ({len(gs)}/{len(datasets)} datasets)"
      for column, (value, std) in (("base", dataset_average(gs, mean_of("base"), ddof, rounded=True)),
                                   ("novel", dataset_average(gs, mean_of("novel"), ddof, rounded=True)),
                                   ("hm", dataset_average(gs, papers_fn, ddof, rounded=True)),
                                   ("hm_per_seed", per_seed_average(gs, per_seed_fn, ddof))):
        row.append(cell(value, std) + note)
        records.append(dict(table="base2novel", row=name, column=f"{label} {column}", mean=value, std=std,
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
  shown = f"{metric} ({PER_SEED_HM})" if metric == "hm" else metric
  return f"metric: {shown}\n\n" + markdown(["dataset"] + list(labels), rows)


def generic_table(groups: Sequence[Group], ddof: int) -> str:
  """Rows groups (label, dataset, shots, seeds), columns every metric any of them has."""
  metrics = sorted({m for g in groups for m in g.values})
  rows = [[g.label, g.dataset, str(g.shots), str(len(g.seeds))] + [cell(g.mean(m), g.std(m, ddof)) for m in metrics]
          for g in groups]
  return markdown(["method", "dataset", "shots", "seeds"] + metrics, rows)
