"""CLIP transforms and the grain train/eval pipelines: shapes, determinism, resumption, padding, corrupt images."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from jaxprompt.data import files, pipeline, transforms
from jaxprompt.data.types import CorruptImageError, Example

SIZE = 8


def pixels_of(index):
  """A distinct tiny image per example index (H, W vary so crops/resizes are exercised)."""
  rng = np.random.default_rng(index)
  return rng.integers(0, 256, (10 + index % 3, 12, 3), dtype=np.uint8)


def memory_reader(example):
  if str(example.key).startswith("bad"):
    raise CorruptImageError(f"cannot decode {example.key}")
  return pixels_of(int(str(example.key).split("_")[-1]))


def run_log():
  """What a run passes every loader: its own corrupt-image log and the source's name."""
  return {"corrupt_log": pipeline.CorruptImageLog(), "source_name": "toy"}


def make_examples(n, num_classes=5):
  return [Example(f"img_{i}", i % num_classes) for i in range(n)]


# -- transforms ---------------------------------------------------------------------------------------------------

def test_test_transform_shape_and_normalisation():
  image = np.full((20, 30, 3), 255, np.uint8)
  out = transforms.test_transform(image, 12)
  assert out.shape == (12, 12, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, np.broadcast_to((1 - transforms.CLIP_MEAN) / transforms.CLIP_STD, out.shape),
                             rtol=1e-5)
  assert transforms.resize_shorter_side(20, 30, 12) == (12, 18)
  assert transforms.resize_shorter_side(31, 20, 10) == (15, 10)


def test_test_transform_center_crops():
  image = np.zeros((8, 16, 3), np.uint8)
  image[:, 4:12] = 255  # the central 8 columns are white
  out = transforms.test_transform(image, 8)
  white = (1 - transforms.CLIP_MEAN) / transforms.CLIP_STD
  np.testing.assert_allclose(out[:, 1:7], np.broadcast_to(white, (8, 6, 3)), atol=1e-2)


def test_train_transform_deterministic_and_varied():
  image = pixels_of(3)
  a = transforms.train_transform(image, SIZE, transforms.augment_rng(0, 1, 3))
  b = transforms.train_transform(image, SIZE, transforms.augment_rng(0, 1, 3))
  c = transforms.train_transform(image, SIZE, transforms.augment_rng(0, 2, 3))
  assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  constant = transforms.train_transform(np.zeros((9, 7, 3), np.uint8), 5, np.random.default_rng(0))
  np.testing.assert_allclose(constant, np.broadcast_to(-transforms.CLIP_MEAN / transforms.CLIP_STD, (5, 5, 3)),
                             rtol=1e-5)


def test_random_resized_crop_box_bounds_and_fallback():
  rng = np.random.default_rng(0)
  for _ in range(200):
    top, left, h, w = transforms.random_resized_crop_box(30, 50, rng)
    assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50
    assert 0.08 * 1500 * 0.7 <= h * w <= 1500
  # a 1x100 strip never fits the ratio: after 10 tries the center crop with the ratio clamped to 4/3 is used
  assert transforms.random_resized_crop_box(1, 100, np.random.default_rng(0)) == (0, 49, 1, 1)
  assert transforms.random_resized_crop_box(3, 3, np.random.default_rng(1), scale=(2.0, 2.0)) == (0, 0, 3, 3)


# -- train loader -------------------------------------------------------------------------------------------------

def test_steps_per_epoch():
  assert pipeline.steps_per_epoch(100, 32) == 3
  assert pipeline.steps_per_epoch(64, 32) == 2
  assert pipeline.steps_per_epoch(10, 32) == 1
  with pytest.raises(ValueError, match="0 examples"):
    pipeline.steps_per_epoch(0, 32)


def test_train_batches_shuffle_without_replacement_per_epoch():
  examples = make_examples(10)
  loader = pipeline.train_loader(examples, memory_reader, SIZE, 4, seed=0, worker_threads=2, **run_log())
  assert loader.steps_per_epoch == 2
  batches = [next(loader) for _ in range(4)]
  for batch in batches:
    assert batch["images"].shape == (4, SIZE, SIZE, 3) and batch["images"].dtype == np.float32
    assert batch["labels"].shape == (4,) and batch["labels"].dtype == np.int32
  order0, order1 = loader.epoch_order(0), loader.epoch_order(1)
  assert sorted(order0) == list(range(10)) and not np.array_equal(order0, order1)
  assert batches[0]["labels"].tolist() == [examples[i].label for i in order0[:4]]
  assert batches[2]["labels"].tolist() == [examples[i].label for i in order1[:4]]  # 2 dropped: epoch 1 starts
  expected = transforms.train_transform(pixels_of(int(order1[5])), SIZE, transforms.augment_rng(0, 1, int(order1[5])))
  np.testing.assert_array_equal(batches[3]["images"][1], expected)


def test_fewer_examples_than_batch_gives_one_batch_of_all():
  loader = pipeline.train_loader(make_examples(3), memory_reader, SIZE, 32, seed=1, worker_threads=1, **run_log())
  first, second = next(loader), next(loader)
  assert first["labels"].shape == (3,) and sorted(first["labels"].tolist()) == [0, 1, 2]
  assert sorted(second["labels"].tolist()) == [0, 1, 2]


