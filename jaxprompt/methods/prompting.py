"""Shared prompt mechanics: class prompts with learnable slots, deep text/vision prompt placement, Dense inits.

Reusable placement (MaPLe, IVLP, VPT, MmAP):

    prompts = class_prompts(tokenizer, names, "X X {}.", n_slots=2, trim=True)   # slots 1..2 after SOS
    text = text_features_with_prompts(clip, frozen, prompts, text_prompts, chunk=0)   # (C, E)
    image = image_features_with_prompts(clip, frozen, images, vision_prompts)       # (B, E)

`text_prompts` is (depth_t, n, D_text): layer 0 is written into the prompt's slots (positional embeddings are added
by the tower as for any token), layers 1..depth_t-1 overwrite the same slots before text blocks 1..depth_t-1 (the
slots must then be the same contiguous run for every class, as they are for placeholders right after SOS).
`vision_prompts` is (depth_v, n, D_vision): layer 0 is appended after the image tokens (through `pre_layrnorm`),
deeper layers overwrite the last n tokens before vision blocks 1..depth_v-1 (VPT-deep / MaPLe mechanics).

`PromptedMethod` is the base of every method whose text prompt holds the class name (CoOp, MaPLe, IVLP, VPT, the
fixed template of LAMM-on-CLIP). It splits the text path in two so LAMM can edit the token embeddings in between:
`prompt_embeddings(trainable, frozen)` -> (C, L, D) layer-0 embeddings with the method's slots written (from the
`layer0_context(trainable)` hook), and `encode_prompts(trainable, frozen, embeds, plan=...)` -> (C, E) features (deep
prompts from the `deep_text_prompts(trainable)` hook, class chunks). `image_embedding` gives the (unnormalised) image
features with the method's vision prompts.

Shared prefix (`shared_prefix.py`, switch `method.shared_prefix`): `prefix_plan(trainable)` says how many leading
positions every class prompt shares (None: the plain path); `text_embedding` then runs that prefix once and only the
per-class suffixes. A caller that edits the embeddings itself (LAMM) passes `limit` (its first edited position) and
encodes several prompt sets over one prefix with `encode_prompt_sets`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprompt.clip.model import CLIP, DeepPrompts, cosine_logits, gather_rows
from jaxprompt.methods import shared_prefix
from jaxprompt.methods.base import Method, PromptTokens, encode_classes
from jaxprompt.methods.shared_prefix import PrefixPlan

Array = jax.Array
POSITIONS = ("end", "middle", "front")


@dataclasses.dataclass(frozen=True)
class ClassPrompts:
  """Tokenised class prompts with learnable slots.

  ids: (C, L) int32 (trimmed to the longest real prompt, multiple of 8); eos: (C,) EOS positions;
  name_spans: (C, 2) [start, end) of each class name's tokens; slots: (C, n) positions of the learnable context
  tokens in each row (n may be 0).
  """

  ids: np.ndarray
  eos: np.ndarray
  name_spans: np.ndarray
  slots: np.ndarray

  @property
  def num_classes(self) -> int:
    return self.ids.shape[0]

  def shared_slot_start(self) -> int:
    """The first slot, when slots are the same contiguous run in every row (needed for deep text prompts)."""
    n = self.slots.shape[1]
    start = int(self.slots[0, 0]) if n else 1
    if n and not (self.slots == start + np.arange(n)).all():
      raise ValueError("deep text prompts need the context slots at the same positions in every class prompt "
                       "(class_position='end')")
    return start


def placeholder_template(n: int, position: str = "end") -> str:
  """CoOp's prompt text with n placeholder tokens 'X' around the name: end 'X X {}.', middle 'X {} X.', front '{} X X.'."""
  if position not in POSITIONS:
    raise ValueError(f"class position {position!r} is not one of {POSITIONS}")
  half = n // 2 if position == "middle" else (n if position == "end" else 0)
  before, after = ["X"] * half, ["X"] * (n - half)
  return " ".join(before + ["{}"] + after) + "."


