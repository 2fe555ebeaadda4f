"""Aggregate finished runs into the papers' tables and plots: `python -m jaxprompt.report RUNS_DIR [--out DIR]`.

Gathers every `results.json` under RUNS_DIR, groups runs by (protocol, method, dataset, shots, options except the
seed), and writes to DIR (default RUNS_DIR):
  report.md   tables laid out like the papers' (mean +- std over seeds), with a "published" column where
              `jaxprompt.published` has numbers:
              - base-to-novel: rows = datasets + two Average rows, one per convention (mean of per-dataset HM, as RPO
                reports; HM of the averaged B and N, as CoCoOp/MaPLe report); columns B / N / HM per method
              - all-class few-shot: per method, rows = datasets + Average, columns = shots
              - domain generalisation / cross-dataset (`target/<dataset>` metrics): rows = methods
              - multi-task: rows = tasks + mean + trainable parameters, columns = methods
              - ablations: a method run with several option values (e.g. `method.rpo.init`)
              - anything else (continual, ...): every metric per group
  report.json the groups (seeds, values, mean, std per metric) and every table row
  curves/     accuracy (HM for base-to-novel) vs shots, one PNG per dataset + average
  bars/       ablation and method-comparison bar plots with error bars
std is the population std over seeds (numpy's default, ddof=0, as the Dassl scripts behind the papers use);
`--ddof 1` gives the sample std. Average rows: the value follows the convention's definition from per-dataset seed
means; its +- is the std over seeds of the same average computed per seed (seeds present for every dataset).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import defaultdict
from typing import Callable, Sequence

import numpy as np

from jaxprompt.report import published

RESULTS = "results.json"
MAIN_METRIC = {"all": "accuracy", "base2novel": "hm", "multitask": "mean"}
METHOD_ORDER = ["zeroshot", "coop", "cocoop", "vpt", "ivlp", "maple", "rpo", "lamm", "coop+lamm", "maple+lamm",
                "mmap"]
# Option keys (their last part) left out of the grouping: already in the group key, or paths.
REDUNDANT_OPTIONS = {"seed", "dataset", "shots", "name", "method", "root", "workdir"}
MEAN_HM, HM_OF_MEANS = "Average (mean of per-dataset HM)", "Average (HM of mean B and N)"


@dataclasses.dataclass
class Group:
  """Runs that differ only in their seed; `values[metric]` is aligned with `seeds`."""
  protocol: str
  method: str
  dataset: str
  shots: int
  options: dict
  label: str = ""
  seeds: list = dataclasses.field(default_factory=list)
  values: dict = dataclasses.field(default_factory=lambda: defaultdict(list))
  params: list = dataclasses.field(default_factory=list)
  workdirs: list = dataclasses.field(default_factory=list)

  def mean(self, metric: str) -> float | None:
    return float(np.mean(self.values[metric])) if self.values.get(metric) else None

  def std(self, metric: str, ddof: int = 0) -> float | None:
    vals = self.values.get(metric)
    return float(np.std(vals, ddof=ddof)) if vals and len(vals) > ddof else None

  def by_seed(self, metric: str) -> dict:
    return dict(zip(self.seeds, self.values.get(metric, [])))


# --------------------------------------------------------------------------------------------------- gathering

def harmonic(base: float, novel: float) -> float:
  return 2 * base * novel / (base + novel) if base + novel else 0.0


def canonical_method(run: dict) -> str:
  """Our name for the run's method; LAMM on a base reads `<base>+lamm` (as the papers name it)."""
  method = str(run["method"])
  base = next((v for k, v in run.get("options", {}).items() if k.split(".")[-2:] in (["lamm", "base"], ["base"])),
              None)
  if method == "lamm" and base not in (None, "none", ""):
    return f"{base}+lamm"
  return method


def load_results(root: str, warn: Callable[[str], None]) -> list[tuple[str, dict]]:
  """(workdir, parsed results.json) for every well-formed file under root; malformed ones are named in a warning."""
  found = []
  for dirpath, _, filenames in sorted(os.walk(root)):
    if RESULTS not in filenames:
      continue
    path = os.path.join(dirpath, RESULTS)
    try:
      with open(path) as f:
        result = json.load(f)
      run = result["run"]
      missing = [k for k in ("method", "dataset", "shots", "seed", "protocol") if k not in run]
      if missing or not isinstance(result.get("metrics"), dict):
        raise KeyError(f"run.{missing[0]}" if missing else "metrics")
    except (OSError, ValueError, KeyError, TypeError) as error:
      warn(f"skipping {path}: not a well-formed results file ({type(error).__name__}: {error})")
      continue
    found.append((dirpath, result))
  return found


def derived_metrics(protocol: str, metrics: dict) -> dict:
  """The metrics plus what the tables derive: `hm` from base/novel if absent, `target_mean` over targets."""
  metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
  if protocol == "base2novel" and "hm" not in metrics and {"base", "novel"} <= set(metrics):
    metrics["hm"] = harmonic(metrics["base"], metrics["novel"])
  targets = [v for k, v in metrics.items() if k.startswith("target/")]
  if targets and "target_mean" not in metrics:
    metrics["target_mean"] = float(np.mean(targets))
  return metrics


