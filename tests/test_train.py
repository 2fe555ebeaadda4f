"""The trainer end to end on a tiny random CLIP and the generated shapes world: files, resume, devices, errors."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprompt import checkpoint, parallel, train
from jaxprompt.trainers import evaluation
from jaxprompt.config import base_config
from tests.conftest import FixedBatches, smoke_config


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
  """One warm-up epoch at a sane lr (checkpoints 1 and 2), then lr=1e30: the run stops at step 3 naming step 2."""
  config = smoke_config(**{"optim.lr": 1e30, "optim.warmup_epochs": 1, "train.checkpoint_every": 1,
                           "train.log_every": 1})
  with pytest.raises(train.NonFiniteError, match=r"diverged at step 3 \(.*\); last good checkpoint: .*checkpoints") \
      as error:
    train.run(config, str(tmp_path / "nan"))
  named = str(error.value).rsplit("last good checkpoint: ", 1)[1]
  assert named.endswith(os.path.join("checkpoints", "2")) and os.path.isdir(named)
  assert not os.path.exists(tmp_path / "nan" / "results.json")




def test_divergence_with_a_finite_loss_stops_naming_a_finalised_checkpoint(tmp_path):
  """lr=1e30 on a bounded loss: the loss stays finite while the trainable tree overflows; the run must stop."""
  config = smoke_config(**{"optim.lr": 1e30, "optim.warmup_epochs": 0, "optim.schedule": "constant",
                           "train.checkpoint_every": 1, "train.log_every": 1, "optim.epochs": 3})
  loss_fn = lambda params, frozen, batch: (jnp.tanh(jnp.sum(params["w"] * batch["x"][0])), {})
  workdir = tmp_path / "diverged"
  with pytest.raises(train.NonFiniteError, match="trainable_norm=inf") as error:
    train.fit(config, str(workdir), loss_fn=loss_fn, init=lambda key: {"w": jnp.full((3,), 0.1)}, frozen={},
              data=FixedBatches(), mesh=parallel.make_mesh(1), seed=0)
  named = str(error.value).rsplit("last good checkpoint: ", 1)[1]
  assert named == "none saved yet" or os.path.isdir(named)
  assert not (workdir / "prompts.npz").exists()


def _snapshot(workdir):
  """Every file under `workdir` (relative path -> bytes), to prove a step wrote nothing there."""
  files = {}
  for folder, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, workdir)] = f.read()
  return files


def test_eval_mode_never_writes_into_training_and_reads_exports_or_checkpoints(tmp_path):
  workdir = str(tmp_path / "run")
  trained = train.run(smoke_config(), workdir)
  before = _snapshot(workdir)
  evaluated = evaluation.run(smoke_config(eval_only=True), workdir)
  assert evaluated["metrics"] == trained["metrics"] and evaluated["steps"] is None
  assert evaluated["evaluated"] == "prompts"
  after = _snapshot(workdir)
  new = sorted(set(after) - set(before))
  assert {k: v for k, v in after.items() if k in before} == before  # nothing of the training run changed
  assert all(path.startswith(os.path.join("eval", "world_shapes-all-prompts")) for path in new), new
  assert json.load(open(os.path.join(workdir, "eval", "world_shapes-all-prompts", "results.json")))["metrics"] == \
      trained["metrics"]
  # The last checkpoint is the finished run's tree: the same numbers; a missing step is named.
  from_checkpoint = evaluation.run(smoke_config(eval_only=True, eval_checkpoint="latest"), workdir)
  assert from_checkpoint["metrics"] == trained["metrics"] and from_checkpoint["evaluated"] == f"step{trained['steps']}"
  with pytest.raises(FileNotFoundError, match="no checkpoint '99'"):
    evaluation.run(smoke_config(eval_only=True, eval_checkpoint="99"), workdir)
  # Another output directory: the workdir gets nothing at all (so it may be read-only).
  before = _snapshot(workdir)
  elsewhere = evaluation.run(smoke_config(eval_only=True, eval_dir=str(tmp_path / "out")), workdir)
  assert _snapshot(workdir) == before and os.path.exists(tmp_path / "out" / "results.json")
  assert elsewhere["metrics"] == trained["metrics"]
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    evaluation.run(smoke_config(eval_only=True, eval_prompts=str(tmp_path / "missing.npz")), str(tmp_path / "other"))


def test_an_interrupted_run_evaluates_from_its_checkpoint(tmp_path):
  workdir = str(tmp_path / "stopped")
  with pytest.raises(SystemExit):
    train.run(smoke_config(**{"train.stop_after": 2, "train.checkpoint_every": 1}), workdir)
  assert not os.path.exists(os.path.join(workdir, "prompts.npz"))
  results = evaluation.run(smoke_config(eval_only=True, eval_checkpoint="latest"), workdir)
  assert results["evaluated"] == "step2" and 0 <= results["metrics"]["accuracy"] <= 100


def test_learning_rate_schedule_matches_protocol():
  config = base_config().optim
  config.lr, config.epochs = 0.0035, 5
  schedule = train.learning_rate_schedule(config, steps_per_epoch=3, total_steps=15)
  per_epoch = [float(schedule(3 * e + 1)) for e in range(5)]
  np.testing.assert_allclose(per_epoch, [1e-5, 0.0035, 0.003166, 0.002291, 0.001209], rtol=2e-4)


@pytest.mark.parametrize("args,expected", [
    (["configs/smoke.py:backbone=tiny-random", "--config.optim.lrr=1"],
     'unknown config key --config.optim.lrr (did you mean "lr"?)'),
    (["configs/smoke.py:methd=coop"], "unknown config argument 'methd'"),
    (["configs/smoke.py:shots=4.5"], "config argument shots='4.5' must be an integer"),
    (["configs/coop.py:dataset=dtd"], "data source 'dtd' reads files from disk: set its root"),
    (["configs/coop.py:dataset=world_shapes"], "backbone 'openai/clip-vit-base-patch16' is not in the local Hugging "
                                               "Face cache and HF_HUB_OFFLINE is set: use backbone=embedded"),
])
def test_user_errors_are_one_line_and_exit_non_zero(tmp_path, args, expected):
  """Bad keys, values, missing data and an unreachable hub (HF_HUB_OFFLINE: no network is touched) print one line."""
  command = [sys.executable, "-m", "jaxprompt.main", "--config", args[0], *args[1:], "--workdir", str(tmp_path / "w")]
  env = {**os.environ, "HF_HUB_OFFLINE": "1"}
  env.pop("JAXPROMPT_DEBUG", None)
  result = subprocess.run(command, capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 2, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(lines) == 1 and expected in lines[0], result.stderr
  assert "Traceback" not in result.stderr


def test_debug_mode_shows_the_traceback(tmp_path):
  command = [sys.executable, "-m", "jaxprompt.main", "--config", "configs/coop.py:dataset=dtd", "--workdir",
             str(tmp_path / "w")]
  result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "JAXPROMPT_DEBUG": "1"},
                          cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode != 0 and "Traceback" in result.stderr and "reads files from disk" in result.stderr


def test_base_to_novel_and_target_datasets_are_evaluated(tmp_path):
  """base2novel reports base, novel and their harmonic mean; each target dataset its own accuracy (own classes)."""
  config = smoke_config(**{"data.protocol": "base2novel", "data.targets": ("world_colours",)})
  results = train.run(config, str(tmp_path / "b2n"))
  metrics = results["metrics"]
  assert set(metrics) == {"base", "novel", "hm", "target/world_colours"}
  assert metrics["hm"] == pytest.approx(2 * metrics["base"] * metrics["novel"] / (metrics["base"] + metrics["novel"]))
  prompts = json.load(open(tmp_path / "b2n" / "prompts.json"))
  assert prompts["classnames"] == ["circle", "square", "triangle", "star"]  # trained on the base half only
