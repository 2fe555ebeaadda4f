"""The trainer end to end on a tiny random CLIP and the generated shapes world: files, resume, devices, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxprompt import checkpoint, train
from jaxprompt.config import apply_smoke, base_config


def smoke_config(method="coop", **changes):
  config = base_config()
  config.backbone = "tiny-random"
  config.data.name = "world_shapes"
  config.method.name = method
  config.optim.lr = 0.01
  config = apply_smoke(config)
  config.update_from_flattened_dict(changes)
  return config


def _prompts(workdir):
  return checkpoint.load_prompts(os.path.join(workdir, "prompts.npz"))[0]


def _assert_trees_equal(a, b, exact=True):
  flat_a, flat_b = checkpoint.flatten_tree(a), checkpoint.flatten_tree(b)
  assert sorted(flat_a) == sorted(flat_b)
  for key in flat_a:
    if exact:
      np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=key)
    else:
      np.testing.assert_allclose(flat_a[key], flat_b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_run_writes_files_and_resume_is_exact(tmp_path):
  changes = {"train.max_steps": 6, "train.checkpoint_every": 2}
  uninterrupted = str(tmp_path / "full")
  results = train.run(smoke_config(**changes), uninterrupted)
  for name in ("config.json", "split.json", "metrics.jsonl", "results.json", "results.md", "prompts.npz",
               "prompts.json", "checkpoints"):
    assert os.path.exists(os.path.join(uninterrupted, name)), name
  assert results["steps"] == 4  # 8 classes x 2 shots = 16 images, batch 8, 2 epochs
  assert set(results["metrics"]) == {"accuracy"}
  lines = [json.loads(line) for line in open(os.path.join(uninterrupted, "metrics.jsonl"))]
  assert [line["step"] for line in lines] == [1, 2, 3, 4]
  assert lines[0]["lr"] == pytest.approx(1e-5) and lines[2]["lr"] == pytest.approx(0.01)  # warm-up epoch, then lr

  interrupted = str(tmp_path / "interrupted")
  with pytest.raises(SystemExit, match="stopped after step 3"):
    train.run(smoke_config(**changes, **{"train.stop_after": 3}), interrupted)
  train.run(smoke_config(**changes), interrupted)  # the same command again: resumes at step 3
  _assert_trees_equal(_prompts(interrupted), _prompts(uninterrupted))
  resumed_lines = [json.loads(line) for line in open(os.path.join(interrupted, "metrics.jsonl"))]
  assert [line["step"] for line in resumed_lines] == [1, 2, 3, 4]
  assert resumed_lines[3]["loss"] == lines[3]["loss"]


def test_one_device_equals_eight(tmp_path):
  import jax
  assert jax.device_count() == 8, "tests run with 8 simulated CPU devices (tests/conftest.py)"
  changes = {"train.max_steps": 2, "optim.warmup_epochs": 0}
  one = str(tmp_path / "one")
  eight = str(tmp_path / "eight")
  train.run(smoke_config(**changes, num_devices=1), one)
  train.run(smoke_config(**changes, num_devices=8), eight)
  _assert_trees_equal(_prompts(one), _prompts(eight), exact=False)
  assert not np.allclose(checkpoint.flatten_tree(_prompts(one))["ctx"], 0)


def test_non_finite_loss_stops_naming_step_and_checkpoint(tmp_path):
  config = smoke_config(**{"optim.lr": 1e30, "optim.warmup_epochs": 0, "train.checkpoint_every": 1,
                           "train.log_every": 1})
  with pytest.raises(train.NonFiniteLossError, match=r"at step \d+; last good checkpoint: .*checkpoints"):
    train.run(config, str(tmp_path / "nan"))


def test_eval_only_reads_the_prompt_export(tmp_path):
  workdir = str(tmp_path / "run")
  trained = train.run(smoke_config(), workdir)
  evaluated = train.run(smoke_config(eval_only=True), workdir)
  assert evaluated["metrics"] == trained["metrics"]
  assert evaluated["steps"] is None
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    train.run(smoke_config(eval_only=True, eval_prompts=str(tmp_path / "missing.npz")), str(tmp_path / "other"))


def test_learning_rate_schedule_matches_protocol():
  config = base_config().optim
  config.lr, config.epochs = 0.0035, 5
  schedule = train.learning_rate_schedule(config, steps_per_epoch=3, total_steps=15)
  per_epoch = [float(schedule(3 * e + 1)) for e in range(5)]
  np.testing.assert_allclose(per_epoch, [1e-5, 0.0035, 0.003166, 0.002291, 0.001209], rtol=2e-4)


def test_cli_rejects_a_misspelled_key(tmp_path):
  command = [sys.executable, "-m", "jaxprompt.main", "--config", "configs/smoke.py:backbone=tiny-random",
             "--config.optim.lrr=1", "--workdir", str(tmp_path / "w")]
  result = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode != 0
  assert "lrr" in result.stderr and 'Did you mean "lr"' in result.stderr
  command = [sys.executable, "-m", "jaxprompt.main", "--config", "configs/smoke.py:methd=coop", "--workdir",
             str(tmp_path / "w")]
  result = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode != 0 and "unknown config argument 'methd'" in result.stderr


def test_base_to_novel_and_target_datasets_are_evaluated(tmp_path):
  """base2novel reports base, novel and their harmonic mean; each target dataset its own accuracy (own classes)."""
  config = smoke_config(**{"data.protocol": "base2novel", "data.targets": ("world_colours",)})
  results = train.run(config, str(tmp_path / "b2n"))
  metrics = results["metrics"]
  assert set(metrics) == {"base", "novel", "hm", "target/world_colours"}
  assert metrics["hm"] == pytest.approx(2 * metrics["base"] * metrics["novel"] / (metrics["base"] + metrics["novel"]))
  prompts = json.load(open(tmp_path / "b2n" / "prompts.json"))
  assert prompts["classnames"] == ["circle", "square", "triangle", "star"]  # trained on the base half only
