"""Any prepared TFDS dataset as a source, read with `tfds.data_source` (ArrayRecord random access, no TensorFlow).

    build_source("tfds", dataset="oxford_iiit_pet", data_dir="~/tensorflow_datasets")

Class names come from the builder's label feature. TFDS's splits are NOT the split_zhou_*.json splits of the CoOp
benchmark (different train/val/test membership), so numbers are not comparable to the papers'; the Source's `notes`
says so. Building the source reads every record once to learn its label (decoding its image), which takes a while on
large datasets.
"""

from __future__ import annotations

import bisect

import numpy as np

from jaxprompt.data import files
from jaxprompt.data.coop_datasets import EUROSAT_RENAMED, SPLIT_FILE_DATASETS
from jaxprompt.data.registry import register
from jaxprompt.data.types import CorruptImageError, Example, Source

# TFDS name -> our name, for the protocol templates.
_TFDS_TO_COOP = {
    "caltech101": "caltech101", "oxford_iiit_pet": "oxford_pets", "cars196": "stanford_cars",
    "oxford_flowers102": "oxford_flowers", "food101": "food101", "sun397": "sun397", "dtd": "dtd",
    "eurosat": "eurosat",
}
_DEFAULT_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def _templates_for(dataset: str) -> list[str]:
  base = dataset.split("/")[0].split(":")[0]
  if base in _TFDS_TO_COOP:
    return list(SPLIT_FILE_DATASETS[_TFDS_TO_COOP[base]][3])
  return ["a photo of a {}."]


class _TfdsReader:
  """Reads example.key = global index over the concatenated per-split data sources."""

  def __init__(self, dataset, sources, image_key):
    self.dataset, self.sources, self.image_key = dataset, sources, image_key
    self.offsets = list(np.cumsum([0] + [len(s) for s in sources[:-1]]))

  def __call__(self, example: Example) -> np.ndarray:
    part = bisect.bisect_right(self.offsets, example.key) - 1
    index = example.key - self.offsets[part]
    try:
      image = np.asarray(self.sources[part][index][self.image_key])
    except Exception as error:  # a record that cannot be deserialised/decoded
      raise CorruptImageError(f"cannot decode TFDS {self.dataset} record {example.key}: {error}") from error
    if image.ndim == 2:
      image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
      raise CorruptImageError(f"TFDS {self.dataset} record {example.key}: image shape {image.shape} is not (H, W, C)")
    if image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    try:  # a uint16 or float image is scaled (files.scale_to_uint8), never wrapped or clipped to uint8
      image = files.scale_to_uint8(image[..., :3], f"TFDS {self.dataset} record {example.key}")
    except ValueError as error:
      raise CorruptImageError(str(error)) from error
    return np.ascontiguousarray(image)


@register("tfds")
def build_tfds(dataset: str, data_dir: str | None = None, splits: dict[str, str] | None = None,
               image_key: str = "image", label_key: str = "label", templates: list[str] | None = None,
               download: bool = False) -> Source:
  """A TFDS dataset. `splits` maps our split names to TFDS split specs (default: train, validation -> val, test,
  whichever the dataset has)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  (slow import, only when used)

  builder = tfds.builder(dataset, data_dir=data_dir)
  label_feature = builder.info.features[label_key]
  if not hasattr(label_feature, "names"):
    raise ValueError(f"TFDS {dataset}: feature {label_key!r} is not a ClassLabel with names")
  raw = [str(n) for n in label_feature.names]
  if splits is None:
    available = set(builder.info.splits.keys()) if builder.info.splits else set()
    splits = {ours: theirs for ours, theirs in _DEFAULT_SPLITS.items() if not available or theirs in available}
    if available:
      splits = {ours: theirs for ours, theirs in splits.items() if theirs in available}
    else:  # no split metadata (e.g. under tfds.testing.mock_data): assume train and test
      splits = {"train": "train", "test": "test"}
  sources, examples_by_split = [], {}
  offset = 0
  for ours, theirs in splits.items():
    source = tfds.data_source(dataset, split=theirs, data_dir=data_dir, download=download)
    examples = []
    for index in range(len(source)):
      label = int(source[index][label_key])
      examples.append(Example(offset + index, label, raw[label]))
    examples_by_split[ours] = examples
    sources.append(source)
    offset += len(source)
  base = dataset.split("/")[0].split(":")[0]
  renamed = [EUROSAT_RENAMED.get(n, n) for n in raw] if base == "eurosat" else raw
  return Source(name=f"tfds/{dataset}", classnames=[files.prompt_name(n) for n in renamed],
                templates=templates or _templates_for(dataset), splits=examples_by_split,
                reader=_TfdsReader(dataset, sources, image_key), raw_classnames=raw,
                notes=f"TFDS splits {splits} differ from the CoOp split_zhou_*.json splits: not comparable to papers")
