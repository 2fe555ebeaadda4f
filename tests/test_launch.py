"""launch/: grid expansion and the key rule, running with skip/resume/parallel/failure reporting (a stand-in trainer
that writes a well-formed results.json computed from the grid point), aggregation of the sweep, the ready-made
sweeps, the TPU script's dry run, and one end-to-end sweep of the real trainer on configs/smoke.py."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from jaxprompt.report import build
from launch import sweep, tpu_vm

ROOT = sweep.PROJECT_ROOT

# The stand-in for jaxprompt.main: accuracy = 50 + shots + seed (+ 10 for rpo); "broken" always fails, "flaky"
# fails on its first attempt (then resumes); every call is logged with its start and end time.
FAKE_MAIN = textwrap.dedent('''
    import argparse, json, os, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--workdir")
    args, rest = parser.parse_known_args()
    _, _, arg = args.config.partition(":")
    point = dict(item.split("=", 1) for item in arg.split(",")) if arg else {}
    options = dict(r[len("--config."):].split("=", 1) for r in rest)
    start = time.time()
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    print("training", point, options)
    with open(os.environ["FAKE_CALLS"], "a") as f:
      f.write(json.dumps([args.workdir, start, time.time()]) + "\\n")
    if point.get("dataset") == "broken":
      print("boom: no such dataset", file=sys.stderr)
      sys.exit(3)
    marker = os.path.join(args.workdir, "attempted")
    if point.get("dataset") == "flaky" and not os.path.exists(marker):
      open(marker, "w").close()
      sys.exit(1)
    seed, shots = int(point["seed"]), int(point.get("shots", 16))
    accuracy = 50 + shots + seed + (10 if point["method"] == "rpo" else 0)
    run = dict(method=point["method"], dataset=point["dataset"], shots=shots, seed=seed, protocol="all",
               backbone="tiny", options=options)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
      json.dump(dict(schema=1, kind="single", run=run, metrics={"accuracy": accuracy}, trainable_params=8192,
                     time_s=0.1), f)
''')


@pytest.fixture
def fake(tmp_path, monkeypatch):
  """A stand-in trainer module on PYTHONPATH, a config file, and a sweep-file writer; returns helpers."""
  (tmp_path / "fake_main.py").write_text(FAKE_MAIN)
  (tmp_path / "config.py").write_text("def get_config(arg):\n  pass\n")
  monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))

  def write_sweep(grid, fixed=None, name="demo"):
    path = tmp_path / f"{name}.py"
    path.write_text(f"SWEEP = dict(config={str(tmp_path / 'config.py')!r}, grid={grid!r}, fixed={fixed or {}!r})\n")
    return str(path)

  def calls():
    if not os.path.exists(tmp_path / "calls.jsonl"):
      return []
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]

  def run(sweep_file, *extra):
    lines = []
    code = sweep.main([sweep_file, "--root", str(tmp_path / "runs"), "--main", "fake_main", *extra], out=lines.append)
    return code, "\n".join(lines)

  return dict(write_sweep=write_sweep, calls=calls, run=run, root=tmp_path / "runs")


def test_expand_key_rule_names_and_sets(tmp_path):
  spec = dict(config="configs/x.py", grid={"method": ["coop", "rpo"], "method.rpo.init": ["st", "random"],
                                           "seed": [1, 2]}, fixed={"shots": 16, "optim.lr": 0.01})
  runs = sweep.expand(spec, "runs", "x")
  assert len(runs) == 8 and runs[0].name == "method=coop,method.rpo.init=st,seed=1"
  assert runs[1].workdir == os.path.join("runs", "x", "method=coop,method.rpo.init=st,seed=2")
  # Keys without a dot -> the config argument string; keys with a dot -> --config.<key>=<value>.
  assert runs[0].command(python="py") == [
      "py", "-m", "jaxprompt.main", "--config", "configs/x.py:shots=16,method=coop,seed=1",
      "--workdir", runs[0].workdir, "--config.optim.lr=0.01", "--config.method.rpo.init=st"]
  # --set narrows a grid axis, or adds a setting that also names the workdir; --smoke adds the smoke settings.
  narrowed = sweep.expand(spec, "runs", "x", sets={"method": "rpo", "optim.lr": "0.1"}, smoke=True)
  assert [r.name for r in narrowed][:2] == ["method=rpo,method.rpo.init=st,seed=1,optim.lr=0.1",
                                            "method=rpo,method.rpo.init=st,seed=2,optim.lr=0.1"]
  assert narrowed[0].args["smoke"] is True and narrowed[0].overrides["optim.lr"] == "0.1"
  assert narrowed[0].workdir.startswith(os.path.join("runs", "x_smoke"))
  # Union of grids, filesystem-safe names, and clear errors.
  union = sweep.expand(dict(config="c.py", grid=[{"seed": [1]}, {"method.coop.ctx_init": ["a photo of a", ""]}]),
                       "r", "u")
  assert [r.name for r in union] == ["seed=1", "method.coop.ctx_init=a_photo_of_a", "method.coop.ctx_init=empty"]
  assert union[1].command()[-1] == "--config.method.coop.ctx_init=a photo of a"
  with pytest.raises(SystemExit, match="same workdir"):
    sweep.expand(dict(config="c.py", grid={"a.b": ["x y", "x_y"]}), "r", "u")
  with pytest.raises(SystemExit, match="may not contain"):
    sweep.expand(dict(config="c.py", grid={"names": ["a,b"]}), "r", "u")
  assert sweep.parse_sets(["a=1", "b.c=x=y"]) == {"a": "1", "b.c": "x=y"}


def test_sweep_runs_in_parallel_skips_finished_and_aggregates(fake, monkeypatch):
  monkeypatch.setenv("FAKE_SLEEP", "0.3")
  path = fake["write_sweep"]({"method": ["coop", "rpo"], "dataset": ["dtd", "eurosat"], "shots": [1, 16],
                              "seed": [1, 2]}, fixed={"method.rpo.k": 4})
  code, out = fake["run"](path, "--parallel", "4", "--report")
  assert code == 0, out
  calls = fake["calls"]()
  assert len(calls) == 16 and "16 runs: 0 finished (skipped), 16 to run, 4 at a time" in out
  overlapping = max(sum(s < c[2] and c[1] < e for c in calls) for _, s, e in calls)
  assert overlapping >= 2  # runs really ran side by side
  workdir = fake["root"] / "demo" / "method=rpo,dataset=dtd,shots=16,seed=2"
  result = json.loads((workdir / "results.json").read_text())
  assert result["metrics"]["accuracy"] == 50 + 16 + 2 + 10 and result["run"]["options"] == {"method.rpo.k": "4"}
  assert "training" in (workdir / "log.txt").read_text()
  # A second call runs nothing.
  code, out = fake["run"](path, "--parallel", "4")
  assert code == 0 and len(fake["calls"]()) == 16 and "0 ok, 16 skipped" in out
  # --report wrote the aggregated table: coop at 16 shots = 66 + mean seed 1.5, std 0.5.
  md = (fake["root"] / "demo" / "report.md").read_text()
  assert "| dtd | 52.50 ± 0.50 | - | 67.50 ± 0.50 | 68.40 |" in md  # published: average at 1 shot, dtd at 16
  assert (fake["root"] / "demo" / "curves" / "all_average.png").stat().st_size > 5000


def test_failures_are_reported_and_unfinished_runs_resume(fake):
  path = fake["write_sweep"]({"method": ["coop"], "dataset": ["dtd", "broken", "flaky"], "seed": [1]})
  code, out = fake["run"](path, "--parallel", "2")
  assert code == 1
  broken = fake["root"] / "demo" / "method=coop,dataset=broken,seed=1"
  assert f"FAILED {broken}: exit status 3; log: {broken / 'log.txt'}" in out
  assert "dataset=flaky,seed=1: exit status 1" in out and "1 ok, 0 skipped" in out and "2 failed" in out
  assert "boom: no such dataset" in (broken / "log.txt").read_text()
  # Re-running: dtd is skipped, flaky resumes in its workdir and finishes, broken fails again.
  code, out = fake["run"](path)
  assert code == 1 and "1 ok, 1 skipped (already finished), 1 failed" in out
  assert len(fake["calls"]()) == 5
  assert (fake["root"] / "demo" / "method=coop,dataset=flaky,seed=1" / "results.json").exists()


def test_print_lists_unfinished_commands_only(fake, capsys):
  path = fake["write_sweep"]({"method": ["coop"], "dataset": ["dtd", "eurosat"], "seed": [1]},
                             fixed={"optim.lr": 0.002})
  done = fake["root"] / "demo" / "method=coop,dataset=dtd,seed=1"
  done.mkdir(parents=True)
  (done / "results.json").write_text('{"schema": 1, "kind": "single", "run": {}, "metrics": {}}')
  truncated = fake["root"] / "demo" / "method=coop,dataset=eurosat,seed=1"
  truncated.mkdir(parents=True)
  (truncated / "results.json").write_text('{"schema": 1, "kind": "sin')  # a crash mid-write: not finished
  code, out = fake["run"](path, "--print")
  assert code == 0 and fake["calls"]() == []
  assert out.splitlines() == [
      f"python -m fake_main --config {os.path.dirname(path)}/config.py:method=coop,dataset=eurosat,seed=1 "
      f"--workdir {fake['root']}/demo/method=coop,dataset=eurosat,seed=1 --config.optim.lr=0.002"]


def test_script_entry_point_and_missing_config(tmp_path):
  sweep_file = tmp_path / "s.py"
  sweep_file.write_text("SWEEP = dict(config='configs/does_not_exist.py', grid={'seed': [1, 2]})\n")
  printed = subprocess.run([sys.executable, "launch/sweep.py", str(sweep_file), "--root", str(tmp_path), "--print"],
                           cwd=ROOT, capture_output=True, text=True, check=True)
  assert printed.stdout.count("python -m jaxprompt.main --config configs/does_not_exist.py:seed=") == 2
  with pytest.raises(SystemExit, match="does_not_exist.py does not exist"):
    sweep.main([str(sweep_file), "--root", str(tmp_path)])
  with pytest.raises(SystemExit, match="no sweep 'nope'.*rpo_b2n"):
    sweep.load_sweep("nope")


def test_ready_made_sweeps_expand():
  names = sweep.available_sweeps()
  assert {"rpo_b2n", "lamm_fewshot", "mmap_multitask", "rpo_init", "lamm_init", "coop_init", "mmap_init",
          "smoke"} <= set(names)
  counts = {}
  for name in names:
    _, spec = sweep.load_sweep(name)
    runs = sweep.expand(spec, "runs", name)
    counts[name] = len(runs)
    assert all(r.config.startswith("configs/") for r in runs)
  assert counts["rpo_b2n"] == 11 * 3 and counts["rpo_init"] == 2 * 11 * 3 and counts["smoke"] == 2
  assert counts["lamm_fewshot"] == 5 * 11 * 5 * 3 + 11  # coop, maple, lamm, coop+lamm, maple+lamm; + zero-shot
  _, spec = sweep.load_sweep("coop_init")
  runs = sweep.expand(spec, "runs", "coop_init", passed={"root": "/data"})
  assert runs[0].name == "ctx_init=a_photo_of_a,dataset=imagenet,seed=1"
  assert runs[0].config_spec() == ("configs/coop.py:n_ctx=4,shots=16,root=/data,ctx_init=a photo of a,"
                                   "dataset=imagenet,seed=1")
  assert runs[-1].config_spec() == "configs/coop.py:n_ctx=4,shots=16,root=/data,ctx_init=,dataset=ucf101,seed=3"
  # One sweep over several config files: `config` is a grid key, named by the file's base name.
  _, spec = sweep.load_sweep("lamm_fewshot")
  runs = sweep.expand(spec, "runs", "lamm_fewshot", smoke=True)
  assert runs[0].name == "config=lamm,base=none,dataset=imagenet,shots=1,seed=1" and runs[0].config == "configs/lamm.py"
  assert runs[0].config_spec() == "configs/lamm.py:smoke=True,base=none,dataset=imagenet,shots=1,seed=1"
  maple = next(r for r in runs if r.config == "configs/maple_b2n.py")
  assert maple.overrides == {"data.protocol": "all"} and maple.name.startswith("config=maple_b2n,data.protocol=all,")


def test_tpu_dry_run_prints_every_command_and_runs_nothing(tmp_path, monkeypatch):
  tarball = tmp_path / "src.tar.gz"
  env = dict(os.environ, PATH=str(tmp_path))  # no gcloud, no tar: nothing could run even by mistake
  result = subprocess.run(
      [sys.executable, "launch/tpu_vm.py", "--name", "jp", "--zone", "us-central2-b", "--accelerator", "v4-32",
       "--tarball", str(tarball), "--dry-run", "all", "delete", "--",
       "--config", "configs/rpo_b2n.py:dataset=dtd,seed=1", "--workdir", "runs/rpo_b2n/dtd"],
      cwd=ROOT, env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
  assert lines[0] == ("+ gcloud compute tpus tpu-vm create jp --accelerator-type=v4-32 "
                      "--version=tpu-ubuntu2204-base --zone=us-central2-b")
  assert any(line.startswith("+ tar czf " + str(tarball)) for line in lines)
  assert any("tpu-vm scp " + str(tarball) + " jp:jaxprompt-src.tar.gz --worker=all" in line for line in lines)
  install = [line for line in lines if "ssh jp --worker=all" in line and "pip install" in line]
  assert install and "-e ." in install[0] and "jax[tpu]" in install[0]
  run = [line for line in lines if "jaxprompt.main" in line]
  assert len(run) == 1 and "ssh jp --worker=all" in run[0]
  assert ("JAXPROMPT_MULTIHOST=1 ~/jaxprompt-venv/bin/python -m jaxprompt.main --config "
          "configs/rpo_b2n.py:dataset=dtd,seed=1 --workdir runs/rpo_b2n/dtd") in run[0]
  assert any("tpu-vm scp jp:jaxprompt/runs/rpo_b2n/dtd runs/rpo_b2n --recurse --worker=0" in line for line in lines)
  assert lines[-1] == "+ gcloud compute tpus tpu-vm delete jp --quiet --zone=us-central2-b"
  assert not tarball.exists()
  # Without --dry-run and without gcloud: a clear message, nothing run.
  monkeypatch.setenv("PATH", str(tmp_path))
  lines = []
  assert tpu_vm.execute([["gcloud", "x"]], dry_run=False, out=lines.append) == 2 and "not on PATH" in lines[0]
  cmds = tpu_vm.commands(*tpu_vm.parse_args(["--name", "n", "--zone", "z", "--repo", "https://x/y.git", "install"]))
  assert "git clone --branch main https://x/y.git ~/jaxprompt" in cmds[0][-2]


def test_tpu_tarball_ships_the_code_but_no_venv_runs_or_local_gs_paths(tmp_path, monkeypatch):
  project = tmp_path / "project"
  for path in ("jaxprompt/train.py", "configs/coop.py", "pyproject.toml", ".venv/pyvenv.cfg", ".venv/lib/big.so",
               "venv311/pyvenv.cfg", "venv311/bin/python", "runs/coop/results.json", "gs:/bucket/run/config.json",
               ".git/HEAD", "jaxprompt/__pycache__/train.cpython-311.pyc"):
    (project / path).parent.mkdir(parents=True, exist_ok=True)
    (project / path).write_text("x")
  monkeypatch.setattr(tpu_vm, "PROJECT_ROOT", str(project))
  tarball = tmp_path / "src.tar.gz"
  cmds = tpu_vm.commands(*tpu_vm.parse_args(["--name", "n", "--zone", "z", "--tarball", str(tarball), "install"]))
  assert cmds[0][:3] == ["tar", "czf", str(tarball)]
  subprocess.run(cmds[0], check=True)
  listed = subprocess.run(["tar", "tzf", str(tarball)], capture_output=True, text=True, check=True).stdout.split()
  files = sorted(name.removeprefix("./") for name in listed if not name.endswith("/"))
  assert files == ["configs/coop.py", "jaxprompt/train.py", "pyproject.toml"]
  assert "gcsfs" in " ".join(cmds[-1])  # gs:// workdirs need gcsfs on every worker


@pytest.mark.slow  # two real training subprocesses (~80 s of CPU); the sweep logic itself is tested above
def test_smoke_sweep_with_the_real_trainer(tmp_path, monkeypatch):
  """End to end: configs/smoke.py (tiny CLIP, world tasks; the lead's file) over 2 seeds, 2 at a time; the second
  call skips both; the report has the table and a plot."""
  monkeypatch.delenv("XLA_FLAGS", raising=False)  # the runs see the machine as a user would
  lines = []
  code = sweep.main(["smoke", "--root", str(tmp_path), "--parallel", "2"], out=lines.append)
  logs = [p.read_text()[-3000:] for p in (tmp_path / "smoke").glob("*/log.txt")]
  assert code == 0, "\n".join(lines + logs)
  workdirs = [tmp_path / "smoke" / f"seed={s}" for s in (1, 2)]
  assert all((w / "results.json").exists() and (w / "config.json").exists() for w in workdirs)
  lines = []
  assert sweep.main(["smoke", "--root", str(tmp_path)], out=lines.append) == 0
  assert "0 ok, 2 skipped" in "\n".join(lines)
  out = build.build_report(str(tmp_path / "smoke"))
  assert out["runs"] == 2 and len(out["groups"]) == 1 and out["groups"][0]["seeds"] in ([1, 2], [2, 1])
  assert (tmp_path / "smoke" / "report.md").read_text().count("± ") >= 1
  assert out["plots"] and all(os.path.getsize(p) > 5000 for p in out["plots"])
