"""Loading and saving the frozen CLIP: `load(source, tokenizer=None, *, overrides=None) -> Backbone`, `save`.

`source` may be
* a directory written by `FlaxCLIPModel.save_pretrained` (`config.json` + `flax_model.msgpack`),
* a directory holding `config.json` + a PyTorch-named `model.safetensors` (no torch needed),
* an OpenAI / open_clip ViT state dict file (one key layout, docs/methods/clip.md): OpenAI's TorchScript `.pt`,
  open_clip's `open_clip_model.safetensors` (no torch needed) or `open_clip_pytorch_model.bin`, an open_clip training
  checkpoint `.pt` (`{"state_dict": ...}`, `module.` prefixes), or a `.npz` of the same names,
* a directory in open_clip's hub layout (`open_clip_config.json` + one of those two open_clip weight files),
* a hub id such as `openai/clip-vit-base-patch16` (needs the network),
* `"embedded"`: the mini CLIP shipped with the package (the shapes world's backbone),
* `"tiny-random[:seed]"`: a tiny random CLIP with a word-level test vocabulary (smoke tests; meaningless numbers).

`overrides` (any source): {"text_heads": int, "vision_heads": int, "hidden_act": str}; a missing, None, 0 or "" entry
is unset. HF configs carry heads and `hidden_act` themselves. A state dict carries neither (q, k, v are packed into
one matrix; the MLP keeps no trace of its activation), so for state dicts, first rule that applies:
* heads: the override; `open_clip_config.json` beside the file (`text_cfg.heads`; vision width //
  `vision_cfg.head_width`, default 64); `KNOWN_HEADS` by tower width (every OpenAI and open_clip ViT); else an error.
* activation: the override; the sidecar's `quick_gelu` (true: `quick_gelu`, absent or false: `gelu`); `quick_gelu`
  for OpenAI's own formats (a TorchScript `.pt`, a `.npz`); else an error (an open_clip `.safetensors` / `.bin` /
  checkpoint: `gelu` for most LAION / DataComp models, `quick_gelu` for OpenAI-pretrained and `-quickgelu` ones).

Every path checks the loaded tree against the shapes the config implies and names the first mismatch (and, for a
state dict, the source key it came from).
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import zipfile
from typing import Any

import jax
import numpy as np

from jaxprompt.clip.model import ACTIVATIONS, CLIP
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


def check_tree(params: Params, config, where: str, origins: dict[str, str] | None = None) -> Params:
  """Raises naming the first missing, unexpected or mis-shaped parameter path; returns params as numpy arrays.

  origins: Flax path -> the source key it was read from (state dicts), added to a mismatch message.
  """
  expected = flatten(expected_shapes(config))
  found = flatten(params)
  origins = origins or {}
  source = lambda path: f" (from {origins[path]!r})" if path in origins else ""
  for path, shape in expected.items():
    if path not in found:
      raise ValueError(f"{where}: parameter {path} (shape {shape}) is missing")
    if tuple(found[path].shape) != shape:
      raise ValueError(f"{where}: parameter {path}{source(path)} has shape {tuple(found[path].shape)}, expected "
                       f"{shape}")
  for path in found:
    if path not in expected:
      raise ValueError(f"{where}: unexpected parameter {path}{source(path)}")
  return unflatten({path: np.asarray(value, np.float32) for path, value in found.items()})


# --- PyTorch (HF) names -----------------------------------------------------------------------------------------------
def _torch_to_flax(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
  """One HF PyTorch entry -> (Flax path, value): Linear transposed, conv OIHW -> HWIO, LN weight -> scale."""
  parts = name.split(".")
  leaf = parts[-1]
  value = np.asarray(value)
  if "patch_embedding" in parts:
    return "/".join(parts[:-1] + ["kernel"]), value.transpose(2, 3, 1, 0)
  if leaf == "weight" and parts[-2] in ("token_embedding", "position_embedding"):
    return "/".join(parts[:-1] + ["embedding"]), value
  if leaf == "weight" and ("layer_norm" in parts[-2] or "layernorm" in parts[-2] or "layrnorm" in parts[-2]):
    return "/".join(parts[:-1] + ["scale"]), value
  if leaf == "weight":
    return "/".join(parts[:-1] + ["kernel"]), value.T
  if name == "logit_scale":
    return name, value.reshape(())  # some exporters store the scalar as shape (1,)
  return "/".join(parts), value


def from_torch_names(state: dict[str, np.ndarray]) -> Params:
  """HF PyTorch CLIPModel state dict -> Flax tree (position_ids buffers dropped)."""
  return unflatten(dict(_torch_to_flax(name, value) for name, value in state.items()
                        if not name.endswith("position_ids")))


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


# --- OpenAI / open_clip names -----------------------------------------------------------------------------------------
_OPENAI_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
                 "attn.out_proj": "self_attn.out_proj"}
_OPENAI_RENAMED = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight", "ln_final.bias": "text_model.final_layer_norm.bias",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight", "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "logit_scale": "logit_scale",
}
# Buffers and attributes some exporters leave in a state dict: not parameters.
_OPENAI_BUFFERS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def open_clip_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Brings open_clip's variants to OpenAI's names: drops `module.` (DDP) prefixes, the `text.` prefix of
  CustomTextCLIP's built-in text tower, and buffers. OpenAI state dicts pass through unchanged."""
  if state and all(k.startswith("module.") for k in state):
    state = {k[len("module."):]: v for k, v in state.items()}
  state = {k[len("text."):] if k.startswith("text.") else k: v for k, v in state.items()}
  return {k: v for k, v in state.items() if k not in _OPENAI_BUFFERS}