def class_prompts(tokenizer, names: Sequence[str], template: str, *, n_slots: int = 0, position: str = "end",
                  trim: bool = True) -> ClassPrompts:
  """Tokenises template.format(name) per class and locates its n_slots learnable tokens.

  The slot tokens are part of the template (placeholders or init words), so an over-long prompt fails in the
  tokenizer naming the class. position: 'end' = slots 1..n right after SOS; 'front' = the n tokens right after the
  name; 'middle' = n//2 after SOS and the rest right after the name (see `placeholder_template`).
  """
  tokenized = tokenizer.prompts(template, names)
  tokens = PromptTokens.make(tokenized, trim=trim)
  spans = tokens.name_spans
  first = n_slots // 2 if position == "middle" else (n_slots if position == "end" else 0)
  lead = np.broadcast_to(1 + np.arange(first), (len(names), first))
  tail = spans[:, 1:2] + np.arange(n_slots - first)[None]
  slots = np.concatenate([lead, tail], axis=1).astype(np.int32)
  if position != "front" and first and (spans[:, 0] < 1 + first).any():
    raise ValueError(f"template {template!r} has fewer than {first} tokens before the class name")
  return ClassPrompts(tokens.ids, tokens.eos, spans, slots)


def write_slots(embeds: Array, values: Array, slots: np.ndarray | Array) -> Array:
  """Writes values (n, D) shared or (C, n, D) per class into embeds (C, L, D) at positions slots (C, n)."""
  if slots.shape[1] == 0:
    return embeds
  values = jnp.broadcast_to(values.astype(embeds.dtype), slots.shape + embeds.shape[-1:])
  rows = np.arange(embeds.shape[0])[:, None]
  return embeds.at[rows, slots].set(values)


def encode_embeddings(clip: CLIP, frozen, embeds: Array, eos: np.ndarray | Array, *, deep: DeepPrompts | None = None,
                      chunk: int = 0) -> Array:
  """Layer-0 token embeddings (C, L, D) -> projected EOS features (C, E), in class chunks of `chunk` (0 = all)."""
  eos = jnp.asarray(eos)

  def features(index: Array) -> Array:
    hidden = clip.encode_text(frozen, embeds[index], deep=deep)
    return clip.project_text(frozen, gather_rows(hidden, eos[index]))

  return encode_classes(features, jnp.arange(embeds.shape[0]), chunk=chunk)


def text_features_with_prompts(clip: CLIP, frozen, prompts: ClassPrompts, text_prompts: Array, *,
                               chunk: int = 0, use_prefix: bool = True) -> Array:
  """Text features (C, E) with text_prompts (depth, n, D_text) in the slots of `prompts` (see module docstring);
  use_prefix: run the positions every class shares once (`shared_prefix`, exact)."""
  embeds = write_slots(clip.embed_tokens(frozen, jnp.asarray(prompts.ids)), text_prompts[0], prompts.slots)
  deep = deep_text(prompts, text_prompts)
  plan = prompt_plan(clip, prompts, class_specific=False) if use_prefix else None
  if plan is not None:
    return shared_prefix.encode_with_prefix(clip, frozen, embeds, prompts.eos, plan, deep=deep, chunk=chunk)
  return encode_embeddings(clip, frozen, embeds, prompts.eos, deep=deep, chunk=chunk)


def prompt_plan(clip: CLIP, prompts: ClassPrompts, *, class_specific: bool | None, limit: int | None = None,
                rows: int | None = None) -> PrefixPlan | None:
  """The shared prefix of class prompts whose slots hold shared values (class_specific=False), per-class values
  (True) or nothing written (None: the slots keep their ids). See `shared_prefix.plan_prefix`."""
  slots = None if class_specific is None else prompts.slots
  return shared_prefix.plan_prefix(prompts.ids, prompts.eos, slots, class_specific=bool(class_specific),
                                   context=clip.text.context_length, limit=limit, rows=rows)


