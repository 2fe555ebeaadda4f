"""jaxprompt.report: the results schema every run kind writes, its per-kind tables, the progress lines, and the
report across runs (mean +- std over seeds, the papers' table layouts, both HM conventions, published columns, PNGs).

The runs are generated results.json trees, written the way the trainers write them (`results_record` over a
`base_config` whose method block is set, `write_results`), so the names are the trainer's. Every expected number is
computed by hand: seed offsets are -1/0/+1 on base (std = sqrt(2/3) = 0.82) and -2/0/+2 on novel (std 1.63).
"""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from jaxprompt import config as config_lib
from jaxprompt.report import build, groups, plots, published, run_files, run_tables, tables

SEEDS = (1, 2, 3)
OFFSET_BASE, OFFSET_NOVEL = {1: -1, 2: 0, 3: 1}, {1: -2, 2: 0, 3: 2}
# Base-to-novel: (base, novel) at seed 2 per method and dataset.
B2N = {"rpo": {"dtd": (80, 60), "eurosat": (90, 40)}, "coop": {"dtd": (84, 50), "eurosat": (92, 30)}}
# Few-shot: accuracy at 1 shot, seed 2 (16 shots: +10).
FEWSHOT = {"coop": {"dtd": 50, "eurosat": 70}, "lamm": {"dtd": 55, "eurosat": 75}}


def run_config(method, dataset, shots, seed, protocol, **options):
  """base_config with the run's data and method; options `block.key=value` go into config.method."""
  config = config_lib.base_config()
  config.method.name, config.data.name, config.data.shots, config.seed = method, dataset, shots, seed
  config.data.protocol, config.backbone = protocol, "ViT-B/16"
  for dotted, value in options.items():
    block, key = dotted.split(".")
    config.method[block][key] = value
  return config


def run_block(config, **changes):
  """The results' run block as the single-task trainer builds it."""
  return {"method": run_files.method_label(config.method), "dataset": config.data.name, "shots": config.data.shots,
          "seed": config.seed, "protocol": config.data.protocol, "backbone": config.backbone,
          "options": run_files.method_options(config.method), **changes}


def write(root, name, results, config=None):
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  if config is not None:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(config, f)
  run_files.write_results(workdir, results)
  return workdir


def write_single(root, name, config, metrics, params=1000):
  results = run_files.results_record(kind="single", run=run_block(config), metrics=metrics, trainable_params=params,
                                     time_s=1.0, steps=10, corrupt_images=[])
  return write(root, name, results)


def write_b2n(root):
  for method, per_dataset in B2N.items():
    for dataset, (base, novel) in per_dataset.items():
      for seed in SEEDS:
        b, n = base + OFFSET_BASE[seed], novel + OFFSET_NOVEL[seed]
        write_single(root, f"b2n/{method}/{dataset}/{seed}", run_config(method, dataset, 16, seed, "base2novel"),
                     {"base": b, "novel": n, "hm": 2 * b * n / (b + n)})


def write_fewshot(root):
  for method, per_dataset in FEWSHOT.items():
    for dataset, acc in per_dataset.items():
      for shots in (1, 16):
        for seed in SEEDS:
          value = acc + (10 if shots == 16 else 0) + OFFSET_BASE[seed]
          write_single(root, f"fs/{method}/{dataset}/{shots}/{seed}", run_config(method, dataset, shots, seed, "all"),
                       {"accuracy": value})


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


# --- one run's files ----------------------------------------------------------------------------------------------------
def test_method_label_and_options_follow_the_config():
  lamm = run_config("lamm", "dtd", 16, 1, "all", **{"lamm.base": "coop", "coop.n_ctx": 4})
  assert run_files.method_label(lamm.method) == "coop+lamm"
  options = run_files.method_options(lamm.method)
  assert options["method.lamm.base"] == "coop" and options["method.coop.n_ctx"] == 4
  assert not any(k.startswith(("method.rpo.", "method.maple.")) for k in options)  # only the active methods
  assert run_files.method_label(run_config("lamm", "dtd", 16, 1, "all", **{"lamm.base": "none"}).method) == "lamm"
  rpo = run_config("rpo", "dtd", 16, 1, "all", **{"rpo.k": 8}).method
  assert run_files.method_label(rpo) == "rpo"
  assert run_files.method_options(rpo) == {f"method.rpo.{k}": v for k, v in rpo.rpo.to_dict().items()}
  assert run_files.method_options(rpo)["method.rpo.k"] == 8


