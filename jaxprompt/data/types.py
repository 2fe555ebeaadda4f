"""The two records every data source speaks: an `Example` (one labelled image) and a `Source` (a dataset).

A source knows its class names, its prompt templates, its splits as lists of examples, and how to read one
example's pixels. Everything downstream (few-shot sampling, base/novel splits, transforms, grain pipelines) works on
these records only, so a new dataset is a new function that returns a `Source`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Example:
  """One labelled image.

  key: what the source's reader needs to fetch the pixels: a file path (str), or an index (int) into a TFDS
    data source or a procedural generator.
  label: 0-based class index into `Source.classnames`.
  classname: the class name as the split file spells it (kept so a saved split is human-readable).
  domain: the style/domain the example comes from (Office-Home, DomainNet, the shapes world), or None.
  """

  key: str | int
  label: int
  classname: str = ""
  domain: str | None = None


ImageReader = Callable[[Example], np.ndarray]
"""Reads an example's pixels as a uint8 array (H, W, 3), RGB. Raises `CorruptImageError` on unreadable input."""


class CorruptImageError(Exception):
  """An image that exists but cannot be decoded. Pipelines skip it with a warning naming it and count it."""


@dataclasses.dataclass
class Source:
  """A dataset: class names, prompt templates, splits and a pixel reader.

  name: registry name (e.g. "dtd", "office_home/Art", "world/fewshot").
  classnames: prompt-ready class names, index = label (e.g. "Annual Crop Land" for EuroSAT).
  templates: prompt templates with one "{}" each; templates[0] is the single template the papers use.
  splits: "train" / "val" / "test" -> examples. A source without a val split has no "val" key.
  reader: reads one example's pixels.
  raw_classnames: class names exactly as the split files spell them (underscores kept), for RPO's reproduction
    default; equal to `classnames` when the source has no such distinction.
  notes: caveats a user should see (e.g. "TFDS splits differ from the split_zhou_*.json splits").
  superset_labels: for a class-subset dataset (ImageNet-A/R: 200 of ImageNet's 1000 classes), label i of this source
    is label superset_labels[i] of the full label space; None otherwise.
  """

  name: str
  classnames: Sequence[str]
  templates: Sequence[str]
  splits: dict[str, list[Example]]
  reader: ImageReader
  raw_classnames: Sequence[str] | None = None
  notes: str = ""
  superset_labels: Sequence[int] | None = None

  def __post_init__(self):
    if self.raw_classnames is None:
      self.raw_classnames = list(self.classnames)

  @property
  def num_classes(self) -> int:
    return len(self.classnames)
