"""MaPLe (Khattak et al., CVPR 2023): coupled text and vision prompts, the vision ones projected from the text ones.

Trainable (n tokens, depth J):
  `ctx`        (n, D_text)             text slots 1..n of "a photo of a {name}." (the rest of the template stays fixed)
  `deep_text`  (J-1, n, D_text)        overwrite text slots 1..n before text blocks 1..J-1 (normal std 0.02)
  `proj`       {kernel (D_text, D_vision), bias (D_vision,)}: layer-0 vision prompt = proj(ctx), appended after the
               image tokens (through `pre_layrnorm`)
  `deep_proj`  {kernel (J-1, D_text, D_vision), bias (J-1, D_vision)}: vision prompt of layer l = deep_proj[l-1](
               deep_text[l-1]), overwriting the last n vision tokens before block l
With depth 1 there are no `deep_text` / `deep_proj` leaves. ViT-B/16, n=2, J=9: 3,555,072 parameters.
Init: `ctx` from the first n tokens of `ctx_init` when it has at least n tokens, else normal std 0.02 with the
placeholder template "X X {name}."; Dense layers PyTorch-style (uniform +-1/sqrt(fan_in)) with the deeper projections
identical copies of one fresh layer, as the reference (`proj_init="lecun"` for flax's default).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxprompt.clip.model import DeepPrompts
from jaxprompt.methods.base import prompt_names, register
from jaxprompt.methods.prompting import (PromptedMethod, check_depth, check_positive, class_prompts, dense,
                                         dense_init, image_features_with_prompts, template_context)


@register("maple")
class MaPLe(PromptedMethod):
  """Multi-modal prompt learning with a text-to-vision coupling function per prompted layer."""

  depth_options = ("depth",)  # prompt depths in layers; `config.fit_depth` caps them at the backbone's

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.n_ctx = 2                   # prompt tokens n per modality
    options.depth = 9                   # prompted layers J (1 = shallow: layer 0 only)
    options.ctx_init = "a photo of a"   # template words; the first n become `ctx` ("" = random, "X" placeholders)
    options.proj_init = "pytorch"       # "pytorch" (uniform +-1/sqrt(fan_in)) | "lecun" (flax default)
    options.init_std = 0.02             # std of the random text prompts
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    check_positive("maple", options, ("n_ctx", "depth"))
    self.n_ctx, self.depth = options.n_ctx, options.depth
    check_depth("maple.depth", self.depth, min(self.clip.text.depth, self.clip.vision.depth))
    self.ctx_init, template = template_context(backbone, options.ctx_init, self.n_ctx)
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), template, n_slots=self.n_ctx,
                                 trim=config.trim_text)
    self.context_end = 1 + self.n_ctx

  def init(self, rng):
    """{'ctx', 'proj', and for depth > 1 'deep_text', 'deep_proj'} (shapes in the module docstring)."""
    ctx_rng, deep_rng, proj_rng, deep_proj_rng = jax.random.split(rng, 4)
    text_width, vision_width = self.clip.text.width, self.clip.vision.width
    std, scheme = self.options.init_std, self.options.proj_init
    if self.ctx_init is not None:
      ctx = jnp.asarray(self.ctx_init)
    else:
      ctx = std * jax.random.normal(ctx_rng, (self.n_ctx, text_width), jnp.float32)
    trainable = {"ctx": ctx, "proj": dense_init(proj_rng, text_width, vision_width, scheme=scheme)}
    if self.depth > 1:
      trainable["deep_text"] = std * jax.random.normal(deep_rng, (self.depth - 1, self.n_ctx, text_width))
      trainable["deep_proj"] = dense_init(deep_proj_rng, text_width, vision_width, scheme=scheme,
                                          stack=self.depth - 1)
    return trainable

  def vision_prompts(self, trainable) -> jax.Array:
    """(J, n, D_vision): proj(ctx), then deep_proj[l](deep_text[l])."""
    layers = [dense(trainable["proj"], trainable["ctx"])[None]]
    if self.depth > 1:
      deep = trainable["deep_proj"]
      layers.append(jnp.einsum("lnd,lde->lne", trainable["deep_text"], deep["kernel"]) + deep["bias"][:, None])
    return jnp.concatenate(layers, axis=0)

  def layer0_context(self, trainable):
    """`ctx` goes into the text slots."""
    return trainable["ctx"]

  def deep_text_prompts(self, trainable):
    """`deep_text` overwrites the text slots before text blocks 1..J-1."""
    return DeepPrompts(trainable["deep_text"], self.prompts.shared_slot_start()) if self.depth > 1 else None

  def image_embedding(self, trainable, frozen, images):
    return image_features_with_prompts(self.clip, frozen, images, self.vision_prompts(trainable))
