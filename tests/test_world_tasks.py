"""The world's downstream tasks are well-formed, procedural sources."""

import dataclasses

import numpy as np
import pytest

from jaxprompt.data.registry import build_source, known_sources
from jaxprompt.data.types import Source
from jaxprompt.world import generator, tasks

WORLD_TASKS = ["world_shapes", "world_misaligned", "world_colours"] + [f"world_styles/{s}" for s in generator.STYLES]


def test_all_world_tasks_are_registered():
  assert set(WORLD_TASKS) <= set(known_sources())


@pytest.mark.parametrize("name", WORLD_TASKS)
def test_source_is_well_formed(name):
  source = build_source(name, train_per_class=4, val_per_class=2, test_per_class=3)
  assert isinstance(source, Source) and source.name == name
  assert source.num_classes == 8 and len(set(source.classnames)) == 8
  assert source.templates[0] == "a photo of a {}."
  assert all(t.count("{}") == 1 for t in source.templates)
  assert {k: len(v) for k, v in source.splits.items()} == {"train": 32, "val": 16, "test": 24}
  keys = [e.key for split in source.splits.values() for e in split]
  assert len(set(keys)) == len(keys) and all(isinstance(k, int) for k in keys)
  for split in source.splits.values():
    assert sorted({e.label for e in split}) == list(range(8))
    assert all(e.classname == source.classnames[e.label] for e in split)
    assert all(e.domain in generator.STYLES for e in split)
  example = source.splits["test"][5]
  image = source.reader(example)
  assert image.shape == (32, 32, 3) and image.dtype == np.uint8
  np.testing.assert_array_equal(image, build_source(name, test_per_class=3).reader(example))  # f(task, key)
  assert not np.array_equal(image, source.reader(source.splits["test"][6]))


def test_images_depend_on_seed_and_task():
  shapes0, shapes1 = build_source("world_shapes", seed=0), build_source("world_shapes", seed=1)
  example = shapes0.splits["train"][0]
  assert not np.array_equal(shapes0.reader(example), shapes1.reader(example))
  photo = build_source("world_styles/photo")
  assert not np.array_equal(photo.reader(example), shapes0.reader(example))


def test_styles_option_and_style_tasks_fix_the_domain():
  source = build_source("world_shapes", styles="photo,sketch")
  assert {e.domain for e in source.splits["train"]} == {"photo", "sketch"}
  assert {e.domain for e in build_source("world_styles/painting").splits["test"]} == {"painting"}
  with pytest.raises(ValueError, match="unknown styles"):
    build_source("world_shapes", styles=("photo", "oil"))


def test_misaligned_names_and_shared_class_order():
  shapes = build_source("world_shapes")
  misaligned = build_source("world_misaligned")
  swapped = build_source("world_misaligned", names="swapped")
  assert misaligned.classnames == ["disc", "wug", "wedge", "toma", "plus", "zorp", "rhombus", "kiki"]
  assert not set(misaligned.classnames) & set(shapes.classnames)
  assert swapped.classnames == shapes.classnames[1:] + shapes.classnames[:1]
  with pytest.raises(ValueError, match="names"):
    build_source("world_misaligned", names="random")


def test_root_is_refused_with_a_clear_message():
  with pytest.raises(ValueError, match="procedural"):
    build_source("world_shapes", root="/data")


@pytest.mark.parametrize("name", ["world_shapes", "world_colours"])
def test_image_is_a_function_of_the_key_alone(name):
  """The key's within-split index fixes the class (index % 8) and the style; the example's own label and domain,
  which class subsets renumber, do not change the pixels."""
  source = build_source(name, styles="photo,sketch", train_per_class=2, val_per_class=1, test_per_class=2)
  for split, examples in source.splits.items():
    for example in examples:
      index = tasks.split_index(name, example.key)
      assert example.key == tasks.SPLIT_OFFSETS[split] + index
      assert (example.label, example.domain) == (index % 8, ("photo", "sketch")[(index // 8) % 2])
  example = source.splits["test"][9]
  other = dataclasses.replace(example, label=(example.label + 3) % 8, domain="cartoon")
  np.testing.assert_array_equal(source.reader(other), source.reader(example))
