"""From a run config to the run's data: what to train on and what to evaluate (the papers' protocols).

* `all`: K shots of every class; evaluate all-class accuracy on the test split.
* `base2novel`: K shots, then the classes split in halves; train on base; evaluate base test (base label space)
  and novel test (novel label space).
* targets (domain generalisation / cross-dataset): other datasets evaluated with their own class lists.

The K-shot draw is recorded in the workdir (`split.json`) and re-read on resume, so every run keeps a record of
exactly what it trained on.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from typing import Sequence

import ml_collections

from jaxprompt.data import fewshot
from jaxprompt.data.registry import build_source
from jaxprompt.data.types import Example, ImageReader, Source


@dataclasses.dataclass
class EvalSet:
  """One accuracy to report: `name` (e.g. "accuracy", "base", "target/imagenet_v2"), its classes and examples;
  `source` names the data source (for messages and the corrupt-image record)."""

  name: str
  classnames: Sequence[str]
  examples: list[Example]
  reader: ImageReader
  templates: Sequence[str]
  source: str = ""


@dataclasses.dataclass
class RunData:
  """train: the examples to train on (labels index `classnames`); evals: what to report at the end."""

  source: Source
  classnames: Sequence[str]
  templates: Sequence[str]
  train: list[Example]
  evals: list[EvalSet]


def source_options(data: ml_collections.ConfigDict, options: ml_collections.ConfigDict | dict) -> dict:
  """A source's builder options: `options` plus `data.root` (unless the options set their own root)."""
  options = dict(options.to_dict() if hasattr(options, "to_dict") else options)
  if data.root and "root" not in options:
    options["root"] = data.root
  return options


def parse_source_args(text: str) -> dict:
  """`config.data.source_args` ("domain=Art,split_seed=2") -> {"domain": "Art", "split_seed": 2}; values are
  Python literals where they parse, else strings."""
  options = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    key, sep, raw = item.partition("=")
    if not sep or not key:
      raise ValueError(f"config.data.source_args: {item!r} is not key=value (e.g. 'domain=Art,split_seed=2')")
    try:
      options[key] = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      options[key] = raw
  return options


def main_source_options(data: ml_collections.ConfigDict) -> dict:
  """The run's own source options: `data.options` (config files), then `data.source_args` (command line)."""
  return {**data.options.to_dict(), **parse_source_args(data.source_args)}


def load_source(data: ml_collections.ConfigDict) -> Source:
  """The run's data source, with `data.root` and the options of `main_source_options`."""
  return build_source(data.name, **source_options(data, main_source_options(data)))


def prepare(config: ml_collections.ConfigDict, workdir: str, *, record_split: bool = True) -> RunData:
  """Builds the source, draws (or re-reads) the K shots, applies the protocol and lists the evaluations.

  record_split=False: the draw is re-read from `<workdir>/split.json` if there is one, and never written (eval mode).
  """
  data = config.data
  source = load_source(data)
  source = fewshot.few_shot_source_recorded(source, data.shots, config.seed, os.path.join(workdir, "split.json"),
                                            split_file=data.split_file or None, record=record_split)
  evals = []
  if data.protocol == "all":
    train_source = source
    evals.append(eval_set("accuracy", source))
  elif data.protocol == "base2novel":
    train_source = fewshot.subsample_classes(source, "base")
    evals.append(eval_set("base", train_source))
    evals.append(eval_set("novel", fewshot.subsample_classes(source, "novel")))
  else:
    raise ValueError(f"config.data.protocol={data.protocol!r}: expected 'all' or 'base2novel'")
  for target in data.targets:
    options = data.target_options.get(target, {})
    target_source = build_source(target, **source_options(data, options))
    evals.append(eval_set(f"target/{target}", target_source))
  return RunData(train_source, train_source.raw_classnames, train_source.templates, train_source.splits["train"],
                 evals)


def eval_set(name: str, source: Source) -> EvalSet:
  if "test" not in source.splits:
    raise ValueError(f"data source {source.name} has no test split to evaluate {name!r} on")
  return EvalSet(name, source.raw_classnames, source.splits["test"], source.reader, source.templates, source.name)