def from_openai(state: dict[str, np.ndarray], where: str = "OpenAI state dict") -> tuple[Params, dict[str, str]]:
  """OpenAI / open_clip ViT state dict -> (Flax tree, {Flax path: source key}); see `openai_config` for the config."""
  flat, origins = {}, {}

  def put(torch_name, value, key):
    path, value = _torch_to_flax(torch_name, value)
    flat[path], origins[path] = value, key

  for key, value in open_clip_state(state).items():
    value = np.asarray(value, np.float32)
    prefix, rest = ("vision_model", key[len("visual."):]) if key.startswith("visual.") else ("text_model", key)
    if rest.startswith("transformer.resblocks."):
      index, sub = rest[len("transformer.resblocks."):].split(".", 1)
      base = f"{prefix}.encoder.layers.{index}."
      if sub.startswith("attn.in_proj_"):
        if value.shape[0] % 3:
          raise ValueError(f"{where}: {key!r} has shape {value.shape}; packed q,k,v rows must divide by 3")
        for part, chunk in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
          put(f"{base}self_attn.{part}.{sub[len('attn.in_proj_'):]}", chunk, key)
        continue
      module, kind = sub.rsplit(".", 1)
      if module not in _OPENAI_LAYER:
        raise ValueError(f"{where}: unknown entry {key!r} with shape {value.shape} (not a plain OpenAI-layout ViT)")
      put(base + _OPENAI_LAYER[module] + "." + kind, value, key)
    elif key in _OPENAI_RENAMED:
      put(_OPENAI_RENAMED[key], value, key)
    elif key == "text_projection":
      put("text_projection.weight", value.T, key)  # OpenAI stores x @ W; the torch Linear layout is W.T
    elif key == "visual.proj":
      put("visual_projection.weight", value.T, key)
    else:
      raise ValueError(f"{where}: unknown entry {key!r} with shape {value.shape} (not a plain OpenAI-layout ViT)")
  return unflatten(flat), origins


def to_openai(params: Params) -> dict[str, np.ndarray]:
  """Flax tree -> OpenAI-format state dict, which is also open_clip's `CLIP` state dict (the inverse of
  `from_openai`; tests use it to write checkpoints in both layouts)."""
  state = {}
  inverse = {v: k for k, v in _OPENAI_LAYER.items()}
  renamed = {v: k for k, v in _OPENAI_RENAMED.items()}
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
    elif name == "text_projection.weight":
      state["text_projection"] = value.T
    elif name == "visual_projection.weight":
      state["visual.proj"] = value.T
    else:
      state[renamed[name]] = value
  for key in [k for k, v in state.items() if isinstance(v, dict)]:
    parts = state[key]
    state[key] = np.concatenate([parts["q"], parts["k"], parts["v"]], axis=0)
  return state