def test_results_record_schema_and_errors(tmp_path):
  config = run_config("coop", "dtd", 4, 2, "all")
  record = run_files.results_record(kind="single", run=run_block(config), metrics={"accuracy": 61},
                                    trainable_params=8192.0, time_s=3, steps=7)
  assert record["schema"] == 1 and record["kind"] == "single" and record["steps"] == 7
  assert list(record["run"]) == list(run_files.RUN_KEYS)  # exactly the schema's run keys
  assert record["metrics"] == {"accuracy": 61.0} and isinstance(record["trainable_params"], int)
  run = run_block(config)
  del run["backbone"]
  with pytest.raises(ValueError, match="lacks 'backbone'"):
    run_files.results_record(kind="single", run=run, metrics={}, trainable_params=0, time_s=0)
  with pytest.raises(ValueError, match="unknown key 'steps'"):
    run_files.results_record(kind="single", run={**run_block(config), "steps": 7}, metrics={}, trainable_params=0,
                             time_s=0)
  with pytest.raises(ValueError, match="kind='grid'"):
    run_files.results_record(kind="grid", run=run_block(config), metrics={}, trainable_params=0, time_s=0)
  with pytest.raises(ValueError, match="metric 'accuracy'"):
    run_files.results_record(kind="single", run=run_block(config), metrics={"accuracy": "high"}, trainable_params=0,
                             time_s=0)
  with pytest.raises(ValueError, match="'schema' would overwrite"):
    run_files.results_record(kind="demo", run=run_block(config), metrics={}, trainable_params=0, time_s=0, schema=2)
  with pytest.raises(ValueError, match="kind=None"):
    run_files.results_table({"run": run_block(config), "metrics": {}})
  # write_results: results.json round-trips, results.md is the single-run table, no partial file is left behind.
  write(str(tmp_path), "run", record)
  assert json.loads(read(tmp_path / "run" / "results.json")) == record
  assert read(tmp_path / "run" / "results.md") == (
      "# coop on dtd (all, 4 shots, seed 2)\n\n| metric | value |\n|---|---|\n| accuracy | 61.00 |\n"
      "| trainable parameters | 8,192 |\n| time (s) | 3.0 |\n")
  assert sorted(os.listdir(tmp_path / "run")) == ["results.json", "results.md"]


def continual_record():
  config = run_config("lamm", "dtd", 16, 1, "continual")
  metrics = {"after1/task0": 80.0, "after1/union": 80.0, "after2/task0": 75.5, "after2/task1": 70.0,
             "after2/union": 71.25, "forgetting/task0": 4.5, "forgetting": 4.5}
  return run_files.results_record(
      kind="continual", run=run_block(config, options={"continual.num_tasks": 2}), metrics=metrics,
      trainable_params=1234, time_s=5.0, tasks=[["cat", "dog"], ["red", "big", "blue"]])


def test_run_tables_per_kind():
  assert run_tables.results_table(continual_record()) == (
      "# continual lamm on dtd (16 shots, seed 1)\n\n"
      "|  | task0 (2 classes) | task1 (3 classes) | union of seen |\n|---|---|---|---|\n"
      "| after task 1 | 80.00 |  | 80.00 |\n| after task 2 | 75.50 | 70.00 | 71.25 |\n\n"
      "forgetting (max drop on earlier tasks): 4.50 points; trainable parameters 1,234; time 5.0 s\n")
  mt = run_files.results_record(
      kind="multitask", run=dict(method="mmap-mt", dataset="officehome", shots=16, seed=1, protocol="multitask",
                                 backbone="ViT-B/16", options={"multitask.mode": "mmap_mt"}),
      metrics={"task/Art": 70.0, "task/Clipart": 60.0, "mean": 65.0}, trainable_params=2944, time_s=2.0,
      trainable_share_percent=100 * 2944 / run_tables.CLIP_B16_PARAMS, tasks=["Art", "Clipart"], partition=[[0, 1]])
  assert run_tables.results_table(mt) == (
      "# mmap-mt on officehome (multi-task, 16 shots, seed 1)\n\ngroups: [Art, Clipart]\n\n| task | accuracy |\n"
      "|---|---|\n| Art | 70.00 |\n| Clipart | 60.00 |\n| mean | 65.00 |\n"
      "| trainable parameters | 2,944 (0.0020 % of 149.6M) |\n| time (s) | 2.0 |\n")