def deep_text(prompts: ClassPrompts, text_prompts: Array) -> DeepPrompts | None:
  """Layers 1.. of text_prompts (depth, n, D) as DeepPrompts over the prompts' (shared) slots, or None."""
  if text_prompts.shape[0] <= 1:
    return None
  return DeepPrompts(text_prompts[1:], prompts.shared_slot_start())


def image_features_with_prompts(clip: CLIP, frozen, images: Array, vision_prompts: Array | None) -> Array:
  """Image features (B, E) with vision_prompts (depth, n, D_vision) appended / deep-written (None = plain CLIP)."""
  if vision_prompts is None:
    return clip.image_features(frozen, images)
  n = vision_prompts.shape[1]
  deep = DeepPrompts(vision_prompts[1:], -n) if vision_prompts.shape[0] > 1 else None
  hidden = clip.encode_image(frozen, images, extra_tokens=vision_prompts[0], deep=deep)
  return clip.project_image(frozen, hidden[:, 0])


def frozen_image_features(clip: CLIP, frozen, images: Array) -> Array:
  """Plain image features (B, E) with no backward pass through the vision tower."""
  return jax.lax.stop_gradient(clip.image_features(frozen, images))


def check_depth(option: str, depth: int, tower_depth: int) -> None:
  """Prompted layers must not exceed the tower's blocks; the error names the config option."""
  if depth > tower_depth:
    raise ValueError(f"{option}={depth} prompted layers, but the backbone tower has only {tower_depth} layers")


def check_positive(method: str, options, keys: Sequence[str]) -> None:
  """Each `options[key]` must be >= 1; the error names `<method>.<key>` and the value."""
  for key in keys:
    if int(options[key]) < 1:
      raise ValueError(f"{method}.{key} must be >= 1 (got {options[key]})")


# --- initialisation ---------------------------------------------------------------------------------------------------
def phrase_embeddings(backbone, phrase: str) -> np.ndarray:
  """Input token embeddings (n, D_text) of phrase's BPE tokens (no SOS/EOS, no positional part)."""
  ids = backbone.tokenizer.encode(phrase)
  table = CLIP.token_embedding_table(backbone.params)
  return np.asarray(table[np.asarray(ids, np.int64)], np.float32)


CTX_RULES = ("tokens", "reference")


def context_init(backbone, options, position: str = "end") -> tuple[np.ndarray | None, int, str]:
  """CoOp / CoCoOp context: (initial context (M, D_text) or None for random, M, the prompt template with M slots).

  No `options.ctx_init`: random context, M = `options.n_ctx`, placeholders "X .. X" around the name (`position`).
  With a phrase, `options.ctx_rule` says which of its tokens are learnt:
    "tokens": every BPE token of the phrase; M = the phrase's token count and the template is M placeholders (the
      phrase lives only in the initial context).
    "reference": the reference code's rule (KaiyangZhou/CoOp): M = the number of space-separated *words* of the phrase
      (`_` read as a space), the context starts as the phrase's first M *BPE tokens*, and the prompt text is the
      phrase itself followed by the name, so its tokens after the first M stay fixed text. The two rules agree when
      every word is one token ("a photo of a"); "a hand-drawn photo of a" is 5 words but 7 tokens (a, hand, -, drawn,
      photo, of, a), so the reference learns "a hand - drawn photo" and keeps "of a" fixed.
  The reference places the phrase's leftover tokens before the name, so a phrase with more tokens than words works
  with class position 'end' only (elsewhere it is an error).
  """
  if not options.ctx_init:
    return None, options.n_ctx, placeholder_template(options.n_ctx, position)
  rule = options.get("ctx_rule", "tokens")
  if rule not in CTX_RULES:
    raise ValueError(f"ctx_rule={rule!r}: use one of {CTX_RULES}")
  if rule == "tokens":
    embeddings = phrase_embeddings(backbone, options.ctx_init)
    return embeddings, len(embeddings), placeholder_template(len(embeddings), position)
  phrase = options.ctx_init.replace("_", " ")
  n_words = len(phrase.split(" "))
  embeddings = phrase_embeddings(backbone, phrase)
  if n_words > len(embeddings):
    raise ValueError(f"ctx_init={options.ctx_init!r} has {n_words} words but only {len(embeddings)} tokens; "
                     "ctx_rule='reference' learns one token per word")
  if len(embeddings) == n_words:
    template = phrase + " {}." if position == "end" else placeholder_template(n_words, position)
    return embeddings, n_words, template
  if position != "end":
    raise ValueError(f"ctx_init={options.ctx_init!r} ({n_words} words, {len(embeddings)} tokens) with ctx_rule="
                     f"'reference' keeps its last tokens fixed before the name, so it needs class_position='end' "
                     f"(got {position!r}); use ctx_rule='tokens'")
  return embeddings[:n_words], n_words, phrase + " {}."


