"""LAMM on CLIP, CoOp, MaPLe (docs/methods/lamm.md): label leaves, exactness at init, placement, the loss terms,
class subsets, and classes it never trained."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprompt import methods
from tests.conftest import method_config as config
from tests.conftest import token_rows

NAMES = ["cat", "dog", "red_circle", "big car"]
LABELS = jnp.array([0, 1, 2, 3, 0, 2])


def shapes(tree):
  return jax.tree_util.tree_map(lambda x: tuple(x.shape), tree)


def zeroshot_features(backbone, template, names):
  """Plain CLIP text features of template.format(name) over the full (untrimmed) context."""
  tokens = backbone.tokenizer.prompts(template, [n.replace("_", " ") for n in names])
  return backbone.model().text_features(backbone.params, tokens.ids)


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(1), (6, 32, 32, 3))


@pytest.fixture(scope="module")
def on_clip(tiny_backbone):
  return methods.build("lamm", config(), tiny_backbone, NAMES)


def test_labels_leaf_init_and_merge_with_the_base(tiny_backbone, on_clip):
  trainable = on_clip.init(jax.random.key(0))
  assert shapes(trainable) == {"labels": (4, 1, 32)}   # M = min name length ("cat" = 1 token)
  expected = np.stack([token_rows(tiny_backbone, n)[:1] for n in ["cat", "dog", "red", "big"]])
  np.testing.assert_array_equal(trainable["labels"], expected)
  np.testing.assert_array_equal(on_clip.labels0, expected)
  two = methods.build("lamm", config(**{"lamm.tokens_per_label": 2}), tiny_backbone, ["red_circle", "big car"])
  assert shapes(two.init(jax.random.key(0))) == {"labels": (2, 2, 32)}
  with pytest.raises(ValueError, match="'cat' has 1 name tokens"):
    methods.build("lamm", config(**{"lamm.tokens_per_label": 2}), tiny_backbone, NAMES)
  coop = methods.build("lamm", config(**{"lamm.base": "coop", "coop.ctx_init": "a photo of a"}), tiny_backbone,
                       NAMES)
  assert shapes(coop.init(jax.random.key(0))) == {"ctx": (4, 32), "labels": (4, 1, 32)}
  maple = methods.build("lamm", config(**{"lamm.base": "maple"}), tiny_backbone, NAMES)
  assert set(maple.init(jax.random.key(0))) == {"ctx", "deep_text", "proj", "deep_proj", "labels"}
  random = methods.build("lamm", config(**{"lamm.init": "random"}), tiny_backbone, NAMES)
  labels = random.init(jax.random.key(5))["labels"]
  np.testing.assert_array_equal(labels, random.labels0)
  assert 0.01 < float(jnp.std(labels)) < 0.03
  with pytest.raises(ValueError, match="PromptedMethod"):
    methods.build("lamm", config(**{"lamm.base": "cocoop"}), tiny_backbone, NAMES)


def test_lamm_on_clip_at_init_is_zeroshot(tiny_backbone, on_clip, images):
  zeroshot = methods.build("zeroshot", config(templates=["a photo of a {}."]), tiny_backbone, NAMES)
  params = tiny_backbone.params
  trainable = on_clip.init(jax.random.key(0))
  np.testing.assert_allclose(jax.jit(on_clip.logits)(trainable, params, images),
                             jax.jit(zeroshot.logits)({}, params, images), rtol=1e-5, atol=1e-4)
  loss, metrics = jax.jit(on_clip.loss)(trainable, params, images, LABELS)
  assert float(metrics["loss_wc"]) == 0 and abs(float(metrics["loss_cos"])) < 1e-6


def test_labels_replace_the_first_name_tokens(tiny_backbone, on_clip):
  """labels['red circle'] = embedding('blue') gives exactly the features of 'a photo of a blue circle.'."""
  trainable = on_clip.init(jax.random.key(0))
  trainable["labels"] = trainable["labels"].at[2].set(token_rows(tiny_backbone, "blue"))
  features = jax.jit(on_clip.label_features)(trainable, tiny_backbone.params)
  expected = zeroshot_features(tiny_backbone, "a photo of a {}.", ["cat", "dog", "blue circle", "big car"])
  np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


def test_maple_after_ctx_placement_writes_the_slot_after_the_context(tiny_backbone):
  method = methods.build("lamm", config(**{"lamm.base": "maple", "lamm.maple_placement": "after_ctx"}),
                         tiny_backbone, NAMES)
  np.testing.assert_array_equal(method.label_positions, np.full((4, 1), 3))   # "a photo | of | a name."
  trainable = method.init(jax.random.key(0))
  trainable["labels"] = jnp.broadcast_to(jnp.asarray(token_rows(tiny_backbone, "of")), (4, 1, 32))
  params = tiny_backbone.params
  np.testing.assert_allclose(jax.jit(method.label_features)(trainable, params),
                             jax.jit(method.reference_features)(trainable, params), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="MaPLe|maple"):
    methods.build("lamm", config(**{"lamm.maple_placement": "after_ctx"}), tiny_backbone, NAMES)


def test_loss_terms_follow_the_spec(tiny_backbone, on_clip, images):
  params = tiny_backbone.params
  trainable = on_clip.init(jax.random.key(0))
  trainable["labels"] = trainable["labels"] + 0.3 * jax.random.normal(jax.random.key(2), (4, 1, 32))
  loss_fn = jax.jit(on_clip.loss)
  loss, metrics = loss_fn(trainable, params, images, LABELS)
  assert set(metrics) >= {"loss_ce", "loss_wc", "loss_cos", "loss_kd", "accuracy"}
  scale = on_clip.clip.logit_scale(params)
  norm = lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  v = norm(jax.jit(on_clip.clip.image_features)(params, images))
  f, f0 = norm(jax.jit(on_clip.label_features)(trainable, params)), norm(jnp.asarray(on_clip.cached_f0))
  z, z0 = scale * v @ f.T, scale * v @ f0.T
  kd = 4.0 * jnp.mean(jnp.sum(jax.nn.softmax(z / 2) * -jax.nn.log_softmax(z0 / 2), axis=-1))
  cos = jnp.mean(1 - jnp.sum(f[LABELS] * f0[LABELS], axis=-1))
  wc = jnp.sum((trainable["labels"] - on_clip.labels0) ** 2)
  ce = optax.softmax_cross_entropy_with_integer_labels(z, LABELS).mean()
  for key, value in (("loss_kd", kd), ("loss_cos", cos), ("loss_wc", wc), ("loss_ce", ce)):
    np.testing.assert_allclose(metrics[key], value, rtol=1e-4, err_msg=key)
  np.testing.assert_allclose(loss, ce + wc + cos + 0.05 * kd, rtol=1e-5)
  assert float(cos) > 1e-4
  # Every label the same: no sample is kept, L_cos is 0.
  _, same = loss_fn(trainable, params, images, jnp.full((6,), 2))
  assert float(same["loss_cos"]) == 0.0


def test_w_wc_one_over_shots(tiny_backbone):
  method = methods.build("lamm", config(**{"lamm.w_wc": "1/shots", "lamm.shots": 4}), tiny_backbone, NAMES)
  assert method.weight_wc == 0.25
  with pytest.raises(ValueError, match="shots"):
    methods.build("lamm", config(**{"lamm.w_wc": "1/shots"}), tiny_backbone, NAMES)


def test_class_subsets_train_only_their_rows(tiny_backbone, on_clip, images):
  params = tiny_backbone.params
  trainable = on_clip.init(jax.random.key(0))
  trainable["labels"] = trainable["labels"] + 0.1   # earlier tasks moved every row
  task = on_clip.for_rows([3, 1])
  assert task.classnames == ["big car", "dog"] and task.for_classes(["dog"]).classnames == ["dog"]
  np.testing.assert_allclose(jax.jit(task.logits)(trainable, params, images),
                             jax.jit(on_clip.logits)(trainable, params, images)[:, [3, 1]], rtol=1e-5, atol=1e-4)
  grads = jax.jit(jax.grad(lambda t: task.loss(t, params, images, jnp.array([0, 1, 1, 0, 0, 1]))[0]))(trainable)
  row_norms = np.abs(np.asarray(grads["labels"])).sum(axis=(1, 2))
  assert row_norms[0] == 0 and row_norms[2] == 0 and row_norms[1] > 0 and row_norms[3] > 0
  # The union of seen classes (continual) is for_classes over names of the table: the same rows.
  union = on_clip.for_classes(["big car", "dog"])
  np.testing.assert_array_equal(union.rows, task.rows)
  np.testing.assert_array_equal(jax.jit(union.logits)(trainable, params, images),
                                jax.jit(task.logits)(trainable, params, images))


@pytest.mark.parametrize("base", ["none", "coop"])
def test_classes_it_never_trained_read_no_other_row(tiny_backbone, images, base):
  """Trained on [cat, dog], scored on [dog, tree]: dog keeps its learnt row; tree (no row) is zero-shot LAMM, i.e.
  its name prompt with the base's current context, exactly what an untrained LAMM over [dog, tree] gives it."""
  overrides = {"lamm.base": base, "coop.ctx_init": "a photo of a"}
  trained = methods.build("lamm", config(**overrides), tiny_backbone, ["cat", "dog"])
  params = tiny_backbone.params
  trainable = trained.init(jax.random.key(0))
  trainable = jax.tree_util.tree_map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(4), x.shape), trainable)
  view = trained.for_classes(["dog", "tree"])
  np.testing.assert_array_equal(view.rows, [1, -1])
  got = jax.jit(view.logits)(trainable, params, images)
  assert got.shape == (6, 2)
  np.testing.assert_allclose(got[:, 0], jax.jit(trained.logits)(trainable, params, images)[:, 1],
                             rtol=1e-6, atol=1e-5)
  fresh = methods.build("lamm", config(**overrides), tiny_backbone, ["dog", "tree"])
  untrained = dict(trainable, labels=fresh.init(jax.random.key(0))["labels"])  # same base context, fresh labels
  fresh_logits = jax.jit(fresh.logits)(untrained, params, images)
  np.testing.assert_allclose(got[:, 1], fresh_logits[:, 1], rtol=1e-6, atol=1e-5)
  assert np.abs(np.asarray(got[:, 0] - fresh_logits[:, 0])).max() > 1e-3  # dog's learnt row does matter
  # The loss over such a view runs; L_wc covers the trained rows only, and tree's column gives no label gradient.
  loss, metrics = jax.jit(view.loss)(trainable, params, images, jnp.array([0, 1, 1, 0, 0, 1]))
  np.testing.assert_allclose(metrics["loss_wc"], np.sum((trainable["labels"][1] - trained.labels0[1]) ** 2),
                             rtol=1e-5)
  assert np.isfinite(float(loss))