def flatten(tree: dict, prefix: str = "") -> dict:
  """{"a": {"b": 1}} -> {"a.b": 1}; lists become tuples-as-JSON strings so they compare and hash."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = json.dumps(value) if isinstance(value, list) else value
  return flat


def ablated_options(results: Sequence[tuple[str, dict]]) -> list[dict]:
  """Per run: the resolved-config fields (from WORKDIR/config.json) that differ between runs of the same method,
  protocol, dataset, shots and seed, i.e. the fields a sweep varied, whatever the trainer put in `run.options`."""
  configs = []
  for workdir, _ in results:
    try:
      with open(os.path.join(workdir, "config.json")) as f:
        configs.append(flatten(json.load(f)))
    except (OSError, ValueError, AttributeError):
      configs.append({})
  cells = defaultdict(list)
  for i, (_, result) in enumerate(results):
    run = result["run"]
    cells[(run["protocol"], canonical_method(run), run["dataset"], run["shots"], run["seed"])].append(i)
  varied = defaultdict(set)  # (protocol, method) -> keys
  for (protocol, method, *_), members in cells.items():
    keys = set().union(*(configs[i] for i in members))
    varied[(protocol, method)] |= {k for k in keys if len({json.dumps(configs[i].get(k)) for i in members}) > 1}
  out = []
  for i, (_, result) in enumerate(results):
    run = result["run"]
    keys = varied[(run["protocol"], canonical_method(run))]
    out.append({k: configs[i].get(k) for k in sorted(keys) if k.split(".")[-1] not in REDUNDANT_OPTIONS})
  return out


def aggregate(results: Sequence[tuple[str, dict]], warn: Callable[[str], None] = print) -> list[Group]:
  """Groups runs by (protocol, method, dataset, shots, backbone, options except seed and paths); labels say the
  method and the options that vary among its groups. Options are `run.options` plus the config.json fields that
  differ between otherwise identical runs (see `ablated_options`)."""
  groups: dict[tuple, Group] = {}
  for (workdir, result), from_config in zip(results, ablated_options(results)):
    run = result["run"]
    options = {k: v for k, v in sorted(run.get("options", {}).items()) if k.split(".")[-1] not in REDUNDANT_OPTIONS}
    options = {**from_config, **options}
    if "backbone" in run:  # runs on different backbones never share a group (the label shows it when it varies)
      options["backbone"] = run["backbone"]
    method = canonical_method(run)
    key = (run["protocol"], method, run["dataset"], int(run["shots"]), json.dumps(options, sort_keys=True))
    group = groups.setdefault(key, Group(run["protocol"], method, run["dataset"], int(run["shots"]), options))
    if run["seed"] in group.seeds:
      warn(f"seed {run['seed']} appears twice in one group ({group.workdirs[group.seeds.index(run['seed'])]} and "
           f"{workdir}); both are kept")
    group.seeds.append(run["seed"])
    group.workdirs.append(workdir)
    group.params.append(result.get("trainable_params"))
    for metric, value in derived_metrics(run["protocol"], result["metrics"]).items():
      group.values[metric].append(value)
  out = list(groups.values())
  for group in out:
    group.label = make_label(group, out)
  return sorted(out, key=lambda g: (g.protocol, method_rank(g.method), g.label, dataset_rank(g.dataset), g.shots))


def make_label(group: Group, groups: Sequence[Group]) -> str:
  """`method` or `method [key=value, ...]` over the options that vary among this method's groups."""
  same = [g for g in groups if g.method == group.method]
  varying = [k for k, v in group.options.items() if any(g.options.get(k) != v for g in same)]
  if not varying:
    return group.method
  short = lambda k: k[len("method."):] if k.startswith("method.") else k
  return f"{group.method} [" + ", ".join(f"{short(k)}={group.options[k]!r}" for k in varying) + "]"


def method_rank(method: str) -> tuple:
  return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def dataset_rank(dataset: str) -> tuple:
  order = published.DATASETS
  return (order.index(dataset) if dataset in order else len(order), dataset)


# ---------------------------------------------------------------------------------------------------- numbers

def cell(mean: float | None, std: float | None = None) -> str:
  if mean is None:
    return "-"
  return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def dataset_average(groups: Sequence[Group], fn: Callable[[dict], float], ddof: int = 0) -> tuple:
  """(value, std over seeds) of fn({dataset: {metric: value}}): the value from seed means, the std from per-seed
  evaluations over the seeds every dataset has (None when fewer than two such seeds)."""
  if not groups:
    return None, None
  metrics = sorted({m for g in groups for m in g.values})
  value = fn({g.dataset: {m: g.mean(m) for m in metrics} for g in groups})
  common = set.intersection(*(set(g.seeds) for g in groups))
  per_seed = [fn({g.dataset: {m: g.by_seed(m).get(seed) for m in metrics} for g in groups}) for seed in common]
  std = float(np.std(per_seed, ddof=ddof)) if len(per_seed) > max(1, ddof) else None
  return value, std


