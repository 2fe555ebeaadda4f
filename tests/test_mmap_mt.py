"""The multi-task models (jaxprompt.methods.mmap_mt): tree layouts and init folding, parameter counts per mode,
gradient routing by task and group, task views, the probe model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprompt import methods
from jaxprompt.methods import mmap, mmap_mt
from tests.conftest import method_config

# Three tasks with their own class lists (sizes 3, 2, 3) and templates.
TASK_CLASSES = [["cat", "dog", "red_circle"], ["big car", "dog"], ["tree", "house", "cat"]]
TASK_TEMPLATES = [["a photo of a {}."], ["a sketch of a {}.", "a photo of a {}."], ["a photo of the {}."]]
PARTITION = [[0, 2], [1]]


def build(backbone, mode, name="coop", partition=None):
  """The model of `mode` over the three tasks; the run's block leaves `templates` empty (the tasks' own)."""
  config = method_config(name, templates=[], **{"coop.n_ctx": 2})
  return mmap_mt.build(mode, config, backbone, TASK_CLASSES, TASK_TEMPLATES, partition)


@pytest.fixture(scope="module")
def batches():
  rng = np.random.default_rng(0)
  return [(jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32), jnp.array([0, 1])) for _ in TASK_CLASSES]


def leaves_equal(a, b):
  return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and all(
      np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_modes_and_their_errors(tiny_backbone):
  assert set(mmap_mt.MODES) == {"mmap_mt", "mt", "st", "zeroshot"}
  with pytest.raises(ValueError, match="config.multitask.mode='joint'"):
    build(tiny_backbone, "joint")
  with pytest.raises(ValueError, match="partition"):
    build(tiny_backbone, "mmap_mt", "mmap")
  with pytest.raises(ValueError, match=r"tasks \[1\]"):
    build(tiny_backbone, "mmap_mt", "mmap", partition=[[0, 2]])


def test_mt_is_one_prompt_set_and_st_one_per_task(tiny_backbone):
  """Parameter counts: mode mt trains exactly one CoOp, st one per task (a per-task mt would fail the first)."""
  coop = methods.build("coop", method_config(**{"coop.n_ctx": 2}), tiny_backbone, TASK_CLASSES[0])
  coop = coop.num_trainable()
  assert coop == 2 * 32
  shared, separate = build(tiny_backbone, "mt"), build(tiny_backbone, "st")
  assert shared.num_trainable() == coop
  assert separate.num_trainable() == len(TASK_CLASSES) * coop
  zeroshot = build(tiny_backbone, "zeroshot")
  assert zeroshot.num_trainable() == 0 and zeroshot.init(jax.random.key(0)) == {}
  # Layouts and init folding (checkpoints depend on them).
  rng = jax.random.key(7)
  assert leaves_equal(shared.init(rng), shared.methods[0].init(rng))
  tree = separate.init(rng)
  assert set(tree) == {"task0", "task1", "task2"}
  for t, method in enumerate(separate.methods):
    assert leaves_equal(tree[f"task{t}"], method.init(jax.random.fold_in(rng, t)))
  assert [m.classnames for m in separate.methods] == TASK_CLASSES
  assert list(separate.methods[1].config.templates) == TASK_TEMPLATES[1][:1]  # the task's own templates


def test_mmap_mt_tree_layout_and_concat_of_group_and_task(tiny_backbone):
  model = build(tiny_backbone, "mmap_mt", "mmap", partition=PARTITION)
  assert model.name == "multitask-mmap_mt" and model.num_tasks == 3
  rng = jax.random.key(3)
  tree = model.init(rng)
  assert set(tree) == {"shared", "specific"}
  assert set(tree["shared"]) == {"group0", "group1"} and set(tree["specific"]) == {"task0", "task1", "task2"}
  single = mmap.MmAP(method_config("mmap"), tiny_backbone, TASK_CLASSES[0])
  for g in range(2):
    assert leaves_equal(tree["shared"][f"group{g}"], single.init(jax.random.fold_in(rng, g)))
  for t in range(3):
    assert leaves_equal(tree["specific"][f"task{t}"], single.init(jax.random.fold_in(rng, 1000 + t)))
  assert model.num_trainable() == 5 * single.num_trainable()
  # Task 2 (group 0): [shared group0; specific task2] per layer, b = 4 tokens each.
  text, vision = model.task_prompts(tree, 2)
  shared_text, shared_vision = mmap.generate_prompts(tree["shared"]["group0"])
  specific_text, _ = mmap.generate_prompts(tree["specific"]["task2"])
  np.testing.assert_array_equal(text[:, :4], shared_text)
  np.testing.assert_array_equal(text[:, 4:], specific_text)
  np.testing.assert_array_equal(vision[:, :4], shared_vision)


@pytest.mark.parametrize("mode, name", [("mmap_mt", "mmap"), ("st", "coop")])
def test_a_task_loss_reaches_only_its_own_leaves(tiny_backbone, batches, mode, name):
  model = build(tiny_backbone, mode, name, partition=PARTITION if mode == "mmap_mt" else None)
  trainable = model.init(jax.random.key(0))
  frozen = tiny_backbone.params
  loss = lambda tree, t: model.loss(tree, frozen, t, *batches[t])[0]
  grads = jax.jit(lambda tree: [jax.grad(loss)(tree, t) for t in range(3)])(trainable)
  for t in range(3):
    own = grads[t]["specific"] if mode == "mmap_mt" else grads[t]
    for u in range(3):
      assert (float(optax.tree.norm(own[f"task{u}"])) > 0) == (t == u), (t, u)
    if mode == "mmap_mt":
      group = next(g for g, members in enumerate(PARTITION) if t in members)
      for g in range(2):
        assert (float(optax.tree.norm(grads[t]["shared"][f"group{g}"])) > 0) == (g == group), (t, g)


@pytest.mark.parametrize("mode, name", [("mmap_mt", "mmap"), ("mt", "coop"), ("zeroshot", "coop")])
def test_view_is_the_task_and_has_its_classes(tiny_backbone, batches, mode, name):
  model = build(tiny_backbone, mode, name, partition=PARTITION if mode == "mmap_mt" else None)
  trainable = jax.tree_util.tree_map(lambda x: x + 0.1, model.init(jax.random.key(0)))
  frozen = tiny_backbone.params
  for t in (0, 1):
    view = model.view(t)
    assert view.clip is model.clip and view.classnames == TASK_CLASSES[t]
    images = batches[t][0]
    got = jax.jit(view.logits)(trainable, frozen, images)
    assert got.shape == (2, len(TASK_CLASSES[t]))
    np.testing.assert_array_equal(got, jax.jit(lambda tr, f, x, t=t: model.logits(tr, f, t, x))(trainable, frozen,
                                                                                                 images))


def test_zeroshot_mode_is_zero_shot_clip_with_each_tasks_templates(tiny_backbone, batches):
  model = build(tiny_backbone, "zeroshot", "coop")
  images = batches[1][0]
  zeroshot = methods.build("zeroshot", method_config(templates=TASK_TEMPLATES[1][:1]), tiny_backbone,
                           TASK_CLASSES[1])
  np.testing.assert_allclose(model.logits({}, tiny_backbone.params, 1, images),
                             zeroshot.logits({}, tiny_backbone.params, images), rtol=1e-6)


def test_probe_model_is_one_global_mmap_whatever_the_method_name(tiny_backbone):
  config = method_config("coop", templates=[])
  probe = mmap_mt.probe_model(config, tiny_backbone, TASK_CLASSES, TASK_TEMPLATES)
  assert config.name == "coop"  # the run's block is not rewritten
  assert all(isinstance(m, mmap.MmAP) and m.slots == config.mmap.b for m in probe.methods)
  rng = jax.random.key(1)
  assert leaves_equal(probe.init(rng), probe.methods[0].init(rng))
  assert probe.num_trainable() == probe.methods[0].num_trainable()
