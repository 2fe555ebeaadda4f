"""Downstream tasks of the shapes world, registered as data sources (`build_source("world_shapes")`).

Every task is procedural: an example's `key` is an int index, unique across the task's splits (train keys count from
0, val from 1,000,000, test from 2,000,000), and its image is rendered on demand from (task, seed, key) alone:
image = f(task, seed, split, index). What the image shows is fixed by the key too: the within-split index i gives the
class attribute (class i % C of the task's full class list) and the style (domains cycled every C examples). The
reader never looks at `example.label` or `example.domain`, so a class subset that relabels its examples (base/novel's
novel half 4..7 -> 0..3, a continual chunk) still draws the same picture for the same key. Nothing is stored on disk.

  world_shapes            8-way shape classification, styles mixed (few-shot, base-to-novel by halving the classes)
  world_styles/<style>    the same 8 shapes in one style: photo, sketch, painting, cartoon (the Office-Home analogue
                          for MmAP multi-task; train on one style, test on the others for domain generalisation)
  world_misaligned        the same shapes named by words pretraining rarely or never used for them (LAMM)
  world_colours           8-way colour classification, shapes and styles mixed
"""

from __future__ import annotations

import zlib

import numpy as np

from jaxprompt.data.registry import register
from jaxprompt.data.types import Example, Source
from jaxprompt.world import captions, generator

_SPLIT_STRIDE = 1_000_000
SPLIT_OFFSETS = {"train": 0, "val": _SPLIT_STRIDE, "test": 2 * _SPLIT_STRIDE}
DEFAULT_SIZES = dict(train_per_class=64, val_per_class=16, test_per_class=32)

MISALIGNED_NAMES = {
    # "mixed": half the shapes get a rare synonym (seen in ~2 % of their pretraining captions), half a nonsense word
    # that pretraining never used; "synonyms" / "nonsense": all of one kind; "swapped": each shape is called by the
    # next shape's name, so zero-shot is systematically wrong.
    "mixed": {s: (captions.RARE_SYNONYMS[s] if i % 2 == 0 else captions.NONSENSE_NAMES[s])
              for i, s in enumerate(generator.SHAPES)},
    "synonyms": dict(captions.RARE_SYNONYMS),
    "nonsense": dict(captions.NONSENSE_NAMES),
    "swapped": {s: generator.SHAPES[(i + 1) % len(generator.SHAPES)] for i, s in enumerate(generator.SHAPES)},
}


