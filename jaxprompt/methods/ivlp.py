"""IVLP: independent (uncoupled) deep text and vision prompts.

Trainable:
  `text_prompts`   (depth_t, n_t, D_text): layer 0 in text slots 1..n_t of "a photo of a {name}." (initialised from
                   the first n_t tokens of `ctx_init` when it has that many, else normal 0.02 with "X" placeholders);
                   layers 1.. overwrite those slots before text blocks 1..depth_t-1 (normal std 0.02)
  `vision_prompts` (depth_v, n_v, D_vision), normal std 0.02, placed as in VPT-deep; absent when `vision_tokens=0`
                   or `vision_depth=0` (language-only IVLP, the reference's `N_CTX_VISION: 0` config: plain image
                   features, no backward through the vision tower)
ViT-B/16, 2+2 tokens, depth 12/12: 30,720 parameters; language-only with 4 text tokens, depth 12: 24,576.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxprompt.methods.base import prompt_names, register
from jaxprompt.methods.prompting import (PromptedMethod, check_depth, check_positive, class_prompts, deep_text,
                                         frozen_image_features, image_features_with_prompts, template_context)


@register("ivlp")
class IVLP(PromptedMethod):
  """Independent vision-language prompting."""

  depth_options = ("text_depth", "vision_depth")  # prompt depths in layers; `config.fit_depth` caps them at the backbone's

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.text_tokens = 2             # n_t
    options.vision_tokens = 2           # n_v (0 = no vision prompts: language-only)
    options.text_depth = 12             # depth_t
    options.vision_depth = 12           # depth_v (0 = no vision prompts: language-only)
    options.ctx_init = "a photo of a"   # template words; the first n_t initialise layer 0 ("" = random)
    options.init_std = 0.02
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    check_positive("ivlp", options, ("text_tokens", "text_depth"))
    for key in ("vision_tokens", "vision_depth"):
      if int(options[key]) < 0:
        raise ValueError(f"ivlp.{key} must be >= 0 (got {options[key]}; 0 = no vision prompts)")
    self.vision_prompted = options.vision_tokens > 0 and options.vision_depth > 0
    check_depth("ivlp.text_depth", options.text_depth, self.clip.text.depth)
    check_depth("ivlp.vision_depth", options.vision_depth, self.clip.vision.depth)
    self.ctx_init, template = template_context(backbone, options.ctx_init, options.text_tokens)
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), template, n_slots=options.text_tokens,
                                 trim=config.trim_text)
    self.context_end = 1 + options.text_tokens

  def init(self, rng):
    """{'text_prompts': (depth_t, n_t, D_text), 'vision_prompts': (depth_v, n_v, D_vision) unless language-only}."""
    options = self.options
    text_rng, vision_rng = jax.random.split(rng)
    text_shape = (options.text_depth, options.text_tokens, self.clip.text.width)
    text = options.init_std * jax.random.normal(text_rng, text_shape)
    if self.ctx_init is not None:
      text = text.at[0].set(jnp.asarray(self.ctx_init))
    if not self.vision_prompted:
      return {"text_prompts": text}
    vision_shape = (options.vision_depth, options.vision_tokens, self.clip.vision.width)
    vision = options.init_std * jax.random.normal(vision_rng, vision_shape)
    return {"text_prompts": text, "vision_prompts": vision}

  def layer0_context(self, trainable):
    """Layer 0 of `text_prompts` goes into the text slots."""
    return trainable["text_prompts"][0]

  def deep_text_prompts(self, trainable):
    """Layers 1.. of `text_prompts` overwrite the text slots before text blocks 1..depth_t-1."""
    return deep_text(self.prompts, trainable["text_prompts"])

  def image_embedding(self, trainable, frozen, images):
    if not self.vision_prompted:
      return frozen_image_features(self.clip, frozen, images)
    return image_features_with_prompts(self.clip, frozen, images, trainable["vision_prompts"])
