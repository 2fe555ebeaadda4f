"""MmAP: Multi-modal Alignment Prompt (Xin et al., AAAI 2024), the single-MmAP part (docs/methods/mmap.md).

One shared `source` matrix (m, n) generates both modalities' deep prompts through Kronecker products with small
per-layer scaling matrices:

    T_l = kron(text_scale[l], source)   -> (b, D_text)      (kron_order "scale_source"; "source_scale" swaps)
    V_l = kron(image_scale[l], source)  -> (b, D_vision)

Trainable tree: `source` (m, n) [(depth, m, n) with `source_per_layer`], `text_scale` (depth, b/m, D_text/n),
`image_scale` (depth, b/m, D_vision/n). 736 parameters at ViT-B/16 with the defaults.

Placement (MaPLe's mechanics, `prompting`'s shared placement): text template "X X ... X {name}." with `slots`
placeholders after SOS; layer 0 writes its prompts into those slots (positional embeddings added, as for any token),
blocks 1..depth-1 get them overwritten by the deeper layers' prompts. Vision: layer-0 prompts appended after the
image tokens (before `pre_layrnorm`), the last `slots` tokens overwritten before blocks 1..depth-1. Readout at EOS
and the class token; no extra masks. MmAP is a `PromptedMethod`, so LAMM can stack on it (`lamm.base="mmap"`).

Multi-task composition (MmAP-MT, `mmap_mt.py`): `MmAP.for_composition` builds an MmAP whose sequences hold a
group-shared plus a task-specific prompt set (`combine="concat"`: 2b slots, shared first; `"sum"`: b),
`method.combined_prompts(shared_tree, specific_tree)` joins two trees' per-layer prompts with this MmAP's
`kron_order` and `combine`, and `logits_from_prompts` scores with given per-layer prompts.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt.clip.model import cosine_logits
from jaxprompt.methods import shared_prefix
from jaxprompt.methods.base import prompt_names, register
from jaxprompt.methods.prompting import (PromptedMethod, check_depth, check_positive, class_prompts, deep_text,
                                         image_features_with_prompts, placeholder_template,
                                         text_features_with_prompts)

Array = jax.Array

KRON_ORDERS = ("scale_source", "source_scale")
INITS = ("normal", "xavier", "small")
COMBINES = ("concat", "sum")


@register("mmap")
class MmAP(PromptedMethod):
  """One MmAP; see the module docstring. `slots`: prompt tokens per layer the sequences hold (default b)."""

  depth_options = ("depth",)  # prompt depths in layers; `config.fit_depth` caps them at the backbone's

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    # Shapes: the paper's (736 parameters per MmAP at ViT-B/16); the shapes-world ablation (docs/world_results.md)
    # kept (m, n) = (4, 64) ahead of (4, 32) and (2, 16), and found b = 4 and 8 equal on average.
    options.b = 8                    # prompt tokens per layer and modality
    options.m = 4                    # source rows; must divide b (scales have b/m rows)
    options.n = 64                   # source columns; must divide gcd(D_text, D_vision) (scales have D/n columns)
    options.depth = 12               # prompted layers (1 .. the shallower tower's depth); layer 0 is the input
    options.source_per_layer = False  # False: one source shared by all layers (the paper's count); True: per layer
    options.kron_order = "scale_source"  # T_l = kron(scale, source) (ours); "source_scale": kron(source, scale)
    # Initialisation (the paper leaves it open; docs/world_results.md compares the schemes):
    #   "normal": source N(0, 0.02^2), scales N(0, 1): prompt entries start with std 0.02, MaPLe's deep-prompt scale;
    #   "xavier": every factor Glorot-normal over its own (rows, cols): larger prompts (std ~0.08 at the defaults);
    #   "small":  every factor N(0, 0.02^2): prompts start near zero (std 4e-4), the "two small factors" case.
    # Default "xavier": on the shapes world it had the best mean and the smallest spread over seeds (46.1 +- 0.7 vs
    # normal 40.8 +- 4.1 and small 45.3 +- 3.1); "normal" is the usual suggestion, one config field away.
    options.init = "xavier"
    options.combine = "concat"       # MmAP-MT: shared + task-specific prompts per layer, "concat" (2b) or "sum" (b)
    return options

  def __init__(self, config, backbone, classnames, *, slots: int | None = None):
    super().__init__(config, backbone, classnames)
    options = self.options
    text, vision = self.clip.text, self.clip.vision
    check_positive("mmap", options, ("b", "m", "n", "depth"))
    if options.b % options.m:
      raise ValueError(f"mmap.m={options.m} must divide mmap.b={options.b} (the scaling matrices have b/m rows)")
    common = math.gcd(text.width, vision.width)
    if common % options.n:
      raise ValueError(f"mmap.n={options.n} must divide gcd(D_text={text.width}, D_vision={vision.width})={common} "
                       "(the scaling matrices have D/n columns)")
    check_depth("mmap.depth", options.depth, min(text.depth, vision.depth))
    for key, allowed in (("kron_order", KRON_ORDERS), ("init", INITS), ("combine", COMBINES)):
      if options[key] not in allowed:
        raise ValueError(f"mmap.{key} must be one of {allowed}, got {options[key]!r}")
    self.slots = int(options.b if slots is None else slots)
    # The tokenizer names an over-long class.
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), placeholder_template(self.slots),
                                 n_slots=self.slots, trim=config.trim_text)
    self.context_end = 1 + self.slots

  @classmethod
  def for_composition(cls, config, backbone, classnames) -> "MmAP":
    """An MmAP whose sequences hold `combined_prompts`' output: 2b slots with combine "concat", b with "sum"."""
    options = config[cls.name]
    return cls(config, backbone, classnames, slots=2 * options.b if options.combine == "concat" else options.b)

  def rebuild(self, config, classnames) -> "MmAP":
    return type(self)(config, self.backbone, classnames, slots=self.slots)

  # --- trainable tree ---------------------------------------------------------------------------------------------
  def init(self, rng: Array) -> dict[str, Array]:
    """-> {"source": (m, n) or (depth, m, n), "text_scale": (depth, b/m, D_t/n), "image_scale": (depth, b/m, D_v/n)}."""
    options = self.options
    rows = options.b // options.m
    shapes = {"source": ((options.depth,) if options.source_per_layer else ()) + (options.m, options.n),
              "text_scale": (options.depth, rows, self.clip.text.width // options.n),
              "image_scale": (options.depth, rows, self.clip.vision.width // options.n)}
    keys = dict(zip(shapes, jax.random.split(rng, len(shapes))))
    return {name: _init_factor(keys[name], shape, options.init, name == "source") for name, shape in shapes.items()}

  def layer_prompts(self, trainable) -> tuple[Array, Array]:
    """-> text (depth, b, D_text), vision (depth, b, D_vision)."""
    return generate_prompts(trainable, self.options.kron_order)

  def combined_prompts(self, shared, specific) -> tuple[Array, Array]:
    """Two MmAP trees (group-shared, task-specific) -> per-layer prompts text (depth, slots, D_text) and vision
    (depth, slots, D_vision), combined with this MmAP's `combine` (concat: shared first)."""
    order, how = self.options.kron_order, self.options.combine
    return tuple(combine_prompts(shared_prompts, specific_prompts, how) for shared_prompts, specific_prompts
                 in zip(generate_prompts(shared, order), generate_prompts(specific, order)))

  # --- the PromptedMethod halves (LAMM stacks here) ---------------------------------------------------------------
  def layer0_context(self, trainable):
    """Layer 0 of the text prompts goes into the placeholder slots."""
    return self.layer_prompts(trainable)[0][0]

  def deep_text_prompts(self, trainable):
    """Layers 1.. of the text prompts overwrite the placeholder slots before text blocks 1..depth-1."""
    return deep_text(self.prompts, self.layer_prompts(trainable)[0])

  def image_embedding(self, trainable, frozen, images):
    return self.image_features(frozen, self.layer_prompts(trainable)[1], images)

  # --- from given per-layer prompts -------------------------------------------------------------------------------
  def text_features(self, frozen, text_prompts: Array) -> Array:
    """text_prompts (depth, slots, D_text) -> EOS features (C, E)."""
    self._check_slots(text_prompts)
    return text_features_with_prompts(self.clip, frozen, self.prompts, text_prompts, chunk=self.config.text_chunk,
                                      use_prefix=shared_prefix.enabled(self.config))

  def image_features(self, frozen, vision_prompts: Array, images: Array) -> Array:
    """vision_prompts (depth, slots, D_vision), images (B, H, W, 3) -> class-token features (B, E)."""
    self._check_slots(vision_prompts)
    return image_features_with_prompts(self.clip, frozen, images, vision_prompts)

  def logits_from_prompts(self, frozen, text_prompts: Array, vision_prompts: Array, images: Array) -> Array:
    """Per-layer prompts (depth, slots, D) of each modality (e.g. `combined_prompts` output) -> logits (B, C)."""
    text = self.text_features(frozen, text_prompts)
    image = self.image_features(frozen, vision_prompts, images)
    return cosine_logits(self.clip.logit_scale(frozen), image, text)

  def logits(self, trainable, frozen, images: Array) -> Array:
    text_prompts, vision_prompts = self.layer_prompts(trainable)
    return self.logits_from_prompts(frozen, text_prompts, vision_prompts, images)

  def _check_slots(self, prompts: Array) -> None:
    if prompts.shape[1] != self.slots:
      raise ValueError(f"prompts of {prompts.shape[1]} tokens per layer, but this MmAP's sequences hold {self.slots} "
                       "(build it with MmAP.for_composition, slots=2*b, for concatenated shared + specific prompts)")


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
