"""Zero-shot CLIP: class features of `template.format(name)`, ensembled over `config.templates`, cached once.

Ensemble: mean over templates of the normalised features, then renormalised (a single template gives plain CLIP
features). `build_for_run` resolves the templates from the dataset's (`base.resolve_templates`): its first, all of them
with `ensemble`, or a named set with `template_set` ("reference_ensemble": the reference's seven selected ImageNet
templates plus the dataset's own; `methods/templates.py`). Nothing is trainable: `init` returns `{}`.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt.clip.model import cosine_logits, normalize
from jaxprompt.methods import shared_prefix
from jaxprompt.methods.base import Method, PromptTokens, prompt_names, register
from jaxprompt.methods.prompting import text_params


def template_features(method: Method, templates: Sequence[str], names: Sequence[str]) -> np.ndarray:
  """Normalised ensemble text features (C, E) of the templates for the names, from the backbone's weights.

  With `method.shared_prefix` (default) each template's words before the name run once for all classes (exact)."""
  clip, config = method.clip, method.config

  @functools.partial(jax.jit, static_argnames="plan")
  def features(params, ids, eos, plan):
    return normalize(shared_prefix.token_features(clip, params, ids, eos, plan, chunk=config.text_chunk))

  params = text_params(method.backbone.params)
  total = 0.0
  for template in templates:
    tokens = PromptTokens.make(method.tokenizer.prompts(template, names), trim=config.trim_text)
    plan = None
    if shared_prefix.enabled(config):
      plan = shared_prefix.plan_prefix(tokens.ids, tokens.eos, context=clip.text.context_length)
    total = total + features(params, tokens.ids, tokens.eos, plan)
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