def demo_record(seed, coop_accuracy):
  rows = [{"method": "zeroshot", "metrics": {"accuracy": 40.0}, "trainable_params": 0, "time_s": 1.0},
          {"method": "coop", "metrics": {"accuracy": coop_accuracy}, "trainable_params": 8192, "time_s": 12.5}]
  run = dict(method="demo", dataset="world_shapes", shots=4, seed=seed, protocol="demo", backbone="embedded",
             options={"demo.methods": ["zeroshot", "coop"]})
  return run_files.results_record(kind="demo", run=run, metrics=run_files.demo_metrics(rows),
                                  trainable_params=sum(r["trainable_params"] for r in rows), time_s=13.5, rows=rows)


def test_demo_results_are_read_and_aggregated(tmp_path):
  for seed, accuracy in ((1, 50.0), (2, 52.0)):
    write(str(tmp_path), f"demo/{seed}", demo_record(seed, accuracy))
  assert read(tmp_path / "demo" / "1" / "results.md") == (
      "# Demo: world_shapes, 4 shots, seed 1, backbone embedded\n\n"
      "| method | accuracy | trainable params | time (s) |\n|---|---|---|---|\n"
      "| zeroshot | 40.0 | 0 | 1.0 |\n| coop | 50.0 | 8,192 | 12.5 |\n")
  warnings = []
  out = build.build_report(str(tmp_path), warn=warnings.append)
  assert warnings == [] and out["runs"] == 2
  [group] = out["groups"]
  assert group["method"] == "demo" and group["seeds"] == [1, 2]
  assert group["metrics"]["coop/accuracy"]["mean"] == 51.0 and group["metrics"]["zeroshot/accuracy"]["std"] == 0.0
  other = table(read(tmp_path / "report.md"), "method")
  assert other["demo"]["coop/accuracy"] == "51.00 ± 1.00" and other["demo"]["seeds"] == "2"


# --- progress lines -----------------------------------------------------------------------------------------------------
class FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_progress_means_over_the_window_and_eta_without_compile():
  clock = FakeClock()
  progress = run_files.Progress(total_steps=100, steps_per_epoch=10, batch_size=8, start_step=0, clock=clock)
  window = [{"loss": float(s), "lr": 0.01 * s, "accuracy": 0.1 * s} for s in range(1, 11)]
  clock.now = 30.0  # 25 s of compilation + 10 steps of 0.5 s
  first = progress.line(10, window)
  assert first.startswith("epoch 1/10 step 10/100 loss=5.5000 lr=0.1 accuracy=0.55 (mean of 10 steps)")
  assert first.endswith("| 2.7 img/s | ETA ?")                       # 80 images in 30 s; no rate yet
  clock.now = 35.0  # steps 11..20, 0.5 s each
  second = progress.line(20, [{"loss": 2.0, "lr": 0.2}, {"loss": 4.0, "lr": 0.3}])
  assert second.startswith("epoch 2/10 step 20/100 loss=3.0000 lr=0.3 (mean of 2 steps)")  # lr: the last value
  assert second.endswith("| 16.0 img/s | ETA 0:00:40")              # 80 steps left at 0.5 s (the compile left out)
  clock.now = 46.0  # steps 21..30 took 11 s: since step 10, 20 steps in 16 s
  assert progress.line(30, [{"loss": 1.0}]).endswith("| 7.3 img/s | ETA 0:00:56")  # 70 * 16 / 20
  assert run_files.window_means([{"a": 1.0}, {"a": 3.0, "b": 5.0}]) == {"a": 2.0, "b": 5.0}