def template_context(backbone, ctx_init: str, n: int) -> tuple[np.ndarray | None, str]:
  """MaPLe / IVLP context: (initial layer-0 context (n, D_text) or None for random, the prompt template).

  When `ctx_init` ("a photo of a") has at least n tokens, its first n token embeddings start the context and the
  template is `ctx_init + " {}."` (the slots are its first n tokens, the rest stays fixed); otherwise the context is
  random and the template has n placeholders "X X {}.".
  """
  words = phrase_embeddings(backbone, ctx_init) if ctx_init else None
  if words is not None and len(words) >= n:
    return words[:n], ctx_init + " {}."
  return None, placeholder_template(n)


def dense_init(rng: Array, fan_in: int, fan_out: int, *, scheme: str = "pytorch", stack: int = 0) -> dict:
  """A Dense layer {kernel (fan_in, fan_out), bias (fan_out,)}; stack > 0 adds a leading axis of `stack` copies.

  scheme 'pytorch': weight and bias uniform in +-1/sqrt(fan_in) (torch.nn.Linear); 'lecun': flax's default
  (lecun-normal kernel, zero bias). Stacked copies are identical, as the reference's cloned projection layers.
  """
  k_rng, b_rng = jax.random.split(rng)
  if scheme == "pytorch":
    bound = 1.0 / np.sqrt(fan_in)
    kernel = jax.random.uniform(k_rng, (fan_in, fan_out), jnp.float32, -bound, bound)
    bias = jax.random.uniform(b_rng, (fan_out,), jnp.float32, -bound, bound)
  elif scheme == "lecun":
    kernel = jax.nn.initializers.lecun_normal()(k_rng, (fan_in, fan_out), jnp.float32)
    bias = jnp.zeros((fan_out,), jnp.float32)
  else:
    raise ValueError(f"unknown Dense init scheme {scheme!r}; use 'pytorch' or 'lecun'")
  if stack:
    kernel, bias = (jnp.broadcast_to(x, (stack,) + x.shape) for x in (kernel, bias))
  return {"kernel": kernel, "bias": bias}


def dense(layer: dict, x: Array) -> Array:
  """x (..., fan_in) @ kernel + bias -> (..., fan_out)."""
  return x @ layer["kernel"] + layer["bias"]


def text_params(params):
  """The part of the CLIP tree the text path reads (so constructors never move the vision tower to the device)."""
  return {"text_model": params["text_model"], "text_projection": params["text_projection"],
          "logit_scale": params["logit_scale"]}


