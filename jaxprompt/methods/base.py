"""What every prompt method shares: the one face, the registry, and the text-side helpers.

    method = methods.build(name, config, backbone, classnames)      # or build_for_run(config.method, ..., templates)
    trainable = method.init(rng)                       # dict pytree; leaf names in each method's module docstring
    logits = method.logits(trainable, frozen, images)  # (B, C), images NHWC float32 normalised
    loss, metrics = method.loss(trainable, frozen, images, labels)
    view = method.for_classes(other_classnames, other_templates)   # the trained method over another class list

`config` is the `method` block of a run config (see `default_config`): common fields (`name`, `dtype`,
`templates`, ...) plus one sub-block per method (`config.coop.n_ctx`, `config.rpo.k`, ...). `frozen` is the CLIP
parameter tree: it is an argument (never closed over) so jit treats it as data, and it is never differentiated.
Whatever can be computed once (tokenised prompts, zero-shot class features, cached keys/values) is computed in the
constructor from `backbone.params`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxprompt.clip.model import CLIP
from jaxprompt.clip.tokenizer import TokenizedPrompts
from jaxprompt.methods.templates import named_set

Array = jax.Array
Params = dict[str, Any]

_REGISTRY: dict[str, type["Method"]] = {}


def register(name: str):
  """Class decorator: `@register("coop") class CoOp(Method)`."""

  def decorate(cls):
    cls.name = name
    _REGISTRY[name] = cls
    return cls

  return decorate


def registered() -> dict[str, type["Method"]]:
  """Every registered method class by name."""
  return dict(_REGISTRY)


def build(name: str, config: ml_collections.ConfigDict, backbone, classnames: Sequence[str]) -> "Method":
  """Builds method `name` for a class list; an unknown name lists the known ones."""
  if name not in _REGISTRY:
    raise KeyError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name](config, backbone, list(classnames))


def resolve_templates(method_config: ml_collections.ConfigDict, templates: Sequence[str]) -> ml_collections.ConfigDict:
  """A copy of the method block with `templates` resolved against a dataset's templates.

  A named `method_config.template_set` (see `methods/templates.py`) replaces `templates` with that set for this
  dataset; otherwise an empty `templates` becomes the dataset's first template, or all of them with `ensemble`, and a
  non-empty one is kept as it is.
  """
  config = ml_collections.ConfigDict(method_config.to_dict())
  template_set = config.get("template_set", "")
  if template_set:
    if config.ensemble:
      raise ValueError(f"method.ensemble=True and method.template_set={template_set!r} both choose the templates; "
                       "set one of them")
    config.templates = named_set(template_set, templates)
  elif not config.templates:
    config.templates = list(templates) if config.ensemble else list(templates[:1])
  return config


def build_for_run(method_config: ml_collections.ConfigDict, backbone, classnames: Sequence[str],
                  templates: Sequence[str]) -> "Method":
  """The run's method (`config.method` block) over a dataset's class list and templates.

  An empty `method_config.templates` means the dataset's templates, a `template_set` a named set built from them (see
  `resolve_templates`). The method keeps the unresolved block (`run_config`), so `for_classes(names, templates)`
  resolves another dataset's templates the same way.
  """
  method = build(method_config.name, resolve_templates(method_config, templates), backbone, classnames)
  method.run_config = method_config
  return method


def trainable_count(init: Callable[[Array], Params]) -> int:
  """Number of parameters `init(rng)` returns (from shapes only: nothing is computed)."""
  shapes = jax.eval_shape(init, jax.random.key(0))
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))


class Method:
  """Base class: subclasses set `init`, `logits` (and `loss` if it is not plain cross-entropy)."""

  name = "method"

  def __init__(self, config: ml_collections.ConfigDict, backbone, classnames: list[str]):
    self.config = config
    self.run_config = config  # the block before template resolution (build_for_run sets it), read by for_classes
    self.backbone = backbone
    self.classnames = classnames
    self.tokenizer = backbone.tokenizer
    self.clip: CLIP = backbone.model(dtype=jnp.dtype(config.dtype), remat=config.get("remat", False))

  @property
  def options(self) -> ml_collections.ConfigDict:
    """This method's own config sub-block (e.g. `config.coop`)."""
    return self.config[self.name]

  def init(self, rng: Array) -> Params:
    raise NotImplementedError

  def logits(self, trainable: Params, frozen: Params, images: Array) -> Array:
    raise NotImplementedError

  def loss(self, trainable: Params, frozen: Params, images: Array, labels: Array) -> tuple[Array, dict[str, Array]]:
    logits = self.logits(trainable, frozen, images)
    return cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}

  def for_classes(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> "Method":
    """The trained method (same trainable tree) over another class list: novel classes, a target dataset, the union
    of continual tasks. `templates`: that dataset's templates, used as `build_for_run` would (only when the run
    config left `templates` empty); None keeps this method's."""
    config = self.config if templates is None else resolve_templates(self.run_config, templates)
    view = self.rebuild(config, list(classnames))
    view.run_config = self.run_config
    return view

  def rebuild(self, config: ml_collections.ConfigDict, classnames: list[str]) -> "Method":
    """This method's class over `classnames` with `config` (override to pass constructor arguments along)."""
    return type(self)(config, self.backbone, classnames)

  def num_trainable(self) -> int:
    """Number of trainable parameters (from shapes only: nothing is computed)."""
    return trainable_count(self.init)


# --- losses -----------------------------------------------------------------------------------------------------------
def cross_entropy(logits: Array, labels: Array) -> Array:
  """Mean softmax cross-entropy; logits (B, C) float, labels (B,) int."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def accuracy(logits: Array, labels: Array) -> Array:
  """Fraction of the batch whose top logit is the label: logits (B, C), labels (B,) -> ()."""
  return (jnp.argmax(logits, -1) == labels).mean()


# --- text-side helpers ------------------------------------------------------------------------------------------------
def prompt_names(classnames: Sequence[str], clean: bool = True) -> list[str]:
  """Class names as they go into prompts: `_` -> space unless `clean=False` (RPO's reproduction default)."""
  return [name.replace("_", " ") if clean else name for name in classnames]


@dataclasses.dataclass(frozen=True)
class PromptTokens:
  """Tokenised prompts trimmed to the longest real length: exact, since under causal attention no token before EOS
  reads the padding after it.

  ids: (C, L) int32; eos: (C,) int32; name_spans: (C, 2) int32 [start, end); L = trimmed length (multiple of 8)
  when `trim`, the full context otherwise.
  """

  ids: np.ndarray
  eos: np.ndarray
  name_spans: np.ndarray

  @classmethod
  def make(cls, tokenized: TokenizedPrompts, *, trim: bool = True, extra: int = 0) -> "PromptTokens":
    """extra: slots the method appends after EOS (RPO's prompts) that trimming must keep."""
    context = tokenized.ids.shape[1]
    length = min(-(-(tokenized.max_length + extra) // 8) * 8, context) if trim else context
    return cls(tokenized.ids[:, :length], tokenized.eos, tokenized.name_spans)


def encode_classes(fn: Callable[[Array], Array], inputs: Array, chunk: int = 0) -> Array:
  """Applies fn over the leading (class) axis in chunks of `chunk` (0 = all at once) to bound memory.

  fn maps (c, ...) -> (c, ...); inputs (C, ...). Uses lax.map over padded chunks, so results are identical.
  """
  num = inputs.shape[0]
  if chunk <= 0 or chunk >= num:
    return fn(inputs)
  pad = (-num) % chunk
  padded = jnp.concatenate([inputs, jnp.repeat(inputs[-1:], pad, axis=0)]) if pad else inputs
  out = jax.lax.map(fn, padded.reshape((-1, chunk) + inputs.shape[1:]))
  return out.reshape((-1,) + out.shape[2:])[:num]


def default_config() -> ml_collections.ConfigDict:
  """The `method` config block with every method's options and their defaults (see each method's module)."""
  config = ml_collections.ConfigDict()
  config.name = "coop"
  config.dtype = "float32"          # compute dtype: "float32" or "bfloat16" (params stay float32)
  config.remat = False              # rematerialise transformer blocks (memory for compute)
  config.templates = ("a photo of a {}.",)  # () = the dataset's templates (resolved by build_for_run)
  config.ensemble = False           # use every template of the dataset (zero-shot ensembles), not only the first
  config.template_set = ""          # a named set (methods/templates.py), e.g. "reference_ensemble"; replaces templates
  config.trim_text = True           # run text only up to the longest real prompt (exact)
  config.text_chunk = 0             # encode classes in chunks of this many (0 = all at once)
  config.shared_prefix = True       # run the positions every class prompt shares once, then per-class suffixes (exact)
  for name, cls in sorted(_REGISTRY.items()):
    if hasattr(cls, "default_options"):
      config[name] = cls.default_options()
  return config