# Attention heads of every published OpenAI / open_clip ViT tower, by tower and width (the packed q,k,v weight does not
# show them). OpenAI's `build_model` uses width // 64 for both towers; open_clip sets the text heads explicitly (all
# width // 64) and the vision heads as width // head_width, where ViT-H / g / bigG / e use head_width 80 / 88 / 104 /
# 112: 16 heads at widths 1280 / 1408 / 1664 / 1792, which width // 64 would get wrong.
KNOWN_HEADS = {
    "text": {384: 6, 512: 8, 640: 10, 768: 12, 1024: 16, 1280: 20},
    "vision": {384: 6, 512: 8, 768: 12, 896: 14, 1024: 16, 1280: 16, 1408: 16, 1664: 16, 1792: 16},
}


def read_open_clip_config(path: str) -> dict:
  """The model config in open_clip's `open_clip_config.json` ({"model_cfg": ..., "preprocess_cfg": ...})."""
  with open(path) as f:
    config = json.load(f)
  config = config.get("model_cfg", config)
  if not isinstance(config.get("vision_cfg"), dict) or not isinstance(config.get("text_cfg"), dict):
    raise ValueError(f"{path}: no model_cfg with vision_cfg and text_cfg (not an open_clip config)")
  if "timm_model_name" in config["vision_cfg"] or "hf_model_name" in config["text_cfg"]:
    raise ValueError(f"{path}: a timm or HF tower is not an OpenAI-layout ViT CLIP; only those load")
  return config


def openai_config(state: dict[str, np.ndarray], *, overrides: dict | None = None, sidecar: dict | None = None,
                  hidden_act: str | None = None, where: str = "OpenAI state dict"):
  """Reads the architecture off an OpenAI / open_clip state dict's shapes; heads and activation as in the module
  docstring (`hidden_act`: the format's default, None where the format has none). Shapes are all it reads."""
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top

  state, overrides = open_clip_state(state), _checked_overrides(overrides)
  shape = lambda key: tuple(state[key].shape) if key in state else _missing(where, key)
  count = lambda prefix: len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})
  text_width, (vision_width, _, patch, _) = shape("ln_final.weight")[0], shape("visual.conv1.weight")
  from_sidecar = {}
  if sidecar is not None:
    from_sidecar = {"text_heads": sidecar["text_cfg"].get("heads", 8),
                    "vision_heads": vision_width // sidecar["vision_cfg"].get("head_width", 64),
                    "hidden_act": "quick_gelu" if sidecar.get("quick_gelu") else "gelu"}
  defaults = {"text_heads": KNOWN_HEADS["text"].get(text_width),
              "vision_heads": KNOWN_HEADS["vision"].get(vision_width), "hidden_act": hidden_act}
  chosen = {}
  for key, width in (("text_heads", text_width), ("vision_heads", vision_width), ("hidden_act", None)):
    chosen[key] = overrides.get(key) or from_sidecar.get(key) or defaults[key]
    if chosen[key] is None:
      reason = (f"the {key.split('_')[0]} width {width} is not a known OpenAI/open_clip ViT width" if width else
                "an open_clip checkpoint does not record its activation ('gelu' for most LAION/DataComp models, "
                "'quick_gelu' for OpenAI-pretrained and -quickgelu ones)")
      raise ValueError(f"{where}: {reason}; set it with overrides={{'{key}': ...}} or an open_clip_config.json "
                       "beside the file")
  grid = int(round((shape("visual.positional_embedding")[0] - 1) ** 0.5))
  vocab_size = shape("token_embedding.weight")[0]
  text_config = dict(
      hidden_size=text_width, intermediate_size=shape("transformer.resblocks.0.mlp.c_fc.weight")[0],
      num_hidden_layers=count("transformer.resblocks."), num_attention_heads=int(chosen["text_heads"]),
      vocab_size=vocab_size, max_position_embeddings=shape("positional_embedding")[0],
      eos_token_id=vocab_size - 1, bos_token_id=vocab_size - 2, hidden_act=chosen["hidden_act"])
  vision_config = dict(
      hidden_size=vision_width, intermediate_size=shape("visual.transformer.resblocks.0.mlp.c_fc.weight")[0],
      num_hidden_layers=count("visual.transformer.resblocks."), num_attention_heads=int(chosen["vision_heads"]),
      image_size=grid * patch, patch_size=patch, hidden_act=chosen["hidden_act"])
  config = CLIPConfig(text_config=text_config, vision_config=vision_config,
                      projection_dim=shape("text_projection")[1])
  return apply_overrides(config, overrides, where)