def test_eval_progress_cadence_and_eta_without_compile(capsys):
  clock = FakeClock()
  progress = run_files.EvalProgress("base", 10, every_s=10.0, clock=clock)
  lines = []
  for done in range(1, 11):
    clock.now = 20.0 + 2.0 * (done - 1)  # the first batch compiles for 20 s, then 2 s a batch
    lines.append(progress.update(done))
  printed = [line for line in lines if line]
  assert printed == ["eval base: 1/10 batches | ? batches/s | ETA ?",
                     "eval base: 6/10 batches | 0.5 batches/s | ETA 0:00:08",  # 4 left at 2 s, not 4 * 30 / 6
                     "eval base: 10/10 batches in 0:00:38"]
  assert capsys.readouterr().err.splitlines() == printed


# --- the report across runs ---------------------------------------------------------------------------------------------
def test_base_to_novel_table_both_conventions_and_published(tmp_path):
  write_b2n(str(tmp_path))
  out = json.loads(json.dumps(build.build_report(str(tmp_path), warn=lambda m: None)))
  md = read(tmp_path / "report.md")
  rows = table(md, "dataset")
  assert list(rows) == ["dtd", "eurosat", tables.MEAN_HM, tables.HM_OF_MEANS]  # papers' order, then averages
  dtd = rows["dtd"]
  assert dtd["rpo B"] == "80.00 ± 0.82" and dtd["rpo N"] == "60.00 ± 1.63"
  assert dtd[f"rpo {tables.PER_SEED_HM}"] == "68.57 ± 1.37"   # mean of hm(79,58), hm(80,60), hm(81,62)
  assert dtd[f"rpo {tables.PAPERS_HM}"] == "68.57 ± 1.37"     # hm(80, 60) = 68.571; std of the per-seed HMs
  assert dtd["coop B"] == "84.00 ± 0.82" and rows["eurosat"][f"coop {tables.PER_SEED_HM}"] == "45.23 ± 1.96"
  assert rows["eurosat"][f"coop {tables.PAPERS_HM}"] == "45.25 ± 1.96"  # hm(92, 30) = 45.246
  # Published columns beside ours: RPO per dataset; the average rows take each convention's published HM.
  assert dtd["rpo B (published)"] == "76.70" and dtd["rpo HM (published)"] == "68.61"
  assert dtd["coop B (published)"] == "-"
  # Convention 1 (RPO): mean of per-dataset HMs: (hm(80,60) + hm(90,40)) / 2 = (68.571 + 55.385) / 2 by the
  # papers'; (68.567 + 55.373) / 2 from per-seed HMs; the std over the per-seed averages.
  assert rows[tables.MEAN_HM][f"rpo {tables.PAPERS_HM}"] == "61.98 ± 1.54"
  assert rows[tables.MEAN_HM][f"rpo {tables.PER_SEED_HM}"] == "61.97 ± 1.54"
  assert rows[tables.MEAN_HM]["rpo HM (published)"] == "77.78"
  # Convention 2 (CoCoOp/MaPLe): HM of mean B = 85 and mean N = 50 -> 2*85*50/135 = 62.96.
  assert rows[tables.HM_OF_MEANS][f"rpo {tables.PAPERS_HM}"] == "62.96 ± 1.52"
  assert rows[tables.HM_OF_MEANS][f"coop {tables.PAPERS_HM}"] == "55.00 ± 1.70"          # 2*88*40/128
  assert rows[tables.HM_OF_MEANS][f"coop {tables.PER_SEED_HM}"] == "54.99 ± 1.70"  # hm(87,38), hm(88,40), hm(89,42)
  assert rows[tables.HM_OF_MEANS]["coop HM (published)"] == "71.66"
  assert rows[tables.MEAN_HM]["coop HM (published)"] == "-"
  assert rows[tables.MEAN_HM]["rpo B"] == rows[tables.HM_OF_MEANS]["rpo B"] == "85.00 ± 0.82"
  # report.json: groups with values, mean and std; the seed is not part of the grouping.
  rpo_dtd = next(g for g in out["groups"] if g["method"] == "rpo" and g["dataset"] == "dtd")
  assert rpo_dtd["seeds"] == [1, 2, 3] and rpo_dtd["options"]["method.rpo.k"] == 24
  assert rpo_dtd["options"]["backbone"] == "ViT-B/16" and not any("seed" in k for k in rpo_dtd["options"])
  assert rpo_dtd["metrics"]["base"]["values"] == [79, 80, 81]
  assert abs(rpo_dtd["metrics"]["novel"]["std"] - (8 / 3) ** 0.5) < 1e-9
  assert len(out["groups"]) == 4 and out["runs"] == 12
  average = [r for r in out["tables"] if r["row"] == tables.HM_OF_MEANS and r["column"] == "rpo hm"]
  assert abs(average[0]["mean"] - 2 * 85 * 50 / 135) < 1e-9