def mean_of(metric: str) -> Callable[[dict], float]:
  return lambda table: float(np.mean([row[metric] for row in table.values()]))


def hm_of_means(table: dict) -> float:
  return harmonic(mean_of("base")(table), mean_of("novel")(table))


# -------------------------------------------------------------------------------------------------------- writing

def group_record(g: Group, ddof: int) -> dict:
  return dict(protocol=g.protocol, method=g.method, label=g.label, dataset=g.dataset, shots=g.shots,
              options=g.options, seeds=g.seeds, workdirs=g.workdirs, trainable_params=g.params[0] if g.params else None,
              metrics={m: dict(mean=g.mean(m), std=g.std(m, ddof), values=v) for m, v in sorted(g.values.items())})


def build_report(root: str, out_dir: str | None = None, ddof: int = 0, warn: Callable[[str], None] = print) -> dict:
  """Writes report.md, report.json, curves/*.png and bars/*.png under out_dir (default root); returns report.json."""
  from jaxprompt.report import plots as report_plots, tables  # pylint: disable=import-outside-toplevel
  out_dir = out_dir or root
  warnings = []
  def note(message):
    warnings.append(message)
    warn(message)
  results = load_results(root, note)
  if not results:
    raise SystemExit(f"no {RESULTS} under {root}: nothing to report (are the runs finished?)")
  groups = aggregate(results, note)
  sections, records = [], []
  b2n = [g for g in groups if g.protocol == "base2novel"]
  for shots in sorted({g.shots for g in b2n}):
    text, recs = tables.b2n_table([g for g in b2n if g.shots == shots], ddof)
    sections.append(f"## Base-to-novel, {shots} shots\n\nB = base, N = novel, HM = 2BN/(B+N). Two averages: "
                    f"'{MEAN_HM}' (RPO's convention) and '{HM_OF_MEANS}' (CoCoOp's and MaPLe's).\n\n{text}")
    records += recs
  has_targets = lambda g: any(m.startswith("target/") for m in g.values)
  fewshot = [g for g in groups if g.protocol == "all" and not has_targets(g)]
  if fewshot:
    text, recs = tables.fewshot_tables(fewshot, ddof)
    sections.append("## All-class few-shot accuracy\n\nAverage = over the datasets in the table (a note says when a "
                    "shot count lacks some); the published averages are over the papers' 11 datasets.\n\n" + text)
    records += recs
  targets = [g for g in groups if g.protocol == "all" and has_targets(g)]
  if targets:
    sections.append("## Domain generalisation / cross-dataset (targets)\n\n" + tables.target_table(targets, ddof))
  for dataset in sorted({g.dataset for g in groups if g.protocol == "multitask"}):
    gs = [g for g in groups if g.protocol == "multitask" and g.dataset == dataset]
    sections.append(f"## Multi-task: {dataset}\n\n" + tables.multitask_table(gs, ddof))
  for (protocol, method, shots), gs in tables.ablation_sets(groups).items():
    sections.append(f"## Ablation: {method} ({protocol}, {shots} shots)\n\n" + tables.ablation_table(gs, ddof))
  other = [g for g in groups if g.protocol not in ("base2novel", "all", "multitask")]
  if other:
    sections.append("## Other protocols\n\n" + tables.generic_table(other, ddof))
  plots = (report_plots.shot_curves(groups, os.path.join(out_dir, "curves"), ddof)
           + report_plots.bar_plots(groups, os.path.join(out_dir, "bars"), ddof))
  if plots:
    sections.append("## Plots\n\n" + "\n".join(f"- [{os.path.relpath(p, out_dir)}]({os.path.relpath(p, out_dir)})"
                                                for p in plots))
  if warnings:
    sections.append("## Warnings\n\n" + "\n".join(f"- {w}" for w in warnings))
  std_name = "population std (ddof=0)" if ddof == 0 else f"std with ddof={ddof}"
  head = (f"# Results under {root}\n\n{len(results)} runs in {len(groups)} groups; cells are mean ± {std_name} over "
          f"seeds (a single seed shows the value alone). Published numbers: " +
          "; ".join(f"{k}: {v['source']}" for k, v in published.PAPERS.items()) + ".")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n\n".join([head] + sections) + "\n")
  report = dict(root=root, ddof=ddof, runs=len(results), groups=[group_record(g, ddof) for g in groups],
                tables=records, plots=plots, warnings=warnings)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
  return report


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("root", help="directory searched (recursively) for results.json files")
  parser.add_argument("--out", default=None, help="output directory (default: ROOT)")
  parser.add_argument("--ddof", type=int, default=0, help="std over seeds: 0 = population (default), 1 = sample")
  args = parser.parse_args(argv)
  report = build_report(args.root, args.out, args.ddof, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
  out = args.out or args.root
  print(f"{report['runs']} runs, {len(report['groups'])} groups -> {os.path.join(out, 'report.md')}, "
        f"report.json, {len(report['plots'])} plots")
  return 0
