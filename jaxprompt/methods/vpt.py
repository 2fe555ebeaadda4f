"""VPT-deep as used in the CLIP prompt papers: learnable vision tokens at every prompted layer, fixed text.

Trainable: `prompts` (depth, P, D_vision), normal std 0.02. Layer-0 prompts are appended after the image tokens
(through `pre_layrnorm`); before vision block l (1 <= l < depth) the last P tokens are overwritten by prompts[l].
Text side: zero-shot features of `vpt.template` ("a photo of a {}."), cached at construction (VPT is still a
`PromptedMethod`, so LAMM can stack on it and re-encode the text with label embeddings).
ViT-B/16, P=8, depth 12: 73,728 parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt.methods.base import prompt_names, register
from jaxprompt.methods.prompting import (PromptedMethod, check_depth, check_positive, class_prompts,
                                         image_features_with_prompts, text_params)


@register("vpt")
class VPT(PromptedMethod):
  """Deep vision prompting with cached text features."""

  depth_options = ("depth",)  # prompt depths in layers; `config.fit_depth` caps them at the backbone's

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.n_tokens = 8                 # P prompt tokens per layer
    options.depth = 12                   # prompted vision layers
    options.init_std = 0.02
    options.template = "a photo of a {}."
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    check_positive("vpt", options, ("n_tokens", "depth"))
    check_depth("vpt.depth", options.depth, self.clip.vision.depth)
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), options.template, trim=config.trim_text)
    plain_text = super().text_embedding
    self.text_features = np.asarray(jax.jit(plain_text)({}, text_params(backbone.params)))  # (C, E)

  def init(self, rng):
    """{'prompts': (depth, P, D_vision)}."""
    shape = (self.options.depth, self.options.n_tokens, self.clip.vision.width)
    return {"prompts": self.options.init_std * jax.random.normal(rng, shape, jnp.float32)}

  def text_embedding(self, trainable, frozen):
    return jnp.asarray(self.text_features)

  def image_embedding(self, trainable, frozen, images):
    return image_features_with_prompts(self.clip, frozen, images, trainable["prompts"])
