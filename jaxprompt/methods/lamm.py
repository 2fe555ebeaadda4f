"""LAMM (Gao et al., AAAI 2024): trainable label embeddings in place of the class-name tokens, plus a hierarchical loss.

`lamm.base` picks what LAMM stacks on: "none" (a frozen template `lamm.template` on CLIP), "coop", "maple", or any
registered `PromptedMethod` whose text prompt contains the class name ("ivlp", "vpt", ...). The base reads its own
options (`config.coop`, `config.maple`, ...; CoOp+LAMM in the paper uses `coop.ctx_init="a photo of a"`).

Trainable: the base's leaves plus `labels` (C_table, M, D_text), merged flat into one dict. M = `tokens_per_label`
(0 = the shortest class name's BPE length with placement "name", 1 with "after_ctx"). `labels[c]` replaces the first
M name tokens of class c (placement "name"), or, for MaPLe with `maple_placement="after_ctx"` (the reference code,
gaojingsheng/LAMM, whose `min_len = 1` is one label token from the name's first BPE token), the M tokens right after
MaPLe's context (the full name stays). Init "name": the name's first M token embeddings; "random": normal std 0.02 drawn
from `init_seed`. `labels0` (the initial values) is a constant of the method object, exposed for checkpoints.

Loss: CE(z, y) + w_wc L_wc + w_cos L_cos + w_kd L_kd with z (label prompts) and z0 (original names, current base
context); each term is reported (`loss_ce`, `loss_wc`, `loss_cos`, `loss_kd`). For base "none" the reference features
f0 are constant and cached at construction; otherwise, with `method.shared_prefix`, the label and reference prompts
share one prefix pass (the base's shared positions before the first label position; `both_features`).

Other class lists: the method built over the training class list owns the `labels` table (one row per class of
`table_classnames`). `method.for_classes(names, templates)` scores any class list with the same trainable tree: a
class of the table (matched by name) reads its learnt row; a class without a row keeps its own name's word
embeddings, i.e. its prompt is the unmodified name prompt with the base's current context (zero-shot LAMM for that
class). Base-to-novel and cross-dataset evaluation take this path.
Continual learning builds the method over the full class list and trains `method.for_rows(indices)`: logits
(B, len(indices)) in that order, reading and training only `labels[indices]`, with L_wc over those rows only, so
other rows get exactly zero gradient (mind weight decay in the optimiser, which would still shrink them). The union
of seen classes is `for_classes(seen names)`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from ml_collections import config_dict

from jaxprompt.clip.model import CLIP, cosine_logits, normalize
from jaxprompt.methods.base import Method, accuracy, build, cross_entropy, prompt_names, register
from jaxprompt.methods.prompting import PromptedMethod, class_prompts, text_params


class FixedTemplate(PromptedMethod):
  """LAMM's base "none": a frozen template (`lamm.template`) on CLIP, nothing trainable."""

  def __init__(self, config, backbone, classnames, template: str):
    super().__init__(config, backbone, classnames)
    self.prompts = class_prompts(self.tokenizer, prompt_names(classnames), template, trim=config.trim_text)

  def init(self, rng):
    return {}


