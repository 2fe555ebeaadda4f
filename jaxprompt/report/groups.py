"""Finished runs, gathered and grouped: a `Group` is the runs that differ only in their seed.

    load_results(root, warn)   every well-formed results.json under root (malformed ones named in a warning)
    aggregate(results, warn)   -> [Group], sorted by protocol, method (METHOD_ORDER), label, dataset, shots

Runs are grouped by (protocol, method, dataset, shots, options except the seed and paths); options are `run.options`
plus the config.json fields that differ between otherwise identical runs (`ablated_options`), and the backbone. A
group's label is its method, plus the options that vary among that method's groups ("rpo [rpo.init='st']").
Below them: the selections the tables and plots share (`by_label`, `main_metric`, `ablation_sets`) and the two ways
of averaging a statistic over seeds that the base-to-novel table sets side by side (`report.tables` states the
papers' conventions):
    dataset_average(..., rounded=True)   the papers': the statistic of the seed means, each seed's accuracy first
                                         rounded to 0.1 as Dassl prints it (`dassl_rounded`)
    per_seed_average(...)                jaxprompt's: the mean over seeds of the statistic computed per seed
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from typing import Callable, Iterable, Sequence

import numpy as np

from jaxprompt import trees
from jaxprompt.report import published
from jaxprompt.report.run_files import harmonic_mean

RESULTS = "results.json"
REQUIRED_RUN_KEYS = ("method", "dataset", "shots", "seed", "protocol")
MAIN_METRIC = {"all": "accuracy", "base2novel": "hm", "multitask": "mean"}
_SINGLE = ["zeroshot", "linear_probe", "coop", "cocoop", "vpt", "ivlp", "maple", "rpo", "lamm", "coop+lamm",
           "maple+lamm", "mmap"]
_PER_TASK = ["coop", "cocoop", "vpt", "ivlp", "maple", "rpo", "lamm", "mmap"]
METHOD_ORDER = (_SINGLE + [f"{m}-st" for m in _PER_TASK] + [f"{m}-mt" for m in _PER_TASK if m != "mmap"]
                + ["mmap-mt", "demo"])
"""Table order: single-task methods, then the multi-task run's names (per-task "-st", shared "-mt", MmAP-MT last)."""
# Option keys (their last part) left out of the grouping: already in the group key, or paths.
REDUNDANT_OPTIONS = {"seed", "dataset", "shots", "name", "method", "root", "workdir"}


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


# --- gathering ----------------------------------------------------------------------------------------------------------
def load_results(root: str, warn: Callable[[str], None]) -> list[tuple[str, dict]]:
  """(workdir, parsed results.json) for every well-formed file under root; malformed ones are named in a warning.
  Files without a `schema` field (written before it existed) are read the same way."""
  found = []
  for dirpath, _, filenames in sorted(os.walk(root)):
    if RESULTS not in filenames:
      continue
    path = os.path.join(dirpath, RESULTS)
    try:
      with open(path) as f:
        result = json.load(f)
      if result.get("schema", 1) != 1:
        raise ValueError(f"schema {result['schema']!r}, this report reads schema 1")
      run = result["run"]
      missing = [k for k in REQUIRED_RUN_KEYS if k not in run]
      if missing or not isinstance(result.get("metrics"), dict):
        raise KeyError(f"run.{missing[0]}" if missing else "metrics")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
      warn(f"skipping {path}: not a well-formed results file ({type(error).__name__}: {error})")
      continue
    found.append((dirpath, result))
  return found


def derived_metrics(protocol: str, metrics: dict) -> dict:
  """The numeric metrics plus what the tables derive: `hm` from base/novel if absent, `target_mean` over targets."""
  metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
  if protocol == "base2novel" and "hm" not in metrics and {"base", "novel"} <= set(metrics):
    metrics["hm"] = harmonic_mean(metrics["base"], metrics["novel"])
  targets = [v for k, v in metrics.items() if k.startswith("target/")]
  if targets and "target_mean" not in metrics:
    metrics["target_mean"] = float(np.mean(targets))
  return metrics


def dotted(tree: dict) -> dict:
  """{"a": {"b": 1}} -> {"a.b": 1} (`trees.flatten`, dots for the options' spelling)."""
  return {path.replace("/", "."): value for path, value in trees.flatten(tree).items()}


def ablated_options(results: Sequence[tuple[str, dict]]) -> list[dict]:
  """Per run: the resolved-config fields (from WORKDIR/config.json) that differ between runs of the same method,
  protocol, dataset, shots and seed, i.e. the fields a sweep varied, whatever the trainer put in `run.options`."""
  configs = []
  for workdir, _ in results:
    try:
      with open(os.path.join(workdir, "config.json")) as f:
        configs.append(dotted(json.load(f)))
    except (OSError, ValueError, AttributeError):
      configs.append({})
  cells = defaultdict(list)
  for i, (_, result) in enumerate(results):
    run = result["run"]
    cells[(run["protocol"], run["method"], run["dataset"], run["shots"], run["seed"])].append(i)
  varied = defaultdict(set)  # (protocol, method) -> keys
  for (protocol, method, *_), members in cells.items():
    keys = set().union(*(configs[i] for i in members))
    varied[(protocol, method)] |= {k for k in keys if len({json.dumps(configs[i].get(k)) for i in members}) > 1}
  out = []
  for i, (_, result) in enumerate(results):
    run = result["run"]
    keys = varied[(run["protocol"], run["method"])]
    out.append({k: configs[i].get(k) for k in sorted(keys) if k.split(".")[-1] not in REDUNDANT_OPTIONS})
  return out


