"""Shared-prefix text encoding (methods/shared_prefix.py): the plan, and for every text-prompted method logits and
gradients equal to the plain path (`method.shared_prefix=False`), float32, 1e-5 relative."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprompt import methods
from jaxprompt.clip.model import DeepPrompts
from jaxprompt.methods import shared_prefix
from jaxprompt.methods.prompting import encode_embeddings
from tests.conftest import method_config as config

# Names from 1 to 13 tokens (10+ apart; "by" is not a word of the test vocabulary: 2 tokens), two sharing their
# first word.
NAMES = ["cat", "dog", "red circle", "red square", "big car",
         "a big red car or a small blue airplane by the river"]


def assert_close(fast, plain, what, floor=1e-30):
  """Equal to 1e-5 of the largest |plain| entry (at least `floor`: loss terms near 0 are compared absolutely)."""
  fast, plain = np.asarray(fast, np.float64), np.asarray(plain, np.float64)
  scale = max(float(np.max(np.abs(plain))), floor)
  np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(1), (2, 32, 32, 3))


def logits_and_grads(method, trainable, params, images):
  """Logits (B, C) and the gradient of a fixed random weighting of them w.r.t. the trainable tree."""
  weights = jax.random.normal(jax.random.key(7), (images.shape[0], len(method.classnames)))

  def weighted(tree):
    logits = method.logits(tree, params, images)
    return jnp.sum(logits * weights), logits

  (_, logits), grads = jax.jit(jax.value_and_grad(weighted, has_aux=True))(trainable)
  return logits, grads


def check_method(backbone, images, name, overrides, *, expect_prefix, names=NAMES):
  """Builds `name` with the shared prefix on and off; equal logits and gradients; returns (fast method, plan)."""
  fast = methods.build(name, config(name, **overrides), backbone, names)
  plain = methods.build(name, config(name, shared_prefix=False, **overrides), backbone, names)
  trainable = fast.init(jax.random.key(0))
  fast_logits, fast_grads = logits_and_grads(fast, trainable, backbone.params, images)
  plain_logits, plain_grads = logits_and_grads(plain, trainable, backbone.params, images)
  assert_close(fast_logits, plain_logits, f"{name} logits")
  assert jax.tree_util.tree_structure(fast_grads) == jax.tree_util.tree_structure(plain_grads)
  for (path, g_fast), g_plain in zip(jax.tree_util.tree_leaves_with_path(fast_grads),
                                     jax.tree_util.tree_leaves(plain_grads)):
    assert_close(g_fast, g_plain, f"{name} gradient {jax.tree_util.keystr(path)}")
  text_leaf = "ctx" if "ctx" in plain_grads else sorted(plain_grads)[0]
  assert float(jnp.max(jnp.abs(jax.tree_util.tree_leaves(plain_grads[text_leaf])[0]))) > 0  # a real gradient
  plan = plan_of(fast, trainable)
  assert (plan is not None) == expect_prefix, (name, overrides, plan)
  return fast, plan


def plan_of(method, trainable):
  return method.plan if hasattr(method, "plan") else method.prefix_plan(trainable)


# --- the plan -----------------------------------------------------------------------------------------------------
def test_plan_reads_ids_slots_and_limits():
  short = np.array([[9, 1, 1, 5, 6, 8, 0, 0],
                    [9, 1, 1, 5, 7, 7, 8, 0],
                    [9, 1, 1, 4, 8, 0, 0, 0]])
  ids = np.pad(short, ((0, 0), (0, 8)))  # trimmed length 16
  eos = np.array([5, 6, 4])
  assert shared_prefix.shared_positions(ids) == 3
  slots = np.array([[1, 2]] * 3)
  assert shared_prefix.shared_positions(ids, slots) == 3
  assert shared_prefix.shared_positions(ids, slots, class_specific=True) == 1
  assert shared_prefix.shared_positions(ids, np.array([[1, 2], [1, 2], [2, 1]])) == 1  # other slot order
  assert shared_prefix.plan_prefix(ids, eos, context=77) == shared_prefix.PrefixPlan(3, 8)  # 4 positions -> 8
  assert shared_prefix.plan_prefix(ids, eos, context=77, limit=2).prefix == 2
  assert shared_prefix.plan_prefix(ids, eos, context=10).suffix == 7  # capped at the context
  assert shared_prefix.plan_prefix(short, eos, context=77) is None  # 3 + 3 * 8 >= 3 * 8: no saving
  assert shared_prefix.plan_prefix(short, eos, context=77, rows=100) is None
  same = np.tile(ids[:1], (4, 1))  # identical prompts: the prefix stops before EOS
  assert shared_prefix.plan_prefix(same, np.full(4, 5), context=77) == shared_prefix.PrefixPlan(5, 8)


def test_prefix_encoding_with_deep_prompts_across_the_boundary(tiny_backbone):
  """Deep prompts over positions 2..5 with a prefix of 4: half is written in the prefix, half in the suffixes."""
  clip = tiny_backbone.model()
  params = tiny_backbone.params
  ids = np.array([[30, 3, 4, 5, 6, 7, 8, 31, 0, 0],
                  [30, 3, 4, 5, 9, 31, 0, 0, 0, 0],
                  [30, 3, 4, 5, 10, 11, 12, 13, 14, 31]])
  eos = np.array([7, 5, 9])
  embeds = clip.embed_tokens(params, jnp.asarray(ids))
  deep = DeepPrompts(jax.random.normal(jax.random.key(3), (1, 4, 32)), 2)
  plan = shared_prefix.PrefixPlan(4, 6)
  plain = jax.jit(lambda p, x: encode_embeddings(clip, p, x, eos, deep=deep))(params, embeds)
  for chunk in (0, 2):
    fast = jax.jit(lambda p, x: shared_prefix.encode_with_prefix(clip, p, x, eos, plan, deep=deep, chunk=chunk))
    assert_close(fast(params, embeds), plain, f"chunk {chunk}")
  head, tail = shared_prefix.split_deep(deep, 4, 10)
  assert (head.start, head.values.shape[1], tail.start, tail.values.shape[1]) == (2, 2, 0, 2)


# --- every method against its plain path --------------------------------------------------------------------------
MIDDLE = {"coop.class_position": "middle", "coop.n_ctx": 4}


@pytest.mark.parametrize("overrides, expect_prefix, names", [
    ({}, True, NAMES),                                                    # M=16, name at the end: P = 17
    (MIDDLE, True, NAMES[:-1]),                                           # P = 3 (SOS + 2 context tokens)
    (MIDDLE, False, NAMES),          # P = 3 but a 16-token suffix: 3 + 6 x 24 > 6 x 24, the plain path
    ({"coop.class_position": "front", "coop.n_ctx": 4}, False, NAMES),   # only SOS shared: the plain path
    ({"coop.csc": True, "coop.n_ctx": 4}, False, NAMES),                  # class-specific context
    ({"coop.ctx_init": "a photo of a", "coop.ctx_rule": "reference"}, True, NAMES),
    ({"text_chunk": 4, "remat": True}, True, NAMES),                      # class chunks, rematerialised blocks
])
def test_coop(tiny_backbone, images, overrides, expect_prefix, names):
  _, plan = check_method(tiny_backbone, images, "coop", overrides, expect_prefix=expect_prefix, names=names)
  if not overrides:
    # Prefix [SOS] ctx_1..16; the longest suffix (12 name tokens, '.', EOS) is padded to 16 but capped by the
    # 32-token context.
    assert plan == shared_prefix.PrefixPlan(17, 32 - 17)


def test_cocoop(tiny_backbone, images):
  _, plan = check_method(tiny_backbone, images, "cocoop", {}, expect_prefix=True)
  assert plan.prefix == 5  # SOS + 4 context tokens, a prefix per image


@pytest.mark.parametrize("name", ["maple", "mmap"])
def test_deep_prompt_methods(tiny_backbone, images, name):
  method, plan = check_method(tiny_backbone, images, name, {}, expect_prefix=True)
  deep = method.deep_text_prompts(method.init(jax.random.key(0)))
  assert deep is not None and deep.start + deep.values.shape[1] <= plan.prefix  # deep slots inside the prefix


def test_ivlp(tiny_backbone, images):
  check_method(tiny_backbone, images, "ivlp", {}, expect_prefix=True)


@pytest.mark.parametrize("overrides, prefix, names", [
    ({}, 5, NAMES),                                                      # "a photo of a" on CLIP, f0 cached
    ({"lamm.base": "coop", "coop.ctx_init": "a photo of a"}, 5, NAMES),  # both branches over one prefix
    # The label right after MaPLe's context: P = 3 (with the 13-token name a 24-token suffix would save nothing).
    ({"lamm.base": "maple", "lamm.maple_placement": "after_ctx"}, 3, NAMES[:-1]),
])
def test_lamm(tiny_backbone, images, overrides, prefix, names):
  """LAMM's loss (label and reference branches) and its gradients equal the plain path's."""
  fast = methods.build("lamm", config("lamm", **overrides), tiny_backbone, names)
  plain = methods.build("lamm", config("lamm", shared_prefix=False, **overrides), tiny_backbone, names)
  trainable = fast.init(jax.random.key(0))
  base_trainable = {k: v for k, v in trainable.items() if k != "labels"}
  assert fast._prefix_plan(base_trainable, rows=2 * len(names)).prefix == prefix
  labels = jnp.array([0, len(names) - 1])
  trainable = {**trainable, "labels": trainable["labels"] + 0.01}  # off init, so the branches differ
  for_method = lambda m: jax.jit(jax.value_and_grad(lambda t: m.loss(t, tiny_backbone.params, images, labels),
                                                    has_aux=True))
  (loss_f, metrics_f), grads_f = for_method(fast)(trainable)
  (loss_p, metrics_p), grads_p = for_method(plain)(trainable)
  assert_close(loss_f, loss_p, "loss")
  for key in metrics_p:
    assert_close(metrics_f[key], metrics_p[key], key, floor=1.0)
  for g_f, g_p in zip(jax.tree_util.tree_leaves(grads_f), jax.tree_util.tree_leaves(grads_p)):
    assert_close(g_f, g_p, "gradient")
  assert_close(jax.jit(fast.logits)(trainable, tiny_backbone.params, images),
               jax.jit(plain.logits)(trainable, tiny_backbone.params, images), "logits")


@pytest.mark.parametrize("name", ["zeroshot", "vpt"])
def test_cached_class_features(tiny_backbone, name):
  """Class features encoded once at construction (zero-shot ensemble, VPT's text) equal the plain path's."""
  overrides = {"templates": ["a photo of a {}.", "a {} sketch."]} if name == "zeroshot" else {}
  fast = methods.build(name, config(name, **overrides), tiny_backbone, NAMES)
  plain = methods.build(name, config(name, shared_prefix=False, **overrides), tiny_backbone, NAMES)
  assert_close(fast.text_features, plain.text_features, name)
  single = methods.build(name, config(name, **overrides), tiny_backbone, NAMES[-1:])  # one class: no saving
  assert_close(single.text_features, plain.text_features[-1:], f"{name} one class")
