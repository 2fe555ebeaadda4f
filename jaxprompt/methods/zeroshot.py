"""Zero-shot CLIP: class features of `template.format(name)`, ensembled over `config.templates`, cached once.

Ensemble: mean over templates of the normalised features, then renormalised (a single template gives plain CLIP
features). Nothing is trainable: `init` returns `{}`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt.clip.model import cosine_logits, normalize
from jaxprompt.methods.base import Method, PromptTokens, encode_classes, prompt_names, register
from jaxprompt.methods.prompting import text_params


def template_features(method: Method, templates: Sequence[str], names: Sequence[str]) -> np.ndarray:
  """Normalised ensemble text features (C, E) of the templates for the names, from the backbone's weights."""
  clip, config = method.clip, method.config

  @jax.jit
  def features(params, ids, eos):
    def chunk_features(index):
      return clip.text_features(params, ids[index], eos[index])
    return normalize(encode_classes(chunk_features, jnp.arange(ids.shape[0]), chunk=config.text_chunk))

  params = text_params(method.backbone.params)
  total = 0.0
  for template in templates:
    tokens = PromptTokens.make(method.tokenizer.prompts(template, names), trim=config.trim_text)
    total = total + features(params, tokens.ids, tokens.eos)
  return np.asarray(normalize(total))


@register("zeroshot")
class ZeroShot(Method):
  """Zero-shot CLIP with cached (template-ensembled) class features."""

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict()  # nothing of its own: the templates are the run's `config.templates`

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    templates = list(config.templates)
    if not templates:
      raise ValueError("zeroshot needs at least one template in config.templates")
    self.templates = templates
    self.text_features = template_features(self, templates, prompt_names(classnames))  # (C, E), normalised

  def init(self, rng):
    return {}

  def logits(self, trainable, frozen, images):
    """(B, C) cosine logits of plain image features against the cached class features."""
    return cosine_logits(self.clip.logit_scale(frozen), self.clip.image_features(frozen, images),
                         jnp.asarray(self.text_features))