def test_resumed_iterator_yields_the_same_next_batch(tmp_path):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  examples = make_examples(13)
  loader = pipeline.train_loader(examples, memory_reader, SIZE, 4, seed=5, worker_threads=2, **run_log())
  for _ in range(4):  # into the second epoch
    next(loader)
  state = loader.get_state()
  assert state["next_step"] == 4
  expected = [next(loader) for _ in range(2)]

  checkpointer = ocp.Checkpointer(ocp.JsonCheckpointHandler())
  checkpointer.save(str(tmp_path / "it"), args=ocp.args.JsonSave(state))
  restored_state = checkpointer.restore(str(tmp_path / "it"), args=ocp.args.JsonRestore())
  resumed = pipeline.train_loader(examples, memory_reader, SIZE, 4, seed=5, worker_threads=2, **run_log())
  resumed.set_state(restored_state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["images"], want["images"])
    np.testing.assert_array_equal(got["labels"], want["labels"])
  other = pipeline.train_loader(examples, memory_reader, SIZE, 8, seed=5, worker_threads=1, **run_log())
  with pytest.raises(ValueError, match="global_batch_size=4"):
    other.set_state(state)


def test_multi_host_rows_partition_the_global_batch():
  examples = make_examples(12)
  whole = pipeline.train_loader(examples, memory_reader, SIZE, 6, seed=2, worker_threads=1, **run_log())
  hosts = [pipeline.train_loader(examples, memory_reader, SIZE, 6, seed=2, process_index=p, process_count=2,
                                 worker_threads=1, **run_log()) for p in range(2)]
  for _ in range(3):
    full = next(whole)
    parts = [next(h) for h in hosts]
    assert parts[0]["images"].shape[0] == 3
    np.testing.assert_array_equal(np.concatenate([p["images"] for p in parts]), full["images"])
  with pytest.raises(ValueError, match="not divisible by process_count=4"):
    pipeline.train_loader(examples, memory_reader, SIZE, 6, seed=2, process_count=4, **run_log())


def test_corrupt_train_image_is_substituted_and_counted(caplog):
  log = pipeline.CorruptImageLog()
  examples = make_examples(6, num_classes=3)  # class 2 keeps a readable image (example 5)
  examples[2] = Example("bad_2", 2)
  loader = pipeline.TrainLoader(examples, memory_reader, SIZE, 3, seed=0, worker_threads=1, corrupt_log=log,
                                source_name="toy")
  with caplog.at_level(logging.WARNING):
    batches = [next(loader) for _ in range(4)]  # two epochs: the bad image is met twice, logged once
  assert all(b["images"].shape == (3, SIZE, SIZE, 3) for b in batches)
  assert len(log) == 1 and log.has("toy", "bad_2") and log.entries()[0].startswith("bad_2 (source toy): ")
  assert len([r for r in caplog.records if "bad_2" in r.getMessage()]) == 1
  order = loader.epoch_order(0)
  position = int(np.where(order == 2)[0][0])
  substitute = int(order[(position + 1) % 6])
  assert batches[position // 3]["labels"][position % 3] == examples[substitute].label


# -- eval batches -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_padding_counts_each_example_once(process_count):
  examples = make_examples(11)
  seen = []
  num_batches = set()
  for p in range(process_count):
    batches = list(pipeline.eval_batches(examples, memory_reader, SIZE, 4, process_index=p,
                                         process_count=process_count, worker_threads=2, **run_log()))
    num_batches.add(len(batches))
    for b, batch in enumerate(batches):
      assert batch["images"].shape == (4 // process_count, SIZE, SIZE, 3)
      assert batch["mask"].dtype == bool
      for row in np.flatnonzero(batch["mask"]):
        seen.append(b * 4 + p * (4 // process_count) + row)
        assert batch["labels"][row] == examples[seen[-1]].label
      assert not batch["images"][~batch["mask"]].any()
  assert num_batches == {3}
  assert sorted(seen) == list(range(11))
  one = next(iter(pipeline.eval_batches(examples, memory_reader, SIZE, 4, **run_log())))
  np.testing.assert_array_equal(one["images"][1], transforms.test_transform(pixels_of(1), SIZE))


def test_corrupt_eval_image_file_is_masked_and_counted(tmp_path, caplog):
  examples = []
  for i in range(3):
    path = tmp_path / f"{i}.png"
    Image.fromarray(pixels_of(i)).save(path)
    examples.append(Example(str(path), i))
  (tmp_path / "1.png").write_bytes(b"\x89PNG broken")
  log = pipeline.CorruptImageLog()
  with caplog.at_level(logging.WARNING):
    batches = list(pipeline.eval_batches(examples, files.read_example_file, SIZE, 4, worker_threads=1,
                                         corrupt_log=log, source_name="mine"))
  assert len(batches) == 1 and batches[0]["mask"].tolist() == [True, False, True, False]
  [entry] = log.entries()
  assert entry.startswith(f"{os.path.join(tmp_path, '1.png')} (source mine): cannot decode image")
  assert any("1.png" in r.getMessage() for r in caplog.records)
