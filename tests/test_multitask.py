"""The multi-task run kind (docs/methods/mmap.md): grouping search, per-task gradient routing, the probe, forced partitions, resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprompt import checkpoint, config as multitask_config, methods, parallel, train
from jaxprompt.data.registry import build_source
from jaxprompt.trainers import grouping, multitask

WORLD = "dataset=world,backbone=tiny-random,smoke=True"


def world_config(**changes):
  config = multitask_config.multitask_config(WORLD, dataset="office_home", domains=())
  config.multitask.probe_steps = 1
  config.train.max_steps = 4
  config.train.checkpoint_every = 2
  config.data.options.test_per_class = 2
  config.update_from_flattened_dict(changes)
  return config


def world_tasks():
  return [multitask.Task(name.split("/")[-1], build_source(name)) for name in multitask_config.WORLD_TASKS]


def test_gradients_are_routed_by_task_and_group(tiny_backbone):
  config = world_config()
  model = multitask.build_model("mmap_mt", config, tiny_backbone, world_tasks(), [[0, 1], [2, 3]])
  trainable = model.init(jax.random.key(0))
  frozen = tiny_backbone.params
  rng = np.random.default_rng(0)
  batches = {f"task{t}": {"images": rng.normal(size=(2, 32, 32, 3)).astype(np.float32),
                          "labels": np.array([t, t + 1], np.int32)} for t in range(4)}
  loss = lambda p, t: model.loss(p, frozen, t, batches[f"task{t}"]["images"], batches[f"task{t}"]["labels"])[0]
  grads = jax.jit(lambda p: [jax.grad(loss)(p, t) for t in range(4)])(trainable)  # one compile for all four
  for t in range(4):  # a task's loss reaches its own specific MmAP and its group's shared one only
    for u in range(4):
      norm = optax.tree.norm(grads[t]["specific"][f"task{u}"])
      assert (norm > 0) == (t == u), (t, u)
    assert float(optax.tree.norm(grads[t]["shared"][f"group{1 - t // 2}"])) == 0.0

  mesh = parallel.make_mesh(1)
  optimizer = optax.sgd(0.1)
  step = train.make_train_step(multitask.multitask_loss(model), optimizer, optax.constant_schedule(0.1), mesh)
  copy = lambda tree: jax.tree_util.tree_map(jnp.array, tree)
  first, *_ = step(copy(trainable), optimizer.init(trainable), frozen, batches, np.int32(0))
  changed = dict(batches, task1={"images": -batches["task1"]["images"], "labels": batches["task1"]["labels"]})
  second, *_ = step(copy(trainable), optimizer.init(trainable), frozen, changed, np.int32(0))
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                               jax.tree_util.tree_leaves(b)))
  assert same(first["specific"]["task0"], second["specific"]["task0"])  # another task's batch leaves it unchanged
  assert same(first["shared"]["group1"], second["shared"]["group1"])
  assert not same(first["specific"]["task1"], second["specific"]["task1"])
  # The shared MmAP's update is the sum of its group's task gradients (plain SGD: update = -lr * gradient).
  want = jax.tree_util.tree_map(lambda p, a, b: p - 0.1 * (a + b), trainable["shared"]["group0"],
                                grads[0]["shared"]["group0"], grads[1]["shared"]["group0"])
  for got, expected in zip(jax.tree_util.tree_leaves(first["shared"]["group0"]), jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_probe_forced_partition_and_exact_resume(tmp_path):
  probed = str(tmp_path / "probed")
  results = multitask.run(world_config(), probed)
  found = json.load(open(os.path.join(probed, "grouping.json")))
  matrix = np.asarray(found["affinity"])
  assert matrix.shape == (4, 4)
  np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
  np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)
  assert len(found["partition"]) == 2 and sorted(sum(found["partition"], [])) == [0, 1, 2, 3]
  assert os.path.exists(os.path.join(probed, "grouping.png"))
  assert results["run"]["protocol"] == "multitask"
  assert set(results["metrics"]) == {"task/photo", "task/sketch", "task/painting", "task/cartoon", "mean"}
  assert "149.6M" in open(os.path.join(probed, "results.md")).read()

  # The same partition forced in the config, interrupted after 3 steps and resumed: bit-identical prompts (the
  # probe prompts are discarded, so the main stage does not depend on how the partition was found).
  forced = str(tmp_path / "forced")
  text = grouping.format_partition(found["partition"])
  with pytest.raises(SystemExit, match="stopped after step 3"):
    multitask.run(world_config(**{"multitask.partition": text, "train.stop_after": 3}), forced)
  resumed = multitask.run(world_config(**{"multitask.partition": text}), forced)
  assert json.load(open(os.path.join(forced, "grouping.json")))["source"].startswith("config")
  assert resumed["partition"] == found["partition"]
  a = checkpoint.flatten_tree(checkpoint.load_prompts(os.path.join(probed, "prompts.npz"))[0])
  b = checkpoint.flatten_tree(checkpoint.load_prompts(os.path.join(forced, "prompts.npz"))[0])
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert resumed["metrics"] == results["metrics"]


@pytest.mark.parametrize("mode", ["mt", "st"])
def test_baselines_share_the_framework(tmp_path, tiny_backbone, mode):
  config = world_config(**{"method.name": "coop", "multitask.mode": mode, "train.max_steps": 1})
  results = multitask.run(config, str(tmp_path / mode))
  assert results["run"]["method"] == f"coop-{mode}" and results["kind"] == "multitask"
  assert set(results["metrics"]) == {"task/photo", "task/sketch", "task/painting", "task/cartoon", "mean"}
  # mt trains one CoOp prompt set shared by the four tasks, st one per task.
  one_coop = methods.build("coop", config.method, tiny_backbone, ["a", "b"]).num_trainable()
  assert results["trainable_params"] == (one_coop if mode == "mt" else 4 * one_coop)
  saved = checkpoint.load_prompts(str(tmp_path / mode / "prompts.npz"))[0]
  assert (set(saved) == {"ctx"}) if mode == "mt" else (set(saved) == {f"task{t}" for t in range(4)})


def test_interrupted_multitask_and_single_task_runs_leave_the_same_files(tmp_path):
  partition = {"multitask.partition": "0,1|2,3", "train.stop_after": 1}
  with pytest.raises(SystemExit, match="stopped after step 1"):
    multitask.run(world_config(**partition), str(tmp_path / "mt"))
  files = set(os.listdir(tmp_path / "mt"))
  assert "prompts.npz" not in files and "results.json" not in files and "checkpoints" in files
