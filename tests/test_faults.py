"""Faults lose nothing: a workdir holds one experiment (config check, lock), files are written atomically, a bad
latest checkpoint falls back to the previous one, metrics.jsonl has no step twice after a resume, and a sweep does
not take a truncated results.json for a finished run."""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprompt import checkpoint, parallel, train, workdir
from tests.conftest import FixedBatches, smoke_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(directory):
  """{relative path: bytes} of every file under `directory`."""
  out = {}
  for parent, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(parent, name)
      out[os.path.relpath(path, directory)] = open(path, "rb").read()
  return out


# --- a workdir is one experiment ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,shown", [("optim.lr", 0.02, "optim.lr: 0.01 (recorded) vs 0.02 (this run)"),
                                             ("data.shots", 4, "data.shots: 2 (recorded) vs 4 (this run)"),
                                             ("seed", 7, "seed: 1 (recorded) vs 7 (this run)"),
                                             ("method.name", "vpt", 'method.name: "coop" (recorded) vs "vpt"'),
                                             ("optim.epochs", 1, "optim.epochs: 2 (recorded) vs 1 (this run)")])
def test_rerun_with_another_config_stops_before_writing(tmp_path, key, value, shown):
  with workdir.open_run(smoke_config(), tmp_path, writer=True):
    pass
  before = _files(tmp_path)
  with pytest.raises(workdir.ConfigChangedError) as error:
    workdir.open_run(smoke_config(**{key: value}), tmp_path, writer=True)
  message = str(error.value)
  assert "\n" not in message and shown in message and str(tmp_path / "config.json") in message
  assert "new --workdir" in message and "--config.train.allow_config_change=True" in message
  assert _files(tmp_path) == before  # config.json byte-identical, history untouched, no lock left behind


def test_two_keys_are_both_named_and_cosmetic_keys_may_differ(tmp_path):
  with workdir.open_run(smoke_config(), tmp_path, writer=True):
    pass
  with pytest.raises(workdir.ConfigChangedError, match=r"optim\.lr: .*; use a new") as error:
    workdir.open_run(smoke_config(**{"optim.lr": 0.5, "backbone": "other"}), tmp_path, writer=True)
  assert 'backbone: "tiny-random" (recorded) vs "other" (this run), optim.lr: 0.01' in str(error.value)
  cosmetic = {"train.log_every": 1, "data.eval_batch_size": 4, "data.workers": 2, "train.stop_after": 3,
              "train.keep_checkpoints": 5, "num_devices": 1, "train.checkpoint_every": 1}
  with workdir.open_run(smoke_config(**cosmetic), tmp_path, writer=True) as run:
    assert run.changes == {}
  recorded = json.loads((tmp_path / "config.json").read_text())
  assert recorded["train"]["log_every"] == 1  # config.json shows the latest run's settings
  assert [entry["event"] for entry in workdir.history(tmp_path)] == ["start", "exit", "start", "exit"]


def test_allowed_config_change_proceeds_and_is_recorded(tmp_path):
  with workdir.open_run(smoke_config(), tmp_path, writer=True):
    pass
  changed = smoke_config(**{"optim.lr": 0.05, "train.allow_config_change": True})
  with workdir.open_run(changed, tmp_path, writer=True) as run:
    assert run.changes == {"optim.lr": (0.01, 0.05)}
  assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr"] == 0.05
  entries = workdir.history(tmp_path)
  assert [entry["event"] for entry in entries] == ["start", "exit", "start", "config_change", "exit"]
  assert entries[3]["changes"] == {"optim.lr": [0.01, 0.05]} and entries[2]["resumed"] is True
  # The new config is now the recorded one: the same command again needs no permission.
  with workdir.open_run(smoke_config(**{"optim.lr": 0.05}), tmp_path, writer=True):
    pass


def test_unreadable_config_json_is_named(tmp_path):
  (tmp_path / "config.json").write_text('{"seed": 1, "optim": {"lr"')  # cut short by an old non-atomic write
  with pytest.raises(workdir.ConfigChangedError, match="config.json is unreadable"):
    workdir.open_run(smoke_config(), tmp_path, writer=True)
  assert (tmp_path / "config.json").read_text() == '{"seed": 1, "optim": {"lr"'


