"""Loading and saving the frozen CLIP: `load(source) -> Backbone`, `save(backbone, directory)`.

`source` may be
* a directory written by `FlaxCLIPModel.save_pretrained` (`config.json` + `flax_model.msgpack`),
* a directory holding `config.json` + a PyTorch-named `model.safetensors` (no torch needed),
* an OpenAI-format state dict file (`.npz`; `.pt` when torch is installed), mapped as in specs/clip.md,
* a hub id such as `openai/clip-vit-base-patch16` (needs the network),
* `"embedded"`: the mini CLIP shipped with the package (the shapes world's backbone),
* `"tiny-random[:seed]"`: a tiny random CLIP with a word-level test vocabulary (smoke tests; meaningless numbers).

Every path checks the loaded tree against the shapes the config implies and names the first mismatch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from jaxprompt.clip.model import CLIP
from jaxprompt.trees import flatten, unflatten
from jaxprompt.clip.tokenizer import Tokenizer
from jaxprompt.world import MINI_CLIP_DIR

Params = dict[str, Any]

# The shapes world's pretrained mini CLIP, shipped inside the package (see jaxprompt/world/assets/mini_clip/RECORD.md).
EMBEDDED = MINI_CLIP_DIR


@dataclasses.dataclass
class Backbone:
  """A frozen CLIP: HF `CLIPConfig`, parameter tree (as `FlaxCLIPModel.params`) and tokenizer."""

  config: Any
  params: Params
  tokenizer: Tokenizer
  source: str = ""

  def model(self, dtype=np.float32, remat: bool = False) -> CLIP:
    return CLIP(self.config, dtype=dtype, remat=remat)

  def num_params(self) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(self.params))


# --- shapes -----------------------------------------------------------------------------------------------------------
def expected_shapes(config) -> Params:
  """The parameter shapes `FlaxCLIPModel(config)` has, without initialising anything."""
  from transformers import FlaxCLIPModel  # pylint: disable=g-import-not-at-top

  model = FlaxCLIPModel(config, _do_init=False)
  return jax.tree_util.tree_map(lambda x: tuple(x.shape), model.params_shape_tree)


def check_tree(params: Params, config, where: str) -> Params:
  """Raises naming the first missing, unexpected or mis-shaped parameter path; returns params as numpy arrays."""
  expected = flatten(expected_shapes(config))
  found = flatten(params)
  for path, shape in expected.items():
    if path not in found:
      raise ValueError(f"{where}: parameter {path} (shape {shape}) is missing")
    if tuple(found[path].shape) != shape:
      raise ValueError(f"{where}: parameter {path} has shape {tuple(found[path].shape)}, expected {shape}")
  for path in found:
    if path not in expected:
      raise ValueError(f"{where}: unexpected parameter {path}")
  return unflatten({path: np.asarray(value, np.float32) for path, value in found.items()})


# --- PyTorch (HF) names -----------------------------------------------------------------------------------------------
def from_torch_names(state: dict[str, np.ndarray]) -> Params:
  """HF PyTorch CLIPModel state dict -> Flax tree: Linear weights transposed, conv OIHW -> HWIO, LN weight -> scale."""
  flat = {}
  for name, value in state.items():
    if name.endswith("position_ids"):
      continue  # a buffer, not a parameter
    parts = name.split(".")
    leaf = parts[-1]
    value = np.asarray(value)
    if "patch_embedding" in parts:
      flat["/".join(parts[:-1] + ["kernel"])] = value.transpose(2, 3, 1, 0)
    elif leaf == "weight" and parts[-2] in ("token_embedding", "position_embedding"):
      flat["/".join(parts[:-1] + ["embedding"])] = value
    elif leaf == "weight" and ("layer_norm" in parts[-2] or "layernorm" in parts[-2] or "layrnorm" in parts[-2]):
      flat["/".join(parts[:-1] + ["scale"])] = value
    elif leaf == "weight":
      flat["/".join(parts[:-1] + ["kernel"])] = value.T
    elif name == "logit_scale":
      flat[name] = value.reshape(())  # some exporters store the scalar as shape (1,)
    else:
      flat["/".join(parts)] = value
  return unflatten(flat)


def to_torch_names(params: Params) -> dict[str, np.ndarray]:
  """The inverse of `from_torch_names` (without the position_ids buffers)."""
  state = {}
  for path, value in flatten(params).items():
    parts = path.split("/")
    value = np.asarray(value)
    if len(parts) > 1 and parts[-2] == "patch_embedding":
      state[".".join(parts[:-1] + ["weight"])] = value.transpose(3, 2, 0, 1)
    elif parts[-1] in ("embedding", "scale"):
      state[".".join(parts[:-1] + ["weight"])] = value
    elif parts[-1] == "kernel":
      state[".".join(parts[:-1] + ["weight"])] = value.T
    else:
      state[".".join(parts)] = value
  return state


# --- OpenAI names -----------------------------------------------------------------------------------------------------
_OPENAI_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
                 "attn.out_proj": "self_attn.out_proj"}


def from_openai(state: dict[str, np.ndarray]) -> tuple[Params, Any]:
  """OpenAI CLIP state dict (ViT) -> (Flax tree, CLIPConfig inferred from the shapes)."""
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top

  state = {k: np.asarray(v, np.float32) for k, v in state.items()}
  torch_named = {}
  for name, value in state.items():
    prefix, rest = ("vision_model", name[len("visual."):]) if name.startswith("visual.") else ("text_model", name)
    if rest.startswith("transformer.resblocks."):
      index, sub = rest[len("transformer.resblocks."):].split(".", 1)
      base = f"{prefix}.encoder.layers.{index}."
      if sub.startswith("attn.in_proj_"):
        kind = sub[len("attn.in_proj_"):]  # weight | bias
        for part, chunk in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
          torch_named[f"{base}self_attn.{part}.{kind}"] = chunk
        continue
      module, kind = sub.rsplit(".", 1)
      torch_named[base + _OPENAI_LAYER[module] + "." + kind] = value
    elif rest in ("token_embedding.weight", "positional_embedding") and prefix == "text_model":
      key = "token_embedding" if rest.startswith("token") else "position_embedding"
      torch_named[f"text_model.embeddings.{key}.weight"] = value
    elif rest == "ln_final.weight" or rest == "ln_final.bias":
      torch_named["text_model.final_layer_norm." + rest.split(".")[1]] = value
    elif rest == "text_projection":
      torch_named["text_projection.weight"] = value.T  # OpenAI stores x @ W; the torch Linear layout is W.T
    elif rest == "logit_scale":
      torch_named["logit_scale"] = value
    elif prefix == "vision_model" and rest == "class_embedding":
      torch_named["vision_model.embeddings.class_embedding"] = value
    elif prefix == "vision_model" and rest == "positional_embedding":
      torch_named["vision_model.embeddings.position_embedding.weight"] = value
    elif prefix == "vision_model" and rest == "conv1.weight":
      torch_named["vision_model.embeddings.patch_embedding.weight"] = value
    elif prefix == "vision_model" and rest.split(".")[0] in ("ln_pre", "ln_post"):
      module = {"ln_pre": "pre_layrnorm", "ln_post": "post_layernorm"}[rest.split(".")[0]]
      torch_named[f"vision_model.{module}.{rest.split('.')[1]}"] = value
    elif prefix == "vision_model" and rest == "proj":
      torch_named["visual_projection.weight"] = value.T
    elif name in ("input_resolution", "context_length", "vocab_size"):
      continue
    else:
      raise ValueError(f"OpenAI state dict: unknown entry {name!r} with shape {value.shape}")
  return from_torch_names(torch_named), _openai_config(state, CLIPConfig)


def to_openai(params: Params) -> dict[str, np.ndarray]:
  """Flax tree -> OpenAI-format state dict (used by tests to exercise the mapping both ways)."""
  state = {}
  inverse = {v: k for k, v in _OPENAI_LAYER.items()}
  for name, value in to_torch_names(params).items():
    if ".encoder.layers." in name:
      tower, rest = name.split(".encoder.layers.")
      index, sub = rest.split(".", 1)
      prefix = ("visual." if tower == "vision_model" else "") + f"transformer.resblocks.{index}."
      module, kind = sub.rsplit(".", 1)
      if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
        state.setdefault(prefix + "attn.in_proj_" + kind, {})[module[-6]] = value
        continue
      state[prefix + inverse[module] + "." + kind] = value
      continue
    renamed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
        "vision_model.embeddings.class_embedding": "visual.class_embedding",
        "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
        "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
        "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
        "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
        "vision_model.post_layernorm.weight": "visual.ln_post.weight",
        "vision_model.post_layernorm.bias": "visual.ln_post.bias",
        "logit_scale": "logit_scale",
    }
    if name == "text_projection.weight":
      state["text_projection"] = value.T
    elif name == "visual_projection.weight":
      state["visual.proj"] = value.T
    else:
      state[renamed[name]] = value
  for key in [k for k, v in state.items() if isinstance(v, dict)]:
    parts = state[key]
    state[key] = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
  return state


def _openai_config(state: dict[str, np.ndarray], config_class):
  """Reads the architecture off an OpenAI state dict's shapes, as OpenAI's own `build_model` does."""
  text_width = state["ln_final.weight"].shape[0]
  vision_width, _, patch, _ = state["visual.conv1.weight"].shape
  grid = int(round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5))
  count = lambda prefix: len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})
  text_config = dict(
      hidden_size=text_width, intermediate_size=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
      num_hidden_layers=count("transformer.resblocks."), num_attention_heads=text_width // 64,
      vocab_size=state["token_embedding.weight"].shape[0],
      max_position_embeddings=state["positional_embedding"].shape[0])
  text_config["eos_token_id"] = text_config["vocab_size"] - 1
  text_config["bos_token_id"] = text_config["vocab_size"] - 2
  vision_config = dict(
      hidden_size=vision_width, intermediate_size=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
      num_hidden_layers=count("visual.transformer.resblocks."), num_attention_heads=vision_width // 64,
      image_size=grid * patch, patch_size=patch)
  return config_class(text_config=text_config, vision_config=vision_config,
                      projection_dim=state["text_projection"].shape[1])


# --- load / save ------------------------------------------------------------------------------------------------------
def load(source: str, *, tokenizer: str | None = None, heads: tuple[int, int] | None = None) -> Backbone:
  """Loads a frozen CLIP from any supported source (see the module docstring).

  tokenizer: directory (or hub id) of the tokenizer files when `source` has none (OpenAI state dicts).
  heads: (text, vision) attention heads for an OpenAI state dict, when not width // 64.
  """
  if source.startswith("tiny-random"):
    import tempfile  # pylint: disable=g-import-not-at-top
    seed = int(source.split(":")[1]) if ":" in source else 0
    return random_backbone(tempfile.mkdtemp(prefix="tiny_clip_"), seed=seed)
  if source == "embedded":
    return load(EMBEDDED)
  if os.path.isdir(source):
    return _load_directory(source, tokenizer)
  if os.path.isfile(source):
    return _load_openai_file(source, tokenizer, heads)
  if source.endswith((".npz", ".pt", ".pth")) or os.sep in source and not _looks_like_hub_id(source):
    raise FileNotFoundError(f"CLIP weights {source!r} not found (no such file or directory)")
  return _load_hub(source)


def _looks_like_hub_id(source: str) -> bool:
  parts = source.split("/")
  return len(parts) == 2 and all(parts) and not source.startswith((".", "/"))


def _load_directory(directory: str, tokenizer: str | None) -> Backbone:
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top

  config_path = os.path.join(directory, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path} not found: a CLIP directory needs config.json plus flax_model.msgpack or "
                            "model.safetensors")
  config = CLIPConfig.from_pretrained(directory)
  msgpack_path = os.path.join(directory, "flax_model.msgpack")
  safetensors_path = os.path.join(directory, "model.safetensors")
  if os.path.exists(msgpack_path):
    from flax import serialization  # pylint: disable=g-import-not-at-top
    with open(msgpack_path, "rb") as f:
      params = serialization.msgpack_restore(f.read())
    where = msgpack_path
  elif os.path.exists(safetensors_path):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    params = from_torch_names(load_file(safetensors_path))
    where = safetensors_path
  else:
    raise FileNotFoundError(f"{directory} has neither flax_model.msgpack nor model.safetensors")
  params = check_tree(params, config, where)
  tok = Tokenizer.from_directory(tokenizer or directory, config.text_config.max_position_embeddings)
  return Backbone(config, params, tok, source=directory)


def _load_openai_file(path: str, tokenizer: str | None, heads: tuple[int, int] | None) -> Backbone:
  if path.endswith(".npz"):
    state = dict(np.load(path))
  elif path.endswith((".pt", ".pth")):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as error:
      raise ImportError(f"reading {path} needs torch; convert it to .npz or install torch") from error
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    state = loaded.state_dict() if hasattr(loaded, "state_dict") else loaded
    state = {k: v.float().numpy() for k, v in state.items()}
  else:
    raise ValueError(f"{path}: unknown weights format (expected a directory, .npz or .pt)")
  params, config = from_openai(state)
  if heads is not None:
    config.text_config.num_attention_heads, config.vision_config.num_attention_heads = heads
  params = check_tree(params, config, path)
  tok_source = tokenizer or "openai/clip-vit-base-patch16"
  if os.path.isdir(tok_source):
    tok = Tokenizer.from_directory(tok_source, config.text_config.max_position_embeddings)
  else:
    from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
    tok = Tokenizer(CLIPTokenizer.from_pretrained(tok_source), config.text_config.max_position_embeddings)
  return Backbone(config, params, tok, source=path)


def _load_hub(hub_id: str) -> Backbone:
  from transformers import CLIPTokenizer, FlaxCLIPModel  # pylint: disable=g-import-not-at-top

  try:
    model = FlaxCLIPModel.from_pretrained(hub_id)
  except OSError:
    model = FlaxCLIPModel.from_pretrained(hub_id, from_pt=True)
  params = check_tree(jax.device_get(model.params), model.config, hub_id)
  tok = Tokenizer(CLIPTokenizer.from_pretrained(hub_id), model.config.text_config.max_position_embeddings)
  return Backbone(model.config, params, tok, source=hub_id)


def save(backbone: Backbone, directory: str) -> None:
  """Writes config.json + flax_model.msgpack + tokenizer files, the format `load` (and FlaxCLIPModel) reads."""
  from transformers import FlaxCLIPModel  # pylint: disable=g-import-not-at-top

  os.makedirs(directory, exist_ok=True)
  FlaxCLIPModel(backbone.config, _do_init=False).save_pretrained(directory, params=backbone.params)
  backbone.tokenizer.save(directory)


# --- tiny random models for tests -------------------------------------------------------------------------------------
def tiny_config(*, text_width=32, text_layers=2, text_heads=4, vision_width=48, vision_layers=2, vision_heads=4,
                image_size=32, patch_size=8, projection_dim=24, context_length=32, vocab_size=None):
  """A small CLIPConfig for tests; vocab_size defaults to the test vocabulary's size (see `random_backbone`)."""
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top

  vocab_size = vocab_size or 1000
  return CLIPConfig(
      text_config=dict(hidden_size=text_width, intermediate_size=4 * text_width, num_hidden_layers=text_layers,
                       num_attention_heads=text_heads, vocab_size=vocab_size,
                       max_position_embeddings=context_length, eos_token_id=vocab_size - 1,
                       bos_token_id=vocab_size - 2, pad_token_id=0),
      vision_config=dict(hidden_size=vision_width, intermediate_size=4 * vision_width,
                         num_hidden_layers=vision_layers, num_attention_heads=vision_heads, image_size=image_size,
                         patch_size=patch_size),
      projection_dim=projection_dim)


TEST_WORDS = ("a photo of a an the this is type pet flower food aircraft texture centered satellite person doing "
              "x . , cat dog red blue green circle square triangle star cross ring diamond heart sketch painting "
              "cartoon big small car airplane apple banana tree house river mountain annual crop land sea or lake "
              "forest 2012 audi bmw").split()


def random_backbone(directory: str, *, seed: int = 0, words=TEST_WORDS, **config_overrides) -> Backbone:
  """A tiny random CLIP with a word-level test vocabulary written to `directory` (tokenizer files only)."""
  from transformers import CLIPTokenizer, FlaxCLIPModel  # pylint: disable=g-import-not-at-top

  from jaxprompt.clip.tokenizer import write_vocabulary  # pylint: disable=g-import-not-at-top

  write_vocabulary(directory, words)
  hf_tok = CLIPTokenizer.from_pretrained(directory)
  config = tiny_config(vocab_size=len(hf_tok), **config_overrides)
  params = FlaxCLIPModel(config, seed=seed).params
  params = check_tree(jax.device_get(params), config, "random_backbone")
  return Backbone(config, params, Tokenizer(hf_tok, config.text_config.max_position_embeddings), source="random")
