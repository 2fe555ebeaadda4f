"""Shared-prefix text encoding: the positions every class prompt has in common run once (an exact fast path).

Under causal attention a token's states depend only on the tokens before it, so the first P positions of a prompt
set whose first P token embeddings are the same for every class (SOS, CoOp's shared context, fixed template words
before the name, deep prompts written into those positions) have the same states in every prompt. They run once as
a (1, P) prefix whose keys/values are kept at every layer (`CLIP.encode_text_prefix`); only the per-class suffixes
(C, S) run through the tower (`CLIP.encode_text_suffix`), each reading [prefix keys/values; its own causal ones] with
the positional embeddings of its true positions P..P+S-1. Autodiff sums the suffixes' gradients into the prefix.
S is the longest suffix up to its EOS, rounded up to `SUFFIX_MULTIPLE` (the suffixes are padded, not the prompts).

    plan = plan_prefix(prompts.ids, prompts.eos, prompts.slots, class_specific=False, context=77)   # or None
    features = encode_with_prefix(clip, frozen, embeds, prompts.eos, plan, deep=deep, chunk=0)       # (C, E)

`plan_prefix` decides from the token ids and the learnable slots alone (static, numpy), so it is the method that
says what is class-specific: per-class slot values (CoOp with `csc`), or positions it edits itself (LAMM's label
tokens: `limit`). A plan is returned only when it saves work (P + C*S < C*L); otherwise the plain path runs.
The switch is `method.shared_prefix` (default on).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxprompt.clip.model import CLIP, DeepPrompts, gather_rows
from jaxprompt.methods.base import encode_classes

Array = jax.Array
SUFFIX_MULTIPLE = 8  # suffix lengths are rounded up to this, as trimmed prompts are (PromptTokens)


@dataclasses.dataclass(frozen=True)
class PrefixPlan:
  """prefix: P, positions shared by every prompt (all before every EOS); suffix: S, the padded suffix length."""

  prefix: int
  suffix: int


def enabled(config) -> bool:
  """The `method.shared_prefix` switch (default on)."""
  return bool(config.get("shared_prefix", True))


def shared_positions(ids: np.ndarray, slots: np.ndarray | None = None, *, class_specific: bool = False) -> int:
  """Number of leading positions where every prompt has the same token embedding.

  ids (C, L); slots (C, n) positions of learnable slots (their values replace the ids there). A position is shared
  when every row has the same id and either no row has a slot there or every row has the same slot index (with
  class-specific slot values, no slot position is shared).
  """
  ids = np.asarray(ids)
  same = (ids == ids[:1]).all(axis=0)
  if slots is not None and slots.shape[1]:
    slot_index = np.full(ids.shape, -1, np.int64)
    rows = np.arange(ids.shape[0])[:, None]
    slot_index[rows, np.asarray(slots)] = np.arange(slots.shape[1])[None]
    if class_specific:
      same &= (slot_index < 0).all(axis=0)
    else:
      same &= (slot_index == slot_index[:1]).all(axis=0)
  differing = np.nonzero(~same)[0]
  return int(differing[0]) if len(differing) else ids.shape[1]


def plan_prefix(ids: np.ndarray, eos: np.ndarray, slots: np.ndarray | None = None, *, class_specific: bool = False,
                context: int, limit: int | None = None, rows: int | None = None) -> PrefixPlan | None:
  """The shared prefix of a prompt set, or None when it would not save work.

  ids (C, L) (trimmed); eos (C,); slots (C, n) learnable positions (see `shared_positions`); context: the tower's
  context length; limit: positions >= limit are class-specific (the caller edits them); rows: how many prompts
  share the prefix (default C; LAMM's two branches: 2C).
  """
  eos = np.asarray(eos)
  num, length = ids.shape
  prefix = min(shared_positions(ids, slots, class_specific=class_specific), int(eos.min()))
  if limit is not None:
    prefix = min(prefix, int(limit))
  if prefix < 1:
    return None
  longest = int(eos.max()) + 1 - prefix
  suffix = min(-(-longest // SUFFIX_MULTIPLE) * SUFFIX_MULTIPLE, context - prefix)
  rows = num if rows is None else rows
  if prefix + rows * suffix >= rows * length:
    return None
  return PrefixPlan(prefix, suffix)


def split_deep(deep: DeepPrompts | None, prefix: int, length: int) -> tuple[DeepPrompts | None, DeepPrompts | None]:
  """Deep text prompts over full sequences of `length` -> (the part in the prefix, the part in the suffix), each
  with its start counted in its own part (None where a part gets no token)."""
  if deep is None:
    return None, None
  if deep.values.ndim != 3:
    raise ValueError(f"shared-prefix text encoding needs deep prompts shared by every class (n_layers, n, D), got "
                     f"shape {deep.values.shape}")
  start, n = deep.start % length, deep.values.shape[1]
  in_prefix = max(0, min(n, prefix - start))
  head = DeepPrompts(deep.values[:, :in_prefix], start) if in_prefix else None
  tail = DeepPrompts(deep.values[:, in_prefix:], max(0, start - prefix)) if in_prefix < n else None
  return head, tail


def prefix_keys_values(clip: CLIP, frozen, embeds: Array, plan: PrefixPlan, deep: DeepPrompts | None = None
                       ) -> Array:
  """Layer-0 embeddings (C, L, D) (row 0's first P positions are the prefix) -> its per-layer keys/values
  (depth, 2, P, H, D/H)."""
  head, _ = split_deep(deep, plan.prefix, embeds.shape[1])
  return clip.encode_text_prefix(frozen, embeds[:1, :plan.prefix], deep=head)


def suffixes(embeds: Array, plan: PrefixPlan) -> Array:
  """Layer-0 embeddings (C, L, D) -> the suffixes (C, S, D): positions P..P+S-1, zero-padded past L."""
  tail = embeds[:, plan.prefix:plan.prefix + plan.suffix]
  pad = plan.suffix - tail.shape[1]
  return jnp.pad(tail, ((0, 0), (0, pad), (0, 0))) if pad > 0 else tail


def encode_suffixes(clip: CLIP, frozen, tails: Array, eos: np.ndarray | Array, plan: PrefixPlan, keys_values: Array,
                    *, deep: DeepPrompts | None = None, length: int, chunk: int = 0) -> Array:
  """Suffixes (C, S, D) after a prefix (`prefix_keys_values`) -> projected EOS features (C, E), in class chunks.

  length: the full sequences' length L (where `deep.start` is counted); eos: (C,) EOS positions in full sequences.
  """
  _, tail_deep = split_deep(deep, plan.prefix, length)
  readout = jnp.asarray(eos) - plan.prefix

  def features(index: Array) -> Array:
    hidden = clip.encode_text_suffix(frozen, tails[index], keys_values, deep=tail_deep)
    return clip.project_text(frozen, gather_rows(hidden, readout[index]))

  return encode_classes(features, jnp.arange(tails.shape[0]), chunk=chunk)


def encode_with_prefix(clip: CLIP, frozen, embeds: Array, eos: np.ndarray | Array, plan: PrefixPlan, *,
                       deep: DeepPrompts | None = None, chunk: int = 0) -> Array:
  """Layer-0 token embeddings (C, L, D) whose first P positions are the same in every row -> EOS features (C, E),
  equal to `prompting.encode_embeddings` (the prefix runs once, the suffixes in class chunks of `chunk`)."""
  keys_values = prefix_keys_values(clip, frozen, embeds, plan, deep)
  return encode_suffixes(clip, frozen, suffixes(embeds, plan), eos, plan, keys_values, deep=deep,
                         length=embeds.shape[1], chunk=chunk)


def token_features(clip: CLIP, frozen, ids: Array, eos: Array, plan: PrefixPlan | None, *, chunk: int = 0) -> Array:
  """Plain CLIP text features (C, E) of token ids (C, L) (fixed prompts: zero-shot classes), through the shared
  prefix of `plan` (from `plan_prefix` on the same ids; None = the plain path); equal to `CLIP.text_features`."""
  embeds = clip.embed_tokens(frozen, ids)
  if plan is not None:
    return encode_with_prefix(clip, frozen, embeds, eos, plan, chunk=chunk)
  eos = jnp.asarray(eos)

  def features(index: Array) -> Array:
    hidden = clip.encode_text(frozen, embeds[index])
    return clip.project_text(frozen, gather_rows(hidden, eos[index]))

  return encode_classes(features, jnp.arange(embeds.shape[0]), chunk=chunk)
