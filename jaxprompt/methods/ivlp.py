"""IVLP: independent (uncoupled) deep text and vision prompts.

Trainable:
  `text_prompts`   (depth_t, n_t, D_text): layer 0 in text slots 1..n_t of "a photo of a {name}." (initialised from
                   the first n_t tokens of `ctx_init` when it has that many, else normal 0.02 with "X" placeholders);
                   layers 1.. overwrite those slots before text blocks 1..depth_t-1 (normal std 0.02)
  `vision_prompts` (depth_v, n_v, D_vision), normal std 0.02, placed as in VPT-deep
ViT-B/16, 2+2 tokens, depth 12/12: 30,720 parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxprompt.methods.base import prompt_names, register
from jaxprompt.methods.prompting import (PromptedMethod, check_depth, check_positive, class_prompts, deep_text,
                                         encode_embeddings, image_features_with_prompts, template_context)


@register("ivlp")
class IVLP(PromptedMethod):
  """Independent vision-language prompting."""

  depth_options = ("text_depth", "vision_depth")  # prompt depths in layers; `config.fit_depth` caps them at the backbone's

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.text_tokens = 2             # n_t
    options.vision_tokens = 2           # n_v
    options.text_depth = 12             # depth_t
    options.vision_depth = 12           # depth_v
    options.ctx_init = "a photo of a"   # template words; the first n_t initialise layer 0 ("" = random)
    options.init_std = 0.02
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    check_positive("ivlp", options, ("text_tokens", "vision_tokens", "text_depth", "vision_depth"))
    check_depth("ivlp.text_depth", options.text_depth, self.clip.text.depth)
    check_depth("ivlp.vision_depth", options.vision_depth, self.clip.vision.depth)
    self.ctx_init, template = template_context(backbone, options.ctx_init, options.text_tokens)
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), template, n_slots=options.text_tokens,
                                 trim=config.trim_text)
    self.context_end = 1 + options.text_tokens

  def init(self, rng):
    """{'text_prompts': (depth_t, n_t, D_text), 'vision_prompts': (depth_v, n_v, D_vision)}."""
    options = self.options
    text_rng, vision_rng = jax.random.split(rng)
    text_shape = (options.text_depth, options.text_tokens, self.clip.text.width)
    text = options.init_std * jax.random.normal(text_rng, text_shape)
    if self.ctx_init is not None:
      text = text.at[0].set(jnp.asarray(self.ctx_init))
    vision_shape = (options.vision_depth, options.vision_tokens, self.clip.vision.width)
    vision = options.init_std * jax.random.normal(vision_rng, vision_shape)
    return {"text_prompts": text, "vision_prompts": vision}

  def layer0_context(self, trainable):
    """Layer 0 of `text_prompts` goes into the text slots."""
    return trainable["text_prompts"][0]

  def encode_prompts(self, trainable, frozen, embeds):
    deep = deep_text(self.prompts, trainable["text_prompts"])
    return encode_embeddings(self.clip, frozen, embeds, self.prompts.eos, deep=deep, chunk=self.config.text_chunk)

  def image_embedding(self, trainable, frozen, images):
    return image_features_with_prompts(self.clip, frozen, images, trainable["vision_prompts"])
