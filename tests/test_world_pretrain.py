"""Pretraining writes a loadable CLIP directory; the shipped world CLIP loads and classifies shapes zero-shot."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from jaxprompt.world import MINI_CLIP_DIR, captions, generator, pretrain, vocab, zeroshot

# The shipped run measured 0.550 ensemble accuracy on 1,024 fresh images (RECORD.md: all/ensemble); on 256 images the
# binomial std is ~0.03, so 0.40 (5 std below the measurement, 3x chance) is a safe margin that still fails a broken
# or untrained model (chance is 0.125).
SHIPPED_MIN_ENSEMBLE_ACCURACY = 0.40


def test_smoke_pretraining_writes_a_directory_that_transformers_loads(tmp_path):
  out = str(tmp_path / "mini")
  pretrain.main(["--out", out, "--steps", "5", "--smoke", "--log-every", "5"])
  model = transformers.FlaxCLIPModel.from_pretrained(out)
  tokenizer = transformers.CLIPTokenizer.from_pretrained(out)
  text = model.config.text_config
  assert text.max_position_embeddings == vocab.CONTEXT_LENGTH
  assert text.eos_token_id == tokenizer.eos_token_id == text.vocab_size - 1
  assert text.bos_token_id == tokenizer.bos_token_id == text.vocab_size - 2
  ids = zeroshot.token_ids(tokenizer, ["a photo of a star.", "a sketch of a red heart"], text.max_position_embeddings)
  images, _ = generator.render_batch(0, range(3))
  logits = model(ids, zeroshot.pixels(images)).logits_per_image
  assert logits.shape == (3, 2) and np.isfinite(np.asarray(logits)).all()
  record = json.load(open(os.path.join(out, "record.json")))
  assert record["config"]["steps"] == 5 and record["history"][-1]["step"] == 5
  assert np.isfinite(record["final_loss"]) and "all/ensemble" in record["zero_shot"]
  assert "python -m jaxprompt.world.pretrain --out" in open(os.path.join(out, "RECORD.md")).read()


@pytest.fixture(scope="module")
def shipped():
  assert os.path.exists(os.path.join(MINI_CLIP_DIR, "flax_model.msgpack")), "shipped world CLIP is missing"
  model = transformers.FlaxCLIPModel.from_pretrained(MINI_CLIP_DIR)
  tokenizer = transformers.CLIPTokenizer.from_pretrained(MINI_CLIP_DIR)
  return model, tokenizer


def test_shipped_model_config_and_record(shipped):
  model, tokenizer = shipped
  config = model.config
  assert config.text_config.max_position_embeddings == 32
  assert config.text_config.eos_token_id == tokenizer.eos_token_id == config.text_config.vocab_size - 1
  assert config.vision_config.image_size == generator.IMAGE_SIZE
  num_params = sum(x.size for x in __import__("jax").tree.leaves(model.params))
  assert 1_000_000 < num_params < 3_000_000
  assert float(model.params["logit_scale"]) <= np.log(100.0) + 1e-6
  record = json.load(open(os.path.join(MINI_CLIP_DIR, "record.json")))
  assert record["config"]["steps"] == pretrain.DEFAULTS["steps"] and record["num_params"] == num_params
  assert record["zero_shot"]["all/ensemble"] > SHIPPED_MIN_ENSEMBLE_ACCURACY


def test_shipped_text_readout_is_the_eos_position(shipped):
  model, tokenizer = shipped
  ids = jnp.asarray(zeroshot.token_ids(tokenizer, ["a photo of a star.", "X X X X X X X X heart ."], 32))
  positions = jnp.broadcast_to(jnp.arange(32), ids.shape)
  out = model.module.apply({"params": model.params}, ids, jnp.ones_like(ids), positions,
                           method=lambda module, *a: module.text_model(*a))
  at_eos = out.last_hidden_state[jnp.arange(2), jnp.argmax(ids, -1)]
  np.testing.assert_allclose(out.pooler_output, at_eos, atol=1e-6)


def test_shipped_model_classifies_fresh_images_zero_shot(shipped):
  model, tokenizer = shipped
  shapes = list(generator.SHAPES)
  rendered = [generator.render(123_456, i, shape=shapes[i % 8], style=generator.STYLES[(i // 8) % 4])
              for i in range(256)]
  images = np.stack([image for image, _ in rendered])
  labels = np.array([i % 8 for i in range(256)])
  text = zeroshot.class_features(model, model.params, tokenizer, shapes, captions.ensemble_templates())
  accuracy = zeroshot.accuracy(zeroshot.image_features(model, model.params, images), text, labels)
  assert accuracy > SHIPPED_MIN_ENSEMBLE_ACCURACY, accuracy
