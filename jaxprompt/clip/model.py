"""CLIP's two towers as Flax modules, with the hooks prompt methods need.

The parameter tree is exactly `FlaxCLIPModel.params` (transformers 4.x): `text_model`, `vision_model`,
`text_projection`, `visual_projection`, `logit_scale`. What FlaxCLIPModel does not offer, and every prompt method
needs (see docs/methods/clip.md):

* embeddings in, not ids: the text tower takes token embeddings (B, L, D) and adds positional embeddings itself,
  except where `position_mask` is 0 (RPO writes whole rows);
* extra tokens appended to the vision sequence before `pre_layrnorm` (VPT, MaPLe, RPO);
* deep prompts: `DeepPrompts(values, start)` overwrites tokens `start..start+n` before blocks 1..len(values);
* an additive attention bias broadcastable to (batch, heads, query, key), per example if needed;
* a shared prefix (`encode_text_prefix` / `encode_text_suffix`): leading positions common to every prompt run once,
  each layer's keys/values kept, and the per-class suffixes run against them (`methods/shared_prefix.py`);
* final-normed hidden states out (text: `final_layer_norm`, vision: `post_layernorm` on every row), so a caller
  gathers any positions and projects them with `project_text` / `project_image`;
* a compute dtype: float32 by default, bfloat16 matmuls with float32 parameters, LayerNorm, softmax and residual
  stream as an option.

Nothing hard-codes a width, depth, head count, activation, image size or patch size: `TowerSpec` is read off the
HF config (`num_attention_heads`, `hidden_act`: `quick_gelu` for OpenAI's models, `gelu` for most LAION/DataComp
ones).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Params = dict[str, Any]

# Additive bias for a blocked key. Finite (not -inf) so that adding two masks never produces NaN; softmax runs in
# float32, where exp(-1e9) is exactly 0.
BLOCKED = -1e9


@dataclasses.dataclass(frozen=True)
class TowerSpec:
  """Sizes of one transformer tower, read off the HF config."""

  width: int
  depth: int
  heads: int
  mlp_width: int
  layer_norm_eps: float
  activation: str = "quick_gelu"  # a key of ACTIVATIONS (the HF config's `hidden_act`)
  # Text only.
  vocab_size: int = 0
  context_length: int = 0
  # Vision only.
  image_size: int = 0
  patch_size: int = 0

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2

  @property
  def num_image_tokens(self) -> int:
    """Class token plus patches (197 for ViT-B/16 at 224 px)."""
    return self.num_patches + 1


def _checked(c, where: str) -> tuple[int, str]:
  """(heads, activation) of one tower config, refusing a head count that does not split the width."""
  if c.num_attention_heads <= 0 or c.hidden_size % c.num_attention_heads:
    raise ValueError(f"{where}: hidden_size {c.hidden_size} is not divisible by num_attention_heads "
                     f"{c.num_attention_heads}")
  activation = getattr(c, "hidden_act", "quick_gelu")
  if activation not in ACTIVATIONS:
    raise ValueError(f"{where}: hidden_act {activation!r} is not supported (one of {sorted(ACTIVATIONS)})")
  return c.num_attention_heads, activation


def text_spec(hf_config) -> TowerSpec:
  c = hf_config.text_config
  heads, activation = _checked(c, "text_config")
  return TowerSpec(c.hidden_size, c.num_hidden_layers, heads, c.intermediate_size, c.layer_norm_eps, activation,
                   vocab_size=c.vocab_size, context_length=c.max_position_embeddings)


def vision_spec(hf_config) -> TowerSpec:
  c = hf_config.vision_config
  heads, activation = _checked(c, "vision_config")
  return TowerSpec(c.hidden_size, c.num_hidden_layers, heads, c.intermediate_size, c.layer_norm_eps, activation,
                   image_size=c.image_size, patch_size=c.patch_size)


class DeepPrompts(NamedTuple):
  """Prompt tokens written into the sequence before deeper blocks.

  values: (n_layers, n, D) shared by the batch, or (n_layers, B, n, D) per example; `values[l-1]` overwrites
    tokens `start .. start+n-1` of the input of block l, for l = 1 .. n_layers.
  start: first overwritten position; negative counts from the end (vision prompts: `-n`).
  """

  values: Array
  start: int


def quick_gelu(x: Array) -> Array:
  return x * jax.nn.sigmoid(1.702 * x)


# The MLP activations by HF `hidden_act` name, as FlaxCLIPModel defines them ("gelu" is the exact erf form, which is
# also PyTorch's nn.GELU default that open_clip uses).
ACTIVATIONS = {
    "quick_gelu": quick_gelu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


class LayerNorm(nn.Module):
  """LayerNorm computed in float32 whatever the compute dtype (params `scale`, `bias` as in HF)."""

  eps: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    width = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (width,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (width,), jnp.float32)
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    variance = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(variance + self.eps) * scale + bias


class Attention(nn.Module):
  """Multi-head self-attention with HF's separate q/k/v/out projections and an additive bias."""

  width: int
  heads: int
  dtype: Any = jnp.float32

  def setup(self):
    dense = lambda: nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32)
    self.q_proj, self.k_proj, self.v_proj, self.out_proj = dense(), dense(), dense(), dense()

  def split_heads(self, x: Array) -> Array:
    return x.reshape(x.shape[:-1] + (self.heads, self.width // self.heads))

  def keys_values(self, x: Array) -> tuple[Array, Array]:
    """x (B, L, D) -> keys, values (B, L, H, D/H). Exposed so callers can cache them (RPO's read-only path)."""
    return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

  def attend(self, x: Array, keys: Array, values: Array, bias: Array | None = None,
             prefix: tuple[Array, Array] | None = None) -> Array:
    """Queries from x (B, Lq, D) attend to keys/values (B, Lk, H, D/H); bias broadcasts to (B, H, Lq, Lk).

    prefix: (keys, values) (P, H, D/H) of a prefix every query reads in full before its own keys (one softmax over
    P + Lk keys; the bias covers the own keys only). Shared by the batch, so its gradient sums over it.
    """
    head_dim = self.width // self.heads
    queries = self.split_heads(self.q_proj(x)) * (head_dim ** -0.5)
    logits = jnp.einsum("bqhd,bkhd->bhqk", queries, keys, preferred_element_type=jnp.float32)
    if bias is not None:
      logits = logits + bias
    if prefix is not None:
      prefix_logits = jnp.einsum("bqhd,khd->bhqk", queries, prefix[0], preferred_element_type=jnp.float32)
      logits = jnp.concatenate([prefix_logits, logits], axis=-1)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    if prefix is not None:
      n = prefix[0].shape[0]
      out = jnp.einsum("bhqk,khd->bqhd", weights[..., :n], prefix[1].astype(self.dtype))
      out = out + jnp.einsum("bhqk,bkhd->bqhd", weights[..., n:], values.astype(self.dtype))
    else:
      out = jnp.einsum("bhqk,bkhd->bqhd", weights, values.astype(self.dtype))
    return self.out_proj(out.reshape(out.shape[:2] + (self.width,)))

  def __call__(self, x: Array, bias: Array | None = None) -> Array:
    keys, values = self.keys_values(x)
    return self.attend(x, keys, values, bias)


class MLP(nn.Module):
  """fc1 (D -> mlp_width) -> activation (a key of ACTIVATIONS) -> fc2 (mlp_width -> D)."""

  width: int
  mlp_width: int
  dtype: Any = jnp.float32
  activation: str = "quick_gelu"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = nn.Dense(self.mlp_width, dtype=self.dtype, param_dtype=jnp.float32, name="fc1")(x)
    x = ACTIVATIONS[self.activation](x)
    return nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="fc2")(x)


class Block(nn.Module):
  """Pre-LN residual block: x += attn(ln1(x), bias); x += mlp(ln2(x)). The residual stream stays float32."""

  spec: TowerSpec
  dtype: Any = jnp.float32

  def setup(self):
    self.layer_norm1 = LayerNorm(self.spec.layer_norm_eps)
    self.self_attn = Attention(self.spec.width, self.spec.heads, self.dtype)
    self.layer_norm2 = LayerNorm(self.spec.layer_norm_eps)
    self.mlp = MLP(self.spec.width, self.spec.mlp_width, self.dtype, self.spec.activation)

  def __call__(self, x: Array, bias: Array | None = None) -> Array:
    x = x + self.self_attn(self.layer_norm1(x).astype(self.dtype), bias)
    return x + self.mlp(self.layer_norm2(x).astype(self.dtype))

  def with_keys_values(self, x: Array, bias: Array | None = None) -> tuple[Array, Array]:
    """`__call__`, also returning what its attention read: (next x (B, L, D), keys/values (2, B, L, H, D/H))."""
    h = self.layer_norm1(x).astype(self.dtype)
    keys, values = self.self_attn.keys_values(h)
    x = x + self.self_attn.attend(h, keys, values, bias)
    return x + self.mlp(self.layer_norm2(x).astype(self.dtype)), jnp.stack([keys, values])

  def after_prefix(self, x: Array, prefix: Array, bias: Array | None = None) -> Array:
    """`__call__` for tokens that follow a prefix: x (B, L, D) reads prefix keys/values (2, P, H, D/H) in full, then
    its own keys under `bias` (B, H, L, L)."""
    h = self.layer_norm1(x).astype(self.dtype)
    keys, values = self.self_attn.keys_values(h)
    x = x + self.self_attn.attend(h, keys, values, bias, prefix=(prefix[0], prefix[1]))
    return x + self.mlp(self.layer_norm2(x).astype(self.dtype))


def write_tokens(x: Array, values: Array, start: int) -> Array:
  """Overwrites tokens start..start+n-1 of x (B, L, D) with values (n, D) or (B, n, D)."""
  n = values.shape[-2]
  start = start % x.shape[1]
  values = jnp.broadcast_to(values.astype(x.dtype), (x.shape[0], n, x.shape[2]))
  return jax.lax.dynamic_update_slice_in_dim(x, values, start, axis=1)


class LayerStack(nn.Module):
  """The `layers` collection: blocks named '0'..'depth-1' as in HF."""

  spec: TowerSpec
  dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    block = nn.remat(Block, methods=["__call__", "with_keys_values", "after_prefix"]) if self.remat else Block
    self.blocks = [block(self.spec, self.dtype, name=str(i)) for i in range(self.spec.depth)]

  def _deep_layers(self, deep: DeepPrompts | None) -> int:
    n_deep = 0 if deep is None else deep.values.shape[0]
    if n_deep >= self.spec.depth:
      raise ValueError(f"{n_deep} deep prompt layers, but the tower has only {self.spec.depth - 1} blocks after the "
                       "first (deep prompts replace tokens before blocks 1..depth-1)")
    return n_deep

  def __call__(self, x: Array, bias: Array | None, deep: DeepPrompts | None) -> Array:
    n_deep = self._deep_layers(deep)
    for index, block in enumerate(self.blocks):
      if 1 <= index <= n_deep:
        x = write_tokens(x, deep.values[index - 1], deep.start)
      x = block(x, bias)
    return x

  def prefix(self, x: Array, bias: Array | None, deep: DeepPrompts | None) -> Array:
    """x (1, P, D) -> every block's keys/values (depth, 2, P, H, D/H) (the prefix's outputs are not needed)."""
    n_deep = self._deep_layers(deep)
    keys_values = []
    for index, block in enumerate(self.blocks):
      if 1 <= index <= n_deep:
        x = write_tokens(x, deep.values[index - 1], deep.start)
      x, layer_keys_values = block.with_keys_values(x, bias)
      keys_values.append(layer_keys_values[:, 0])
    return jnp.stack(keys_values)

  def suffix(self, x: Array, prefix: Array, bias: Array | None, deep: DeepPrompts | None) -> Array:
    """x (B, S, D) after a prefix with keys/values `prefix` (depth, 2, P, H, D/H) -> (B, S, D)."""
    n_deep = self._deep_layers(deep)
    for index, block in enumerate(self.blocks):
      if 1 <= index <= n_deep:
        x = write_tokens(x, deep.values[index - 1], deep.start)
      x = block.after_prefix(x, prefix[index], bias)
    return x


class Encoder(nn.Module):
  spec: TowerSpec
  dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    self.layers = LayerStack(self.spec, self.dtype, self.remat)

  def __call__(self, x: Array, bias: Array | None = None, deep: DeepPrompts | None = None) -> Array:
    return self.layers(x, bias, deep)


def causal_bias(length: int) -> Array:
  """(1, 1, L, L) additive causal mask: query i reads keys j <= i."""
  allowed = jnp.tril(jnp.ones((length, length), bool))
  return jnp.where(allowed, 0.0, BLOCKED)[None, None]


class TextEmbeddings(nn.Module):
  spec: TowerSpec

  def setup(self):
    self.token_embedding = nn.Embed(self.spec.vocab_size, self.spec.width, param_dtype=jnp.float32)
    self.position_embedding = nn.Embed(self.spec.context_length, self.spec.width, param_dtype=jnp.float32)

  def __call__(self, token_embeds: Array, position_mask: Array | None, offset: int = 0) -> Array:
    """offset: the position of the first token (a suffix after a shared prefix of that length)."""
    if self.is_initializing():
      _ = self.token_embedding.embedding  # the table is read by callers (embed_tokens), not here: create it
    length = token_embeds.shape[1]
    positions = self.position_embedding.embedding[offset:offset + length]
    if position_mask is not None:
      positions = positions * position_mask[..., None]
    return token_embeds + positions


class TextTower(nn.Module):
  """Token embeddings (B, L, D) -> final-normed hidden states (B, L, D), causal, L <= context length."""

  spec: TowerSpec
  dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    self.embeddings = TextEmbeddings(self.spec)
    self.encoder = Encoder(self.spec, self.dtype, self.remat)
    self.final_layer_norm = LayerNorm(self.spec.layer_norm_eps)

  def __call__(self, token_embeds: Array, *, position_mask: Array | None = None, bias: Array | None = None,
               deep: DeepPrompts | None = None) -> Array:
    """position_mask: (L,) or (B, L), 1 where the positional embedding is added (default everywhere).

    bias: extra additive attention bias, broadcastable to (B, H, L, L); combined with the causal mask.
    """
    length = token_embeds.shape[1]
    if length > self.spec.context_length:
      raise ValueError(f"text sequence of length {length} exceeds the context length {self.spec.context_length}")
    x = self.embeddings(token_embeds.astype(jnp.float32), position_mask)
    full_bias = causal_bias(length) if bias is None else causal_bias(length) + bias
    x = self.encoder(x, full_bias, deep)
    return self.final_layer_norm(x)

  def encode_prefix(self, token_embeds: Array, *, deep: DeepPrompts | None = None) -> Array:
    """A prefix shared by many prompts: (1, P, D) -> every layer's keys/values (depth, 2, P, H, D/H).

    deep: prompts overwriting prefix positions (start counted in the prefix)."""
    self._check_length(token_embeds.shape[1])
    x = self.embeddings(token_embeds.astype(jnp.float32), None)
    return self.encoder.layers.prefix(x, causal_bias(x.shape[1]), deep)

  def encode_suffix(self, token_embeds: Array, prefix: Array, *, deep: DeepPrompts | None = None) -> Array:
    """Suffixes (B, S, D) that follow a prefix with keys/values `prefix` (from `encode_prefix`, P positions):
    positional embeddings of positions P..P+S-1, each token reads the whole prefix and its own earlier tokens
    -> final-normed hidden states (B, S, D), equal to those positions of the full sequences.

    deep: prompts overwriting suffix positions (start counted in the suffix)."""
    offset = prefix.shape[2]
    self._check_length(offset + token_embeds.shape[1])
    x = self.embeddings(token_embeds.astype(jnp.float32), None, offset)
    x = self.encoder.layers.suffix(x, prefix, causal_bias(x.shape[1]), deep)
    return self.final_layer_norm(x)

  def _check_length(self, length: int) -> None:
    if length > self.spec.context_length:
      raise ValueError(f"text sequence of length {length} exceeds the context length {self.spec.context_length}")


class VisionEmbeddings(nn.Module):
  spec: TowerSpec
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array) -> Array:
    """images (B, H, W, 3) normalised -> (B, 1 + patches, D) with positional embeddings."""
    spec = self.spec
    class_embedding = self.param("class_embedding", nn.initializers.normal(0.02), (spec.width,))
    patches = nn.Conv(spec.width, (spec.patch_size, spec.patch_size), strides=(spec.patch_size, spec.patch_size),
                      padding="VALID", use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                      name="patch_embedding")(images.astype(self.dtype))
    patches = patches.reshape(patches.shape[0], -1, spec.width).astype(jnp.float32)
    if patches.shape[1] != spec.num_patches:
      raise ValueError(f"images of shape {images.shape[1:3]} give {patches.shape[1]} patches; the backbone expects "
                       f"{spec.image_size}x{spec.image_size} images ({spec.num_patches} patches)")
    cls = jnp.broadcast_to(class_embedding, (patches.shape[0], 1, spec.width))
    x = jnp.concatenate([cls, patches], axis=1)
    position_embedding = nn.Embed(spec.num_image_tokens, spec.width, param_dtype=jnp.float32,
                                  name="position_embedding")
    return x + position_embedding.embedding[None]


