"""jaxprompt.report: mean +- std over seeds, the papers' table layouts, both HM conventions, published columns, PNGs.

The runs are generated results.json trees (3 seeds x 2 datasets x 2 methods), so every expected number below is
computed by hand: seed offsets are -1/0/+1 on base (std = sqrt(2/3) = 0.82) and -2/0/+2 on novel (std 1.63).
"""

import json
import os

from PIL import Image

from jaxprompt import report
from jaxprompt.report import published, tables as report_tables

SEEDS = (1, 2, 3)
OFFSET_BASE, OFFSET_NOVEL = {1: -1, 2: 0, 3: 1}, {1: -2, 2: 0, 3: 2}
# Base-to-novel: (base, novel) at seed 2 per method and dataset.
B2N = {"rpo": {"dtd": (80, 60), "eurosat": (90, 40)}, "coop": {"dtd": (84, 50), "eurosat": (92, 30)}}
# Few-shot: accuracy at 1 shot, seed 2 (16 shots: +10).
FEWSHOT = {"coop": {"dtd": 50, "eurosat": 70}, "lamm": {"dtd": 55, "eurosat": 75}}


def write_run(root, name, run, metrics, params=1000, config=None):
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  if config is not None:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(config, f)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"run": {"backbone": "ViT-B/16", "options": {}, **run}, "metrics": metrics,
               "trainable_params": params, "time_s": 1.0}, f)


def write_b2n(root):
  for method, per_dataset in B2N.items():
    for dataset, (base, novel) in per_dataset.items():
      for seed in SEEDS:
        b, n = base + OFFSET_BASE[seed], novel + OFFSET_NOVEL[seed]
        run = dict(method=method, dataset=dataset, shots=16, seed=seed, protocol="base2novel",
                   options={"seed": seed, "method.rpo.k": 24} if method == "rpo" else {})
        write_run(root, f"b2n/{method}/{dataset}/{seed}", run, {"base": b, "novel": n, "hm": 2 * b * n / (b + n)})


def write_fewshot(root):
  for method, per_dataset in FEWSHOT.items():
    for dataset, acc in per_dataset.items():
      for shots in (1, 16):
        for seed in SEEDS:
          run = dict(method=method, dataset=dataset, shots=shots, seed=seed, protocol="all")
          value = acc + (10 if shots == 16 else 0) + OFFSET_BASE[seed]
          write_run(root, f"fs/{method}/{dataset}/{shots}/{seed}", run, {"accuracy": value})