def test_base_to_novel_papers_convention_rounds_seeds_then_takes_the_hm_of_means(tmp_path):
  """Where the conventions part: per-seed HMs of uneven seeds, and seeds whose accuracy Dassl's `{:.1f}` rounds.

  dtd (whole numbers, rounding is moot): seeds (B, N) = (90, 30), (70, 70). Papers: hm(80, 50) = 61.54; jaxprompt:
  mean(hm(90, 30) = 45, hm(70, 70) = 70) = 57.50; both +- 12.50 (population std of 45 and 70).
  eurosat (accuracies 100 * correct / total): seed 1 B = 53/80 = 66.25 -> 66.2, N = 1/16 = 6.25 -> 6.2; seed 2
  B = 281/400 = 70.25 -> 70.2, N = 5/16 = 31.25 -> 31.2 (ties go to even in Python's formatting, as in the logs).
  Papers: B = 68.20, N = 18.70, hm = 2 * 68.2 * 18.7 / 86.9 = 29.35 (unrounded seeds would give hm(68.25, 18.75)
  = 29.42, rounding ties up hm(68.3, 18.8) = 29.48); jaxprompt: mean(hm(66.25, 6.25), hm(70.25, 31.25)) = 27.34.
  """
  seeds = {"dtd": {1: (90.0, 30.0), 2: (70.0, 70.0)},
           "eurosat": {1: (100 * 53 / 80, 100 * 1 / 16), 2: (100 * 281 / 400, 100 * 5 / 16)}}
  for dataset, per_seed in seeds.items():
    for seed, (base, novel) in per_seed.items():
      write_single(str(tmp_path), f"{dataset}/{seed}", run_config("coop", dataset, 16, seed, "base2novel"),
                   {"base": base, "novel": novel, "hm": run_files.harmonic_mean(base, novel)})
  out = build.build_report(str(tmp_path), warn=lambda m: None)
  rows = table(read(tmp_path / "report.md"), "dataset")
  papers, per_seed = f"coop {tables.PAPERS_HM}", f"coop {tables.PER_SEED_HM}"
  assert rows["dtd"][papers] == "61.54 ± 12.50" and rows["dtd"][per_seed] == "57.50 ± 12.50"
  eurosat = rows["eurosat"]
  assert eurosat["coop B"] == "68.20 ± 2.00" and eurosat["coop N"] == "18.70 ± 12.50"  # means of rounded seeds
  assert eurosat[papers] == "29.35 ± 15.93"  # std of hm(66.2, 6.2) = 11.34 and hm(70.2, 31.2) = 43.20
  assert eurosat[per_seed] == "27.34 ± 15.92"
  # Average rows. RPO's: mean of the per-dataset HMs, (61.538 + 29.352) / 2 = 45.45 by the papers' convention; per
  # seed (unrounded): mean over seeds of ((45 + 11.42) / 2, (70 + 43.26) / 2) = 42.42.
  assert rows[tables.MEAN_HM][papers] == "45.45 ± 14.22" and rows[tables.MEAN_HM][per_seed] == "42.42 ± 14.21"
  # CoCoOp's and MaPLe's: B = (80 + 68.2) / 2 = 74.10, N = (50 + 18.7) / 2 = 34.35, hm = 46.94; per seed, the HM of
  # each seed's dataset-averaged B and N: hm(78.125, 18.125) = 29.42, hm(70.125, 50.625) = 58.80 -> 44.11.
  average = rows[tables.HM_OF_MEANS]
  assert average["coop B"] == "74.10 ± 4.00" and average["coop N"] == "34.35 ± 16.25"
  assert average[papers] == "46.94 ± 14.69" and average[per_seed] == "44.11 ± 14.69"
  records = {(r["row"], r["column"]): r["mean"] for r in out["tables"] if r["table"] == "base2novel"}
  assert records[("eurosat", "coop hm")] == pytest.approx(2 * 68.2 * 18.7 / 86.9, abs=1e-9)
  assert records[(tables.HM_OF_MEANS, "coop hm")] == pytest.approx(2 * 74.1 * 34.35 / 108.45, abs=1e-9)
  assert records[("dtd", "coop hm_per_seed")] == 57.5
  assert [groups.dassl_rounded(v) for v in (66.25, 18.75, 6.25, 50.05, 0.05)] == [66.2, 18.8, 6.2, 50.0, 0.1]


