"""Read-only prompt rows through CLIP's towers: the exact fast path of RPO (docs/methods/rpo.md).

In RPO nothing reads the prompt rows, so the original tokens' states in every layer are those of plain CLIP. One
pass over the original tokens gives each layer's attention keys/values; the prompt rows then run through the layers
alone, as queries against those keys/values. Their own residual stream still goes through each block's
`layer_norm1`, attention (q and out projections), `layer_norm2` and MLP, exactly as in the full masked sequence.

The functions taking a `tower` are Flax `method=`s of `TextTower` / `VisionTower`: call them as
`clip.text_tower.apply({"params": frozen["text_model"]}, ..., method=text_prompt_rows)`, so every weight comes from
the frozen tree passed in and the compute dtype is the tower's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxprompt.clip.model import causal_bias

Array = jax.Array


def original_layer(block, x: Array, bias: Array | None) -> tuple[Array, Array, Array]:
  """One block over the original tokens, also returning what its attention read.

  x (B, L, D) float32 residual stream -> (next x (B, L, D), keys (B, L, H, Dh), values (B, L, H, Dh)); identical to
  `Block.__call__(x, bias)`.
  """
  h = block.layer_norm1(x).astype(block.dtype)
  keys, values = block.self_attn.keys_values(h)
  x = x + block.self_attn.attend(h, keys, values, bias)
  return x + block.mlp(block.layer_norm2(x).astype(block.dtype)), keys, values


def prompt_layer(block, prompts: Array, keys: Array, values: Array, bias: Array | None) -> Array:
  """One block over prompt rows that read the given keys/values and nothing else.

  prompts (B, K, D) float32 residual stream; keys, values (B, Lk, H, Dh); bias broadcastable to (B, H, K, Lk).
  -> (B, K, D).
  """
  h = block.layer_norm1(prompts).astype(block.dtype)
  prompts = prompts + block.self_attn.attend(h, keys, values, bias)
  return prompts + block.mlp(block.layer_norm2(prompts).astype(block.dtype))


# --- text -------------------------------------------------------------------------------------------------------------
def text_keys_values(tower, token_embeds: Array) -> Array:
  """`TextTower` method: the original tokens (positional embeddings added, causal) through every layer.

  token_embeds (C, L, D) -> (C, 2, depth, L, H, Dh): keys ([:, 0]) and values ([:, 1]) of every layer.
  """
  hidden = tower.embeddings(token_embeds.astype(jnp.float32), None)
  bias = causal_bias(hidden.shape[1])
  keys, values = [], []
  for block in tower.encoder.layers.blocks:
    hidden, layer_keys, layer_values = original_layer(block, hidden, bias)
    keys.append(layer_keys)
    values.append(layer_values)
  return jnp.stack([jnp.stack(keys, 1), jnp.stack(values, 1)], 1)


def text_prompt_rows(tower, prompts: Array, keys_values: Array, key_bias: Array) -> Array:
  """`TextTower` method: RPO's text prompt rows against cached keys/values of the original tokens.

  prompts (K, D) (whole rows: no positional embedding); keys_values (C, 2, depth, L, H, Dh) from
  `text_keys_values`; key_bias (C, 1, 1, L): 0 for the keys a prompt row may read (j < n_c), BLOCKED otherwise.
  -> final-normed prompt rows (C, K, D).
  """
  num_classes = keys_values.shape[0]
  rows = jnp.broadcast_to(prompts.astype(jnp.float32), (num_classes,) + prompts.shape)
  for layer, block in enumerate(tower.encoder.layers.blocks):
    rows = prompt_layer(block, rows, keys_values[:, 0, layer], keys_values[:, 1, layer], key_bias)
  return tower.final_layer_norm(rows)


# --- vision -----------------------------------------------------------------------------------------------------------
def image_prompt_rows(tower, images: Array, prompts: Array) -> Array:
  """`VisionTower` method: RPO's image prompt rows, reading the original tokens of each layer.

  images (B, H, W, 3); prompts (K, D) appended without positional embeddings. The original tokens run forward under
  `stop_gradient` (they never see the prompts, so this equals the masked full sequence); only the prompt rows carry
  gradients. -> post-layernormed prompt rows (B, K, D).
  """
  tokens = tower.pre_layrnorm(tower.embeddings(images))
  rows = jnp.broadcast_to(prompts.astype(jnp.float32), (tokens.shape[0],) + prompts.shape)
  rows = tower.pre_layrnorm(rows)  # pre_layrnorm is per token: applying it to the prompts alone is the same
  tokens = jax.lax.stop_gradient(tokens)
  for block in tower.encoder.layers.blocks:
    tokens, keys, values = original_layer(block, tokens, None)
    tokens, keys, values = jax.lax.stop_gradient((tokens, keys, values))
    rows = prompt_layer(block, rows, keys, values, None)
  return tower.post_layernorm(rows)