def _missing(where: str, key: str):
  raise ValueError(f"{where}: no {key!r} entry (not an OpenAI / open_clip ViT state dict)")


# --- overrides --------------------------------------------------------------------------------------------------------
OVERRIDE_KEYS = ("text_heads", "vision_heads", "hidden_act")


def _checked_overrides(overrides: dict | None) -> dict:
  """The set entries of `overrides` (None, 0 and "" mean unset); raises naming an unknown key or a bad value."""
  overrides = {k: v for k, v in dict(overrides or {}).items() if v is not None and v != 0 and v != ""}
  for key, value in overrides.items():
    if key not in OVERRIDE_KEYS:
      raise ValueError(f"backbone overrides: unknown key {key!r} (known: {', '.join(OVERRIDE_KEYS)})")
    if key == "hidden_act" and value not in ACTIVATIONS:
      raise ValueError(f"backbone overrides: hidden_act {value!r} is not one of {sorted(ACTIVATIONS)}")
    if key != "hidden_act" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise ValueError(f"backbone overrides: {key} must be a positive int, got {value!r}")
  return overrides


def apply_overrides(config, overrides: dict | None, where: str):
  """Writes text_heads / vision_heads / hidden_act into a CLIPConfig (in place; returned). A head count that does not
  divide its tower's width raises naming the override key."""
  overrides = _checked_overrides(overrides)
  for tower in ("text", "vision"):
    tower_config = getattr(config, f"{tower}_config")
    heads = overrides.get(f"{tower}_heads")
    if heads is not None:
      if tower_config.hidden_size % heads:
        raise ValueError(f"{where}: {tower}_heads={heads} does not divide the {tower} width {tower_config.hidden_size}")
      tower_config.num_attention_heads = heads
    if "hidden_act" in overrides:
      tower_config.hidden_act = overrides["hidden_act"]
  return config


# --- load / save ------------------------------------------------------------------------------------------------------
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def load(source: str, tokenizer: str | None = None, *, overrides: dict | None = None) -> Backbone:
  """Loads a frozen CLIP from any supported source (see the module docstring).

  tokenizer: directory (or hub id) of the tokenizer files when `source` has none (state dicts: default the files
    beside the weights file, else the OpenAI tokenizer from the hub).
  overrides: {"text_heads", "vision_heads", "hidden_act"} written over whatever the source says (module docstring).
  """
  overrides = _checked_overrides(overrides)
  if source.startswith("tiny-random"):
    import tempfile  # pylint: disable=g-import-not-at-top
    seed = int(source.split(":")[1]) if ":" in source else 0
    backbone = random_backbone(tempfile.mkdtemp(prefix="tiny_clip_"), seed=seed)
  elif source == "embedded":
    backbone = load(EMBEDDED)
  elif os.path.isdir(source) and not os.path.exists(os.path.join(source, "config.json")) and os.path.exists(
      os.path.join(source, OPEN_CLIP_CONFIG)):  # open_clip's hub layout
    found = [os.path.join(source, name) for name in OPEN_CLIP_WEIGHTS if os.path.exists(os.path.join(source, name))]
    if not found:
      raise FileNotFoundError(f"{source} has {OPEN_CLIP_CONFIG} but none of {', '.join(OPEN_CLIP_WEIGHTS)}")
    backbone = _load_state_file(found[0], tokenizer, overrides)
  elif os.path.isdir(source):
    backbone = _load_directory(source, tokenizer)
  elif os.path.isfile(source):
    backbone = _load_state_file(source, tokenizer, overrides)
  elif source.endswith((".npz", ".pt", ".pth", ".bin", ".safetensors")) or (
      os.sep in source and not _looks_like_hub_id(source)):
    raise FileNotFoundError(f"CLIP weights {source!r} not found (no such file or directory)")
  else:
    backbone = _load_hub(source)
  apply_overrides(backbone.config, overrides, source)
  return backbone


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


