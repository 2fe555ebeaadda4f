"""RPO: read-only masks, ST initialisation, the exact fast path, and the parameter count (docs/methods/rpo.md)."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprompt import methods
from jaxprompt.methods.rpo import matched_score

CLASSES = ["cat", "dog", "red_car", "big green apple tree"]  # unequal lengths; "_" kept by default


def make(backbone, classes=CLASSES, **options):
  config = methods.default_config()
  config.name = "rpo"
  config.rpo.k = 3
  for key, value in options.items():
    config.rpo[key] = value
  return methods.build("rpo", config, backbone, classes)


def images(n=2, seed=0, size=32):
  return jax.random.normal(jax.random.key(seed), (n, size, size, 3))


def test_original_tokens_equal_plain_clip_whatever_the_prompts(tiny_backbone):
  method = make(tiny_backbone, fast=False)
  frozen, clip = tiny_backbone.params, method.clip
  classes = jnp.arange(len(CLASSES))
  ids = jnp.asarray(method.tokens.ids)
  plain_text = jax.jit(lambda f: clip.encode_text(f, clip.embed_tokens(f, ids)))(frozen)
  x = images()
  plain_image = jax.jit(clip.encode_image)(frozen, x)
  text_hidden = jax.jit(lambda f, p: method.text_hidden(f, p, classes))
  image_hidden = jax.jit(method.image_hidden)
  for seed in (1, 2):
    trainable = method.init(jax.random.key(seed))
    trainable = jax.tree_util.tree_map(lambda p: p * (3.0 * seed), trainable)  # far from the init, too
    text = text_hidden(frozen, trainable["text_prompts"])
    for c, n in enumerate(method.num_real):
      np.testing.assert_allclose(text[c, :n], plain_text[c, :n], atol=2e-5)
    assert np.abs(np.asarray(text[:, -1] - plain_text[:, -1])).max() > 1e-3  # the prompt rows do differ
    image = image_hidden(frozen, trainable["image_prompts"], x)
    np.testing.assert_allclose(image[:, :method.num_image_tokens], plain_image, atol=2e-5)


@pytest.fixture(scope="module")
def rpo(tiny_backbone):
  """Plain and fast RPO on the same classes, with their jitted functions compiled once for the module."""
  out = {}
  for path in ("plain", "fast"):
    m = make(tiny_backbone, fast=path == "fast")
    out[path] = m
    out[path + "_features"] = jax.jit(lambda t, f, x, m=m: (m.text_features(t, f), m.image_features(t, f, x)))
    out[path + "_step"] = jax.jit(jax.value_and_grad(lambda t, f, x, y, m=m: m.loss(t, f, x, y)[0]))
  out["fast_logits"] = jax.jit(out["fast"].logits)
  return out


@pytest.mark.parametrize("path", ["plain", "fast"])
def test_prompt_k_does_not_affect_prompt_j(tiny_backbone, rpo, path):
  features, frozen, x = rpo[path + "_features"], tiny_backbone.params, images(3)
  trainable = rpo[path].init(jax.random.key(0))
  # A random direction (a constant shift along all dims would be erased by the first LayerNorm).
  moved = {name: value.at[0].add(jax.random.normal(jax.random.key(9), value.shape[1:]))
           for name, value in trainable.items()}
  for before, after in zip(features(trainable, frozen, x), features(moved, frozen, x)):  # text, then image
    np.testing.assert_allclose(before[:, 1:], after[:, 1:], atol=1e-5)
    assert np.abs(np.asarray(before[:, 0] - after[:, 0])).max() > 1e-3  # prompt 0 itself did move


def test_st_init_sits_at_distance_point_one(tiny_backbone):
  method = make(tiny_backbone)
  trainable = method.init(jax.random.key(3))
  table = tiny_backbone.params["text_model"]["embeddings"]["token_embedding"]["embedding"]
  eos_row = table[tiny_backbone.tokenizer.eot_id]
  cls_row = tiny_backbone.params["vision_model"]["embeddings"]["class_embedding"]
  assert trainable["text_prompts"].shape == (3, 32) and trainable["image_prompts"].shape == (3, 48)
  for prompts, special in ((trainable["text_prompts"], eos_row), (trainable["image_prompts"], cls_row)):
    distance = np.linalg.norm(np.asarray(prompts, np.float64) - np.asarray(special, np.float64)[None], axis=-1)
    np.testing.assert_allclose(distance, 0.1, atol=1e-6)
    assert np.abs(np.asarray(prompts[0] - prompts[1])).max() > 1e-3  # independent directions
  random = make(tiny_backbone, init="random").init(jax.random.key(3))
  assert abs(float(jnp.std(random["text_prompts"])) - 0.02) < 0.01


def test_fast_path_equals_plain_path_logits_and_gradients(tiny_backbone, rpo):
  frozen, x, labels = tiny_backbone.params, images(3), jnp.array([0, 2, 3])
  trainable = rpo["plain"].init(jax.random.key(1))
  text_plain, image_plain = rpo["plain_features"](trainable, frozen, x)
  text_fast, image_fast = rpo["fast_features"](trainable, frozen, x)
  np.testing.assert_allclose(text_fast, text_plain, atol=2e-5)
  np.testing.assert_allclose(image_fast, image_plain, atol=2e-5)
  logits_fast = rpo["fast_logits"](trainable, frozen, x)
  logits_plain = matched_score(np.exp(frozen["logit_scale"]), image_plain, text_plain)
  np.testing.assert_allclose(logits_fast, logits_plain, atol=2e-4)
  (loss_plain, grads_plain), (loss_fast, grads_fast) = [rpo[path + "_step"](trainable, frozen, x, labels)
                                                          for path in ("plain", "fast")]
  np.testing.assert_allclose(loss_fast, loss_plain, atol=1e-5)
  # Gradients reach exactly the trainable leaves, both of them, finite and non-zero.
  for grads in (grads_plain, grads_fast):
    assert set(grads) == {"text_prompts", "image_prompts"}
    assert all(bool(jnp.isfinite(g).all()) and float(jnp.abs(g).max()) > 1e-6 for g in grads.values())
  for name in grads_plain:
    np.testing.assert_allclose(grads_fast[name], grads_plain[name], atol=1e-5, rtol=1e-4)
  # The logits read the frozen tree passed in (not one closed over): a new temperature shows up.
  hotter = dict(frozen, logit_scale=frozen["logit_scale"] + np.log(2.0))
  np.testing.assert_allclose(rpo["fast_logits"](trainable, hotter, x), 2 * logits_fast, rtol=1e-5, atol=1e-5)


def test_chunked_text_inside_jit_matches(tiny_backbone, rpo):
  method = make(tiny_backbone)
  method.config.text_chunk = 3  # 4 classes -> two chunks, the second padded
  frozen, x = tiny_backbone.params, images(3)
  trainable = method.init(jax.random.key(0))
  chunked = jax.jit(method.logits)(trainable, frozen, x)  # first use of the text cache happens inside the trace
  np.testing.assert_allclose(chunked, rpo["fast_logits"](trainable, frozen, x), atol=2e-5)


def test_sgd_steps_reduce_the_loss(tiny_backbone, rpo):
  frozen, x, labels = tiny_backbone.params, images(3, seed=5), jnp.array([0, 1, 3])
  step = rpo["fast_step"]
  trainable = rpo["fast"].init(jax.random.key(0))
  first, _ = step(trainable, frozen, x, labels)
  for _ in range(5):
    _, grads = step(trainable, frozen, x, labels)
    trainable = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, trainable, grads)
  assert float(step(trainable, frozen, x, labels)[0]) < float(first) - 1e-3


def test_too_long_prompt_names_the_class(tiny_backbone):
  long_name = " ".join(["banana"] * 23)  # SOS + 4 + 23 + "." + EOS = 30 tokens, + K=3 > 32
  with pytest.raises(ValueError, match="banana banana"):
    make(tiny_backbone, classes=["cat", long_name])
  make(tiny_backbone, classes=["cat", " ".join(["banana"] * 22)])  # 29 + 3 fits exactly


def test_num_trainable_at_vit_b16_shapes(vit_b16_backbone):
  start = time.time()
  method = make(vit_b16_backbone, classes=["cat", "dog"], k=24)
  assert method.num_trainable() == 30_720
  assert method._text_cache is None  # nothing was run through the full-size towers
  assert method.num_image_tokens == 197
  assert time.time() - start < 20
