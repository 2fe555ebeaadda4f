"""MmAP: Multi-modal Alignment Prompt (Xin et al., AAAI 2024), the single-MmAP part (specs/mmap.md).

One shared `source` matrix (m, n) generates both modalities' deep prompts through Kronecker products with small
per-layer scaling matrices:

    T_l = kron(text_scale[l], source)   -> (b, D_text)      (kron_order "scale_source"; "source_scale" swaps)
    V_l = kron(image_scale[l], source)  -> (b, D_vision)

Trainable tree: `source` (m, n) [(depth, m, n) with `source_per_layer`], `text_scale` (depth, b/m, D_text/n),
`image_scale` (depth, b/m, D_vision/n). 736 parameters at ViT-B/16 with the defaults.

Placement (MaPLe's mechanics): text template "X X ... X {name}." with `slots` placeholders after SOS; layer 0 writes
its prompts into those slots (positional embeddings added, as for any token), blocks 1..depth-1 get them overwritten
by the deeper layers' prompts. Vision: layer-0 prompts appended after the image tokens (before `pre_layrnorm`), the
last `slots` tokens overwritten before blocks 1..depth-1. Readout at EOS and the class token; no extra masks.

Multi-task composition (MmAP-MT): `generate_prompts` turns any MmAP tree into per-layer prompts, `combine_prompts`
joins a group-shared and a task-specific set (`combine="concat"`: 2b tokens per layer, `"sum"`: b), and
`logits_from_prompts` scores with given per-layer prompts. Build the method with `slots=2 * b` for concatenated prompts.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt.clip.model import DeepPrompts, cosine_logits, gather_rows, write_tokens
from jaxprompt.methods.base import Method, PromptTokens, encode_classes, prompt_names, register

Array = jax.Array

KRON_ORDERS = ("scale_source", "source_scale")
INITS = ("normal", "xavier", "small")
COMBINES = ("concat", "sum")


@register("mmap")
class MmAP(Method):
  """One MmAP; see the module docstring. `slots`: prompt tokens per layer the sequences hold (default b)."""

  depth_options = ("depth",)  # prompt depths in layers; `config.fit_depth` caps them at the backbone's

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    # Shapes: the spec's (736 parameters per MmAP at ViT-B/16); the shapes-world ablation (docs/world_results.md)
    # kept (m, n) = (4, 64) ahead of (4, 32) and (2, 16), and found b = 4 and 8 equal on average.
    o.b = 8                    # prompt tokens per layer and modality
    o.m = 4                    # source rows; must divide b (scales have b/m rows)
    o.n = 64                   # source columns; must divide gcd(D_text, D_vision) (scales have D/n columns)
    o.depth = 12               # prompted layers (1 .. the shallower tower's depth); layer 0 is the input
    o.source_per_layer = False  # False: one source shared by all layers (the paper's parameter count); True: per layer
    o.kron_order = "scale_source"  # T_l = kron(scale, source) (ours); "source_scale": kron(source, scale)
    # Initialisation (the spec leaves it open; docs/world_results.md compares the schemes):
    #   "normal": source N(0, 0.02^2), scales N(0, 1): prompt entries start with std 0.02, MaPLe's deep-prompt scale;
    #   "xavier": every factor Glorot-normal over its own (rows, cols): larger prompts (std ~0.08 at the defaults);
    #   "small":  every factor N(0, 0.02^2): prompts start near zero (std 4e-4), the "two small factors" case.
    # Default "xavier": on the shapes world it had the best mean and the smallest spread over seeds (46.1 +- 0.7 vs
    # normal 40.8 +- 4.1 and small 45.3 +- 3.1); "normal" is the spec's suggestion, one config field away.
    o.init = "xavier"
    o.combine = "concat"       # MmAP-MT: shared + task-specific prompts per layer, "concat" (2b tokens) or "sum" (b)
    return o

  def __init__(self, config, backbone, classnames, *, slots: int | None = None):
    super().__init__(config, backbone, classnames)
    o = self.options
    text, vision = self.clip.text, self.clip.vision
    for key in ("b", "m", "n", "depth"):
      if int(o[key]) < 1:
        raise ValueError(f"mmap.{key} must be positive, got {o[key]}")
    if o.b % o.m:
      raise ValueError(f"mmap.m={o.m} must divide mmap.b={o.b} (the scaling matrices have b/m rows)")
    common = math.gcd(text.width, vision.width)
    if common % o.n:
      raise ValueError(f"mmap.n={o.n} must divide gcd(D_text={text.width}, D_vision={vision.width})={common} "
                       "(the scaling matrices have D/n columns)")
    if o.depth > min(text.depth, vision.depth):
      raise ValueError(f"mmap.depth={o.depth} exceeds the towers' depth (text {text.depth}, vision {vision.depth})")
    for key, allowed in (("kron_order", KRON_ORDERS), ("init", INITS), ("combine", COMBINES)):
      if o[key] not in allowed:
        raise ValueError(f"mmap.{key} must be one of {allowed}, got {o[key]!r}")
    self.slots = int(o.b if slots is None else slots)
    template = " ".join(["X"] * self.slots) + " {}."
    tokenized = self.tokenizer.prompts(template, prompt_names(classnames, clean=True))  # names an over-long class
    self.tokens = PromptTokens.make(tokenized, trim=config.trim_text)

  def for_classes(self, classnames) -> "MmAP":
    return type(self)(self.config, self.backbone, list(classnames), slots=self.slots)

  # --- trainable tree ---------------------------------------------------------------------------------------------
  def init(self, rng: Array) -> dict[str, Array]:
    """-> {"source": (m, n) or (depth, m, n), "text_scale": (depth, b/m, D_t/n), "image_scale": (depth, b/m, D_v/n)}."""
    o = self.options
    rows = o.b // o.m
    shapes = {"source": ((o.depth,) if o.source_per_layer else ()) + (o.m, o.n),
              "text_scale": (o.depth, rows, self.clip.text.width // o.n),
              "image_scale": (o.depth, rows, self.clip.vision.width // o.n)}
    keys = dict(zip(shapes, jax.random.split(rng, len(shapes))))
    return {name: _init_factor(keys[name], shape, o.init, name == "source") for name, shape in shapes.items()}

  def prompts(self, trainable) -> tuple[Array, Array]:
    """-> text (depth, b, D_text), vision (depth, b, D_vision)."""
    return generate_prompts(trainable, self.options.kron_order)

  # --- logits -----------------------------------------------------------------------------------------------------
  def text_features(self, frozen, text_prompts: Array) -> Array:
    """text_prompts (depth, slots, D_text) -> EOS features (C, E)."""
    self._check_slots(text_prompts)

    def encode(ids: Array) -> Array:
      embeds = write_tokens(self.clip.embed_tokens(frozen, ids), text_prompts[0], 1)
      deep = DeepPrompts(text_prompts[1:], 1) if text_prompts.shape[0] > 1 else None
      hidden = self.clip.encode_text(frozen, embeds, deep=deep)
      return self.clip.project_text(frozen, gather_rows(hidden, jnp.argmax(ids, -1)))

    return encode_classes(encode, jnp.asarray(self.tokens.ids), self.config.text_chunk)

  def image_features(self, frozen, vision_prompts: Array, images: Array) -> Array:
    """vision_prompts (depth, slots, D_vision), images (B, H, W, 3) -> class-token features (B, E)."""
    self._check_slots(vision_prompts)
    deep = DeepPrompts(vision_prompts[1:], -self.slots) if vision_prompts.shape[0] > 1 else None
    hidden = self.clip.encode_image(frozen, images, extra_tokens=vision_prompts[0], deep=deep)
    return self.clip.project_image(frozen, hidden[:, 0])

  def logits_from_prompts(self, frozen, text_prompts: Array, vision_prompts: Array, images: Array) -> Array:
    """Per-layer prompts (depth, slots, D) of each modality (e.g. `combine_prompts` output) -> logits (B, C)."""
    text = self.text_features(frozen, text_prompts)
    image = self.image_features(frozen, vision_prompts, images)
    return cosine_logits(self.clip.logit_scale(frozen), image, text)

  def logits(self, trainable, frozen, images: Array) -> Array:
    text_prompts, vision_prompts = self.prompts(trainable)
    return self.logits_from_prompts(frozen, text_prompts, vision_prompts, images)

  def _check_slots(self, prompts: Array) -> None:
    if prompts.shape[1] != self.slots:
      raise ValueError(f"prompts of {prompts.shape[1]} tokens per layer, but this MmAP's sequences hold {self.slots} "
                       "(build it with slots=2*b for concatenated shared + task-specific prompts)")


def kron_prompts(scale: Array, source: Array, order: str) -> Array:
  """One layer: scale (b/m, D/n), source (m, n) -> (b, D) = kron(scale, source) or kron(source, scale)."""
  return jnp.kron(scale, source) if order == "scale_source" else jnp.kron(source, scale)


def generate_prompts(tree, order: str = "scale_source") -> tuple[Array, Array]:
  """An MmAP tree -> per-layer prompts: text (depth, b, D_text), vision (depth, b, D_vision)."""
  depth = tree["text_scale"].shape[0]
  source = tree["source"]
  sources = source if source.ndim == 3 else jnp.broadcast_to(source, (depth,) + source.shape)
  make = jax.vmap(lambda scale, src: kron_prompts(scale, src, order))
  return make(tree["text_scale"], sources), make(tree["image_scale"], sources)


def combine_prompts(shared: Array, specific: Array, how: str = "concat") -> Array:
  """Group-shared and task-specific prompts (depth, b, D) -> (depth, 2b, D) ("concat", shared first) or (depth, b, D)."""
  if how == "concat":
    return jnp.concatenate([shared, specific], axis=1)
  if how == "sum":
    return shared + specific
  raise ValueError(f"mmap.combine must be one of {COMBINES}, got {how!r}")


def _init_factor(rng: Array, shape: tuple[int, ...], scheme: str, is_source: bool) -> Array:
  """One factor (a stack of matrices over its last two axes) under an initialisation scheme (see default_options)."""
  if scheme == "normal":
    std = 0.02 if is_source else 1.0
  elif scheme == "xavier":
    std = float(np.sqrt(2.0 / (shape[-2] + shape[-1])))
  else:  # "small"
    std = 0.02
  return std * jax.random.normal(rng, shape, jnp.float32)
