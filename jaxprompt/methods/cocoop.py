"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context plus an image-conditioned bias from a small meta-net.

Trainable:
  `ctx`                  (n, D_text), from `ctx_init` ("a photo of a": n = 4; which of the phrase's tokens are learnt:
                         `ctx_rule`, as CoOp's) or normal std 0.02 ("X" placeholders)
  `meta/linear1/{kernel,bias}`  (E, E/16), (E/16,)   on the *normalised* image feature (E = joint embedding width)
  `meta/linear2/{kernel,bias}`  (E/16, D_text), (D_text,)
Image b gets context ctx + meta(x_b) (the same bias on every context token), so the text tower runs once per image
over all classes (images one after another, classes in chunks of `text_chunk`); with `method.shared_prefix` (default)
each image's [SOS] + context prefix runs once and only the class-name suffixes run per class (exact). ViT-B/16: 2,048 + 16,416 + 16,896
= 35,360 parameters. Dense layers are initialised like torch.nn.Linear (`meta_init="lecun"` for flax's default).
Image features are computed without a backward pass through the vision tower.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxprompt.clip.model import normalize
from jaxprompt.methods import shared_prefix
from jaxprompt.methods.base import Method, prompt_names, register
from jaxprompt.methods.prompting import (class_prompts, dense, dense_init, encode_embeddings, frozen_image_features,
                                         context_init, prompt_plan, write_slots)


@register("cocoop")
class CoCoOp(Method):
  """Conditional context optimisation."""

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.n_ctx = 4                   # context tokens (ignored when ctx_init is set: its token count)
    options.ctx_init = "a photo of a"   # "" = random init
    options.ctx_rule = "tokens"         # "tokens" | "reference" (M = word count, as CoOp's `ctx_rule`)
    options.init_std = 0.02
    options.hidden_ratio = 16           # meta-net hidden width = E // hidden_ratio
    options.meta_init = "pytorch"       # "pytorch" | "lecun"
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    self.ctx_init, self.n_ctx, template = context_init(backbone, options)
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), template, n_slots=self.n_ctx,
                                 trim=config.trim_text)
    # The context (ctx + image bias) is the same for every class of an image: a prefix per image.
    self.plan = prompt_plan(self.clip, self.prompts, class_specific=False) if shared_prefix.enabled(config) else None

  def init(self, rng):
    """{'ctx': (n, D_text), 'meta': {'linear1': {kernel, bias}, 'linear2': {kernel, bias}}}."""
    ctx_rng, rng1, rng2 = jax.random.split(rng, 3)
    embed, width = self.clip.embed_dim, self.clip.text.width
    hidden = max(1, embed // self.options.hidden_ratio)
    if self.ctx_init is not None:
      ctx = jnp.asarray(self.ctx_init)
    else:
      ctx = self.options.init_std * jax.random.normal(ctx_rng, (self.n_ctx, width), jnp.float32)
    scheme = self.options.meta_init
    meta = {"linear1": dense_init(rng1, embed, hidden, scheme=scheme),
            "linear2": dense_init(rng2, hidden, width, scheme=scheme)}
    return {"ctx": ctx, "meta": meta}

  def meta_bias(self, trainable, image: jax.Array) -> jax.Array:
    """Normalised image features (B, E) -> context bias (B, D_text)."""
    meta = trainable["meta"]
    return dense(meta["linear2"], jax.nn.relu(dense(meta["linear1"], image)))

  def logits(self, trainable, frozen, images):
    """(B, C): each image against the class prompts conditioned on it."""
    image = normalize(frozen_image_features(self.clip, frozen, images))
    bias = self.meta_bias(trainable, image)
    embeds = self.clip.embed_tokens(frozen, jnp.asarray(self.prompts.ids))
    scale = self.clip.logit_scale(frozen)

    def one_image(inputs):
      image_b, bias_b = inputs
      prompted = write_slots(embeds, trainable["ctx"] + bias_b, self.prompts.slots)
      if self.plan is None:
        text = encode_embeddings(self.clip, frozen, prompted, self.prompts.eos, chunk=self.config.text_chunk)
      else:
        text = shared_prefix.encode_with_prefix(self.clip, frozen, prompted, self.prompts.eos, self.plan,
                                                chunk=self.config.text_chunk)
      return scale * normalize(text) @ image_b

    return jax.lax.map(one_image, (image, bias))
