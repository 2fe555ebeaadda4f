"""CoOp (Zhou et al., IJCV 2022): learnable context tokens around the class name; the image side is plain CLIP.

Trainable: `ctx` (M, D_text) shared by all classes, or (C, M, D_text) with `csc=True`.
Prompt for class c (class_position 'end'): [SOS] ctx_1..ctx_M name_c . [EOS]; 'middle' puts M//2 tokens before
the name and the rest after it; 'front' puts the name first. The context slots are placeholder tokens 'X' in the
tokenised text (so an over-long prompt fails in the tokenizer naming the class) and are overwritten by `ctx`; the
tower adds positional embeddings to them as to any token.
Init: normal std `init_std` (default 0.02), or `ctx_init="a photo of a"`: M = the phrase's token count and `ctx`
= those token embeddings (tiled per class with csc).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxprompt.methods.base import prompt_names, register
from jaxprompt.methods.prompting import PromptedMethod, class_prompts, context_init, placeholder_template


@register("coop")
class CoOp(PromptedMethod):
  """Context optimisation: `ctx` in the text prompt, frozen image features."""

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.n_ctx = 16              # context tokens M (ignored when ctx_init is set: M = its token count)
    options.ctx_init = ""           # "" = random init with placeholder "X X .. X"; else e.g. "a photo of a"
    options.class_position = "end"  # "end" | "middle" | "front"
    options.csc = False             # class-specific context (C, M, D) instead of shared (M, D)
    options.init_std = 0.02         # std of the random init
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    self.ctx_init, self.n_ctx = context_init(backbone, options)
    if self.n_ctx < 1:
      raise ValueError(f"coop.n_ctx must be >= 1 (got {self.n_ctx})")
    position = options.class_position
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), placeholder_template(self.n_ctx, position),
                                 n_slots=self.n_ctx, position=position, trim=config.trim_text)
    self.context_end = 1 + self.n_ctx if position == "end" else None

  def init(self, rng):
    """{'ctx': (M, D_text)} or (C, M, D_text) with csc."""
    width = self.clip.text.width
    shape = ((len(self.classnames),) if self.options.csc else ()) + (self.n_ctx, width)
    if self.ctx_init is not None:
      return {"ctx": jnp.broadcast_to(jnp.asarray(self.ctx_init), shape)}
    return {"ctx": self.options.init_std * jax.random.normal(rng, shape, jnp.float32)}

  def layer0_context(self, trainable):
    """`ctx` goes into the context slots."""
    return trainable["ctx"]

  def for_classes(self, classnames, templates=None):
    """Another class list; with class-specific context only the training class list itself (one `ctx` per class)."""
    if self.options.csc and list(classnames) != self.classnames:
      raise ValueError(f"method.coop.csc=True learns one context per training class ({len(self.classnames)} "
                       f"classes), so it cannot score another class list ({len(classnames)} classes); train with "
                       "csc=False for base-to-novel or cross-dataset transfer")
    return super().for_classes(classnames, templates)
