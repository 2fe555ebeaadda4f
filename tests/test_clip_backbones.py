"""More backbones: the config's activation and head counts are honoured; open_clip state dicts load."""

import copy
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from transformers import FlaxCLIPModel

from jaxprompt.clip import weights
from jaxprompt.clip.model import CLIP

NAMES = ["red circle", "dog", "2012 audi"]
TINY_HEADS = {"text_heads": 4, "vision_heads": 4}


@pytest.fixture(scope="module")
def gelu_backbone(tmp_path_factory):
  """The tiny random CLIP (text 32 x 4 heads, vision 48 x 4 heads) with exact GELU, as LAION's models use.

  Kernels are scaled up from the init scale, where attention is near uniform (heads hardly matter) and MLP inputs
  are small (GELU and QuickGELU agree to ~1e-4): q, k so attention logits are O(1); fc1 so its outputs reach
  |x| ~ 1; v, out and fc2 so attention and MLP weigh in the residual stream.
  """
  backbone = weights.random_backbone(str(tmp_path_factory.mktemp("gelu_clip")), seed=1, hidden_act="gelu")
  for tower in ("text_model", "vision_model"):
    for layer in backbone.params[tower]["encoder"]["layers"].values():
      layer["mlp"]["fc1"]["kernel"] = layer["mlp"]["fc1"]["kernel"] * 20
      layer["mlp"]["fc2"]["kernel"] = layer["mlp"]["fc2"]["kernel"] * 5
      for projection, scale in (("q_proj", 8), ("k_proj", 8), ("v_proj", 5), ("out_proj", 5)):
        layer["self_attn"][projection]["kernel"] = layer["self_attn"][projection]["kernel"] * scale
  return backbone


def _images(n=2, seed=0):
  return np.random.RandomState(seed).randn(n, 32, 32, 3).astype(np.float32)


def _features(backbone, config=None):
  """(text features, image features) of our CLIP on the backbone's params (eager: no compile)."""
  clip = CLIP(config or backbone.config)
  ids = jnp.asarray(backbone.tokenizer.prompts("a photo of a {}.", NAMES).ids)
  return (np.asarray(clip.text_features(backbone.params, ids)),
          np.asarray(clip.image_features(backbone.params, _images())))


def _assert_same_tree(a, b):
  flat_a, flat_b = weights.flatten(a), weights.flatten(b)
  assert sorted(flat_a) == sorted(flat_b)
  for path in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[path]), np.asarray(flat_b[path]), err_msg=path)


def test_gelu_config_equals_flax_clip(gelu_backbone, tmp_path):
  weights.save(gelu_backbone, str(tmp_path / "hf"))
  loaded = weights.load(str(tmp_path / "hf"))
  assert loaded.config.text_config.hidden_act == loaded.config.vision_config.hidden_act == "gelu"
  text, image = _features(loaded)
  hf = FlaxCLIPModel(loaded.config, _do_init=False)
  ids = loaded.tokenizer.prompts("a photo of a {}.", NAMES).ids
  np.testing.assert_allclose(text, hf.get_text_features(ids, params=loaded.params), atol=1e-5)
  expected = hf.get_image_features(_images().transpose(0, 3, 1, 2), params=loaded.params)
  np.testing.assert_allclose(image, expected, atol=1e-5)
  # The same weights under QuickGELU miss by > 100x the tolerance: the activation really is read from the config.
  quick = copy.deepcopy(loaded.config)
  quick.text_config.hidden_act = quick.vision_config.hidden_act = "quick_gelu"
  quick_text, quick_image = _features(loaded, quick)
  assert np.abs(quick_text - text).max() > 1e-3 and np.abs(quick_image - image).max() > 1e-3


def _open_clip_config(quick_gelu=None, head_width=12):
  """open_clip's hub sidecar for the tiny model ({"model_cfg", "preprocess_cfg"}, as push_to_hf_hub writes it)."""
  model_cfg = {"embed_dim": 24,
               "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": head_width, "patch_size": 8},
               "text_cfg": {"context_length": 32, "width": 32, "heads": 4, "layers": 2}}
  if quick_gelu is not None:
    model_cfg["quick_gelu"] = quick_gelu
  return {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}


def _write_open_clip(backbone, directory, state=None, sidecar=None, name="open_clip_model.safetensors"):
  from safetensors.numpy import save_file

  os.makedirs(directory, exist_ok=True)
  state = weights.to_openai(backbone.params) if state is None else state
  save_file({k: np.array(v, order="C") for k, v in state.items()}, os.path.join(directory, name))
  backbone.tokenizer.save(directory)
  if sidecar is not None:
    with open(os.path.join(directory, weights.OPEN_CLIP_CONFIG), "w") as f:
      json.dump(sidecar, f)
  return os.path.join(directory, name)


