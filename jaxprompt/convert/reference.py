"""The conversion itself: a reference state dict <-> our trainable tree, checked against the method it must fit.

    trainable, config, settled = from_reference("maple", state, classnames, backbone, options={"maple.ctx_init": "..."})
    variant, state = to_reference(trainable, metadata, backbone)     # metadata: a prompts.json

`from_reference` reads what the checkpoint fixes off its shapes (`Variant.infer`: context length, depths, K, tokens
per label, class-specific context), builds the method with those options over the class list and the backbone (so a
depth the backbone does not have fails in the method, naming the option), and fills each leaf from its reference
key(s), naming both shapes when one does not fit. Keys no leaf takes must be ones the reference itself drops (fixed
token vectors, LAMM's initial labels), frozen CLIP weights of a whole-model checkpoint, or LAMM on CLIP's frozen
template words (checked); any other key is an error. `to_reference` is the reverse, refusing options the reference
prompt cannot express.
"""

from __future__ import annotations

import ast
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np

from jaxprompt import methods, trees
from jaxprompt.convert.names import (FROZEN_PREFIXES, VARIANTS, ConversionError, Key, StateDict, Variant,
                                     backbone_facts, variant_of)
from jaxprompt.methods.prompting import phrase_embeddings

Params = dict[str, Any]


# --- the method a checkpoint fits -------------------------------------------------------------------------------------
def method_config(variant: Variant, inferred: dict, options: dict) -> ml_collections.ConfigDict:
  """The `method` block: defaults, then what the checkpoint fixes, then the user's options (dotted keys)."""
  config = methods.default_config()
  config.name = variant.method
  for dotted, value in {**inferred, **options}.items():
    node = config
    *parents, leaf = dotted.split(".")
    for parent in parents:
      if parent not in node or not isinstance(node[parent], ml_collections.ConfigDict):
        raise ConversionError(f"--option {dotted}: method config has no block {parent!r}")
      node = node[parent]
    if leaf not in node:
      raise ConversionError(f"--option {dotted}: unknown method option (known in this block: {', '.join(node)})")
    node[leaf] = value
  return config


