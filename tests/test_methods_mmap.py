"""MmAP (single): Kronecker-generated prompts, their placement, validation and the parameter count
(docs/methods/mmap.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprompt import methods
from jaxprompt.clip.model import causal_bias
from jaxprompt.methods import mmap

CLASSES = ["cat", "dog", "red_car", "apple tree"]
# The tiny backbone: text 32 wide, vision 48 wide (gcd 16), 2 layers each.
TINY = dict(b=4, m=2, n=16, depth=2)


def make(backbone, classes=CLASSES, slots=None, **options):
  config = methods.default_config()
  config.name = "mmap"
  for key, value in {**TINY, **options}.items():
    config.mmap[key] = value
  return mmap.MmAP(config, backbone, classes, slots=slots)


def images(n=3, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, 32, 32, 3))


@pytest.mark.parametrize("order", ["scale_source", "source_scale"])
@pytest.mark.parametrize("per_layer", [False, True])
def test_prompts_are_the_kronecker_products(tiny_backbone, order, per_layer):
  method = make(tiny_backbone, kron_order=order, source_per_layer=per_layer)
  tree = method.init(jax.random.key(0))
  text, vision = method.layer_prompts(tree)
  assert text.shape == (2, 4, 32) and vision.shape == (2, 4, 48)
  for layer in range(2):
    source = np.asarray(tree["source"][layer] if per_layer else tree["source"], np.float64)
    for scale, got in ((tree["text_scale"][layer], text[layer]), (tree["image_scale"][layer], vision[layer])):
      scale = np.asarray(scale, np.float64)
      want = np.kron(scale, source) if order == "scale_source" else np.kron(source, scale)
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
      # Spot-check one entry by the definition: kron(A, B)[i*p + k, j*q + l] = A[i, j] * B[k, l].
      first, second = (scale, source) if order == "scale_source" else (source, scale)
      p, q = second.shape
      np.testing.assert_allclose(got[1 * p + 1, 1 * q + 1], first[1, 1] * second[1, 1], rtol=1e-6)
  # The shared source really is shared: with every layer's scales equal, every layer's prompts are equal (a source per
  # layer would make them differ), and moving the source moves every layer.
  same_scales = dict(tree, text_scale=jnp.broadcast_to(tree["text_scale"][:1], tree["text_scale"].shape),
                     image_scale=jnp.broadcast_to(tree["image_scale"][:1], tree["image_scale"].shape))
  equal_text, equal_vision = method.layer_prompts(same_scales)
  layers_equal = np.array_equal(equal_text[0], equal_text[1]) and np.array_equal(equal_vision[0], equal_vision[1])
  assert layers_equal == (not per_layer)
  if not per_layer:
    shifted_text, _ = method.layer_prompts(dict(tree, source=tree["source"] + 1.0))
    assert all(np.abs(np.asarray(shifted_text[layer] - text[layer])).max() > 1e-3 for layer in range(2))


def test_leaf_shapes_and_init_schemes(tiny_backbone):
  shapes = {"source": (2, 16), "text_scale": (2, 2, 2), "image_scale": (2, 2, 3)}
  tree = make(tiny_backbone).init(jax.random.key(1))
  assert {name: leaf.shape for name, leaf in tree.items()} == shapes
  assert make(tiny_backbone, source_per_layer=True).init(jax.random.key(1))["source"].shape == (2, 2, 16)
  big = make(tiny_backbone, m=1, n=8, init="normal").init(jax.random.key(1))  # enough entries to measure spread
  assert abs(float(big["source"].std()) - 0.02) < 0.006 and abs(float(big["image_scale"].std()) - 1.0) < 0.3
  small = make(tiny_backbone, m=1, n=8, init="small").init(jax.random.key(1))
  assert abs(float(small["image_scale"].std()) - 0.02) < 0.006
  xavier = make(tiny_backbone, m=1, n=8, init="xavier").init(jax.random.key(1))
  assert abs(float(xavier["source"].std()) - np.sqrt(2 / (1 + 8))) < 0.15


def test_num_trainable_at_vit_b16_shapes(vit_b16_backbone):
  backbone = vit_b16_backbone
  config = methods.default_config()
  assert mmap.MmAP(config, backbone, CLASSES).num_trainable() == 736  # 4*64 + 12 * (2*8 + 2*12)
  config.mmap.source_per_layer = True
  assert mmap.MmAP(config, backbone, CLASSES).num_trainable() == 12 * 256 + 12 * 40
  tree = jax.eval_shape(mmap.MmAP(config, backbone, CLASSES).init, jax.random.key(0))
  text, vision = jax.eval_shape(mmap.generate_prompts, tree)
  assert text.shape == (12, 8, 512) and vision.shape == (12, 8, 768)


@pytest.mark.parametrize("options, word", [(dict(m=3), "mmap.m=3"), (dict(n=12), "mmap.n=12"),
                                           (dict(b=0), "mmap.b"), (dict(depth=3), "mmap.depth=3"),
                                           (dict(kron_order="left"), "mmap.kron_order"),
                                           (dict(init="zeros"), "mmap.init")])
def test_invalid_options_name_the_option(tiny_backbone, options, word):
  with pytest.raises(ValueError, match=word.replace(".", r"\.")):
    make(tiny_backbone, **options)


def test_text_placement_matches_plain_clip_on_the_placeholder_prompt(tiny_backbone):
  """Layer-0 prompts equal to the "X" embedding at every slot, no deeper layers: plain CLIP on "X X X X name."."""
  method = make(tiny_backbone, depth=1)
  frozen = tiny_backbone.params
  x_row = method.clip.embed_tokens(frozen, jnp.asarray(method.prompts.ids[0, 1]))
  prompts = jnp.broadcast_to(x_row, (1, 4, 32))
  got = method.text_features(frozen, prompts)
  want = method.clip.text_features(frozen, jnp.asarray(method.prompts.ids))
  np.testing.assert_allclose(got, want, atol=1e-5)
  other = method.text_features(frozen, prompts.at[0, 2].add(jax.random.normal(jax.random.key(2), (32,))))
  assert np.abs(np.asarray(other - got)).max() > 1e-3


def _manual_text(tower, token_embeds, prompts):
  """The spec's text placement written out: slots 1..b hold layer l's prompts at the input of block l."""
  b = prompts.shape[1]
  x = tower.embeddings(token_embeds.at[:, 1:1 + b].set(prompts[0]), None)
  for layer, block in enumerate(tower.encoder.layers.blocks):
    x = x.at[:, 1:1 + b].set(prompts[layer]) if layer else x
    x = block(x, causal_bias(x.shape[1]))
  return tower.final_layer_norm(x)


def _manual_image(tower, images, prompts):
  """The spec's vision placement: layer-0 prompts appended before pre_layrnorm, the last b tokens overwritten later."""
  b = prompts.shape[1]
  x = tower.embeddings(images)
  x = tower.pre_layrnorm(jnp.concatenate([x, jnp.broadcast_to(prompts[0], (x.shape[0],) + prompts.shape[1:])], 1))
  for layer, block in enumerate(tower.encoder.layers.blocks):
    x = x.at[:, -b:].set(prompts[layer]) if layer else x
    x = block(x, None)
  return tower.post_layernorm(x)[:, 0]