def test_open_clip_safetensors_round_trip(gelu_backbone, tmp_path):
  state = weights.to_openai(gelu_backbone.params)
  # open_clip's CLIP names, checked independently of the mapping: packed q,k,v rows, x @ W projections.
  assert state["visual.transformer.resblocks.1.attn.in_proj_weight"].shape == (144, 48)
  assert state["visual.transformer.resblocks.1.mlp.c_fc.weight"].shape == (192, 48)
  assert state["text_projection"].shape == (32, 24) and state["visual.proj"].shape == (48, 24)
  assert state["token_embedding.weight"].shape[1] == 32 and state["positional_embedding"].shape == (32, 32)
  path = _write_open_clip(gelu_backbone, str(tmp_path / "hub"), sidecar=_open_clip_config())
  for source in (path, str(tmp_path / "hub")):  # the file, and the directory in open_clip's hub layout
    loaded = weights.load(source)
    _assert_same_tree(loaded.params, gelu_backbone.params)
    assert loaded.config.text_config.hidden_act == loaded.config.vision_config.hidden_act == "gelu"
    assert loaded.config.vision_config.num_attention_heads == 4 and loaded.config.text_config.num_attention_heads == 4
  for ours, original in zip(_features(loaded), _features(gelu_backbone)):
    np.testing.assert_array_equal(ours, original)


def test_open_clip_activation_must_be_given(gelu_backbone, tmp_path):
  # CustomTextCLIP's `text.` prefix, a DDP `module.` prefix and a stale attn_mask buffer are all open_clip variants.
  state = {"module." + ("text." + k if not k.startswith(("visual.", "logit_scale")) else k): v
           for k, v in weights.to_openai(gelu_backbone.params).items()}
  state["module.attn_mask"] = np.zeros((32, 32), np.float32)
  path = _write_open_clip(gelu_backbone, str(tmp_path / "bare"), state=state)
  with pytest.raises(ValueError, match="hidden_act"):
    weights.load(path, str(tmp_path / "bare"), overrides=TINY_HEADS)
  loaded = weights.load(path, str(tmp_path / "bare"), overrides=dict(TINY_HEADS, hidden_act="gelu"))
  _assert_same_tree(loaded.params, gelu_backbone.params)
  with pytest.raises(ValueError, match="unknown key 'heads'"):
    weights.load(path, overrides={"heads": 4})
  # A sidecar saying quick_gelu (OpenAI-pretrained / DFN weights in open_clip's layout) is obeyed.
  path = _write_open_clip(gelu_backbone, str(tmp_path / "quick"), sidecar=_open_clip_config(quick_gelu=True))
  assert weights.load(path).config.vision_config.hidden_act == "quick_gelu"


def test_head_override_changes_result_and_wrong_shape_names_key(gelu_backbone, tmp_path):
  path = _write_open_clip(gelu_backbone, str(tmp_path / "hub"), sidecar=_open_clip_config())
  four = weights.load(path)
  two = weights.load(path, overrides={"vision_heads": 2})  # the override beats the sidecar's head_width
  assert two.config.vision_config.num_attention_heads == 2 and two.config.text_config.num_attention_heads == 4
  _assert_same_tree(two.params, four.params)
  assert np.abs(_features(two)[1] - _features(four)[1]).max() > 1e-3
  with pytest.raises(ValueError, match="vision_heads=5 does not divide the vision width 48"):
    weights.load(path, overrides={"vision_heads": 5})

  state = weights.to_openai(gelu_backbone.params)
  state["visual.proj"] = np.zeros((48, 7), np.float32)
  bad = _write_open_clip(gelu_backbone, str(tmp_path / "bad"), state=state, sidecar=_open_clip_config())
  with pytest.raises(ValueError, match=r"visual_projection/kernel \(from 'visual.proj'\) has shape \(48, 7\)"):
    weights.load(bad)
  state = weights.to_openai(gelu_backbone.params)
  state["transformer.resblocks.0.attn.in_proj_weight"] = np.zeros((97, 32), np.float32)
  bad = _write_open_clip(gelu_backbone, str(tmp_path / "qkv"), state=state, sidecar=_open_clip_config())
  with pytest.raises(ValueError, match=r"'transformer.resblocks.0.attn.in_proj_weight' has shape \(97, 32\)"):
    weights.load(bad)