def aggregate(results: Sequence[tuple[str, dict]], warn: Callable[[str], None] = print) -> list[Group]:
  """Groups runs (see the module docstring) and labels the groups; a seed seen twice in a group is warned about."""
  groups: dict[tuple, Group] = {}
  for (workdir, result), from_config in zip(results, ablated_options(results)):
    run = result["run"]
    options = {k: v for k, v in sorted(run.get("options", {}).items()) if k.split(".")[-1] not in REDUNDANT_OPTIONS}
    options = {**from_config, **options}
    if "backbone" in run:  # runs on different backbones never share a group (the label shows it when it varies)
      options["backbone"] = run["backbone"]
    method = str(run["method"])
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


def group_record(g: Group, ddof: int) -> dict:
  """A group as report.json holds it: identity, seeds, workdirs and, per metric, values, mean and std."""
  return dict(protocol=g.protocol, method=g.method, label=g.label, dataset=g.dataset, shots=g.shots,
              options=g.options, seeds=g.seeds, workdirs=g.workdirs, trainable_params=g.params[0] if g.params else None,
              metrics={m: dict(mean=g.mean(m), std=g.std(m, ddof), values=v) for m, v in sorted(g.values.items())})


# --- selections shared by tables and plots ------------------------------------------------------------------------------
def by_label(groups: Iterable[Group]) -> dict[str, list[Group]]:
  """label -> its groups, in the groups' order."""
  out: dict[str, list[Group]] = {}
  for g in groups:
    out.setdefault(g.label, []).append(g)
  return out


def main_metric(group: Group) -> str:
  """The protocol's headline metric (MAIN_METRIC), else accuracy, else the first metric by name."""
  metric = MAIN_METRIC.get(group.protocol)
  if metric in group.values:
    return metric
  return "accuracy" if "accuracy" in group.values else sorted(group.values)[0]


def ablation_sets(groups: Sequence[Group]) -> dict[tuple, list[Group]]:
  """(protocol, method, shots) -> its groups, for methods run with more than one set of options."""
  sets: dict[tuple, list[Group]] = defaultdict(list)
  for g in groups:
    sets[(g.protocol, g.method, g.shots)].append(g)
  return {k: gs for k, gs in sets.items() if len({g.label for g in gs}) > 1}


# --- averages over seeds and datasets -----------------------------------------------------------------------------------
def dassl_rounded(value: float) -> float:
  """A seed's accuracy as the papers' scripts average it: Dassl's evaluator prints `* accuracy: {acc:.1f}%` and
  parse_test_res.py parses that text back, so each seed counts rounded to 0.1 (Python's formatting: the binary
  value correctly rounded, ties to even, e.g. 66.25 -> 66.2, 18.75 -> 18.8)."""
  return float(f"{value:.1f}")


def _seed_tables(groups: Sequence[Group], rounded: bool) -> tuple[dict, dict]:
  """({dataset: {metric: seed mean}}, {seed: {dataset: {metric: value}}} over the seeds every group has)."""
  metrics = sorted({m for g in groups for m in g.values})
  at = dassl_rounded if rounded else float
  def seed_values(g, m):
    return {seed: at(v) for seed, v in g.by_seed(m).items()}
  means = {g.dataset: {m: float(np.mean([at(v) for v in g.values[m]])) if g.values.get(m) else None
                       for m in metrics} for g in groups}
  common = sorted(set.intersection(*(set(g.seeds) for g in groups)))
  per_seed = {seed: {g.dataset: {m: seed_values(g, m).get(seed) for m in metrics} for g in groups} for seed in common}
  return means, per_seed


def _std(values: Sequence[float], ddof: int) -> float | None:
  return float(np.std(values, ddof=ddof)) if len(values) > max(1, ddof) else None


def dataset_average(groups: Sequence[Group], fn: Callable[[dict], float], ddof: int = 0,
                    rounded: bool = False) -> tuple:
  """(value, std over seeds) of fn({dataset: {metric: value}}): the value from seed means, the std from per-seed
  evaluations over the seeds every dataset has (None when fewer than two such seeds). rounded: each seed's values
  `dassl_rounded` first (the papers' convention)."""
  if not groups:
    return None, None
  means, per_seed = _seed_tables(groups, rounded)
  return fn(means), _std([fn(table) for table in per_seed.values()], ddof)


def per_seed_average(groups: Sequence[Group], fn: Callable[[dict], float], ddof: int = 0) -> tuple:
  """(mean, std) over the seeds every dataset has of fn({dataset: {metric: that seed's value}}): the statistic per
  seed, then averaged (jaxprompt's convention); (None, None) without a common seed."""
  if not groups:
    return None, None
  _, per_seed = _seed_tables(groups, rounded=False)
  values = [fn(table) for table in per_seed.values()]
  return (float(np.mean(values)) if values else None), _std(values, ddof)


def mean_of(metric: str) -> Callable[[dict], float]:
  """{dataset: {metric: value}} -> the mean of `metric` over the datasets."""
  return lambda table: float(np.mean([row[metric] for row in table.values()]))


def hm_of_means(table: dict) -> float:
  """The HM of the dataset-averaged base and novel accuracies (CoCoOp's and MaPLe's average row)."""
  return harmonic_mean(mean_of("base")(table), mean_of("novel")(table))


def mean_of_hms(table: dict) -> float:
  """The mean over datasets of each dataset's HM of its base and novel accuracies (RPO's average row)."""
  return float(np.mean([harmonic_mean(row["base"], row["novel"]) for row in table.values()]))