def test_unseen_names_shorter_than_the_label_need_no_row(tiny_backbone, images):
  """M = 2 tokens per label over two-word names; a one-token unseen name is scored, not rejected."""
  trained = methods.build("lamm", config(**{"lamm.tokens_per_label": 2}), tiny_backbone, ["red_circle", "big car"])
  view = trained.for_classes(["cat", "big car"])
  zeroshot = methods.build("zeroshot", config(templates=["a photo of a {}."]), tiny_backbone, ["cat", "big car"])
  params = tiny_backbone.params
  np.testing.assert_allclose(jax.jit(view.logits)(trained.init(jax.random.key(0)), params, images),
                             jax.jit(zeroshot.logits)({}, params, images), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("base", ["none", "coop", "maple"])
def test_gradients_reach_only_the_trainable_tree_and_a_few_steps_learn(tiny_backbone, images, base):
  method = methods.build("lamm", config(**{"lamm.base": base, "coop.ctx_init": "a photo of a"}), tiny_backbone,
                         NAMES)
  params = tiny_backbone.params
  trainable = method.init(jax.random.key(0))
  jaxpr = jax.make_jaxpr(method.loss)(trainable, params, images, LABELS)
  assert sum(np.size(c) for c in jaxpr.consts) < 0.02 * tiny_backbone.num_params()
  value_and_grad = jax.jit(jax.value_and_grad(lambda t: method.loss(t, params, images, LABELS)[0]))
  # (LAMM on CLIP / CoOp read image features through `frozen_image_features`, pinned by the CoOp test.)
  optimizer = optax.adam(0.05)
  state = optimizer.init(trainable)
  losses = []
  for _ in range(6):
    loss, grads = value_and_grad(trainable)
    updates, state = optimizer.update(grads, state)
    trainable = optax.apply_updates(trainable, updates)
    losses.append(float(loss))
  assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.02, losses
