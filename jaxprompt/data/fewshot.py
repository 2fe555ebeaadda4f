"""K-shot sampling, saved splits, base/novel splits and class subsets for continual tasks.

K-shot sampling reproduces the reference (Dassl's `generate_fewshot_dataset` after `random.seed(run seed)`): group
the items by label in order of first appearance; for each label in that order take `random.sample(group, K)` (the
whole group, in order, when it holds fewer than K); concatenate. The val split gets min(K, 4) shots from the same
random stream, drawn after train. A `random.Random(seed)` instance gives the same draws as the seeded global `random`
without touching global state.

The reference caches each draw as `<dataset folder>/split_fewshot/shot_{K}-seed_{S}.pkl`: a pickle (highest protocol)
of {"train": [Datum, ...], "val": [Datum, ...]} ("train" only for ImageNet), where Datum is
`dassl.data.datasets.base_dataset.Datum` holding `_impath` (absolute path), `_label`, `_domain` (int) and
`_classname`. `read_reference_fewshot` reads such a file without Dassl through a restricted unpickler that builds
nothing but Datum records (any other global, `os.system` say, is refused, naming it), and `write_reference_fewshot`
writes one the reference loads. To train on exactly the reference's draw, set `config.data.split_file` to the .pkl:
each Datum is matched to the source's example with the same path (or, when the data moved, the same last two path
components, i.e. `<class folder>/<file>`), and its label must equal the source's. This matters most for ImageNet,
whose reference draw depends on the file system's `os.listdir` order (see `coop_datasets`): the same seed draws other
images on another machine, and on ours unless the source lists files the same way.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import pickle
import random
from typing import Sequence

import numpy as np
from etils import epath

from jaxprompt.data import files
from jaxprompt.data.types import Example, Source

SPLIT_FORMAT = "jaxprompt-split-v1"


def sample_shots(examples: Sequence[Example], shots: int, rng: random.Random, *, what: str = "train") -> list[Example]:
  """K examples per label (see module docstring). shots <= 0 means all. Warns once when a class has fewer than K."""
  if shots <= 0:
    return list(examples)
  groups: dict[int, list[Example]] = {}
  for example in examples:
    groups.setdefault(example.label, []).append(example)
  chosen, short = [], []
  for label, group in groups.items():
    if len(group) >= shots:
      chosen += rng.sample(group, shots)
    else:
      chosen += group
      short.append((label, len(group)))
  if short:
    listed = ", ".join(f"label {label} ({n})" for label, n in short[:10]) + (" ..." if len(short) > 10 else "")
    logging.warning("%s: %d class(es) have fewer than %d images, taking all of them: %s", what, len(short), shots,
                    listed)
  return chosen


def few_shot_splits(splits: dict[str, list[Example]], shots: int, seed: int) -> dict[str, list[Example]]:
  """The K-shot train split and min(K, 4)-shot val split of one run (seed); test (and anything else) unchanged."""
  rng = random.Random(seed)
  result = dict(splits)
  result["train"] = sample_shots(splits["train"], shots, rng, what="train")
  if "val" in splits:
    result["val"] = sample_shots(splits["val"], min(shots, 4) if shots > 0 else shots, rng, what="val")
  return result


def few_shot_source(source: Source, shots: int, seed: int) -> Source:
  """`source` with its train/val splits replaced by the K-shot draw of `seed`."""
  return dataclasses.replace(source, splits=few_shot_splits(source.splits, shots, seed))


# -- saved splits -------------------------------------------------------------------------------------------------

def save_split(path: str, splits: dict[str, list[Example]], *, root: str | None = None, **metadata) -> None:
  """Writes the splits as JSON: {"format", "metadata", split: [[key, label, classname, domain], ...]}.

  String keys are stored relative to `root` when given (so the file moves with the data); int keys as they are.
  `metadata` (source name, shots, seed, ...) is stored for the record.
  """
  def encode(example):
    key = example.key
    if root is not None and isinstance(key, str):
      key = os.path.relpath(key, root)
    return [key, example.label, example.classname, example.domain]

  out = {"format": SPLIT_FORMAT, "metadata": metadata}
  out.update({split: [encode(e) for e in examples] for split, examples in splits.items()})
  files.write_json(path, out)


def load_split(path: str, *, root: str | None = None, check_files: bool = True) -> dict[str, list[Example]]:
  """Reads a file written by `save_split` (or a CoOp split file: [path, label, classname] entries).

  Relative string keys are joined to `root`; with `check_files`, every string key must be an existing file.
  """
  data = files.read_json(path)
  if not isinstance(data, dict):
    raise ValueError(f"split file must hold a JSON object: {path}")
  splits = {}
  for split, entries in data.items():
    if split in ("format", "metadata"):
      continue
    examples = []
    for index, entry in enumerate(entries):
      if not (isinstance(entry, list) and 3 <= len(entry) <= 4 and isinstance(entry[1], int)):
        raise ValueError(f"{path}: {split}[{index}] is {entry!r}, expected [key, label, classname(, domain)]")
      key = entry[0]
      if root is not None and isinstance(key, str):
        key = os.path.join(root, key)
      examples.append(Example(key, entry[1], entry[2], entry[3] if len(entry) == 4 else None))
    if check_files:
      files.check_files_exist([e for e in examples if isinstance(e.key, str)], f"split file {path} ({split!r})")
    splits[split] = examples
  return splits


def split_metadata(path: str) -> dict:
  """The metadata stored by `save_split`."""
  return files.read_json(path).get("metadata", {})


# -- base/novel and class subsets ------------------------------------------------------------------------------------

def base_novel_labels(labels: Sequence[int]) -> tuple[list[int], list[int]]:
  """Sorted distinct labels split into base = first ceil(n/2) and novel = the rest (37 -> 19/18, 101 -> 51/50)."""
  ordered = sorted(set(labels))
  m = math.ceil(len(ordered) / 2)
  return ordered[:m], ordered[m:]


def select_classes(source: Source, labels: Sequence[int], *, relabel: bool = True, name: str | None = None) -> Source:
  """Keeps only the examples of `labels` in every split.

  relabel=True: label `labels_sorted[i]` becomes i and class names are subset to match (a task's own label space).
  relabel=False: labels and class names are kept (for a union classifier over several tasks).
  """
  keep = sorted(set(labels))
  bad = [label for label in keep if not 0 <= label < source.num_classes]
  if bad:
    raise ValueError(f"{source.name}: labels {bad} are outside 0..{source.num_classes - 1}")
  new_label = {old: (new if relabel else old) for new, old in enumerate(keep)}
  splits = {split: [dataclasses.replace(e, label=new_label[e.label]) for e in examples if e.label in new_label]
            for split, examples in source.splits.items()}
  classnames, raw, superset = source.classnames, source.raw_classnames, source.superset_labels
  if relabel:
    classnames = [source.classnames[label] for label in keep]
    raw = [source.raw_classnames[label] for label in keep]
    superset = [source.superset_labels[label] for label in keep] if source.superset_labels is not None else None
  return dataclasses.replace(source, name=name or source.name, classnames=classnames, raw_classnames=raw,
                             splits=splits, superset_labels=superset)


def subsample_classes(source: Source, subset: str) -> Source:
  """Base-to-novel: subset "all" (unchanged), "base" or "novel" (relabelled 0..m-1, ascending original label).

  Like the reference, the labels are those present in the train split (all classes after K-shot sampling).
  """
  if subset == "all":
    return source
  if subset not in ("base", "novel"):
    raise ValueError(f"subset must be 'all', 'base' or 'novel', got {subset!r}")
  present = [e.label for e in source.splits["train"]] if "train" in source.splits else range(source.num_classes)
  base, novel = base_novel_labels(present)
  return select_classes(source, base if subset == "base" else novel, name=f"{source.name}/{subset}")


def class_chunks(num_classes: int, num_tasks: int) -> list[list[int]]:
  """Labels 0..num_classes-1 in `num_tasks` contiguous chunks, earlier chunks one larger when uneven
  (2 tasks = the base half, then the novel half)."""
  if not 1 <= num_tasks <= num_classes:
    raise ValueError(f"num_tasks must be in 1..{num_classes}, got {num_tasks}")
  return [chunk.tolist() for chunk in np.array_split(np.arange(num_classes), num_tasks)]


def continual_tasks(source: Source, num_tasks: int = 2) -> list[Source]:
  """Disjoint class-subset tasks, each relabelled to its own 0..m-1 (use `select_classes(..., relabel=False)` with
  the union of seen chunks for a union classifier)."""
  return [select_classes(source, chunk, name=f"{source.name}/task{t}")
          for t, chunk in enumerate(class_chunks(source.num_classes, num_tasks))]


def few_shot_source_recorded(source: Source, shots: int, seed: int, path: str, *,
                             split_file: str | None = None, record: bool = True) -> Source:
  """The run's K-shot source, recorded in (and on resume re-read from) `path` in the workdir.

  split_file: a split written earlier (by `save_split`, JSON) or a reference few-shot cache (`.pkl`, see the module
  docstring) to train on instead of drawing one; it is copied to `path` as JSON.
  Otherwise `path` is reused when it exists (a resumed run) and drawn with `few_shot_splits` and saved when not.
  Test splits are not stored (they are the source's own); only train/val are. record=False reads `path` if it
  exists but never writes it (evaluation of a workdir it must not change).
  """
  given = split_file or (path if epath.Path(path).exists() else None)
  if given is None:
    drawn = few_shot_splits(source.splits, shots, seed)
    chosen = {split: drawn[split] for split in ("train", "val") if split in drawn}
  elif given.endswith(".pkl"):
    chosen = match_reference_fewshot(read_reference_fewshot(given), source, given)
  else:
    chosen = load_split(given)
    bad = [(split, e.key, e.label) for split, examples in chosen.items() for e in examples
           if not 0 <= e.label < source.num_classes]
    if bad:
      raise ValueError(f"split file {given}: {len(bad)} example(s) have labels outside 0..{source.num_classes - 1} "
                       f"of {source.name}, first {bad[0]}")
  if given != path and record:
    save_split(path, chosen, source=source.name, shots=shots, seed=seed, drawn_from=given or "few_shot_splits")
  return dataclasses.replace(source, splits={**source.splits, **chosen})


# -- the reference's few-shot caches (split_fewshot/shot_K-seed_S.pkl) ------------------------------------------------

DATUM_MODULE, DATUM_NAME = "dassl.data.datasets.base_dataset", "Datum"
_DATUM_FIELDS = {"_impath": str, "_label": int, "_domain": (int, str), "_classname": str}


class ReferenceDatum:
  """What a pickled Dassl Datum becomes here: impath, label, domain, classname (nothing else is accepted)."""

  def __setstate__(self, state):
    if not isinstance(state, dict) or not set(state) <= set(_DATUM_FIELDS):
      raise pickle.UnpicklingError(f"a {DATUM_MODULE}.{DATUM_NAME} holds {state!r}, expected a dict with keys "
                                   f"{sorted(_DATUM_FIELDS)}")
    for field, value in state.items():
      if not isinstance(value, _DATUM_FIELDS[field]) or isinstance(value, bool):
        raise pickle.UnpicklingError(f"a {DATUM_MODULE}.{DATUM_NAME} has {field}={value!r}")
    self.__dict__.update(state)

  impath = property(lambda self: self.__dict__.get("_impath", ""))
  label = property(lambda self: self.__dict__.get("_label", 0))
  domain = property(lambda self: self.__dict__.get("_domain", 0))
  classname = property(lambda self: self.__dict__.get("_classname", ""))


def _reconstruct_datum(cls, base, state):
  """copyreg._reconstructor (protocols 0 and 1), allowed only to make a ReferenceDatum."""
  if cls is not ReferenceDatum or base is not object or state is not None:
    raise pickle.UnpicklingError(f"copyreg._reconstructor may only rebuild {DATUM_MODULE}.{DATUM_NAME}")
  return object.__new__(ReferenceDatum)


class _DatumUnpickler(pickle.Unpickler):
  """Resolves Dassl's Datum (and what old protocols need to build it); refuses every other global."""

  ALLOWED = {(DATUM_MODULE, DATUM_NAME): ReferenceDatum, ("copyreg", "_reconstructor"): _reconstruct_datum,
             ("copy_reg", "_reconstructor"): _reconstruct_datum,  # protocols 0-2 spell it the Python 2 way
             ("builtins", "object"): object, ("__builtin__", "object"): object}

  def __init__(self, file, where):
    super().__init__(file)
    self.where = where

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"{self.where}: refusing to load {module}.{name}: a few-shot cache may only hold "
                                   f"{DATUM_MODULE}.{DATUM_NAME} records")
    return self.ALLOWED[(module, name)]


def read_reference_fewshot(path: str) -> dict[str, list[ReferenceDatum]]:
  """A reference few-shot cache -> {"train": [ReferenceDatum], "val": [...] if present}; raises naming the file."""
  files.require_file(path, "few-shot cache")
  with open(path, "rb") as f:
    try:
      data = _DatumUnpickler(f, path).load()
    except pickle.UnpicklingError:
      raise
    except Exception as error:  # truncated, or not a pickle at all
      raise pickle.UnpicklingError(f"{path}: not a readable few-shot cache: {error}") from error
  if not isinstance(data, dict) or "train" not in data or not set(data) <= {"train", "val"}:
    raise ValueError(f"{path}: a few-shot cache is a dict with keys 'train' (and 'val'), got "
                     f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
  for split, items in data.items():
    if not isinstance(items, list) or not all(isinstance(item, ReferenceDatum) for item in items):
      raise ValueError(f"{path}: {split!r} must be a list of {DATUM_MODULE}.{DATUM_NAME}")
  return data


def match_reference_fewshot(data: dict[str, list[ReferenceDatum]], source: Source, where: str
                            ) -> dict[str, list[Example]]:
  """The source's examples the cache's Datums name (same path, else same `<folder>/<file>`), in the cache's order.

  Raises ValueError naming the file, the split and the entry when a Datum matches none (or several) of the source's
  examples, or its label differs from the source's.
  """
  chosen = {}
  for split, items in data.items():
    if split not in source.splits:
      raise ValueError(f"{where}: the cache has a {split!r} split but {source.name} has none")
    by_key = {e.key: e for e in source.splits[split]}
    by_tail: dict[str, list[Example]] = {}
    for e in source.splits[split]:
      by_tail.setdefault(_tail(str(e.key)), []).append(e)
    examples = []
    for index, item in enumerate(items):
      example = by_key.get(item.impath)
      if example is None:
        candidates = by_tail.get(_tail(item.impath), [])
        if len(candidates) != 1:
          raise ValueError(f"{where}: {split}[{index}] {item.impath} matches {len(candidates)} {split} examples of "
                           f"{source.name} (by path or by its last two path components)")
        example = candidates[0]
      if example.label != item.label:
        raise ValueError(f"{where}: {split}[{index}] {item.impath} has label {item.label}, {source.name} gives "
                         f"{example.key} label {example.label}")
      examples.append(example)
    chosen[split] = examples
  return chosen


def _tail(path: str) -> str:
  return "/".join(path.replace(os.sep, "/").split("/")[-2:])


def write_reference_fewshot(path: str, splits: dict[str, list[Example]]) -> None:
  """Writes {"train": [...], "val": [...]} as the reference's cache (Datums with impath = example key, domain 0), so
  a reference run (`split_fewshot/shot_K-seed_S.pkl`) trains on our draw. Written atomically; needs path keys."""
  out = io.BytesIO()
  out.write(pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK)
  for split, examples in splits.items():
    _write_str(out, split)
    out.write(pickle.EMPTY_LIST + pickle.MARK)
    for example in examples:
      if not isinstance(example.key, str):
        raise ValueError(f"{path}: example key {example.key!r} is not a file path; the reference needs paths")
      # Datum.__new__ then BUILD with its __dict__, as protocol 2 pickles a plain object.
      out.write(pickle.GLOBAL + f"{DATUM_MODULE}\n{DATUM_NAME}\n".encode() + pickle.EMPTY_TUPLE + pickle.NEWOBJ)
      out.write(pickle.EMPTY_DICT + pickle.MARK)
      for field, value in (("_impath", example.key), ("_label", example.label), ("_domain", 0),
                           ("_classname", example.classname)):
        _write_str(out, field)
        if isinstance(value, int):
          out.write(pickle.BININT + int(value).to_bytes(4, "little", signed=True))
        else:
          _write_str(out, value)
      out.write(pickle.SETITEMS + pickle.BUILD)
    out.write(pickle.APPENDS)
  out.write(pickle.SETITEMS + pickle.STOP)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(out.getvalue())
  os.replace(tmp, path)


def _write_str(out: io.BytesIO, text: str) -> None:
  data = text.encode("utf-8")
  out.write(pickle.BINUNICODE + len(data).to_bytes(4, "little") + data)