class VisionTower(nn.Module):
  """Images (B, H, W, 3) -> post-layernormed hidden states (B, 1 + patches + P, D)."""

  spec: TowerSpec
  dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    self.embeddings = VisionEmbeddings(self.spec, self.dtype)
    self.pre_layrnorm = LayerNorm(self.spec.layer_norm_eps)
    self.encoder = Encoder(self.spec, self.dtype, self.remat)
    self.post_layernorm = LayerNorm(self.spec.layer_norm_eps)

  def __call__(self, images: Array, *, extra_tokens: Array | None = None, bias: Array | None = None,
               deep: DeepPrompts | None = None) -> Array:
    """extra_tokens: (P, D) or (B, P, D), appended after the image tokens before `pre_layrnorm`, no positions."""
    x = self.embeddings(images)
    if extra_tokens is not None:
      extra = jnp.broadcast_to(extra_tokens.astype(jnp.float32), (x.shape[0],) + extra_tokens.shape[-2:])
      x = jnp.concatenate([x, extra], axis=1)
    x = self.pre_layrnorm(x)
    x = self.encoder(x, bias, deep)
    return self.post_layernorm(x)


class CLIP:
  """The frozen backbone's computations, as pure functions of its parameter tree.

  Methods call `encode_text` / `encode_image` for hidden states and `project_text` / `project_image` for features;
  `text_features` / `image_features` are the plain (prompt-free) paths that equal FlaxCLIPModel's.
  """

  def __init__(self, hf_config, dtype: Any = jnp.float32, remat: bool = False):
    self.hf_config = hf_config
    self.text = text_spec(hf_config)
    self.vision = vision_spec(hf_config)
    self.dtype = jnp.dtype(dtype)
    self.text_tower = TextTower(self.text, self.dtype, remat)
    self.vision_tower = VisionTower(self.vision, self.dtype, remat)

  @property
  def embed_dim(self) -> int:
    return self.hf_config.projection_dim

  # --- text -------------------------------------------------------------------------------------------------------
  @staticmethod
  def token_embedding_table(params: Params) -> Array:
    """(vocab, D_text): the input embedding rows, without positional embeddings."""
    return params["text_model"]["embeddings"]["token_embedding"]["embedding"]

  def embed_tokens(self, params: Params, ids: Array) -> Array:
    """ids (..., L) -> token embeddings (..., L, D_text), no positions."""
    return jnp.take(self.token_embedding_table(params), ids, axis=0)

  def encode_text(self, params: Params, token_embeds: Array, **hooks) -> Array:
    """(B, L, D_text) -> final-normed hidden (B, L, D_text); hooks: position_mask, bias, deep."""
    return self.text_tower.apply({"params": params["text_model"]}, token_embeds, **hooks)

  def encode_text_prefix(self, params: Params, token_embeds: Array, **hooks) -> Array:
    """A shared prefix (1, P, D_text) -> per-layer keys/values (depth, 2, P, H, D/H); hooks: deep."""
    return self.text_tower.apply({"params": params["text_model"]}, token_embeds, method="encode_prefix", **hooks)

  def encode_text_suffix(self, params: Params, token_embeds: Array, prefix: Array, **hooks) -> Array:
    """Suffixes (B, S, D_text) after a prefix (keys/values from `encode_text_prefix`) -> final-normed hidden
    (B, S, D_text); hooks: deep."""
    return self.text_tower.apply({"params": params["text_model"]}, token_embeds, prefix, method="encode_suffix",
                                 **hooks)

  def project_text(self, params: Params, hidden: Array) -> Array:
    """(..., D_text) -> (..., embed_dim)."""
    return hidden @ params["text_projection"]["kernel"]

  def text_features(self, params: Params, ids: Array, eos: Array | None = None) -> Array:
    """Plain CLIP text features. ids (C, L) (L may be trimmed), eos (C,) default argmax(ids) -> (C, embed_dim)."""
    eos = jnp.argmax(ids, axis=-1) if eos is None else eos
    hidden = self.encode_text(params, self.embed_tokens(params, ids))
    return self.project_text(params, gather_rows(hidden, eos))

  # --- vision -----------------------------------------------------------------------------------------------------
  def encode_image(self, params: Params, images: Array, **hooks) -> Array:
    """(B, H, W, 3) -> post-layernormed hidden (B, T, D_vision); hooks: extra_tokens, bias, deep."""
    return self.vision_tower.apply({"params": params["vision_model"]}, images, **hooks)

  def project_image(self, params: Params, hidden: Array) -> Array:
    """(..., D_vision) -> (..., embed_dim)."""
    return hidden @ params["visual_projection"]["kernel"]

  def image_features(self, params: Params, images: Array) -> Array:
    """Plain CLIP image features (B, embed_dim) from the class token."""
    return self.project_image(params, self.encode_image(params, images)[:, 0])

  @staticmethod
  def logit_scale(params: Params) -> Array:
    """exp(logit_scale): the frozen temperature (100 for the released weights)."""
    return jnp.exp(params["logit_scale"])


def gather_rows(hidden: Array, rows: Array) -> Array:
  """hidden (B, L, D), rows (B,) -> (B, D): row rows[b] of example b."""
  return jnp.take_along_axis(hidden, rows[:, None, None], axis=1)[:, 0]


def normalize(x: Array, axis: int = -1) -> Array:
  """L2-normalises along axis (in float32)."""
  x = x.astype(jnp.float32)
  return x / jnp.linalg.norm(x, axis=axis, keepdims=True)


def cosine_logits(scale: Array, image_features: Array, text_features: Array) -> Array:
  """scale * normalize(image) @ normalize(text).T: (B, E), (C, E) -> (B, C)."""
  return scale * normalize(image_features) @ normalize(text_features).T
