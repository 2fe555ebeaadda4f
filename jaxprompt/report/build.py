"""`python -m jaxprompt.report RUNS_DIR [--out DIR] [--ddof 1]`: finished runs -> the papers' tables and plots.

Gathers every `results.json` under RUNS_DIR (`groups.load_results`), groups runs that differ only in their seed
(`groups.aggregate`), and writes to DIR (default RUNS_DIR):
  report.md   the tables of `report.tables`, one section per protocol (base-to-novel per shot count, all-class
              few-shot, domain generalisation / cross-dataset targets, multi-task per dataset, ablations, other
              protocols such as continual and demo), then the plots and any warnings
  report.json the groups (seeds, values, mean, std per metric) and every table row
  curves/     accuracy (HM for base-to-novel) vs shots, one PNG per dataset + average
  bars/       ablation and method-comparison bar plots with error bars
std is the population std over seeds (numpy's default, ddof=0, as the Dassl scripts behind the papers use);
`--ddof 1` gives the sample std. Average rows: the value follows the convention's definition from per-dataset seed
means; its +- is the std over seeds of the same average computed per seed (seeds present for every dataset).
Base-to-novel shows the papers' HM convention (seeds rounded to 0.1, HM of the seed means) and jaxprompt's (mean of
per-seed HMs) side by side; `report.tables` states how the papers' scripts form their numbers.
Published numbers sit beside ours where `report.published` has them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

from jaxprompt.report import groups, plots, published, tables


def build_report(root: str, out_dir: str | None = None, ddof: int = 0, warn: Callable[[str], None] = print) -> dict:
  """Writes report.md, report.json, curves/*.png and bars/*.png under out_dir (default root); returns report.json."""
  out_dir = out_dir or root
  warnings = []
  def note(message):
    warnings.append(message)
    warn(message)
  results = groups.load_results(root, note)
  if not results:
    raise SystemExit(f"no {groups.RESULTS} under {root}: nothing to report (are the runs finished?)")
  found = groups.aggregate(results, note)
  sections, records = table_sections(found, ddof)
  pngs = (plots.shot_curves(found, os.path.join(out_dir, "curves"), ddof)
          + plots.bar_plots(found, os.path.join(out_dir, "bars"), ddof))
  if pngs:
    links = [f"- [{os.path.relpath(p, out_dir)}]({os.path.relpath(p, out_dir)})" for p in pngs]
    sections.append("## Plots\n\n" + "\n".join(links))
  if warnings:
    sections.append("## Warnings\n\n" + "\n".join(f"- {w}" for w in warnings))
  std_name = "population std (ddof=0)" if ddof == 0 else f"std with ddof={ddof}"
  head = (f"# Results under {root}\n\n{len(results)} runs in {len(found)} groups; cells are mean ± {std_name} over "
          f"seeds (a single seed shows the value alone). Published numbers: " +
          "; ".join(f"{k}: {v['source']}" for k, v in published.PAPERS.items()) + ".")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n\n".join([head] + sections) + "\n")
  report = dict(root=root, ddof=ddof, runs=len(results), groups=[groups.group_record(g, ddof) for g in found],
                tables=records, plots=pngs, warnings=warnings)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
  return report


def table_sections(found: Sequence[groups.Group], ddof: int) -> tuple[list[str], list[dict]]:
  """The report.md sections holding tables, one per protocol (and shot count, dataset, ablated method), and the
  table rows as records for report.json."""
  sections, records = [], []
  b2n = [g for g in found if g.protocol == "base2novel"]
  for shots in sorted({g.shots for g in b2n}):
    text, recs = tables.b2n_table([g for g in b2n if g.shots == shots], ddof)
    sections.append(f"## Base-to-novel, {shots} shots\n\nB = base, N = novel, HM = 2BN/(B+N). B, N and "
                    f"'{tables.PAPERS_HM}' follow the papers' convention: each seed's accuracy rounded to 0.1 (as "
                    f"Dassl logs it and parse_test_res.py reads it), averaged over seeds, then the HM of those "
                    f"means. '{tables.PER_SEED_HM}' is jaxprompt's: the mean of each seed's unrounded HM. Two "
                    f"averages over datasets: '{tables.MEAN_HM}' (RPO's convention) and '{tables.HM_OF_MEANS}' "
                    f"(CoCoOp's and MaPLe's).\n\n{text}")
    records += recs
  has_targets = lambda g: any(m.startswith("target/") for m in g.values)
  fewshot = [g for g in found if g.protocol == "all" and not has_targets(g)]
  if fewshot:
    text, recs = tables.fewshot_tables(fewshot, ddof)
    sections.append("## All-class few-shot accuracy\n\nAverage = over the datasets in the table (a note says when a "
                    "shot count lacks some); the published averages are over the papers' 11 datasets.\n\n" + text)
    records += recs
  targets = [g for g in found if g.protocol == "all" and has_targets(g)]
  if targets:
    sections.append("## Domain generalisation / cross-dataset (targets)\n\n" + tables.target_table(targets, ddof))
  for dataset in sorted({g.dataset for g in found if g.protocol == "multitask"}):
    same = [g for g in found if g.protocol == "multitask" and g.dataset == dataset]
    sections.append(f"## Multi-task: {dataset}\n\n" + tables.multitask_table(same, ddof))
  for (protocol, method, shots), same in groups.ablation_sets(found).items():
    sections.append(f"## Ablation: {method} ({protocol}, {shots} shots)\n\n" + tables.ablation_table(same, ddof))
  other = [g for g in found if g.protocol not in ("base2novel", "all", "multitask")]
  if other:
    sections.append("## Other protocols\n\n" + tables.generic_table(other, ddof))
  return sections, records


def main(argv: Sequence[str] | None = None) -> int:
  """The CLI (see the module docstring); returns the exit status."""
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