def test_fewshot_tables_curves_and_bars(tmp_path):
  write_fewshot(str(tmp_path))
  out = build.build_report(str(tmp_path), warn=lambda m: None)
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
        config = run_config("rpo", dataset, 16, seed, "base2novel", **{"rpo.init": init})
        write_single(str(tmp_path), f"{init}/{dataset}/{seed}", config, {"base": b, "novel": b, "hm": b})
  out = build.build_report(str(tmp_path), out_dir=str(tmp_path / "out"), warn=lambda m: None)
  assert sorted({g["label"] for g in out["groups"]}) == ["rpo [rpo.init='random']", "rpo [rpo.init='st']"]
  md = read(tmp_path / "out" / "report.md")
  section = md[md.index("## Ablation: rpo"):]
  rows = table(section, "dataset")
  assert rows["dtd"]["rpo [rpo.init='st']"] == "80.00 ± 0.82"
  assert rows["Average"]["rpo [rpo.init='random']"] == "72.50 ± 0.82"
  assert os.path.exists(tmp_path / "out" / "bars" / "ablation_base2novel_rpo_16shots.png")


def write_multitask(root, label, mode, method, seed, accuracy, params):
  """A multi-task run's results as the multi-task trainer writes them (its method names, options and extras)."""
  config = run_config(method, "officehome", 16, seed, "multitask")
  run = run_block(config, method=label, options={"multitask.mode": mode, **run_files.method_options(config.method)})
  metrics = {"task/Art": accuracy + seed, "task/Clipart": accuracy - seed, "mean": accuracy}
  results = run_files.results_record(kind="multitask", run=run, metrics=metrics, trainable_params=params, time_s=1.0,
                                     trainable_share_percent=100 * params / run_tables.CLIP_B16_PARAMS,
                                     tasks=["Art", "Clipart"], partition=[[0], [1]] if mode == "mmap_mt" else None)
  write(root, f"mt/{label}/{seed}", results)