def table(markdown_text, first_header):
  """The markdown table whose header starts with `first_header`, as {row name: {column: cell}}."""
  lines = markdown_text.splitlines()
  for i, line in enumerate(lines):
    if line.startswith(f"| {first_header} |") and lines[i + 1].startswith("|---"):
      header = [c.strip() for c in line.strip("|").split("|")]
      rows = {}
      for row in lines[i + 2:]:
        if not row.startswith("|"):
          break
        cells = [c.strip() for c in row.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
      return rows
  raise AssertionError(f"no table starting with {first_header!r} in:\n{markdown_text}")


def read(path):
  with open(path) as f:
    return f.read()


def test_base_to_novel_table_both_conventions_and_published(tmp_path):
  write_b2n(str(tmp_path))
  out = json.loads(json.dumps(report.build_report(str(tmp_path), warn=lambda m: None)))
  md = read(tmp_path / "report.md")
  rows = table(md, "dataset")
  assert list(rows) == ["dtd", "eurosat", report.MEAN_HM, report.HM_OF_MEANS]  # papers' order, then averages
  dtd = rows["dtd"]
  assert dtd["rpo B"] == "80.00 ± 0.82" and dtd["rpo N"] == "60.00 ± 1.63"
  assert dtd["rpo HM"] == "68.57 ± 1.37"   # mean of hm(79,58), hm(80,60), hm(81,62)
  assert dtd["coop B"] == "84.00 ± 0.82" and rows["eurosat"]["coop HM"] == "45.23 ± 1.96"
  # Published columns beside ours: RPO per dataset; the average rows take each convention's published HM.
  assert dtd["rpo B (published)"] == "76.70" and dtd["rpo HM (published)"] == "68.61"
  assert dtd["coop B (published)"] == "-"
  # Convention 1 (RPO): mean of per-dataset HMs = (68.567 + 55.373) / 2; its std over the per-seed averages.
  assert rows[report.MEAN_HM]["rpo HM"] == "61.97 ± 1.54"
  assert rows[report.MEAN_HM]["rpo HM (published)"] == "77.78"
  # Convention 2 (CoCoOp/MaPLe): HM of mean B = 85 and mean N = 50 -> 2*85*50/135 = 62.96.
  assert rows[report.HM_OF_MEANS]["rpo HM"] == "62.96 ± 1.52"
  assert rows[report.HM_OF_MEANS]["coop HM"] == "55.00 ± 1.70"          # 2*88*40/128
  assert rows[report.HM_OF_MEANS]["coop HM (published)"] == "71.66"
  assert rows[report.MEAN_HM]["coop HM (published)"] == "-"
  assert rows[report.MEAN_HM]["rpo B"] == rows[report.HM_OF_MEANS]["rpo B"] == "85.00 ± 0.82"
  # report.json: groups with values, mean and std; the seed is not part of the grouping.
  rpo_dtd = next(g for g in out["groups"] if g["method"] == "rpo" and g["dataset"] == "dtd")
  assert rpo_dtd["seeds"] == [1, 2, 3] and rpo_dtd["options"] == {"method.rpo.k": 24, "backbone": "ViT-B/16"}
  assert rpo_dtd["metrics"]["base"]["values"] == [79, 80, 81]
  assert abs(rpo_dtd["metrics"]["novel"]["std"] - (8 / 3) ** 0.5) < 1e-9
  assert len(out["groups"]) == 4 and out["runs"] == 12
  average = [r for r in out["tables"] if r["row"] == report.HM_OF_MEANS and r["column"] == "rpo hm"]
  assert abs(average[0]["mean"] - 2 * 85 * 50 / 135) < 1e-9


def test_fewshot_tables_curves_and_bars(tmp_path):
  write_fewshot(str(tmp_path))
  out = report.build_report(str(tmp_path), warn=lambda m: None)
  md = read(tmp_path / "report.md")
  coop = table(md[md.index("### coop"):], "dataset")
  assert list(coop) == ["dtd", "eurosat", "Average"]
  assert coop["dtd"]["1 shots"] == "50.00 ± 0.82" and coop["dtd"]["16 shots"] == "60.00 ± 0.82"
  assert coop["Average"]["1 shots"] == "60.00 ± 0.82" and coop["Average"]["16 shots"] == "70.00 ± 0.82"
  assert coop["dtd"]["16 (published)"] == "68.40" and coop["Average"]["1 (published)"] == "68.00"
  lamm = table(md[md.index("### lamm"):], "dataset")
  assert lamm["Average"]["16 shots"] == "75.00 ± 0.82" and lamm["Average"]["16 (published)"] == "81.10"
  # Curves: one per dataset + the average; bars: a method comparison per number of shots.
  names = sorted(os.path.basename(p) for p in out["plots"])
  assert {"all_dtd.png", "all_eurosat.png", "all_average.png"} <= set(names)
  assert {"methods_all_1shots.png", "methods_all_16shots.png"} <= set(names)
  for path in out["plots"]:
    assert os.path.getsize(path) > 5000
    with Image.open(path) as image:
      image.verify()
    with Image.open(path) as image:
      assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 300
    assert os.path.relpath(path, tmp_path) in md  # linked from the report


def test_ablation_labels_table_and_bar_plot(tmp_path):
  for init, base in (("st", 80), ("random", 70)):
    for dataset in ("dtd", "eurosat"):
      for seed in SEEDS:
        b = base + OFFSET_BASE[seed] + (5 if dataset == "eurosat" else 0)
        write_run(str(tmp_path), f"{init}/{dataset}/{seed}",
                  dict(method="rpo", dataset=dataset, shots=16, seed=seed, protocol="base2novel",
                       options={"method.rpo.init": init, "method.rpo.k": 24}), {"base": b, "novel": b, "hm": b})
  out = report.build_report(str(tmp_path), out_dir=str(tmp_path / "out"), warn=lambda m: None)
  assert sorted({g["label"] for g in out["groups"]}) == ["rpo [rpo.init='random']", "rpo [rpo.init='st']"]
  md = read(tmp_path / "out" / "report.md")
  section = md[md.index("## Ablation: rpo"):]
  rows = table(section, "dataset")
  assert rows["dtd"]["rpo [rpo.init='st']"] == "80.00 ± 0.82"
  assert rows["Average"]["rpo [rpo.init='random']"] == "72.50 ± 0.82"
  assert os.path.exists(tmp_path / "out" / "bars" / "ablation_base2novel_rpo_16shots.png")


def test_multitask_targets_lamm_names_and_malformed_files(tmp_path):
  for seed in (1, 2):
    for method, acc, params in (("coop_mt", 70, 8192), ("mmap_mt", 80, 2944)):
      write_run(str(tmp_path), f"mt/{method}/{seed}",
                dict(method=method, dataset="officehome", shots=16, seed=seed, protocol="multitask"),
                {"task/art": acc + seed, "task/clipart": acc - seed, "mean": acc}, params=params)
    write_run(str(tmp_path), f"dg/{seed}", dict(method="rpo", dataset="imagenet", shots=16, seed=seed, protocol="all"),
              {"accuracy": 70 + seed, "target/imagenet_v2": 60, "target/imagenet_a": 50})
    write_run(str(tmp_path), f"lamm/{seed}", dict(method="lamm", dataset="dtd", shots=16, seed=seed, protocol="all",
                                                   options={"method.lamm.base": "coop"}), {"accuracy": 70})
  os.makedirs(tmp_path / "broken")
  (tmp_path / "broken" / "results.json").write_text('{"run": {"method": "coop"}}')
  warnings = []
  out = report.build_report(str(tmp_path), warn=warnings.append)
  assert len(warnings) == 1 and "broken" in warnings[0] and "run.dataset" in warnings[0]
  md = read(tmp_path / "report.md")
  mt = table(md[md.index("## Multi-task: officehome"):], "task")
  assert mt["art"]["coop_mt"] == "71.50 ± 0.50" and mt["**mean**"]["mmap_mt"] == "80.00 ± 0.00"
  assert mt["trainable params"]["mmap_mt"] == "2,944"
  dg = table(md[md.index("## Domain generalisation"):], "method")
  assert dg["rpo"]["accuracy"] == "71.50 ± 0.50" and dg["rpo"]["target_mean"] == "55.00 ± 0.00"
  assert dg["rpo (published)"]["imagenet_v2"] == "65.13"
  assert {g["method"] for g in out["groups"]} >= {"coop+lamm"}   # LAMM on CoOp is named as the paper names it
  assert "### coop+lamm" in md and "broken" in md[md.index("## Warnings"):]


def test_ablated_fields_found_in_config_json(tmp_path):
  """The trainer may leave run.options empty: fields that differ between otherwise identical runs still split them."""
  for init in ("st", "random"):
    for seed in (1, 2):
      config = {"seed": seed, "data": {"name": "dtd", "root": f"/data{seed}", "shots": 16},
                "method": {"name": "rpo", "rpo": {"init": init, "k": 24}, "templates": ["a photo of a {}."]}}
      write_run(str(tmp_path), f"{init}/{seed}", dict(method="rpo", dataset="dtd", shots=16, seed=seed,
                                                       protocol="base2novel"),
                {"base": 80 if init == "st" else 70, "novel": 60, "hm": 1.0}, config=config)
  groups = report.aggregate(report.load_results(str(tmp_path), print))
  assert [(g.label, g.seeds, g.mean("base")) for g in groups] == [
      ("rpo [rpo.init='random']", [1, 2], 70.0), ("rpo [rpo.init='st']", [1, 2], 80.0)]
  assert groups[0].options == {"method.rpo.init": "random", "backbone": "ViT-B/16"}  # paths and seeds ignored


def test_published_data_is_consistent():
  # The baselines' average HM is the HM of their averaged B and N (CoCoOp's convention), to rounding.
  for method in ("zeroshot", "coop", "cocoop", "vpt", "ivlp", "maple"):
    b, n = (published.PUBLISHED[("maple", method, "average", m)] for m in ("base", "novel"))
    assert abs(2 * b * n / (b + n) - published.PUBLISHED[("maple", method, "average", "hm_of_means")]) < 0.02
  assert published.lookup("base2novel", "rpo", "dtd", "hm") == ("rpo", 68.61)
  assert published.lookup("all", "coop+lamm", "average", "accuracy@16") == ("lamm", 81.7)
  assert all(d in published.DATASETS for (_, _, d, _) in published.PUBLISHED if d != "average")
  assert report_tables.ablation_sets([]) == {}


def test_cli(tmp_path, capsys):
  write_fewshot(str(tmp_path / "runs"))
  assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--ddof", "1"]) == 0
  assert "24 runs, 8 groups" in capsys.readouterr().out
  md = read(tmp_path / "rep" / "report.md")
  assert "ddof=1" in md and table(md, "dataset")["dtd"]["1 shots"] == "50.00 ± 1.00"
  assert os.path.exists(tmp_path / "rep" / "report.json")
