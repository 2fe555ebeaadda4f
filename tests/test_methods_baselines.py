"""Zero-shot CLIP, CoOp, CoCoOp, VPT, IVLP and MaPLe on the tiny random CLIP: leaf shapes and parameter counts,
exactness against plain CLIP, placement of every prompt, gradients (docs/methods/<method>.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprompt import methods
from jaxprompt.clip.model import DeepPrompts, cosine_logits, gather_rows
from jaxprompt.methods.base import PromptTokens
from tests.conftest import method_config as config

NAMES = ["cat", "dog", "red_circle", "big car"]
LABELS = jnp.array([0, 1, 2, 3, 0, 2])


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(1), (6, 32, 32, 3))


def shapes(tree):
  return jax.tree_util.tree_map(lambda x: tuple(x.shape), tree)


def zeroshot_features(backbone, template, names=NAMES):
  """Plain CLIP text features of template.format(name) over the full (untrimmed) context."""
  tokens = backbone.tokenizer.prompts(template, [n.replace("_", " ") for n in names])
  return backbone.model().text_features(backbone.params, tokens.ids)


# --- structure --------------------------------------------------------------------------------------------------------
def test_trainable_leaves_follow_the_spec(tiny_backbone):
  expected = {
      "coop": {"ctx": (16, 32)},
      "cocoop": {"ctx": (4, 32), "meta": {"linear1": {"kernel": (24, 1), "bias": (1,)},
                                          "linear2": {"kernel": (1, 32), "bias": (32,)}}},
      "vpt": {"prompts": (2, 8, 48)},
      "ivlp": {"text_prompts": (2, 2, 32), "vision_prompts": (2, 2, 48)},
      "maple": {"ctx": (2, 32), "deep_text": (1, 2, 32), "proj": {"kernel": (32, 48), "bias": (48,)},
                "deep_proj": {"kernel": (1, 32, 48), "bias": (1, 48)}},
      "zeroshot": {},
  }
  for name, tree in expected.items():
    method = methods.build(name, config(), tiny_backbone, NAMES)
    assert shapes(method.init(jax.random.key(0))) == tree, name
  csc = methods.build("coop", config(**{"coop.csc": True, "coop.n_ctx": 4}), tiny_backbone, NAMES)
  assert shapes(csc.init(jax.random.key(0))) == {"ctx": (4, 4, 32)}
  phrase = methods.build("coop", config(**{"coop.ctx_init": "a photo of a"}), tiny_backbone, NAMES)
  assert shapes(phrase.init(jax.random.key(0))) == {"ctx": (4, 32)}


def test_parameter_counts_at_vit_b16_shapes(vit_b16_backbone):
  cfg = methods.default_config()
  counts = {"coop": 8_192, "cocoop": 35_360, "vpt": 73_728, "ivlp": 30_720, "maple": 3_555_072}
  for name, count in counts.items():
    assert methods.build(name, cfg, vit_b16_backbone, NAMES).num_trainable() == count, name


def test_unknown_method_lists_the_known_ones(tiny_backbone):
  with pytest.raises(KeyError, match="coop.*maple"):
    methods.build("copo", config(), tiny_backbone, NAMES)


@pytest.mark.parametrize("name", ["coop", "maple", "ivlp", "cocoop", "vpt"])
def test_over_long_prompt_fails_naming_the_class(tiny_backbone, name):
  long_name = " ".join(["cat"] * 27)   # 27 + SOS + "a photo of a"/ctx + "." + EOS > 32
  with pytest.raises(ValueError, match="class 'cat cat"):
    methods.build(name, config(**{"coop.n_ctx": 4}), tiny_backbone, ["dog", long_name])


def test_prompted_depth_beyond_the_tower_names_the_option(tiny_backbone):
  with pytest.raises(ValueError, match="maple.depth=3"):
    methods.build("maple", config(**{"maple.depth": 3}), tiny_backbone, NAMES)


# --- exactness --------------------------------------------------------------------------------------------------------
def test_zeroshot_equals_plain_clip_and_ensembles_templates(tiny_backbone, images):
  clip, params = tiny_backbone.model(), tiny_backbone.params
  method = methods.build("zeroshot", config(), tiny_backbone, NAMES)
  expected = cosine_logits(clip.logit_scale(params), clip.image_features(params, images),
                           zeroshot_features(tiny_backbone, "a photo of a {}."))
  np.testing.assert_allclose(method.logits({}, params, images), expected, rtol=1e-5, atol=1e-4)

  templates = ["a photo of a {}.", "a sketch of the {}."]
  ensemble = methods.build("zeroshot", config(templates=templates), tiny_backbone, NAMES)
  mean = sum(f / np.linalg.norm(f, axis=-1, keepdims=True)
             for f in (np.asarray(zeroshot_features(tiny_backbone, t)) for t in templates))
  np.testing.assert_allclose(ensemble.text_features, mean / np.linalg.norm(mean, axis=-1, keepdims=True),
                             atol=1e-5)


def test_coop_from_a_phrase_is_zeroshot_at_init_trimmed_or_chunked(tiny_backbone, images):
  """ctx = "a photo of a" embeddings in the slots reproduces zero-shot; trimming and chunking change nothing."""
  zeroshot = methods.build("zeroshot", config(), tiny_backbone, NAMES).logits({}, tiny_backbone.params, images)
  for trim, chunk in ((True, 0), (False, 3)):
    method = methods.build("coop", config(**{"coop.ctx_init": "a photo of a", "trim_text": trim,
                                             "text_chunk": chunk}), tiny_backbone, NAMES)
    assert method.prompts.ids.shape[1] == (16 if trim else 32)
    logits = jax.jit(method.logits)(method.init(jax.random.key(0)), tiny_backbone.params, images)
    np.testing.assert_allclose(logits, zeroshot, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_coop_class_position(tiny_backbone, position):
  method = methods.build("coop", config(**{"coop.n_ctx": 4, "coop.class_position": position}), tiny_backbone, NAMES)
  trainable = method.init(jax.random.key(0))
  embeds = np.asarray(method.prompt_embeddings(trainable, tiny_backbone.params))
  tok = tiny_backbone.tokenizer
  table = np.asarray(tiny_backbone.params["text_model"]["embeddings"]["token_embedding"]["embedding"])
  ctx = np.asarray(trainable["ctx"])
  for c, name in enumerate(["cat", "dog", "red circle", "big car"]):
    name_rows = list(table[tok.encode(name)])
    before = {"end": ctx, "middle": ctx[:2], "front": ctx[:0]}[position]
    after = {"end": ctx[:0], "middle": ctx[2:], "front": ctx}[position]
    rows = [table[tok.sot_id]] + list(before) + name_rows + list(after) + [table[tok.encode(".")[0]],
                                                                           table[tok.eot_id]]
    np.testing.assert_allclose(embeds[c, :len(rows)], np.stack(rows), atol=1e-7)
    assert method.prompts.eos[c] == len(rows) - 1


def test_maple_depth_one_has_no_deep_prompts_and_vision_prompt_proj_ctx(tiny_backbone, images):
  method = methods.build("maple", config(**{"maple.depth": 1}), tiny_backbone, NAMES)
  trainable = method.init(jax.random.key(0))
  assert set(trainable) == {"ctx", "proj"}
  clip, params = method.clip, tiny_backbone.params
  extra = trainable["ctx"] @ trainable["proj"]["kernel"] + trainable["proj"]["bias"]
  expected = clip.project_image(params, clip.encode_image(params, images, extra_tokens=extra)[:, 0])
  np.testing.assert_allclose(method.image_embedding(trainable, params, images), expected, rtol=1e-5, atol=1e-5)
  # ctx = "a photo" in "a photo of a {}." and no deep prompts: the text side is zero-shot CLIP.
  np.testing.assert_allclose(method.text_embedding(trainable, params),
                             zeroshot_features(tiny_backbone, "a photo of a {}."), rtol=1e-5, atol=1e-5)


def test_maple_deep_prompts_overwrite_text_slots_and_vision_tail(tiny_backbone, images):
  method = methods.build("maple", config(), tiny_backbone, NAMES)
  trainable = method.init(jax.random.key(0))
  clip, params = method.clip, tiny_backbone.params
  vision = method.vision_prompts(trainable)
  assert vision.shape == (2, 2, 48)
  deep = trainable["deep_text"][0] @ trainable["deep_proj"]["kernel"][0] + trainable["deep_proj"]["bias"][0]
  np.testing.assert_allclose(vision[1], deep, rtol=1e-6)
  # Dense init as torch.nn.Linear: |w| <= 1/sqrt(fan_in), deeper projections cloned.
  assert np.abs(trainable["proj"]["kernel"]).max() <= 32 ** -0.5
  # Text: the deep prompt goes into slots 1..2 before block 1.
  tokens = PromptTokens.make(tiny_backbone.tokenizer.prompts("a photo of a {}.", ["cat", "dog", "red circle",
                                                                                  "big car"]))
  embeds = clip.embed_tokens(params, tokens.ids).at[:, 1:3].set(trainable["ctx"])
  hidden = clip.encode_text(params, embeds, deep=DeepPrompts(trainable["deep_text"], 1))
  np.testing.assert_allclose(method.text_embedding(trainable, params),
                             clip.project_text(params, gather_rows(hidden, tokens.eos)), rtol=1e-5, atol=1e-5)


def test_vpt_text_is_cached_zeroshot_and_prompts_follow_vpt_deep(tiny_backbone, images):
  method = methods.build("vpt", config(), tiny_backbone, NAMES)
  np.testing.assert_allclose(method.text_features, zeroshot_features(tiny_backbone, "a photo of a {}."),
                             rtol=1e-5, atol=1e-5)
  trainable = method.init(jax.random.key(0))
  clip, params = method.clip, tiny_backbone.params
  prompts = trainable["prompts"]
  hidden = clip.encode_image(params, images, extra_tokens=prompts[0], deep=DeepPrompts(prompts[1:], -8))
  np.testing.assert_allclose(method.image_embedding(trainable, params, images),
                             clip.project_image(params, hidden[:, 0]), rtol=1e-5, atol=1e-5)


def test_cocoop_is_coop_plus_the_meta_bias_per_image(tiny_backbone, images):
  cocoop = methods.build("cocoop", config(), tiny_backbone, NAMES)
  coop = methods.build("coop", config(**{"coop.ctx_init": "a photo of a"}), tiny_backbone, NAMES)
  trainable = cocoop.init(jax.random.key(0))
  params = tiny_backbone.params
  logits = jax.jit(cocoop.logits)(trainable, params, images[:2])
  image = cocoop.clip.image_features(params, images[:2])
  bias = cocoop.meta_bias(trainable, image / jnp.linalg.norm(image, axis=-1, keepdims=True))
  for b in range(2):
    expected = coop.logits({"ctx": trainable["ctx"] + bias[b]}, params, images[b:b + 1])
    np.testing.assert_allclose(logits[b:b + 1], expected, rtol=1e-5, atol=1e-4)


# --- gradients and training -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["coop", "cocoop", "vpt", "ivlp", "maple"])
def test_gradients_reach_only_the_trainable_tree_and_a_few_steps_learn(tiny_backbone, images, name):
  method = methods.build(name, config(**{"coop.ctx_init": "a photo of a"}), tiny_backbone, NAMES)
  params = tiny_backbone.params
  trainable = method.init(jax.random.key(0))
  # The frozen tree is an argument, not a closed-over constant: the traced step holds no CLIP-sized constants.
  jaxpr = jax.make_jaxpr(method.loss)(trainable, params, images, LABELS)
  assert sum(np.size(c) for c in jaxpr.consts) < 0.02 * tiny_backbone.num_params()
  loss_fn = lambda t, f: method.loss(t, f, images, LABELS)[0]
  value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
  optimizer = optax.adam(0.05)
  state = optimizer.init(trainable)
  losses = []
  for _ in range(6):
    loss, grads = value_and_grad(trainable, params)
    updates, state = optimizer.update(grads, state)
    trainable = optax.apply_updates(trainable, updates)
    losses.append(float(loss))
  assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.02, losses


def test_coop_takes_no_gradient_through_the_vision_tower(tiny_backbone, images):
  method = methods.build("coop", config(**{"coop.n_ctx": 2}), tiny_backbone, NAMES)
  trainable = method.init(jax.random.key(0))
  grads = jax.jit(jax.grad(lambda f: method.loss(trainable, f, images, LABELS)[0]))(tiny_backbone.params)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree_util.tree_leaves(grads["vision_model"]))
  assert float(jnp.abs(grads["text_model"]["final_layer_norm"]["scale"]).max()) > 0