@register("lamm")
class LAMM(Method):
  """Label alignment on top of a base method (see the module docstring)."""

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.base = "none"               # "none" | "coop" | "maple" | any PromptedMethod with the name in its prompt
    options.template = "a photo of a {}."  # the frozen template of base "none"
    options.tokens_per_label = 0        # M; 0 = min over classes of the name's token count ("after_ctx": 1)
    options.init = "name"               # "name" | "random"
    options.init_seed = 0               # seed of init="random" (labels0 must be known at construction)
    options.w_wc = config_dict.FieldReference(1.0, field_type=object)  # float, or "1/shots" (uses `shots`)
    options.shots = 0                   # shots per class, for w_wc="1/shots"
    options.w_cos = 1.0
    options.w_kd = 0.05
    options.temperature = 2.0           # T of L_kd
    options.maple_placement = "name"    # "name" (paper) | "after_ctx" (reference code, MaPLe base only)
    return options

  def __init__(self, config, backbone, classnames, *, table: Sequence[str] | None = None):
    """classnames: the classes scored; table: the classes owning a `labels` row (default: classnames)."""
    super().__init__(config, backbone, classnames)
    options = self.options
    self.table_classnames = list(classnames if table is None else table)
    row_of = {}
    for row, name in enumerate(self.table_classnames):
      row_of.setdefault(name, row)
    self.rows = np.asarray([row_of.get(name, -1) for name in self.classnames], np.int64)  # -1: no learnt row
    self.trained = np.nonzero(self.rows >= 0)[0]  # positions (in classnames) of the classes with a row
    self.base = self._build_base(options.base)
    self.weight_wc = self._weight_wc(options.w_wc, options.shots)

    names = prompt_names(self.table_classnames)
    name_ids = [self.tokenizer.encode(name) for name in names]
    # The reference's after_ctx code writes one label token; the shortest name (StanfordCars: a year of 4 digit
    # tokens first) would not fit between MaPLe's context and the name.
    default_m = 1 if options.maple_placement == "after_ctx" else min(len(ids) for ids in name_ids)
    self.tokens_per_label = options.tokens_per_label or default_m
    for name, ids in zip(names, name_ids):
      if len(ids) < self.tokens_per_label:
        raise ValueError(f"class {name!r} has {len(ids)} name tokens, fewer than lamm.tokens_per_label="
                         f"{self.tokens_per_label}")
    self._labels0 = self._initial_labels(options, [ids[:self.tokens_per_label] for ids in name_ids])
    self.label_positions = self._label_positions(options.maple_placement)  # (C_trained, M)
    self.cached_f0 = None
    if options.base == "none":
      self.cached_f0 = np.asarray(jax.jit(self.base.text_embedding)({}, text_params(backbone.params)))

  # --- construction -------------------------------------------------------------------------------------------------
  def _build_base(self, base: str) -> PromptedMethod:
    if base == "none":
      return FixedTemplate(self.config, self.backbone, self.classnames, self.options.template)
    if base == "lamm":
      raise ValueError("lamm.base cannot be 'lamm'")
    method = build(base, self.config, self.backbone, self.classnames)
    if not isinstance(method, PromptedMethod):
      raise ValueError(f"lamm.base={base!r}: LAMM needs a method whose text prompt contains the class name "
                       f"(a PromptedMethod such as coop, maple, ivlp, vpt), or 'none'")
    return method

  @staticmethod
  def _weight_wc(w_wc, shots: int) -> float:
    if isinstance(w_wc, str):
      if w_wc.replace(" ", "") == "1/shots":
        if shots <= 0:
          raise ValueError("lamm.w_wc='1/shots' needs lamm.shots > 0")
        return 1.0 / shots
      try:
        return float(w_wc)
      except ValueError:
        raise ValueError(f"lamm.w_wc={w_wc!r}: use a number or '1/shots'") from None
    return float(w_wc)

  def _initial_labels(self, options, label_ids: list[list[int]]) -> np.ndarray:
    """(C_table, M, D_text) initial label embeddings."""
    if options.init == "name":
      table = np.asarray(CLIP.token_embedding_table(self.backbone.params))
      return table[np.asarray(label_ids, np.int64)].astype(np.float32)
    if options.init == "random":
      shape = (len(label_ids), self.tokens_per_label, self.clip.text.width)
      return np.asarray(0.02 * jax.random.normal(jax.random.key(options.init_seed), shape, jnp.float32))
    raise ValueError(f"lamm.init={options.init!r}: use 'name' or 'random'")

  def _label_positions(self, placement: str) -> np.ndarray:
    """(C_trained, M) positions of the label tokens in the prompts of the classes with a learnt row."""
    spans, m = self.base.prompts.name_spans[self.trained], self.tokens_per_label
    if placement == "name":
      return (spans[:, :1] + np.arange(m)[None]).astype(np.int32)
    if placement != "after_ctx":
      raise ValueError(f"lamm.maple_placement={placement!r}: use 'name' or 'after_ctx'")
    if self.options.base != "maple":
      raise ValueError("lamm.maple_placement='after_ctx' applies to lamm.base='maple' only")
    start = self.base.context_end
    if (spans[:, 0] < start + m).any():
      raise ValueError(f"maple_placement='after_ctx': the template has fewer than {m} tokens between the context "
                       "and the class name (use a longer maple.ctx_init)")
    return np.broadcast_to(start + np.arange(m), (len(spans), m)).astype(np.int32)

  @property
  def labels0(self) -> np.ndarray:
    """(C_table, M, D_text) the initial label embeddings (the L_wc anchor; save with checkpoints)."""
    return self._labels0

  def for_rows(self, rows: Sequence[int]) -> "LAMM":
    """The same method over the table's classes `rows`, in that order (same trainable tree; see module docstring)."""
    return self.for_classes([self.table_classnames[row] for row in rows])

  def rebuild(self, config, classnames):
    return LAMM(config, self.backbone, classnames, table=self.table_classnames)

  # --- the face -----------------------------------------------------------------------------------------------------
  def init(self, rng):
    """The base's leaves plus {'labels': (C_table, M, D_text)} = labels0."""
    trainable = dict(self.base.init(rng))
    if "labels" in trainable:
      raise ValueError(f"lamm.base={self.options.base!r} already has a leaf named 'labels'")
    trainable["labels"] = jnp.asarray(self._labels0)
    return trainable

  @staticmethod
  def _split(trainable):
    return {k: v for k, v in trainable.items() if k != "labels"}, trainable["labels"]

  def _labelled(self, embeds: jax.Array, labels: jax.Array) -> jax.Array:
    """Layer-0 prompts (C, L, D) with labels[row] in the label positions of each class with a learnt row."""
    trained = self.trained
    return embeds.at[trained[:, None], self.label_positions].set(labels[self.rows[trained]].astype(embeds.dtype))

  def _prefix_plan(self, base_trainable, rows: int | None = None):
    """The base's shared prefix, ending before the first label position (labels are per class)."""
    limit = int(self.label_positions.min()) if self.label_positions.size else None
    return self.base.prefix_plan(base_trainable, limit=limit, rows=rows)

  def label_features(self, trainable, frozen) -> jax.Array:
    """Text features f (C, E): each class with a learnt row gets labels[row] in its label positions."""
    base_trainable, labels = self._split(trainable)
    embeds = self._labelled(self.base.prompt_embeddings(base_trainable, frozen), labels)
    return self.base.encode_prompts(base_trainable, frozen, embeds, plan=self._prefix_plan(base_trainable))

  def reference_features(self, trainable, frozen) -> jax.Array:
    """f0 (C, E): the original name embeddings with the current base context (cached for base 'none')."""
    if self.cached_f0 is not None:
      return jnp.asarray(self.cached_f0)
    return self.base.text_embedding(self._split(trainable)[0], frozen)

  def both_features(self, trainable, frozen) -> tuple[jax.Array, jax.Array]:
    """(f, f0), each (C, E); with `method.shared_prefix` the label and reference prompts share one prefix pass."""
    if self.cached_f0 is not None:
      return self.label_features(trainable, frozen), jnp.asarray(self.cached_f0)
    base_trainable, labels = self._split(trainable)
    plan = self._prefix_plan(base_trainable, rows=2 * len(self.classnames))
    if plan is None:
      return self.label_features(trainable, frozen), self.reference_features(trainable, frozen)
    reference = self.base.prompt_embeddings(base_trainable, frozen)
    f, f0 = self.base.encode_prompt_sets(base_trainable, frozen, [self._labelled(reference, labels), reference], plan)
    return f, f0

  def logits(self, trainable, frozen, images):
    image = self.base.image_embedding(self._split(trainable)[0], frozen, images)
    return cosine_logits(self.clip.logit_scale(frozen), image, self.label_features(trainable, frozen))

  def loss(self, trainable, frozen, images, labels):
    """CE + w_wc L_wc + w_cos L_cos + w_kd L_kd (module docstring); metrics hold each term."""
    options = self.options
    scale = self.clip.logit_scale(frozen)
    image = normalize(self.base.image_embedding(self._split(trainable)[0], frozen, images))
    f, f0 = (normalize(x) for x in self.both_features(trainable, frozen))
    z, z0 = scale * image @ f.T, scale * image @ f0.T

    loss_ce = cross_entropy(z, labels)
    rows = self.rows[self.trained]
    loss_wc = jnp.sum(jnp.square(trainable["labels"][rows] - jnp.asarray(self._labels0[rows])))
    kept = (labels[None, :] != labels[:, None]).any(axis=1).astype(jnp.float32)
    distance = 1.0 - jnp.sum(f[labels] * jax.lax.stop_gradient(f0[labels]), axis=-1)
    loss_cos = jnp.sum(kept * distance) / jnp.maximum(kept.sum(), 1.0)
    t = options.temperature
    loss_kd = t * t * jnp.mean(optax.softmax_cross_entropy(z0 / t, jax.nn.softmax(z / t)))
    loss = loss_ce + self.weight_wc * loss_wc + options.w_cos * loss_cos + options.w_kd * loss_kd
    return loss, {"accuracy": accuracy(z, labels), "loss_ce": loss_ce, "loss_wc": loss_wc, "loss_cos": loss_cos,
                  "loss_kd": loss_kd}