def _read_state_file(path: str) -> tuple[dict[str, np.ndarray], str | None]:
  """(numpy state dict, the format's default activation): `quick_gelu` for OpenAI's TorchScript `.pt` and for `.npz`,
  None for open_clip's `.safetensors`, `.bin` and training checkpoints."""
  if path.endswith(".npz"):
    return dict(np.load(path)), "quick_gelu"
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    state = load_file(path)
    if any(k.startswith(("text_model.", "vision_model.")) for k in state):
      raise ValueError(f"{path}: HF-named weights; load the directory holding it with its config.json instead")
    return state, None
  if not path.endswith((".pt", ".pth", ".bin")):
    raise ValueError(f"{path}: unknown weights format (expected a directory, .safetensors, .bin, .pt or .npz)")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(f"reading {path} needs torch (pip install 'jaxprompt[torch]'); or convert it to .safetensors "
                      "or .npz") from error
  if zipfile.is_zipfile(path) and any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(path).namelist()):
    with warnings.catch_warnings():  # torch deprecates jit.load, the only reader of OpenAI's released archives
      warnings.simplefilter("ignore", DeprecationWarning)
      loaded, default_act = torch.jit.load(path, map_location="cpu").state_dict(), "quick_gelu"
  else:
    loaded, default_act = torch.load(path, map_location="cpu", weights_only=True), None
  if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
    loaded = loaded["state_dict"]  # an open_clip training checkpoint
  return {k: v.detach().float().numpy() for k, v in loaded.items() if hasattr(v, "detach")}, default_act


def _load_state_file(path: str, tokenizer: str | None, overrides: dict) -> Backbone:
  state, default_act = _read_state_file(path)
  sidecar_path = os.path.join(os.path.dirname(os.path.abspath(path)), OPEN_CLIP_CONFIG)
  sidecar = read_open_clip_config(sidecar_path) if os.path.exists(sidecar_path) else None
  params, origins = from_openai(state, path)
  config = openai_config(state, overrides=overrides, sidecar=sidecar, hidden_act=default_act, where=path)
  params = check_tree(params, config, path, origins)
  beside = os.path.dirname(os.path.abspath(path))  # open_clip's hub layout keeps the tokenizer files there
  tok_source = tokenizer or (beside if os.path.exists(os.path.join(beside, "vocab.json")) else
                             "openai/clip-vit-base-patch16")
  if os.path.isdir(tok_source):
    tok = Tokenizer.from_directory(tok_source, config.text_config.max_position_embeddings)
  else:
    from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top
    tok = Tokenizer(CLIPTokenizer.from_pretrained(tok_source), config.text_config.max_position_embeddings)
  return Backbone(config, params, tok, source=path)


def _load_hub(hub_id: str) -> Backbone:
  """A hub id: from the local Hugging Face cache when it is there (no network), else downloaded. Offline, or when
  the hub cannot be reached, a one-line error with the ways out, instead of transformers' retries."""
  try:
    return _from_hub(hub_id, local_files_only=True)
  except OSError:
    pass
  import huggingface_hub  # pylint: disable=g-import-not-at-top

  hint = (f"backbone {hub_id!r} is not in the local Hugging Face cache and {{why}}: use backbone=embedded (the "
          "mini CLIP shipped with jaxprompt), a directory written by save_pretrained, or a state-dict file")
  if huggingface_hub.constants.HF_HUB_OFFLINE:
    raise OSError(hint.format(why="HF_HUB_OFFLINE is set"))
  try:
    return _from_hub(hub_id, local_files_only=False)
  except OSError as error:
    raise OSError(hint.format(why=f"the hub could not be reached ({str(error).splitlines()[0]})")) from None