def test_multitask_names_targets_lamm_and_malformed_files(tmp_path):
  root = str(tmp_path)
  for seed in (1, 2):
    for label, mode, method, accuracy, params in (("mmap-mt", "mmap_mt", "mmap", 80, 2944),
                                                  ("coop-mt", "mt", "coop", 70, 8192),
                                                  ("coop-st", "st", "coop", 65, 16384),
                                                  ("zeroshot", "zeroshot", "coop", 60, 0)):
      write_multitask(root, label, mode, method, seed, accuracy, params)
    write_single(root, f"dg/{seed}", run_config("rpo", "imagenet", 16, seed, "all"),
                 {"accuracy": 70 + seed, "target/imagenet_v2": 60, "target/imagenet_a": 50})
    write_single(root, f"lamm/{seed}", run_config("lamm", "dtd", 16, seed, "all", **{"lamm.base": "coop"}),
                 {"accuracy": 70})
  os.makedirs(tmp_path / "broken")
  (tmp_path / "broken" / "results.json").write_text('{"run": {"method": "coop"}}')
  os.makedirs(tmp_path / "future")
  (tmp_path / "future" / "results.json").write_text(json.dumps({**demo_record(1, 50.0), "schema": 2}))
  warnings = []
  out = build.build_report(root, warn=warnings.append)
  assert len(warnings) == 2 and "broken" in warnings[0] and "run.dataset" in warnings[0]
  assert "future" in warnings[1] and "schema 2" in warnings[1]
  md = read(tmp_path / "report.md")
  section = md[md.index("## Multi-task: officehome"):]
  header = section.splitlines()[2]
  assert header == "| task | zeroshot | coop-st | coop-mt | mmap-mt |"  # METHOD_ORDER: zero-shot, per task, shared
  mt = table(section, "task")
  assert mt["Art"]["coop-mt"] == "71.50 ± 0.50" and mt["**mean**"]["mmap-mt"] == "80.00 ± 0.00"
  assert mt["trainable params"]["mmap-mt"] == "2,944" and mt["trainable params"]["coop-st"] == "16,384"
  mmap_md = read(tmp_path / "mt" / "mmap-mt" / "1" / "results.md")
  assert "groups: [Art] | [Clipart]" in mmap_md and "| Art | 81.00 |" in mmap_md
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
      run = dict(method="rpo", dataset="dtd", shots=16, seed=seed, protocol="base2novel", backbone="ViT-B/16",
                 options={})
      results = run_files.results_record(kind="single", run=run, metrics={"base": 80 if init == "st" else 70,
                                                                          "novel": 60, "hm": 1.0},
                                         trainable_params=1, time_s=1.0)
      write(str(tmp_path), f"{init}/{seed}", results, config=config)
  found = groups.aggregate(groups.load_results(str(tmp_path), print))
  assert [(g.label, g.seeds, g.mean("base")) for g in found] == [
      ("rpo [rpo.init='random']", [1, 2], 70.0), ("rpo [rpo.init='st']", [1, 2], 80.0)]
  assert found[0].options == {"method.rpo.init": "random", "backbone": "ViT-B/16"}  # paths and seeds ignored


def test_published_data_is_consistent():
  # The baselines' average HM is the HM of their averaged B and N (CoCoOp's convention), to rounding.
  for method in ("zeroshot", "coop", "cocoop", "vpt", "ivlp", "maple"):
    b, n = (published.PUBLISHED[("maple", method, "average", m)] for m in ("base", "novel"))
    assert abs(2 * b * n / (b + n) - published.PUBLISHED[("maple", method, "average", "hm_of_means")]) < 0.02
  assert published.lookup("base2novel", "rpo", "dtd", "hm") == ("rpo", 68.61)
  assert published.lookup("all", "coop+lamm", "average", "accuracy@16") == ("lamm", 81.7)
  assert all(d in published.DATASETS for (_, _, d, _) in published.PUBLISHED if d != "average")
  assert groups.ablation_sets([]) == {}


def test_affinity_heatmap_leaves_the_backend_alone(tmp_path):
  """The heat map is a real PNG; importing and plotting neither switches the user's backend nor loads pyplot."""
  script = (
      "import sys, matplotlib\n"
      "from jaxprompt.report import build, plots\n"
      "result = {'tasks': ['Art', 'Clipart', 'Product'], 'partition': [[0, 2], [1]],\n"
      "          'affinity': [[1, -0.2, 0.5], [-0.2, 1, 0.1], [0.5, 0.1, 1]]}\n"
      f"plots.affinity_heatmap(result, {str(tmp_path / 'grouping.png')!r})\n"
      "print(matplotlib.rcParams['backend'], 'matplotlib.pyplot' in sys.modules)\n")
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        env={**os.environ, "MPLBACKEND": "svg"}, check=True)
  assert done.stdout.split() == ["svg", "False"]
  with Image.open(tmp_path / "grouping.png") as image:
    assert image.format == "PNG" and image.size == (560, 460)  # (1.2 * 3 + 2, 1.2 * 3 + 1) inches at 100 dpi
  assert os.path.getsize(tmp_path / "grouping.png") > 10000


def test_cli(tmp_path):
  write_fewshot(str(tmp_path / "runs"))
  done = subprocess.run([sys.executable, "-m", "jaxprompt.report", str(tmp_path / "runs"), "--out",
                         str(tmp_path / "rep"), "--ddof", "1"], capture_output=True, text=True, check=True)
  assert "24 runs, 8 groups" in done.stdout
  md = read(tmp_path / "rep" / "report.md")
  assert "ddof=1" in md and table(md, "dataset")["dtd"]["1 shots"] == "50.00 ± 1.00"
  assert os.path.exists(tmp_path / "rep" / "report.json")