def parse_options(pairs: Sequence[str]) -> dict:
  """["maple.depth=3", "coop.ctx_init="] -> {"maple.depth": 3, "coop.ctx_init": ""} (typed by the default)."""
  defaults, options = trees.flatten(methods.default_config().to_dict()), {}
  for pair in pairs:
    if "=" not in pair:
      raise ConversionError(f"--option {pair!r}: expected key=value, e.g. maple.ctx_init='a photo of a'")
    key, text = pair.split("=", 1)
    default = defaults.get(key.replace(".", "/"))
    if isinstance(default, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ConversionError(f"--option {key}={text!r}: expected true or false")
      options[key] = text.lower() in ("true", "1")
    elif isinstance(default, (int, float)):
      try:
        options[key] = type(default)(text)
      except ValueError:
        raise ConversionError(f"--option {key}={text!r}: expected a number") from None
    elif isinstance(default, str):
      options[key] = text
    else:
      try:
        options[key] = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        options[key] = text
  return options


def template_words(template: str) -> str:
  """'a photo of a {}.' -> 'a photo of a': the context the reference prompt '<ctx> <name>.' holds."""
  before, _, after = template.partition("{}")
  if not after.startswith(".") or after.strip() != "." or not before.strip():
    raise ConversionError(f"lamm.template={template!r}: the reference prompt is '<words> <name>.'; use a template "
                          "of that form")
  return before.strip()


def expected_leaves(method) -> dict[str, tuple[int, ...]]:
  return {path: tuple(x.shape) for path, x in trees.flatten(jax.eval_shape(method.init, jax.random.key(0))).items()}


def _label(variant: Variant) -> str:
  return f"{variant.name} ({variant.source})"


# --- from the reference -----------------------------------------------------------------------------------------------
def from_reference(name: str, state: StateDict, classnames: Sequence[str], backbone, *, options: dict | None = None,
                   where: str = "checkpoint", classnames_file: str = "the class list"
                   ) -> tuple[Params, ml_collections.ConfigDict, dict]:
  """A reference state dict -> (our trainable tree, the `method` config block it fits, the dotted options the
  checkpoint and `options` set in that block). `where` / `classnames_file` name the files in errors."""
  if name not in VARIANTS:
    raise ConversionError(f"--method {name!r}: known reference methods are {', '.join(VARIANTS)}")
  variant = VARIANTS[name]
  if state and all(key.startswith("module.") for key in state):  # saved from inside nn.DataParallel
    state = {key[len("module."):]: value for key, value in state.items()}
  _check_class_rows(variant, state, len(classnames), where, classnames_file)
  missing = [key.theirs for key in variant.keys if not key.layered and key.theirs not in state]
  if missing:
    raise ConversionError(f"{where} lacks {missing[0]}, which a {_label(variant)} checkpoint holds (its keys: "
                          f"{', '.join(sorted(state)[:12])}{', ...' if len(state) > 12 else ''})")
  try:
    inferred = variant.infer(state)
  except (IndexError, ValueError, TypeError):
    shapes = ", ".join(f"{key} {tuple(np.shape(state[key]))}" for key in variant.reference_keys() if key in state)
    raise ConversionError(f"{where}: shapes do not fit a {_label(variant)} checkpoint: {shapes}") from None
  config = method_config(variant, inferred, options or {})
  method = methods.build(variant.method, config, backbone, list(classnames))
  expected = expected_leaves(method)
  flat, used = {}, set()
  for key in variant.keys:
    if key.ours not in expected:  # MaPLe of depth 1 has no deep leaves
      continue
    shape = expected[key.ours]
    if key.layered or key.row is not None:
      rows = range(key.first, shape[0]) if key.layered else [key.row]
      leaf = flat.setdefault(key.ours, np.zeros(shape, np.float32))
      for i in rows:
        ref = key.theirs.format(i=i)
        if ref not in state:
          raise ConversionError(f"{where} lacks {ref}: {name} with {inferred} expects layers {key.first}.."
                                f"{shape[0] - 1} of it")
        leaf[i] = _ours(state[ref], key, shape[1:], ref, where, name)
        used.add(ref)
    else:
      flat[key.ours] = _ours(state[key.theirs], key, shape, key.theirs, where, name)
      used.add(key.theirs)
  for ref in sorted(set(state) - used):
    _check_skipped(variant, ref, state[ref], method, backbone, where)
  return trees.unflatten(flat), config, {"name": variant.method, **inferred, **(options or {})}


def _ours(value: np.ndarray, key: Key, shape: tuple[int, ...], ref: str, where: str, name: str) -> np.ndarray:
  """One reference tensor -> our leaf (or row), transposed for Linear weights; a misfit names both shapes."""
  theirs = tuple(reversed(shape)) if key.linear else tuple(shape)
  if tuple(value.shape) != theirs:
    raise ConversionError(f"{where}: {ref} has shape {tuple(value.shape)}, but {name} on this backbone expects "
                          f"{theirs} (our leaf {key.ours})")
  return np.asarray(value.T if key.linear else value, np.float32)


def _check_class_rows(variant: Variant, state: StateDict, num_classes: int, where: str, classnames_file: str):
  rowed = list(variant.class_keys)
  if "ctx" in state and np.ndim(state["ctx"]) == 3:  # CoOp's class-specific context
    rowed.append("ctx")
  for key in rowed:
    if key in state and np.ndim(state[key]) >= 1 and np.shape(state[key])[0] != num_classes:
      raise ConversionError(f"{where}: {key} has {np.shape(state[key])[0]} class rows, but {classnames_file} "
                            f"lists {num_classes} classes")


def _check_skipped(variant: Variant, ref: str, value: np.ndarray, method, backbone, where: str) -> None:
  """A key no leaf takes: a buffer the reference drops, frozen CLIP weights, LAMM's fixed context, or an error."""
  if ref in variant.ignored or ref == variant.labels0_key:
    return
  if ref == variant.fixed_context:
    words = template_words(method.options.template)
    want = phrase_embeddings(backbone, words)
    if value.shape != want.shape or not np.allclose(value, want, rtol=1e-2, atol=1e-4):
      raise ConversionError(f"{where}: {ref} {tuple(value.shape)} is not the frozen template words {words!r} "
                            f"{want.shape} of lamm.template={method.options.template!r}: a trained context is "
                            "coop+lamm; another frozen phrase is --option lamm.template='<words> {}.'")
    return
  if variant.whole_model and ref.startswith(FROZEN_PREFIXES) and "VPT" not in ref:
    facts = backbone_facts(backbone.params)
    if ref in facts and tuple(value.shape) != facts[ref]:
      raise ConversionError(f"{where}: {ref} has shape {tuple(value.shape)}, this backbone's is {facts[ref]}: the "
                            "checkpoint was trained on another CLIP (pass it with --backbone)")
    return
  known = ", ".join(variant.reference_keys() + variant.ignored)
  raise ConversionError(f"{where}: unknown key {ref} for {_label(variant)} (known: {known})")


# --- to the reference -------------------------------------------------------------------------------------------------
def to_reference(trainable: Params, metadata: dict, backbone, *, classnames: Sequence[str] | None = None,
                 where: str = "prompts", classnames_file: str = "the class list") -> tuple[Variant, StateDict]:
  """Our prompt export (trainable tree + prompts.json metadata) -> (variant, reference state dict)."""
  if "method" not in metadata or "method_config" not in metadata:
    raise ConversionError(f"{where}: prompts.json beside it lacks 'method' / 'method_config' (written by every "
                          "training run and by from-reference)")
  config = _saved_config(metadata["method_config"])
  name = metadata["method"]
  variant = variant_of(name, config.lamm.base if name == "lamm" else "")
  names = list(metadata.get("classnames") or [])
  if classnames is not None:
    if names and len(names) != len(classnames):
      raise ConversionError(f"{where} was trained on {len(names)} classes, but {classnames_file} lists "
                            f"{len(classnames)}")
    names = list(classnames)
  if not names:
    raise ConversionError(f"{where}: prompts.json has no classnames; pass --classnames")
  method = methods.build(name, config, backbone, names)
  flat = {path: np.asarray(value, np.float32) for path, value in trees.flatten(trainable).items()}
  got, want = {path: value.shape for path, value in flat.items()}, expected_leaves(method)
  if got != want:
    wrong = sorted(set(got) ^ set(want)) or [path for path in sorted(got) if got[path] != want[path]]
    path = wrong[0]
    raise ConversionError(f"{where}: leaf {path} has shape {got.get(path, 'none')}, but {name} on this backbone "
                          f"expects {want.get(path, 'none')}")
  _check_reference_prompt(variant, method, config, names)
  state = {}
  for key in variant.keys:
    if key.ours not in flat:  # MaPLe of depth 1 has no deep leaves
      continue
    leaf = flat[key.ours]
    rows = range(key.first, leaf.shape[0]) if key.layered else ([key.row] if key.row is not None else [None])
    for i in rows:
      value = leaf if i is None else leaf[i]
      state[key.theirs.format(i=i)] = value.T if key.linear else value
  if variant.fixed_context:
    state[variant.fixed_context] = phrase_embeddings(backbone, template_words(method.options.template))
  if variant.labels0_key:
    state[variant.labels0_key] = np.asarray(method.labels0, np.float32)
  return variant, state


def _saved_config(saved: dict) -> ml_collections.ConfigDict:
  """prompts.json's method block over today's defaults (an export from before an option existed keeps working)."""
  def merge(default, value):
    if isinstance(default, dict) and isinstance(value, dict):
      return {**default, **{key: merge(default.get(key), item) for key, item in value.items()}}
    return value
  return ml_collections.ConfigDict(merge(methods.default_config().to_dict(), saved))


def _check_reference_prompt(variant: Variant, method, config, names: list[str]) -> None:
  """Options the reference prompt cannot express (its LAMM label layout, CoCoOp's meta-net width)."""
  if variant.method == "lamm":
    base_position = config.coop.class_position if variant.base == "coop" else "end"
    if base_position != "end":
      raise ConversionError(f"coop.class_position={base_position!r}: the LAMM reference supports 'end' only")
    if variant.base == "maple":
      if config.lamm.maple_placement != "after_ctx" or method.tokens_per_label != 1:
        raise ConversionError("maple+lamm: the reference writes one label token right after MaPLe's context; "
                              "convert runs trained with lamm.maple_placement='after_ctx', lamm.tokens_per_label=1")
    else:
      shortest = min(len(method.tokenizer.encode(name.replace("_", " "))) for name in names)
      if method.tokens_per_label != shortest:
        raise ConversionError(f"lamm.tokens_per_label={method.tokens_per_label}: the reference uses the shortest "
                              f"class name's token count ({shortest})")
  if variant.name == "vpt" and config.vpt.template != "a photo of a {}.":
    raise ConversionError(f"vpt.template={config.vpt.template!r}: the reference VPT scores 'a photo of a {{}}.'")
  if variant.name == "cocoop":
    embed = method.clip.embed_dim
    if max(1, embed // config.cocoop.hidden_ratio) != max(1, embed // 16):
      raise ConversionError(f"cocoop.hidden_ratio={config.cocoop.hidden_ratio}: the reference meta-net is "
                            f"E -> E // 16 ({embed} -> {embed // 16})")


