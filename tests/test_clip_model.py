"""The CLIP towers equal FlaxCLIPModel, and every hook does what docs/methods/clip.md says."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import CLIPConfig, FlaxCLIPModel

from jaxprompt.clip.model import BLOCKED, CLIP, DeepPrompts, gather_rows

NAMES = ["red circle", "dog", "2012 audi", "blue square", "cat"]


def _hf(backbone):
  return FlaxCLIPModel(backbone.config, _do_init=False)


def _images(n, size=32, seed=0):
  return np.random.RandomState(seed).randn(n, size, size, 3).astype(np.float32)


def test_text_and_image_features_equal_flax_clip(tiny_backbone):
  clip = CLIP(tiny_backbone.config)
  prompts = tiny_backbone.tokenizer.prompts("a photo of a {}.", NAMES)
  expected = _hf(tiny_backbone).get_text_features(prompts.ids, params=tiny_backbone.params)
  ours = clip.text_features(tiny_backbone.params, jnp.asarray(prompts.ids))
  np.testing.assert_allclose(ours, expected, atol=1e-5)

  images = _images(3)
  expected = _hf(tiny_backbone).get_image_features(images.transpose(0, 3, 1, 2), params=tiny_backbone.params)
  np.testing.assert_allclose(CLIP(tiny_backbone.config).image_features(tiny_backbone.params, images), expected,
                             atol=1e-5)


def test_parameter_tree_is_flax_clip_tree(tiny_backbone):
  clip = CLIP(tiny_backbone.config)
  ours = jax.eval_shape(lambda: clip.text_tower.init(jax.random.key(0), jnp.zeros((1, 8, 32))))["params"]
  theirs = tiny_backbone.params["text_model"]
  assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
  assert jax.tree_util.tree_map(lambda x: x.shape, ours) == jax.tree_util.tree_map(lambda x: x.shape, theirs)
  ours = jax.eval_shape(lambda: clip.vision_tower.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))["params"]
  theirs = tiny_backbone.params["vision_model"]
  assert jax.tree_util.tree_map(lambda x: x.shape, ours) == jax.tree_util.tree_map(lambda x: x.shape, theirs)


def _vit_b16_config(vocab_size=49408):
  return CLIPConfig(
      text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                       vocab_size=vocab_size, max_position_embeddings=77, eos_token_id=vocab_size - 1),
      vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         image_size=224, patch_size=16),
      projection_dim=512)


def test_vit_b16_shapes_equal_flax_clip():
  """Full ViT-B/16 shapes (149,620,737 parameters) with random weights; batch of one to keep CPU time small."""
  config = _vit_b16_config()
  model = FlaxCLIPModel(config, seed=1)
  params = jax.device_get(model.params)
  assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == 149_620_737
  clip = CLIP(config)
  ids = np.zeros((2, 77), np.int32)
  ids[0, :6] = [49406, 320, 1125, 539, 320, 49407]
  ids[1, :4] = [49406, 1929, 269, 49407]
  np.testing.assert_allclose(jax.jit(clip.text_features)(params, ids), model.get_text_features(ids), atol=1e-5)
  image = _images(1, 224)
  expected = model.get_image_features(image.transpose(0, 3, 1, 2))
  np.testing.assert_allclose(jax.jit(clip.image_features)(params, image), expected, atol=1e-5)


def test_trimming_text_keeps_eos_features(tiny_backbone):
  from jaxprompt.methods.base import PromptTokens  # pylint: disable=g-import-not-at-top

  clip = CLIP(tiny_backbone.config)
  prompts = tiny_backbone.tokenizer.prompts("a photo of a {}.", NAMES)
  trimmed = PromptTokens.make(prompts)  # what every method uses
  length = trimmed.ids.shape[1]
  assert length % 8 == 0 and prompts.max_length <= length < prompts.ids.shape[1]
  np.testing.assert_array_equal(trimmed.ids, prompts.ids[:, :length])
  np.testing.assert_array_equal(trimmed.eos, prompts.eos)
  full = clip.text_features(tiny_backbone.params, prompts.ids)
  np.testing.assert_allclose(clip.text_features(tiny_backbone.params, trimmed.ids), full, atol=1e-6)


def test_blocking_a_late_key_changes_only_later_rows(tiny_backbone):
  clip = CLIP(tiny_backbone.config)
  prompts = tiny_backbone.tokenizer.prompts("a photo of a {}.", NAMES[:2])
  embeds = clip.embed_tokens(tiny_backbone.params, prompts.ids[:, :16])
  bias = np.zeros((2, 1, 16, 16), np.float32)
  bias[0, :, :, 5] = BLOCKED  # example 0 only: nobody may read key 5 (row 5 keeps key 0..4)
  plain = clip.encode_text(tiny_backbone.params, embeds)
  blocked = clip.encode_text(tiny_backbone.params, embeds, bias=bias)
  np.testing.assert_allclose(blocked[0, :5], plain[0, :5], atol=1e-6)      # causal rows before the key: unchanged
  assert np.abs(blocked[0, 5:] - plain[0, 5:]).max(axis=-1).min() > 1e-4   # every later row changes
  np.testing.assert_allclose(blocked[1], plain[1], atol=1e-6)              # the bias is per example


def test_position_mask_drops_positional_embedding(tiny_backbone):
  clip = CLIP(tiny_backbone.config)
  embeds = jnp.ones((1, 8, 32))
  mask = jnp.ones((8,)).at[3].set(0.0)
  text = tiny_backbone.params["text_model"]
  x = clip.text_tower.apply({"params": text}, embeds, position_mask=mask, method=lambda m, e, position_mask:
                            m.embeddings(e, position_mask))
  positions = text["embeddings"]["position_embedding"]["embedding"][:8]
  np.testing.assert_allclose(x[0, 3], embeds[0, 3])
  np.testing.assert_allclose(x[0, 4], embeds[0, 4] + positions[4], atol=1e-6)


def test_deep_prompts_overwrite_before_chosen_blocks(tiny_backbone):
  """Overwriting tokens before block 1 equals running block 0, writing the tokens, then running block 1 by hand."""
  clip = CLIP(tiny_backbone.config)
  images = _images(2)
  prompts = np.random.RandomState(1).randn(1, 3, 48).astype(np.float32)
  extra = np.random.RandomState(2).randn(3, 48).astype(np.float32)
  hidden = clip.encode_image(tiny_backbone.params, images, extra_tokens=extra, deep=DeepPrompts(prompts, -3))
  assert hidden.shape == (2, 17 + 3, 48)
  # Same computation by hand with the block modules.
  vision = tiny_backbone.params["vision_model"]
  tower = clip.vision_tower

  def by_hand(module, images):
    x = module.embeddings(images)
    x = jnp.concatenate([x, jnp.broadcast_to(extra, (2, 3, 48))], axis=1)
    x = module.pre_layrnorm(x)
    blocks = module.encoder.layers.blocks
    x = blocks[0](x)
    x = x.at[:, -3:].set(prompts[0])
    x = blocks[1](x)
    return module.post_layernorm(x)

  np.testing.assert_allclose(hidden, tower.apply({"params": vision}, images, method=by_hand), atol=1e-5)
  # Deep prompts for as many layers as the tower has blocks are rejected with a clear message.
  with pytest.raises(ValueError, match="deep prompt layers"):
    clip.encode_image(tiny_backbone.params, images, extra_tokens=extra, deep=DeepPrompts(np.zeros((2, 3, 48)), -3))


def test_text_deep_prompts_per_example_and_readout(tiny_backbone):
  clip = CLIP(tiny_backbone.config)
  prompts = tiny_backbone.tokenizer.prompts("a photo of a {}.", NAMES[:2])
  embeds = clip.embed_tokens(tiny_backbone.params, prompts.ids[:, :16])
  deep = np.random.RandomState(0).randn(1, 2, 2, 32).astype(np.float32)  # (layers, batch, n, D): per example
  hidden = clip.encode_text(tiny_backbone.params, embeds, deep=DeepPrompts(deep, 1))
  shared = clip.encode_text(tiny_backbone.params, embeds, deep=DeepPrompts(deep[:, 0], 1))
  np.testing.assert_allclose(hidden[0], shared[0], atol=1e-6)
  assert np.abs(hidden[1] - shared[1]).max() > 1e-4
  features = clip.project_text(tiny_backbone.params, gather_rows(hidden, jnp.asarray(prompts.eos)))
  assert features.shape == (2, tiny_backbone.config.projection_dim)


def test_bfloat16_compute_is_close_to_float32(tiny_backbone):
  prompts = tiny_backbone.tokenizer.prompts("a photo of a {}.", NAMES)
  images = _images(2)
  for dtype in (jnp.float32, jnp.bfloat16):
    clip = CLIP(tiny_backbone.config, dtype=dtype)
    text = clip.text_features(tiny_backbone.params, prompts.ids[:, :16])
    image = clip.image_features(tiny_backbone.params, images)
    if dtype == jnp.float32:
      reference = (text, image)
  # Stated tolerance: bfloat16 matmuls (8-bit mantissa) keep features within 5e-2 relative of float32 here.
  for ours, ref in zip((text, image), reference):
    assert ours.dtype == jnp.float32
    relative = np.linalg.norm(ours - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert relative.max() < 5e-2, relative