def _class_and_domain(index: int, num_classes: int, domains):
  """What example `index` of a split shows: (label in the full class list, domain); classes interleaved, domains
  cycled so each class sees each domain."""
  return index % num_classes, domains[(index // num_classes) % len(domains)]


def _examples(split: str, per_class: int, classnames, domains) -> list[Example]:
  """`per_class` examples of every class, laid out by `_class_and_domain`."""
  examples = []
  for i in range(per_class * len(classnames)):
    label, domain = _class_and_domain(i, len(classnames), domains)
    examples.append(Example(key=SPLIT_OFFSETS[split] + i, label=label, classname=classnames[label], domain=domain))
  return examples


def split_index(name: str, key) -> int:
  """The within-split index of a world key (key = SPLIT_OFFSETS[split] + index); a one-line error for other keys."""
  if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) or not (
      0 <= key < _SPLIT_STRIDE * len(SPLIT_OFFSETS)):
    raise ValueError(f"{name}: example key {key!r} is not a world key (an int in [0, "
                     f"{_SPLIT_STRIDE * len(SPLIT_OFFSETS)}): split offset {sorted(SPLIT_OFFSETS.values())} + index)")
  return int(key) % _SPLIT_STRIDE


def _source(name, classnames, templates, domains, attribute_of_label, seed, image_size, train_per_class,
            val_per_class, test_per_class, root=None) -> Source:
  """Builds a procedural source; `attribute_of_label` maps a full-source label to fixed attributes (e.g.
  {"shape": "star"}).

  `domains` is a sequence of style names or a comma-separated string; `root` is accepted for a uniform call
  signature with file-backed sources and must be None (the world has no files).
  """
  if root is not None:
    raise ValueError(f"{name} is procedural and reads no files; got root={root!r} (leave it unset)")
  if isinstance(domains, str):
    domains = tuple(d.strip() for d in domains.split(",") if d.strip())
  domains = tuple(domains)
  if not domains:
    raise ValueError(f"{name}: no styles given; known styles: {generator.STYLES}")
  for count, split in ((train_per_class, "train"), (val_per_class, "val"), (test_per_class, "test")):
    if not 0 <= count < _SPLIT_STRIDE:
      raise ValueError(f"{name}: {split}_per_class must be in [0, 1e6), got {count}")
  unknown = [d for d in domains if d not in generator.STYLES]
  if unknown:
    raise ValueError(f"{name}: unknown styles {unknown}; known styles: {generator.STYLES}")
  task_code = zlib.crc32(name.encode())
  num_classes = len(classnames)

  def reader(example: Example):
    """uint8 (image_size, image_size, 3), a pure function of (task, seed, key): the class drawn and the style come
    from the key (`_class_and_domain`), never from the example's label, which a class subset may have renumbered."""
    label, domain = _class_and_domain(split_index(name, example.key), num_classes, domains)
    rng = generator.rng_for(seed, task_code, int(example.key))
    attributes = generator.sample_attributes(rng, style=domain, **attribute_of_label(label))
    return generator.draw(attributes, rng, image_size)

  splits = {split: _examples(split, count, list(classnames), domains)
            for count, split in ((train_per_class, "train"), (val_per_class, "val"), (test_per_class, "test"))
            if count > 0}
  return Source(name=name, classnames=list(classnames), templates=list(templates), splits=splits, reader=reader)


@register("world_shapes")
def build_shapes(seed: int = 0, styles=generator.STYLES, image_size: int = generator.IMAGE_SIZE,
                 **sizes) -> Source:
  """8 shapes, styles mixed (or those in `styles`). Classes: circle, square, triangle, star, cross, ring, diamond,
  heart (base half = the first four)."""
  shapes = list(generator.SHAPES)
  return _source("world_shapes", shapes, captions.ensemble_templates(), styles,
                 lambda label: {"shape": shapes[label]}, seed, image_size, **{**DEFAULT_SIZES, **sizes})


def _register_style(style: str):
  @register(f"world_styles/{style}")
  def build_style(seed: int = 0, image_size: int = generator.IMAGE_SIZE, **sizes) -> Source:
    shapes = list(generator.SHAPES)
    return _source(f"world_styles/{style}", shapes, captions.style_templates(style), (style,),
                   lambda label: {"shape": shapes[label]}, seed, image_size, **{**DEFAULT_SIZES, **sizes})

  build_style.__doc__ = f"The 8 shapes drawn as {style}s only (one domain of the multi-domain world)."
  return build_style


STYLE_BUILDERS = {style: _register_style(style) for style in generator.STYLES}


@register("world_misaligned")
def build_misaligned(seed: int = 0, names: str = "mixed", styles=generator.STYLES,
                     image_size: int = generator.IMAGE_SIZE, **sizes) -> Source:
  """The 8 shapes, named by `MISALIGNED_NAMES[names]` (label misalignment: zero-shot is poor, learnable label
  embeddings can fix it). Default ("mixed"): disc, wug, wedge, toma, plus, zorp, rhombus, kiki."""
  if names not in MISALIGNED_NAMES:
    raise ValueError(f"world_misaligned: names={names!r}; choose one of {sorted(MISALIGNED_NAMES)}")
  shapes = list(generator.SHAPES)
  classnames = [MISALIGNED_NAMES[names][s] for s in shapes]
  templates = [captions.SINGLE_TEMPLATE] + [f"a {s} of a {{}}." for s in generator.STYLES if s != "photo"]
  return _source("world_misaligned", classnames, templates, styles,
                 lambda label: {"shape": shapes[label]}, seed, image_size, **{**DEFAULT_SIZES, **sizes})


@register("world_colours")
def build_colours(seed: int = 0, styles=generator.STYLES, image_size: int = generator.IMAGE_SIZE,
                  **sizes) -> Source:
  """8 colours (red, orange, yellow, green, cyan, blue, purple, pink), shapes and styles mixed."""
  colours = list(generator.COLOURS)
  templates = [captions.SINGLE_TEMPLATE] + [f"a {s} of a {{}} {shape}." for s in generator.STYLES
                                            for shape in generator.SHAPES]
  return _source("world_colours", colours, templates, styles, lambda label: {"colour": colours[label]},
                 seed, image_size, **{**DEFAULT_SIZES, **sizes})
