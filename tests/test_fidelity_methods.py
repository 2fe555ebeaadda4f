"""Fidelity to the reference code bases (docs/methods/*.md "Reference runs"): MaPLe+LAMM's single label token, CoOp's
word-counted context phrase, language-only IVLP, and the reference's zero-shot prompt ensemble.

The tiny test tokenizer splits like CLIP's BPE: "big-red" is three tokens (big, -, red) and "2012" four digit tokens.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprompt import methods
from jaxprompt.clip.model import cosine_logits
from jaxprompt.methods import templates as template_sets
from jaxprompt.methods.base import resolve_templates
from tests.conftest import load_config_file
from tests.conftest import token_rows
from tests.conftest import method_config as config

NAMES = ["cat", "dog", "red_circle", "big car"]
LABELS = jnp.array([0, 1, 2, 3, 0, 2])
PHRASE = "a big-red photo of a"   # 5 words, 7 tokens: a big - red photo | of a


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(1), (6, 32, 32, 3))


def zeroshot_features(backbone, template, names=NAMES):
  """Plain CLIP text features of template.format(name) over the full (untrimmed) context."""
  tokens = backbone.tokenizer.prompts(template, [n.replace("_", " ") for n in names])
  return backbone.model().text_features(backbone.params, tokens.ids)


def normalized(x):
  x = np.asarray(x)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --- 6. MaPLe+LAMM, after_ctx: one label token, as the reference ------------------------------------------------------
def test_after_ctx_uses_one_label_token_when_every_name_is_long(tiny_backbone):
  """StanfordCars-like names (a year of 4 digit tokens first): the shortest is 5 tokens, yet after_ctx writes one
  label token (the name's first) into the "of" slot after MaPLe's 2-token context, the full name staying."""
  cars = ["2012 audi", "2012 bmw", "audi 2012 car"]
  method = methods.build("lamm", config(**{"lamm.base": "maple", "lamm.maple_placement": "after_ctx"}),
                         tiny_backbone, cars)
  assert method.tokens_per_label == 1
  np.testing.assert_array_equal(method.label_positions, np.full((3, 1), 3))  # [SOS] a photo | of | a name .
  trainable = method.init(jax.random.key(0))
  assert trainable["labels"].shape == (3, 1, 32)
  np.testing.assert_array_equal(trainable["labels"][:, 0], np.stack([token_rows(tiny_backbone, n)[0] for n in cars]))
  assert len(tiny_backbone.tokenizer.encode("2012")) == 4
  # The name is still all in the prompt: the "of" slot holding "of" gives the base's reference features.
  trainable["labels"] = jnp.broadcast_to(jnp.asarray(token_rows(tiny_backbone, "of")), (3, 1, 32))
  params = tiny_backbone.params
  np.testing.assert_allclose(jax.jit(method.label_features)(trainable, params),
                             jax.jit(method.reference_features)(trainable, params), rtol=1e-5, atol=1e-5)
  # The paper's placement keeps the shortest-name default (here 5 tokens replace each name's first 5).
  by_name = methods.build("lamm", config(**{"lamm.base": "maple"}), tiny_backbone, cars)
  assert by_name.tokens_per_label == 5


def test_lamm_config_sets_one_label_token_for_after_ctx():
  after_ctx = load_config_file("configs/lamm.py", "base=maple,placement=after_ctx")
  assert after_ctx.method.lamm.tokens_per_label == 1 and after_ctx.method.lamm.maple_placement == "after_ctx"
  assert load_config_file("configs/lamm.py", "base=maple").method.lamm.tokens_per_label == 0
  explicit = load_config_file("configs/lamm.py", "base=maple,placement=after_ctx,tokens_per_label=2")
  assert explicit.method.lamm.tokens_per_label == 2


# --- 7. CoOp's context from a phrase: the reference's rule ------------------------------------------------------------
def test_reference_rule_counts_words_and_learns_the_first_bpe_tokens(tiny_backbone, images):
  assert len(tiny_backbone.tokenizer.encode(PHRASE)) == 7
  method = methods.build("coop", config(**{"coop.ctx_init": PHRASE, "coop.ctx_rule": "reference"}), tiny_backbone,
                         NAMES)
  trainable = method.init(jax.random.key(0))
  phrase_rows = token_rows(tiny_backbone, PHRASE)
  assert trainable["ctx"].shape == (5, 32)                        # 5 words
  np.testing.assert_array_equal(trainable["ctx"], phrase_rows[:5])  # a big - red photo
  np.testing.assert_array_equal(method.prompts.slots, np.broadcast_to(np.arange(1, 6), (4, 5)))
  # The rest of the phrase ("of a") stays fixed text before the name.
  embeds = np.asarray(method.prompt_embeddings(trainable, tiny_backbone.params))
  np.testing.assert_allclose(embeds[:, 6:8], np.broadcast_to(phrase_rows[5:], (4, 2, 32)), atol=1e-7)
  expected = methods.build("zeroshot", config(templates=[PHRASE + " {}."]), tiny_backbone, NAMES)
  np.testing.assert_allclose(jax.jit(method.logits)(trainable, tiny_backbone.params, images),
                             expected.logits({}, tiny_backbone.params, images), rtol=1e-5, atol=1e-4)
  # jaxprompt's own rule learns all 7 tokens.
  tokens = methods.build("coop", config(**{"coop.ctx_init": PHRASE}), tiny_backbone, NAMES)
  assert tokens.init(jax.random.key(0))["ctx"].shape == (7, 32)


def test_reference_rule_matches_the_token_rule_when_words_are_single_tokens(tiny_backbone, images):
  params = tiny_backbone.params
  built = [methods.build("coop", config(**{"coop.ctx_init": "a photo of a", "coop.ctx_rule": rule}), tiny_backbone,
                         NAMES) for rule in ("tokens", "reference")]
  trainables = [m.init(jax.random.key(0)) for m in built]
  np.testing.assert_array_equal(trainables[0]["ctx"], trainables[1]["ctx"])
  np.testing.assert_allclose(built[0].logits(trainables[0], params, images),
                             built[1].logits(trainables[1], params, images), rtol=1e-6, atol=1e-5)


def test_reference_rule_refuses_what_it_cannot_place(tiny_backbone):
  with pytest.raises(ValueError, match="class_position='end'"):
    methods.build("coop", config(**{"coop.ctx_init": PHRASE, "coop.ctx_rule": "reference",
                                    "coop.class_position": "middle"}), tiny_backbone, NAMES)
  with pytest.raises(ValueError, match="ctx_rule='bpe'"):
    methods.build("coop", config(**{"coop.ctx_init": PHRASE, "coop.ctx_rule": "bpe"}), tiny_backbone, NAMES)


def test_csc_with_a_phrase_warns_and_says_which_context_runs(tiny_backbone, caplog):
  options = {"coop.ctx_init": "a photo of a", "coop.csc": True}
  with caplog.at_level(logging.WARNING):
    shared = methods.build("coop", config(**options, **{"coop.ctx_rule": "reference"}), tiny_backbone, NAMES)
  assert "csc is ignored" in caplog.text and "one shared context" in caplog.text
  assert shared.init(jax.random.key(0))["ctx"].shape == (4, 32)
  shared.for_classes(["dog", "cat"])  # a shared context scores any class list
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    per_class = methods.build("coop", config(**options, **{"coop.ctx_rule": "tokens"}), tiny_backbone, NAMES)
  assert "class-specific context" in caplog.text and "reference code ignores csc" in caplog.text
  assert per_class.init(jax.random.key(0))["ctx"].shape == (4, 4, 32)


def test_cocoop_reads_the_phrase_by_the_same_rule(tiny_backbone, images):
  cocoop = methods.build("cocoop", config(**{"cocoop.ctx_init": PHRASE, "cocoop.ctx_rule": "reference"}),
                         tiny_backbone, NAMES)
  coop = methods.build("coop", config(**{"coop.ctx_init": PHRASE, "coop.ctx_rule": "reference"}), tiny_backbone,
                       NAMES)
  trainable = cocoop.init(jax.random.key(0))
  assert trainable["ctx"].shape == (5, 32)
  np.testing.assert_array_equal(cocoop.prompts.ids, coop.prompts.ids)
  params = tiny_backbone.params
  image = cocoop.clip.image_features(params, images[:1])
  bias = cocoop.meta_bias(trainable, image / jnp.linalg.norm(image, axis=-1, keepdims=True))
  np.testing.assert_allclose(jax.jit(cocoop.logits)(trainable, params, images[:1]),
                             coop.logits({"ctx": trainable["ctx"] + bias[0]}, params, images[:1]),
                             rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("path, block", [("configs/coop.py", "coop"), ("configs/coop_b2n.py", "coop"),
                                         ("configs/cocoop.py", "cocoop"), ("configs/lamm.py:base=coop", "coop")])
def test_paper_configs_read_the_phrase_as_the_reference(path, block):
  path, _, arg = path.partition(":")
  assert load_config_file(path, arg).method[block].ctx_rule == "reference"


# --- 8. IVLP language-only --------------------------------------------------------------------------------------------
def test_ivlp_language_only_has_text_prompts_and_plain_image_features(tiny_backbone, images):
  method = methods.build("ivlp", config(**{"ivlp.text_tokens": 4, "ivlp.vision_tokens": 0, "ivlp.vision_depth": 0}),
                         tiny_backbone, NAMES)
  trainable = method.init(jax.random.key(0))
  assert jax.tree_util.tree_map(jnp.shape, trainable) == {"text_prompts": (2, 4, 32)}
  np.testing.assert_array_equal(trainable["text_prompts"][0], token_rows(tiny_backbone, "a photo of a"))
  params, clip = tiny_backbone.params, method.clip
  image = clip.image_features(params, images)
  np.testing.assert_allclose(method.image_embedding(trainable, params, images), image, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(jax.jit(method.logits)(trainable, params, images),
                             cosine_logits(clip.logit_scale(params), image, method.text_embedding(trainable, params)),
                             rtol=1e-5, atol=1e-4)
  # Nothing flows back through the vision tower; the text prompts learn.
  grads = jax.jit(jax.grad(lambda t, f: method.loss(t, f, images, LABELS)[0], argnums=(0, 1)))(trainable, params)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree_util.tree_leaves(grads[1]["vision_model"]))
  assert float(jnp.abs(grads[0]["text_prompts"]).max()) > 0
  assert methods.build("ivlp", config(**{"ivlp.text_tokens": 4, "ivlp.vision_depth": 0}), tiny_backbone,
                       NAMES).num_trainable() == 2 * 4 * 32
  with pytest.raises(ValueError, match="ivlp.vision_tokens must be >= 0"):
    methods.build("ivlp", config(**{"ivlp.vision_tokens": -1}), tiny_backbone, NAMES)


def test_ivlp_config_offers_the_language_only_setting():
  config_ = load_config_file("configs/ivlp.py", "language_only=True")
  ivlp = config_.method.ivlp
  assert (ivlp.text_tokens, ivlp.vision_tokens, ivlp.vision_depth, ivlp.text_depth) == (4, 0, 0, 12)
  assert ivlp.ctx_init == "a photo of a" and config_.optim.lr == 0.0025
  assert (config_.optim.batch_size, config_.optim.epochs) == (4, 5)
  default = load_config_file("configs/ivlp.py").method.ivlp
  assert (default.text_tokens, default.vision_tokens, default.vision_depth) == (2, 2, 12)


# --- 9. The reference's zero-shot ensemble as a named template set ----------------------------------------------------
def test_reference_ensemble_is_the_seven_selected_templates_plus_the_datasets_own():
  resolved = resolve_templates(config("zeroshot", template_set="reference_ensemble"), ["{} texture.", "other {}."])
  assert list(resolved.templates) == [
      "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
      "a {} in a video game.", "art of the {}.", "a photo of the small {}.", "{} texture."]
  alone = resolve_templates(config("zeroshot", template_set="imagenet_select"), ["a photo of a {}."])
  assert list(alone.templates) == list(template_sets.IMAGENET_SELECT)
  with pytest.raises(ValueError, match="known: imagenet_select, reference_ensemble"):
    resolve_templates(config("zeroshot", template_set="clip80"), ["{}."])
  with pytest.raises(ValueError, match="ensemble=True and method.template_set"):
    resolve_templates(config("zeroshot", template_set="reference_ensemble", ensemble=True), ["{}."])


def test_zeroshot_run_with_the_reference_ensemble_averages_its_templates(tiny_backbone):
  method_config = config("zeroshot", templates=[], template_set="reference_ensemble")
  method = methods.build_for_run(method_config, tiny_backbone, NAMES, ["a sketch of the {}."])
  expected_templates = list(template_sets.IMAGENET_SELECT) + ["a sketch of the {}."]
  assert method.templates == expected_templates
  mean = sum(normalized(zeroshot_features(tiny_backbone, t)) for t in expected_templates)
  np.testing.assert_allclose(method.text_features, normalized(mean), atol=1e-5)
  # Another dataset's view takes that dataset's own template.
  view = method.for_classes(["cat", "dog"], ["a painting of a {}."])
  assert view.templates == list(template_sets.IMAGENET_SELECT) + ["a painting of a {}."]


def test_zeroshot_config_names_the_reference_ensemble():
  dtd = load_config_file("configs/zeroshot.py", "dataset=dtd,template_set=reference_ensemble")
  assert dtd.method.template_set == "reference_ensemble"
  imagenet = load_config_file("configs/zeroshot.py", "dataset=imagenet,template_set=reference_ensemble")
  assert imagenet.method.template_set == "imagenet_select"
  assert load_config_file("configs/zeroshot.py", "dataset=dtd").method.template_set == ""