def _from_hub(hub_id: str, *, local_files_only: bool) -> Backbone:
  from transformers import CLIPTokenizer, FlaxCLIPModel  # pylint: disable=g-import-not-at-top

  try:
    model = FlaxCLIPModel.from_pretrained(hub_id, local_files_only=local_files_only)
  except OSError:  # a repository with PyTorch weights only
    model = FlaxCLIPModel.from_pretrained(hub_id, from_pt=True, local_files_only=local_files_only)
  params = check_tree(jax.device_get(model.params), model.config, hub_id)
  tok = Tokenizer(CLIPTokenizer.from_pretrained(hub_id, local_files_only=local_files_only),
                  model.config.text_config.max_position_embeddings)
  return Backbone(model.config, params, tok, source=hub_id)


def save(backbone: Backbone, directory: str) -> None:
  """Writes config.json + flax_model.msgpack + tokenizer files, the format `load` (and FlaxCLIPModel) reads."""
  from transformers import FlaxCLIPModel  # pylint: disable=g-import-not-at-top

  os.makedirs(directory, exist_ok=True)
  FlaxCLIPModel(backbone.config, _do_init=False).save_pretrained(directory, params=backbone.params)
  backbone.tokenizer.save(directory)


# --- tiny random models for tests -------------------------------------------------------------------------------------
def tiny_config(*, text_width=32, text_layers=2, text_heads=4, vision_width=48, vision_layers=2, vision_heads=4,
                image_size=32, patch_size=8, projection_dim=24, context_length=32, vocab_size=None,
                hidden_act="quick_gelu"):
  """A small CLIPConfig for tests; vocab_size defaults to the test vocabulary's size (see `random_backbone`)."""
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top

  vocab_size = vocab_size or 1000
  return CLIPConfig(
      text_config=dict(hidden_size=text_width, intermediate_size=4 * text_width, num_hidden_layers=text_layers,
                       num_attention_heads=text_heads, vocab_size=vocab_size,
                       max_position_embeddings=context_length, eos_token_id=vocab_size - 1,
                       bos_token_id=vocab_size - 2, pad_token_id=0, hidden_act=hidden_act),
      vision_config=dict(hidden_size=vision_width, intermediate_size=4 * vision_width,
                         num_hidden_layers=vision_layers, num_attention_heads=vision_heads, image_size=image_size,
                         patch_size=patch_size, hidden_act=hidden_act),
      projection_dim=projection_dim)


TEST_WORDS = ("a photo of a an the this is type pet flower food aircraft texture centered satellite person doing "
              "x . , cat dog red blue green circle square triangle star cross ring diamond heart sketch painting "
              "cartoon big small car airplane apple banana tree house river mountain annual crop land sea or lake "
              "forest 2012 audi bmw").split()


def random_params(config, seed: int = 0, *, logit_scale: float | None = None) -> Params:
  """A random tree of `FlaxCLIPModel(config)`'s shapes, drawn with numpy (no model init, no compiles): N(0, 0.02^2)
  weights and embeddings, unit LayerNorm scales, zero biases; logit_scale `logit_scale` (default the config's
  `logit_scale_init_value`, log(1/0.07), as FlaxCLIPModel initialises it). Deterministic in `seed`."""
  rng = np.random.default_rng(seed)
  value = config.logit_scale_init_value if logit_scale is None else logit_scale
  flat = {}
  for path, shape in flatten(expected_shapes(config)).items():
    leaf = path.split("/")[-1]
    if path == "logit_scale":
      flat[path] = np.full(shape, value, np.float32)
    elif leaf == "scale":
      flat[path] = np.ones(shape, np.float32)
    elif leaf == "bias":
      flat[path] = np.zeros(shape, np.float32)
    else:
      flat[path] = 0.02 * rng.standard_normal(shape, dtype=np.float32)
  return unflatten(flat)


def random_backbone(directory: str, *, seed: int = 0, words=TEST_WORDS, **config_overrides) -> Backbone:
  """A tiny random CLIP with a word-level test vocabulary written to `directory` (tokenizer files only)."""
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top

  from jaxprompt.clip.tokenizer import write_vocabulary  # pylint: disable=g-import-not-at-top

  write_vocabulary(directory, words)
  hf_tok = CLIPTokenizer.from_pretrained(directory)
  config = tiny_config(vocab_size=len(hf_tok), **config_overrides)
  params = random_params(config, seed)
  return Backbone(config, params, Tokenizer(hf_tok, config.text_config.max_position_embeddings), source="random")
