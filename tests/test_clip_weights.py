"""Loading CLIP from every supported format gives the identical tree; bad input names what is wrong."""

import os

import jax
import numpy as np
import pytest
from transformers import FlaxCLIPModel

from jaxprompt.clip import weights
from jaxprompt.clip.tokenizer import Tokenizer, write_vocabulary


def _assert_same_tree(a, b):
  flat_a, flat_b = weights.flatten(a), weights.flatten(b)
  assert sorted(flat_a) == sorted(flat_b)
  for path in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[path]), np.asarray(flat_b[path]), err_msg=path)


def test_save_pretrained_directory_loads_identically(tiny_backbone, tmp_path):
  directory = str(tmp_path / "clip")
  FlaxCLIPModel(tiny_backbone.config, _do_init=False).save_pretrained(directory, params=tiny_backbone.params)
  tiny_backbone.tokenizer.save(directory)
  loaded = weights.load(directory)
  _assert_same_tree(loaded.params, tiny_backbone.params)
  assert loaded.tokenizer.eot_id == tiny_backbone.tokenizer.eot_id
  assert loaded.config.vision_config.patch_size == tiny_backbone.config.vision_config.patch_size


def test_save_round_trip(tiny_backbone, tmp_path):
  weights.save(tiny_backbone, str(tmp_path / "saved"))
  assert os.path.exists(tmp_path / "saved" / "flax_model.msgpack")
  _assert_same_tree(weights.load(str(tmp_path / "saved")).params, tiny_backbone.params)


def test_pytorch_named_safetensors_loads_identically(tiny_backbone, tmp_path):
  from safetensors.numpy import save_file

  directory = tmp_path / "pt"
  directory.mkdir()
  tiny_backbone.config.save_pretrained(str(directory))
  tiny_backbone.tokenizer.save(str(directory))
  state = weights.to_torch_names(tiny_backbone.params)
  # The names a PyTorch CLIPModel uses, checked independently of our mapping.
  assert state["text_model.encoder.layers.0.self_attn.q_proj.weight"].shape == (32, 32)
  assert state["vision_model.embeddings.patch_embedding.weight"].shape == (48, 3, 8, 8)
  assert state["vision_model.pre_layrnorm.weight"].shape == (48,)
  np.testing.assert_array_equal(state["visual_projection.weight"],
                                np.asarray(tiny_backbone.params["visual_projection"]["kernel"]).T)
  state["text_model.embeddings.position_ids"] = np.arange(32)[None]  # a buffer PyTorch checkpoints carry
  save_file({k: np.array(v, order="C") for k, v in state.items()}, str(directory / "model.safetensors"))
  _assert_same_tree(weights.load(str(directory)).params, tiny_backbone.params)


def test_openai_npz_loads_identically(tiny_backbone, tmp_path):
  state = weights.to_openai(tiny_backbone.params)
  # Spot-check the OpenAI layout independently: fused q,k,v rows, conv OIHW, x @ W projections.
  qkv = state["transformer.resblocks.1.attn.in_proj_weight"]
  layer = tiny_backbone.params["text_model"]["encoder"]["layers"]["1"]["self_attn"]
  np.testing.assert_array_equal(qkv[32:64], np.asarray(layer["k_proj"]["kernel"]).T)
  assert state["visual.conv1.weight"].shape == (48, 3, 8, 8)
  np.testing.assert_array_equal(state["visual.proj"], tiny_backbone.params["visual_projection"]["kernel"])
  assert "visual.ln_pre.weight" in state and "ln_final.bias" in state
  path = str(tmp_path / "clip.npz")
  np.savez(path, **state)
  tokenizer_dir = str(tmp_path / "tok")
  tiny_backbone.tokenizer.save(tokenizer_dir)
  # Widths 32 / 48 are no published ViT's, so the head counts must be given; a .npz is OpenAI's format: QuickGELU.
  with pytest.raises(ValueError, match="text_heads"):
    weights.load(path, tokenizer=tokenizer_dir)
  loaded = weights.load(path, tokenizer=tokenizer_dir, overrides={"text_heads": 4, "vision_heads": 4})
  _assert_same_tree(loaded.params, tiny_backbone.params)
  assert loaded.config.vision_config.image_size == 32 and loaded.config.text_config.num_hidden_layers == 2
  assert loaded.config.text_config.hidden_act == loaded.config.vision_config.hidden_act == "quick_gelu"


def test_missing_weights_directory_is_named(tmp_path):
  missing = str(tmp_path / "no_such_clip")
  with pytest.raises(FileNotFoundError, match="no_such_clip"):
    weights.load(missing)
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json"):
    weights.load(str(tmp_path / "empty"))


def test_mismatched_parameter_is_named(tiny_backbone, tmp_path):
  params = jax.tree_util.tree_map(np.asarray, tiny_backbone.params)
  params["text_projection"]["kernel"] = np.zeros((32, 7), np.float32)
  directory = str(tmp_path / "bad")
  FlaxCLIPModel(tiny_backbone.config, _do_init=False).save_pretrained(directory, params=params)
  tiny_backbone.tokenizer.save(directory)
  with pytest.raises(ValueError, match=r"text_projection/kernel has shape \(32, 7\), expected \(32, 24\)"):
    weights.load(directory)


def test_tokenizer_spans_eos_and_overlong_prompt(tmp_path):
  write_vocabulary(str(tmp_path), ["a", "photo", "of", "red", "circle", "."])
  tokenizer = Tokenizer.from_directory(str(tmp_path), context_length=12)
  assert tokenizer.eot_id == len(tokenizer.hf) - 1  # EOS is the largest id: its position is argmax(ids)
  prompts = tokenizer.prompts("a photo of a {}.", ["red circle", "circle"])
  assert [len(tokenizer.encode(w)) for w in ("photo", "circle", "red circle")] == [1, 1, 2]
  np.testing.assert_array_equal(prompts.eos, [8, 7])
  np.testing.assert_array_equal(prompts.name_spans, [[5, 7], [5, 6]])
  np.testing.assert_array_equal(prompts.ids.argmax(-1), prompts.eos)
  assert prompts.ids[0, 5] == tokenizer.encode("red")[0]
  assert prompts.max_length == 9  # (trimming itself is PromptTokens.make's, tested with the methods)
  with pytest.raises(ValueError, match="'red circle'"):
    tokenizer.prompts("a photo of a {}.", ["circle", "red circle"], reserve=4)
  # Unknown words still tokenise (into characters) rather than failing.
  assert len(tokenizer.encode("zebra")) == 5