@pytest.fixture(scope="module")
def features(tiny_backbone):
  """Jitted (text features, image features) of the default tiny MmAP from given per-layer prompts."""
  method = make(tiny_backbone)
  return jax.jit(lambda f, t, v, x: (method.text_features(f, t), method.image_features(f, v, x)))


def test_deep_placement_matches_the_spec_written_out(tiny_backbone, features):
  method = make(tiny_backbone)
  frozen, clip, x = tiny_backbone.params, method.clip, images()
  text, vision = method.layer_prompts(method.init(jax.random.key(4)))
  ids = jnp.asarray(method.prompts.ids)
  hidden = clip.text_tower.apply({"params": frozen["text_model"]}, clip.embed_tokens(frozen, ids), text,
                                 method=_manual_text)
  want_text = clip.project_text(frozen, hidden[jnp.arange(len(CLASSES)), jnp.asarray(method.prompts.eos)])
  want_image = clip.project_image(frozen, clip.vision_tower.apply({"params": frozen["vision_model"]}, x, vision,
                                                                  method=_manual_image))
  got_text, got_image = features(frozen, text, vision, x)
  np.testing.assert_allclose(got_text, want_text, atol=1e-5)
  np.testing.assert_allclose(got_image, want_image, atol=1e-5)


def test_deep_prompts_reach_both_towers_and_concat_composes(tiny_backbone, features):
  method = make(tiny_backbone)
  frozen, x = tiny_backbone.params, images()
  text, vision = method.layer_prompts(method.init(jax.random.key(0)))
  # Random moves of layer 1 only (a shift-and-scale of a row would be undone by the block's LayerNorm).
  noise = lambda a, seed: a.at[1].add(jax.random.normal(jax.random.key(seed), a.shape[1:]))
  for before, after in zip(features(frozen, text, vision, x), features(frozen, noise(text, 5), noise(vision, 6), x)):
    assert np.abs(np.asarray(after - before)).max() > 1e-4
  # MmAP-MT: [shared; specific] per layer needs sequences with 2b slots; "sum" keeps b.
  shared_tree, specific_tree = method.init(jax.random.key(0)), method.init(jax.random.key(1))
  specific_text, specific_vision = method.layer_prompts(specific_tree)
  double = make(tiny_backbone, slots=8)
  assert double.prompts.ids[0, 1:9].tolist() == [double.prompts.ids[0, 1]] * 8
  # Concat puts the shared prompts first, in slots 1..b of the text and the first b appended vision tokens.
  combined_text, combined_vision = double.combined_prompts(shared_tree, specific_tree)
  np.testing.assert_array_equal(combined_text[:, :4], text)
  np.testing.assert_array_equal(combined_text[:, 4:], specific_text)
  np.testing.assert_array_equal(combined_vision[:, :4], vision)
  np.testing.assert_array_equal(combined_vision[:, 4:], specific_vision)
  concat = double.logits_from_prompts(frozen, combined_text, combined_vision, x)
  swapped = double.logits_from_prompts(frozen, mmap.combine_prompts(specific_text, text),
                                       mmap.combine_prompts(specific_vision, vision), x)
  assert concat.shape == (3, 4) and np.abs(np.asarray(concat - swapped)).max() > 1e-4  # the order is seen
  assert mmap.MmAP.for_composition(make(tiny_backbone).config, tiny_backbone, CLASSES).slots == 8
  summed = mmap.MmAP.for_composition(make(tiny_backbone, combine="sum").config, tiny_backbone, CLASSES)
  assert summed.slots == 4
  np.testing.assert_allclose(summed.combined_prompts(shared_tree, specific_tree)[0], text + specific_text,
                             rtol=1e-6)
  assert double.for_classes(["cat"]).slots == 8
  with pytest.raises(ValueError, match="slots=2\\*b"):
    method.logits_from_prompts(frozen, mmap.combine_prompts(text, specific_text), vision, x)