def _shape_state(text_width, text_layers, vision_width, vision_layers, vision_mlp, patch=14, image=224, embed=1024):
  """The entries `openai_config` reads, as zero-cost broadcast arrays of a published model's shapes."""
  zeros = lambda *shape: np.broadcast_to(np.float32(0), shape)
  state = {"ln_final.weight": zeros(text_width), "token_embedding.weight": zeros(49408, text_width),
           "positional_embedding": zeros(77, text_width), "text_projection": zeros(text_width, embed),
           "visual.conv1.weight": zeros(vision_width, 3, patch, patch),
           "visual.positional_embedding": zeros((image // patch) ** 2 + 1, vision_width)}
  for i in range(text_layers):
    state[f"transformer.resblocks.{i}.mlp.c_fc.weight"] = zeros(4 * text_width, text_width)
  for i in range(vision_layers):
    state[f"visual.transformer.resblocks.{i}.mlp.c_fc.weight"] = zeros(vision_mlp, vision_width)
  return state


def test_heads_of_published_vits_are_not_width_over_64():
  heads = lambda config: (config.text_config.num_attention_heads, config.vision_config.num_attention_heads)
  vit_h = _shape_state(1024, 24, 1280, 32, 5120)  # open_clip ViT-H-14: head_width 80
  config = weights.openai_config(vit_h, hidden_act="gelu")
  assert heads(config) == (16, 16) and config.vision_config.num_hidden_layers == 32
  assert config.vision_config.image_size == 224 and config.vision_config.patch_size == 14
  big_g = _shape_state(1280, 32, 1664, 48, 8192, embed=1280)  # ViT-bigG-14: head_width 104
  assert heads(weights.openai_config(big_g, hidden_act="gelu")) == (20, 16)
  vit_b16 = _shape_state(512, 12, 768, 12, 3072, patch=16, embed=512)  # OpenAI's own: width // 64
  assert heads(weights.openai_config(vit_b16, hidden_act="quick_gelu")) == (8, 12)
  # An open_clip sidecar gives vision heads as width // head_width; an override beats both.
  sidecar = {"quick_gelu": True, "vision_cfg": {"width": 1280, "head_width": 64}, "text_cfg": {"heads": 16}}
  config = weights.openai_config(vit_h, sidecar=sidecar)
  assert heads(config) == (16, 20) and config.text_config.hidden_act == "quick_gelu"
  config = weights.openai_config(vit_h, sidecar=sidecar, overrides={"vision_heads": 10, "hidden_act": "gelu"})
  assert heads(config) == (16, 10) and config.vision_config.hidden_act == "gelu"
  with pytest.raises(ValueError, match="vision width 1000 is not a known .*'vision_heads'"):
    weights.openai_config(_shape_state(1024, 24, 1000, 2, 4000), hidden_act="gelu")
  with pytest.raises(ValueError, match="'hidden_act'"):
    weights.openai_config(vit_h)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_open_clip_torch_files(gelu_backbone, tmp_path):
  torch = pytest.importorskip("torch", reason="reading .bin/.pt needs torch (the optional [torch] extra)")
  state = weights.to_openai(gelu_backbone.params)
  tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}
  directory = tmp_path / "hub"
  _write_open_clip(gelu_backbone, str(directory), sidecar=_open_clip_config())
  os.remove(directory / "open_clip_model.safetensors")
  torch.save(tensors, directory / "open_clip_pytorch_model.bin")  # open_clip's hub `.bin`
  _assert_same_tree(weights.load(str(directory)).params, gelu_backbone.params)
  # A training checkpoint (epoch_N.pt): {"state_dict": ...} with DDP prefixes; no sidecar, so the activation is asked.
  checkpoint = tmp_path / "epoch_3.pt"
  torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in tensors.items()}}, checkpoint)
  with pytest.raises(ValueError, match="hidden_act"):
    weights.load(str(checkpoint), str(directory), overrides=TINY_HEADS)
  loaded = weights.load(str(checkpoint), str(directory), overrides=dict(TINY_HEADS, hidden_act="gelu"))
  _assert_same_tree(loaded.params, gelu_backbone.params)
  # OpenAI's own releases are TorchScript archives: QuickGELU by default, stray int entries ignored.
  archive = _torchscript_archive(torch, state, str(tmp_path / "ViT-tiny.pt"))
  loaded = weights.load(archive, str(directory), overrides=TINY_HEADS)
  _assert_same_tree(loaded.params, gelu_backbone.params)
  assert loaded.config.text_config.hidden_act == loaded.config.vision_config.hidden_act == "quick_gelu"


def _torchscript_archive(torch, state, path):
  """Saves a scripted module whose state_dict is `state` plus OpenAI's input_resolution / context_length / vocab_size."""

  class Node(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
      return x

  root = Node()
  for key, value in state.items():
    *parents, leaf = key.split(".")
    module = root
    for name in parents:
      if not hasattr(module, name):
        module.add_module(name, Node())
      module = getattr(module, name)
    module.register_parameter(leaf, torch.nn.Parameter(torch.from_numpy(np.array(value))))
  for name, number in (("input_resolution", 32), ("context_length", 32), ("vocab_size", 64)):
    root.register_buffer(name, torch.tensor(number))
  torch.jit.script(root).save(path)
  return path
