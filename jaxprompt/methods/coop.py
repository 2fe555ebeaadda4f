"""CoOp (Zhou et al., IJCV 2022): learnable context tokens around the class name; the image side is plain CLIP.

Trainable: `ctx` (M, D_text) shared by all classes, or (C, M, D_text) with `csc=True`.
Prompt for class c (class_position 'end'): [SOS] ctx_1..ctx_M name_c . [EOS]; 'middle' puts M//2 tokens before
the name and the rest after it; 'front' puts the name first. The context slots are placeholder tokens 'X' in the
tokenised text (so an over-long prompt fails in the tokenizer naming the class) and are overwritten by `ctx`; the
tower adds positional embeddings to them as to any token.
Init: normal std `init_std` (default 0.02), or from a phrase `ctx_init="a photo of a"` by `ctx_rule`:
"tokens" (default): M = the phrase's BPE token count and `ctx` = those token embeddings (tiled per class with csc);
"reference" (the paper configs): the reference code's rule, M = the phrase's word count, `ctx` = its first M BPE token
embeddings and the rest of the phrase stays fixed text before the name (see `prompting.context_init`); as the
reference, it ignores `csc` (one shared context), with a warning.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import ml_collections

from jaxprompt.methods.base import prompt_names, register
from jaxprompt.methods.prompting import PromptedMethod, class_prompts, context_init


@register("coop")
class CoOp(PromptedMethod):
  """Context optimisation: `ctx` in the text prompt, frozen image features."""

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.n_ctx = 16              # context tokens M (ignored when ctx_init is set: M = its token count)
    options.ctx_init = ""           # "" = random init with placeholder "X X .. X"; else e.g. "a photo of a"
    # Which tokens of ctx_init are learnt: "tokens" = all of them (M = token count); "reference" = KaiyangZhou/CoOp's
    # rule: M = the phrase's word count but the first M *BPE tokens* are learnt, the rest stays fixed text, so a word
    # of several tokens ("hand-drawn" = hand - drawn) shifts what is learnt; with csc it learns one shared context.
    options.ctx_rule = "tokens"
    options.class_position = "end"  # "end" | "middle" | "front"
    options.csc = False             # class-specific context (C, M, D) instead of shared (M, D)
    options.init_std = 0.02         # std of the random init
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    position = options.class_position
    self.ctx_init, self.n_ctx, template = context_init(backbone, options, position)
    if self.n_ctx < 1:
      raise ValueError(f"coop.n_ctx must be >= 1 (got {self.n_ctx})")
    self.class_specific = self._class_specific(options)
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), template, n_slots=self.n_ctx,
                                 position=position, trim=config.trim_text)
    self.context_end = 1 + self.n_ctx if position == "end" else None

  @staticmethod
  def _class_specific(options) -> bool:
    """Whether `ctx` is per class: `csc`, except with a phrase under ctx_rule='reference' (warned either way)."""
    if not (options.csc and options.ctx_init):
      return bool(options.csc)
    if options.get("ctx_rule", "tokens") == "reference":
      logging.warning("method.coop.csc=True with ctx_init=%r and ctx_rule='reference': csc is ignored, as in the "
                      "reference code; one shared context (M, D) is learnt", options.ctx_init)
      return False
    logging.warning("method.coop.csc=True with ctx_init=%r and ctx_rule='tokens': every class starts from the phrase "
                    "(class-specific context (C, M, D)); the reference code ignores csc here (ctx_rule='reference')",
                    options.ctx_init)
    return True

  def init(self, rng):
    """{'ctx': (M, D_text)} or (C, M, D_text) with class-specific context."""
    width = self.clip.text.width
    shape = ((len(self.classnames),) if self.class_specific else ()) + (self.n_ctx, width)
    if self.ctx_init is not None:
      return {"ctx": jnp.broadcast_to(jnp.asarray(self.ctx_init), shape)}
    return {"ctx": self.options.init_std * jax.random.normal(rng, shape, jnp.float32)}

  def layer0_context(self, trainable):
    """`ctx` goes into the context slots."""
    return trainable["ctx"]

  def for_classes(self, classnames, templates=None):
    """Another class list; with class-specific context only the training class list itself (one `ctx` per class)."""
    if self.class_specific and list(classnames) != self.classnames:
      raise ValueError(f"method.coop.csc=True learns one context per training class ({len(self.classnames)} "
                       f"classes), so it cannot score another class list ({len(classnames)} classes); train with "
                       "csc=False for base-to-novel or cross-dataset transfer")
    return super().for_classes(classnames, templates)