def test_gradients_reach_only_the_tree_and_sgd_reduces_the_loss(tiny_backbone):
  method = make(tiny_backbone)
  frozen, x, labels = tiny_backbone.params, images(4, seed=3), jnp.array([0, 1, 2, 3])
  step = jax.jit(jax.value_and_grad(lambda t, f: method.loss(t, f, x, labels)[0]))
  tree = method.init(jax.random.key(0))
  first, grads = step(tree, frozen)
  assert all(bool(jnp.isfinite(g).all()) and float(jnp.abs(g).max()) > 0 for g in grads.values())
  for _ in range(5):
    _, grads = step(tree, frozen)
    tree = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, tree, grads)
  assert float(step(tree, frozen)[0]) < float(first) - 1e-3


def test_lamm_stacks_on_mmap_and_is_mmap_at_init(tiny_backbone):
  """MmAP's PromptedMethod halves (slots, deep text, vision) give its own logits: LAMM over it starts exactly there."""
  config = make(tiny_backbone).config
  config.lamm.base = "mmap"
  lamm = methods.build("lamm", config, tiny_backbone, CLASSES)
  method = make(tiny_backbone)
  tree = method.init(jax.random.key(0))
  trainable = lamm.init(jax.random.key(0))
  assert set(trainable) == set(tree) | {"labels"}
  frozen, x = tiny_backbone.params, images()
  np.testing.assert_allclose(jax.jit(lamm.logits)(trainable, frozen, x), jax.jit(method.logits)(tree, frozen, x),
                             rtol=1e-5, atol=1e-5)