# --- methods whose text prompt holds the class name -------------------------------------------------------------------
class PromptedMethod(Method):
  """A method with one prompt per class (`self.prompts`), whose text path LAMM can edit between the two halves.

  Subclasses set `self.prompts: ClassPrompts` and override the hooks they change.
  """

  prompts: ClassPrompts
  context_end: int | None = None   # first position after the leading context slots (LAMM's 'after_ctx')

  def layer0_context(self, trainable) -> Array | None:
    """What goes into the prompt slots at layer 0: (n, D_text) shared or (C, n, D_text) per class; None = nothing."""
    return None

  def deep_text_prompts(self, trainable) -> DeepPrompts | None:
    """Deep text prompts written before text blocks 1.. (default: none)."""
    return None

  def prompt_embeddings(self, trainable, frozen) -> Array:
    """(C, L, D_text) layer-0 token embeddings with `layer0_context` written into the slots."""
    embeds = self.clip.embed_tokens(frozen, jnp.asarray(self.prompts.ids))
    context = self.layer0_context(trainable)
    return embeds if context is None else write_slots(embeds, context, self.prompts.slots)

  def prefix_plan(self, trainable, *, limit: int | None = None, rows: int | None = None) -> PrefixPlan | None:
    """The shared prefix of this method's prompts (None: the plain path). limit: the first position the caller edits
    per class; rows: prompts that will share it (default C). Static: reads only shapes of `trainable`."""
    if not shared_prefix.enabled(self.config):
      return None
    context = jax.eval_shape(self.layer0_context, trainable)
    class_specific = None if context is None else len(context.shape) == 3
    return prompt_plan(self.clip, self.prompts, class_specific=class_specific, limit=limit, rows=rows)

  def encode_prompts(self, trainable, frozen, embeds: Array, *, plan: PrefixPlan | None = None) -> Array:
    """(C, L, D_text) layer-0 embeddings -> text features (C, E), with `deep_text_prompts`.

    plan: from `prefix_plan` (the caller guarantees embeds' first `plan.prefix` positions equal in every row)."""
    deep, chunk = self.deep_text_prompts(trainable), self.config.text_chunk
    if plan is None:
      return encode_embeddings(self.clip, frozen, embeds, self.prompts.eos, deep=deep, chunk=chunk)
    return shared_prefix.encode_with_prefix(self.clip, frozen, embeds, self.prompts.eos, plan, deep=deep,
                                            chunk=chunk)

  def encode_prompt_sets(self, trainable, frozen, embed_sets: Sequence[Array], plan: PrefixPlan) -> list[Array]:
    """Several (C, L, D_text) embedding sets sharing their first `plan.prefix` positions (LAMM's label and reference
    prompts) -> one (C, E) feature set each, over one prefix pass (plan from `prefix_plan(..., rows=C * sets)`)."""
    deep, length = self.deep_text_prompts(trainable), embed_sets[0].shape[1]
    keys_values = shared_prefix.prefix_keys_values(self.clip, frozen, embed_sets[0], plan, deep)
    tails = jnp.concatenate([shared_prefix.suffixes(embeds, plan) for embeds in embed_sets])
    eos = np.tile(self.prompts.eos, len(embed_sets))
    features = shared_prefix.encode_suffixes(self.clip, frozen, tails, eos, plan, keys_values, deep=deep,
                                             length=length, chunk=self.config.text_chunk)
    return list(jnp.split(features, len(embed_sets)))

  def text_embedding(self, trainable, frozen) -> Array:
    """Text features (C, E) of the method's own prompts (through the shared prefix when it saves work)."""
    embeds = self.prompt_embeddings(trainable, frozen)
    return self.encode_prompts(trainable, frozen, embeds, plan=self.prefix_plan(trainable))

  def image_embedding(self, trainable, frozen, images: Array) -> Array:
    """Image features (B, E) (default: plain CLIP, no gradient into the vision tower)."""
    return frozen_image_features(self.clip, frozen, images)

  def logits(self, trainable, frozen, images: Array) -> Array:
    """(B, C) = exp(logit_scale) * normalised image @ normalised text features."""
    return cosine_logits(self.clip.logit_scale(frozen), self.image_embedding(trainable, frozen, images),
                         self.text_embedding(trainable, frozen))