def test_train_run_refuses_another_lr_before_writing(tmp_path):
  run_dir = tmp_path / "run"
  with pytest.raises(SystemExit):
    train.run(smoke_config(**{"train.stop_after": 2}), str(run_dir))
  before = _files(run_dir)
  with pytest.raises(workdir.ConfigChangedError, match=r"optim\.lr: 0\.01 \(recorded\) vs 0\.03"):
    train.run(smoke_config(**{"optim.lr": 0.03}), str(run_dir))
  assert _files(run_dir) == before


# --- one run per workdir ------------------------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from jaxprompt import workdir
    run = workdir.open_run({"seed": 1}, sys.argv[1], writer=True)
    print("holding", flush=True)
    time.sleep(60)
""")


def test_a_second_run_fails_at_once_and_a_dead_holders_lock_is_taken_over(tmp_path, caplog):
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "holding"
    with pytest.raises(workdir.WorkdirLockedError, match=rf"in use by host .* pid {holder.pid} since .*; wait for"
                                                         rf" that run to end, or if it is gone delete .*\.lock"):
      workdir.open_run({"seed": 1}, tmp_path, writer=True)
  finally:
    holder.kill()
    holder.wait()
  assert (tmp_path / ".lock").exists()  # SIGKILL: the holder could not clean up
  with caplog.at_level(logging.WARNING, logger="jaxprompt.workdir"):
    with workdir.open_run({"seed": 1}, tmp_path, writer=True):
      held = json.loads((tmp_path / ".lock").read_text())
      assert held["pid"] == os.getpid()
      with pytest.raises(workdir.WorkdirLockedError, match="this process already runs in"):
        workdir.open_run({"seed": 1}, tmp_path, writer=True)
  assert f"taking over the stale lock {tmp_path / '.lock'}" in caplog.text and f"pid {holder.pid}" in caplog.text
  assert not (tmp_path / ".lock").exists()


def test_lock_of_another_host_is_not_taken_and_release_happens_on_errors(tmp_path):
  (tmp_path / ".lock").write_text(json.dumps({"host": "tpu-worker-7", "pid": 1, "started": "2026-01-01"}))
  with pytest.raises(workdir.WorkdirLockedError, match="host tpu-worker-7 pid 1"):
    workdir.open_run({"seed": 1}, tmp_path, writer=True)
  (tmp_path / ".lock").unlink()
  with pytest.raises(SystemExit):
    with workdir.open_run({"seed": 1}, tmp_path, writer=True):
      raise SystemExit("stopped after step 3 of 6")
  assert not (tmp_path / ".lock").exists()
  with pytest.raises(ZeroDivisionError):
    with workdir.open_run({"seed": 1}, tmp_path, writer=True):
      1 / 0
  assert not (tmp_path / ".lock").exists()
  assert [e.get("status") for e in workdir.history(tmp_path) if e["event"] == "exit"] == [
      "stopped: stopped after step 3 of 6", "error: ZeroDivisionError: division by zero"]
  # A refused run leaves no lock either.
  with pytest.raises(workdir.ConfigChangedError):
    workdir.open_run({"seed": 2}, tmp_path, writer=True)
  assert not (tmp_path / ".lock").exists()


# --- checkpoint fallback ------------------------------------------------------------------------------------------
def _state(value):
  return {"w": jnp.full((2, 3), float(value)), "step": jnp.asarray(value)}


def _saved(directory, steps=(2, 4, 6)):
  checkpoints = checkpoint.Checkpoints(directory, keep=5)
  for step in steps:
    checkpoints.save(step, _state(step), {"position": step})
  checkpoints.wait()
  checkpoints.close()
  return os.path.join(directory, "checkpoints")


def _corrupt(step_dir):
  for parent, _, names in os.walk(os.path.join(step_dir, "state")):
    for name in names:
      if os.path.basename(parent) == "d":
        with open(os.path.join(parent, name), "r+b") as f:
          f.write(b"not a chunk" * 4)


def _empty(step_dir):
  shutil.rmtree(step_dir)
  os.mkdir(step_dir)


def _no_manifest(step_dir):
  os.remove(os.path.join(step_dir, "state", "manifest.ocdbt"))


@pytest.mark.parametrize("damage,reason", [(_corrupt, "does not restore: ValueError: DATA_LOSS"),
                                           (_empty, "empty directory"),
                                           (_no_manifest, "missing state/manifest.ocdbt")])
def test_bad_latest_checkpoint_falls_back_and_is_moved_aside(tmp_path, caplog, damage, reason):
  directory = _saved(str(tmp_path))
  damage(os.path.join(directory, "6"))
  damaged = _files(os.path.join(directory, "6"))
  checkpoints = checkpoint.Checkpoints(str(tmp_path), keep=5)
  with caplog.at_level(logging.WARNING, logger="jaxprompt.checkpoint"):
    restored = checkpoints.restore_latest(_state(0))
  state, loader_state, step = restored
  assert step == 4 and loader_state == {"position": 4} and float(state["w"][0, 0]) == 4.0
  moved = [name for name in os.listdir(directory) if name.startswith("bad-6-")]
  assert len(moved) == 1 and _files(os.path.join(directory, moved[0])) == damaged  # kept, not deleted
  assert checkpoints.steps() == [2, 4] and checkpoints.latest_step() == 4
  lines = [r.getMessage() for r in caplog.records if r.name == "jaxprompt.checkpoint"]
  assert len(lines) == 1 and "\n" not in lines[0]
  assert f"checkpoint {directory}/6 is unusable ({reason}" in lines[0] and "resuming from step 4" in lines[0]
  checkpoints.save(6, _state(60), {"position": 6})  # saving goes on past the moved one
  checkpoints.wait()
  assert float(checkpoints.restore(_state(0))[0]["w"][0, 0]) == 60.0
  checkpoints.close()


def test_no_good_checkpoint_is_one_line_naming_the_directory(tmp_path):
  directory = _saved(str(tmp_path), steps=(2, 4))
  _corrupt(os.path.join(directory, "4"))
  _no_manifest(os.path.join(directory, "2"))
  checkpoints = checkpoint.Checkpoints(str(tmp_path))
  with pytest.raises(checkpoint.CheckpointError) as error:
    checkpoints.restore(_state(0))
  message = str(error.value)
  assert "\n" not in message and message.startswith(f"no usable checkpoint in {directory} (step 4: ")
  assert "step 2: missing state/manifest.ocdbt" in message and "delete the directory to start over" in message
  assert sorted(os.listdir(directory)) == ["2", "4"]  # nothing moved when nothing restores
  checkpoints.close()




def _fit(config, directory):
  loss_fn = lambda params, frozen, batch: (jnp.sum((params["w"] * batch["x"][0] - 1.0) ** 2), {})
  return train.fit(config, str(directory), loss_fn=loss_fn, init=lambda key: {"w": jnp.full((3,), 0.1)}, frozen={},
                   data=FixedBatches(), mesh=parallel.make_mesh(1), seed=0)


def test_fit_resumes_from_the_previous_checkpoint_when_the_latest_is_corrupt(tmp_path):
  changes = {"optim.schedule": "constant", "optim.epochs": 3, "train.checkpoint_every": 2, "train.log_every": 1,
             "train.keep_checkpoints": 3}
  full, _ = _fit(smoke_config(**changes), tmp_path / "full")
  with pytest.raises(SystemExit, match="stopped after step 4"):
    _fit(smoke_config(**changes, **{"train.stop_after": 4}), tmp_path / "cut")
  _corrupt(str(tmp_path / "cut" / "checkpoints" / "4"))
  resumed, steps = _fit(smoke_config(**changes), tmp_path / "cut")  # restarts from step 2, not from scratch
  assert steps == 6
  np.testing.assert_array_equal(np.asarray(resumed["w"]), np.asarray(full["w"]))
  assert any(name.startswith("bad-4-") for name in os.listdir(tmp_path / "cut" / "checkpoints"))


def test_metrics_have_no_duplicate_steps_after_a_fallback_resume(tmp_path):
  changes = {"optim.schedule": "constant", "optim.epochs": 3, "train.checkpoint_every": 2, "train.log_every": 1,
             "train.keep_checkpoints": 3}
  with pytest.raises(SystemExit):
    _fit(smoke_config(**changes, **{"train.stop_after": 5}), tmp_path)  # metrics to step 5, checkpoints 2, 4, 5
  _corrupt(str(tmp_path / "checkpoints" / "5"))
  _corrupt(str(tmp_path / "checkpoints" / "4"))
  _fit(smoke_config(**changes), tmp_path)  # resumes at step 2
  steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps == [1, 2, 3, 4, 5, 6]


# --- atomic files -------------------------------------------------------------------------------------------------
def test_interrupted_writes_leave_the_old_file_and_no_partial(tmp_path, monkeypatch):
  target = tmp_path / "results.json"
  workdir.write_json_atomic(target, {"metrics": {"accuracy": 1.0}})
  before = target.read_bytes()

  def interrupted(fd):
    raise KeyboardInterrupt  # Ctrl-C after the bytes went out, before the rename
  monkeypatch.setattr(os, "fsync", interrupted)
  with pytest.raises(KeyboardInterrupt):
    workdir.write_json_atomic(target, {"metrics": {"accuracy": 2.0}})
  monkeypatch.undo()
  assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["results.json"]
  # A value that fails half-way through the archive: the old export stays, nothing else appears.
  checkpoint.export_prompts(str(tmp_path), {"ctx": np.ones((2, 4), np.float32)}, {"method": "coop"})
  export = (tmp_path / "prompts.npz").read_bytes()
  with pytest.raises(Exception):
    workdir.write_npz_atomic(tmp_path / "prompts.npz", {"ctx": np.zeros(3), "bad": np.array([lambda: 0])})
  assert (tmp_path / "prompts.npz").read_bytes() == export
  assert sorted(os.listdir(tmp_path)) == ["prompts.json", "prompts.npz", "results.json"]
  trainable, metadata = checkpoint.load_prompts(str(tmp_path / "prompts.npz"))
  np.testing.assert_array_equal(trainable["ctx"], np.ones((2, 4)))
  assert metadata == {"method": "coop"}


def test_rewind_metrics_drops_steps_after_the_restored_one_and_a_torn_line(tmp_path):
  lines = [json.dumps({"step": step, "loss": 1.0 / step}) for step in range(1, 7)]
  (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 7, "lo')
  assert workdir.rewind_metrics(tmp_path, 4) == 3
  assert (tmp_path / "metrics.jsonl").read_text() == "\n".join(lines[:4]) + "\n"
  assert workdir.rewind_metrics(tmp_path, 4) == 0
  assert workdir.rewind_metrics(tmp_path, 0) == 4 and (tmp_path / "metrics.jsonl").read_text() == ""
  assert workdir.rewind_metrics(tmp_path / "nothing_here", 3) == 0


def test_is_finished_needs_a_whole_results_record(tmp_path):
  from jaxprompt.report import run_files
  record = run_files.results_record(kind="single", run=dict(method="coop", dataset="dtd", shots=16, seed=1,
                                                            protocol="all", backbone="b", options={}),
                                    metrics={"accuracy": 50.0}, trainable_params=8, time_s=1.0)
  assert not workdir.is_finished(tmp_path)
  text = json.dumps(record, indent=2)
  (tmp_path / "results.json").write_text(text[:len(text) // 2])  # truncated
  assert not workdir.is_finished(tmp_path)
  (tmp_path / "results.json").write_text("{}")
  assert not workdir.is_finished(tmp_path)
  (tmp_path / "results.json").write_text(json.dumps({**record, "schema": 0}))
  assert not workdir.is_finished(tmp_path)
  workdir.write_json_atomic(tmp_path / "results.json", record)
  assert workdir.is_finished(tmp_path)
