"""The data layer matches the reference and never lies quietly: crop pixels, high-bit-depth images, bad split labels,
the reference's few-shot caches and self-made splits, Dassl's folder layouts, and each run's corrupt-image log."""

import json
import os
import pickle
import random
import sys
import types

import numpy as np
import pytest
from PIL import Image

from jaxprompt.data import fewshot, files, pipeline, registry, transforms
from jaxprompt.data.tfds_source import _TfdsReader
from jaxprompt.data.types import CorruptImageError, Example
from tests.conftest import make_coop, write_image, write_json

# -- 1. train crop: cut out, then resize (torchvision's resized_crop on PIL images) --------------------------------

def reference_train_transform(image, size, seed):
  """torchvision's RandomResizedCrop on a PIL image: img.crop(box).resize(size, BICUBIC), then the flip."""
  rng = np.random.default_rng(seed)
  top, left, h, w = transforms.random_resized_crop_box(*image.shape[:2], rng)
  out = np.asarray(Image.fromarray(image).crop((left, top, left + w, top + h)).resize((size, size),
                                                                                       Image.Resampling.BICUBIC))
  if rng.random() < 0.5:
    out = out[:, ::-1]
  return transforms.normalize(out), (top, left, h, w)


def test_train_crop_equals_crop_then_resize():
  boxed_differs = 0
  for trial in range(40):
    shape_rng = np.random.default_rng(100 + trial)
    height, width, size = int(shape_rng.integers(9, 60)), int(shape_rng.integers(9, 60)), int(shape_rng.integers(4, 33))
    image = shape_rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    got = transforms.train_transform(image, size, np.random.default_rng(trial))
    want, (top, left, h, w) = reference_train_transform(image, size, trial)
    np.testing.assert_array_equal(got, want)
    boxed = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC,
                                                     box=(left, top, left + w, top + h)))
    boxed_differs += not (np.array_equal(boxed, np.asarray(want_uint8(want))) or
                          np.array_equal(boxed[:, ::-1], np.asarray(want_uint8(want))))
  assert boxed_differs > 20  # resizing with box= (the old way) would fail this test


def want_uint8(normalised):
  return np.round((normalised * transforms.CLIP_STD + transforms.CLIP_MEAN) * 255).astype(np.uint8)


# -- 2. high-bit-depth images are scaled, never clipped to blank -------------------------------------------------

def save_and_read(tmp_path, name, array):
  path = str(tmp_path / name)
  Image.fromarray(array).save(path)
  return path, files.read_image_file(path)


@pytest.mark.parametrize("name", ["grey16.png", "grey16.tif"])
def test_16_bit_images_are_scaled(tmp_path, name):
  values = np.array([[0, 257, 1000, 32768, 65535]], np.uint16)
  path, pixels = save_and_read(tmp_path, name, values)
  assert Image.open(path).mode in ("I;16", "I")
  assert pixels.shape == (1, 5, 3) and pixels.dtype == np.uint8
  for channel in range(3):
    assert pixels[0, :, channel].tolist() == [0, 1, 4, 128, 255]  # round(v * 255 / 65535)


def test_32_bit_integer_images(tmp_path):
  path, pixels = save_and_read(tmp_path, "eight.tif", np.array([[0, 7, 128, 255]], np.int32))
  assert Image.open(path).mode == "I"
  assert pixels[0, :, 1].tolist() == [0, 7, 128, 255]  # values within 0..255 are 8-bit values
  _, pixels = save_and_read(tmp_path, "sixteen.tif", np.array([[0, 256, 65535]], np.int32))
  assert pixels[0, :, 2].tolist() == [0, 1, 255]  # within 0..65535: 16-bit values
  for name, values in (("wide.tif", [[0, 70000]]), ("negative.tif", [[-5, 10]])):
    path = str(tmp_path / name)
    Image.fromarray(np.array(values, np.int32)).save(path)
    with pytest.raises(CorruptImageError, match=f"{name}.*range over"):
      files.read_image_file(path)


def test_float_images(tmp_path):
  path, pixels = save_and_read(tmp_path, "unit.tif", np.array([[0.0, 0.25, 0.5, 1.0]], np.float32))
  assert Image.open(path).mode == "F"
  assert pixels[0, :, 0].tolist() == [0, 64, 128, 255]  # [0, 1] -> round(v * 255)
  _, pixels = save_and_read(tmp_path, "bytes.tif", np.array([[0.0, 3.0, 200.4, 255.0]], np.float32))
  assert pixels[0, :, 0].tolist() == [0, 3, 200, 255]  # [0, 255] with values above 1: 8-bit values as floats
  for name, values in (("big.tif", [[0.0, 300.0]]), ("minus.tif", [[-0.5, 0.5]]), ("nan.tif", [[np.nan, 0.5]])):
    path = str(tmp_path / name)
    Image.fromarray(np.array(values, np.float32)).save(path)
    with pytest.raises(CorruptImageError, match=name):
      files.read_image_file(path)


def test_tfds_reader_scales_wide_images():
  records = [{"image": np.full((2, 2, 1), 65535, np.uint16)}, {"image": np.full((2, 2, 3), 0.5, np.float32)},
             {"image": np.full((2, 2, 3), 9.0, np.float64) * 100}]
  reader = _TfdsReader("toy", [records], "image")
  assert reader(Example(0, 0)).tolist() == np.full((2, 2, 3), 255, np.uint8).tolist()
  assert (reader(Example(1, 0)) == 128).all()
  with pytest.raises(CorruptImageError, match="TFDS toy record 2"):
    reader(Example(2, 0))


# -- 3. bad split labels are errors, never classes ----------------------------------------------------------------

@pytest.mark.parametrize("bad_label", [17, -1])
def test_out_of_range_split_label_names_file_and_entry(tmp_path, bad_label):
  for name, folder, subdir, split_name in (("dtd", "dtd", "images", "split_zhou_DescribableTextures.json"),
                                           ("caltech101", "caltech-101", "101_ObjectCategories",
                                            "split_zhou_Caltech101.json")):
    split = make_coop(tmp_path, folder, subdir, split_name, [f"c{i}" for i in range(10)], per_split=(2, 1, 1))
    split["train"][3][1] = bad_label  # the entry keeps a real class name: caltech used to make it a phantom class
    write_json(str(tmp_path / folder / split_name), split)
    with pytest.raises(ValueError, match=rf"{split_name}: train\[3\] .* label {bad_label}, outside 0\.\.9"):
      registry.build_source(name, root=str(tmp_path))


def test_label_with_two_class_names(tmp_path):
  split = make_coop(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json", ["banded", "blotchy", "braided"])
  split["test"][1][2] = "bumpy"  # label 0 is "banded" elsewhere; with a 4th name, label 0 now has two names
  split["val"].append(["braided/braided_0.jpg", 3, "braided"])
  write_json(str(tmp_path / "dtd" / "split_zhou_DescribableTextures.json"), split)
  with pytest.raises(ValueError, match=r"label 0 has two class names: train\[0\] says 'banded', test\[1\]"):
    registry.build_source("dtd", root=str(tmp_path))


# -- 4. the reference's few-shot caches and its own splits ----------------------------------------------------------

@pytest.fixture
def fake_dassl(monkeypatch):
  """A stand-in `dassl.data.datasets.base_dataset.Datum` (same attributes as Dassl's) to pickle as the reference."""
  class Datum:
    def __init__(self, impath="", label=0, domain=0, classname=""):
      self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

  module = types.ModuleType("dassl.data.datasets.base_dataset")
  Datum.__module__, Datum.__qualname__ = module.__name__, "Datum"
  module.Datum = Datum
  for name in ("dassl", "dassl.data", "dassl.data.datasets"):
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
  monkeypatch.setitem(sys.modules, module.__name__, module)
  return Datum


def drop_fake_dassl():
  for name in ("dassl.data.datasets.base_dataset", "dassl.data.datasets", "dassl.data", "dassl"):
    sys.modules.pop(name, None)


@pytest.mark.parametrize("protocol", [pickle.HIGHEST_PROTOCOL, 0])
def test_reads_the_reference_cache_and_trains_on_it(tmp_path, fake_dassl, protocol):
  make_coop(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json", ["banded", "blotchy"],
            per_split=(4, 2, 1))
  source = registry.build_source("dtd", root=str(tmp_path))
  image_dir = str(tmp_path / "dtd" / "images")
  moved = "/elsewhere/DATA/dtd/images"  # a cache made on another machine: matched by <class folder>/<file>
  train = [fake_dassl(os.path.join(image_dir, "blotchy/blotchy_2.jpg"), 1, 0, "blotchy"),
           fake_dassl(os.path.join(moved, "banded/banded_0.jpg"), 0, 0, "banded")]
  val = [fake_dassl(os.path.join(image_dir, "banded/banded_5.jpg"), 0, 0, "banded")]
  cache = str(tmp_path / "dtd" / "split_fewshot" / "shot_1-seed_1.pkl")
  os.makedirs(os.path.dirname(cache))
  with open(cache, "wb") as f:
    pickle.dump({"train": train, "val": val}, f, protocol=protocol)
  drop_fake_dassl()  # read without Dassl

  got = fewshot.few_shot_source_recorded(source, 1, seed=1, path=str(tmp_path / "split.json"), split_file=cache)
  assert [(os.path.relpath(e.key, image_dir), e.label) for e in got.splits["train"]] == [
      ("blotchy/blotchy_2.jpg", 1), ("banded/banded_0.jpg", 0)]
  assert [os.path.relpath(e.key, image_dir) for e in got.splits["val"]] == ["banded/banded_5.jpg"]
  assert got.splits["test"] == source.splits["test"]
  recorded = json.loads((tmp_path / "split.json").read_text())
  assert recorded["metadata"]["drawn_from"] == cache and len(recorded["train"]) == 2


def test_cache_label_mismatch_and_unknown_image_are_errors(tmp_path, fake_dassl):
  make_coop(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json", ["banded", "blotchy"])
  source = registry.build_source("dtd", root=str(tmp_path))
  image_dir = str(tmp_path / "dtd" / "images")
  for items, message in (([fake_dassl(os.path.join(image_dir, "banded/banded_1.jpg"), 1, 0, "banded")],
                          r"train\[0\] .*banded_1.jpg has label 1, dtd gives .* label 0"),
                         ([fake_dassl("/x/banded/ghost.jpg", 0, 0, "banded")], r"ghost.jpg matches 0 train")):
    cache = str(tmp_path / "cache.pkl")
    with open(cache, "wb") as f:
      pickle.dump({"train": items, "val": []}, f)
    with pytest.raises(ValueError, match=message):
      fewshot.few_shot_source_recorded(source, 1, seed=1, path=str(tmp_path / "s.json"), split_file=cache)


class RunsACommand:
  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return os.system, (self.command,)


def test_cache_holding_os_system_is_refused_unrun(tmp_path):
  witness = tmp_path / "ran"
  cache = str(tmp_path / "evil.pkl")
  with open(cache, "wb") as f:
    pickle.dump({"train": [RunsACommand(f"touch {witness}")]}, f)
  with pytest.raises(pickle.UnpicklingError, match=r"evil.pkl: refusing to load (os|posix)\.system"):
    fewshot.read_reference_fewshot(cache)
  assert not witness.exists()
  with open(cache, "wb") as f:
    pickle.dump({"train": [types.SimpleNamespace(_impath="a")]}, f)
  with pytest.raises(pickle.UnpicklingError, match="types.SimpleNamespace"):
    fewshot.read_reference_fewshot(cache)


def test_written_cache_loads_in_the_reference(tmp_path, fake_dassl):
  splits = {"train": [Example("/data/dtd/images/banded/a.jpg", 0, "banded"),
                      Example("/data/dtd/images/blotchy/b.jpg", 1, "blotchy")],
            "val": [Example("/data/dtd/images/banded/c.jpg", 0, "banded")]}
  path = str(tmp_path / "split_fewshot" / "shot_1-seed_2.pkl")
  fewshot.write_reference_fewshot(path, splits)
  with open(path, "rb") as f:
    loaded = pickle.load(f)  # the reference's plain pickle.load, resolving Dassl's Datum
  assert set(loaded) == {"train", "val"} and all(type(d) is fake_dassl for d in loaded["train"] + loaded["val"])
  assert [(d._impath, d._label, d._domain, d._classname) for d in loaded["train"]] == [
      ("/data/dtd/images/banded/a.jpg", 0, 0, "banded"), ("/data/dtd/images/blotchy/b.jpg", 1, 0, "blotchy")]
  back = fewshot.read_reference_fewshot(path)
  assert [(d.impath, d.label, d.classname) for d in back["val"]] == [("/data/dtd/images/banded/c.jpg", 0, "banded")]


def test_imagenet_listdir_order_is_the_reference_order(tmp_path):
  wnids = ["n01", "n02"]
  (tmp_path / "imagenet").mkdir()
  (tmp_path / "imagenet" / "classnames.txt").write_text("n01 tench\nn02 goldfish\n")
  names = [f"{name}.JPEG" for name in ("q", "b", "zz", "a", "m", "c", "x", "d")]
  for folder in ("train", "val"):
    for wnid in wnids:
      for name in names:
        write_image(str(tmp_path / "imagenet" / "images" / folder / wnid / name))
  listed = fewshot.few_shot_source(registry.build_source("imagenet", root=str(tmp_path), file_order="listdir"), 2, 1)
  order = {w: os.listdir(tmp_path / "imagenet" / "images" / "train" / w) for w in wnids}
  rng = random.Random(1)  # the reference: os.listdir order per class folder, random.sample per label
  expected = [name for w in wnids for name in rng.sample(order[w], 2)]
  assert [os.path.basename(e.key) for e in listed.splits["train"]] == expected
  by_default = registry.build_source("imagenet", root=str(tmp_path))
  assert [os.path.basename(e.key) for e in by_default.splits["train"][:8]] == sorted(names)


def test_missing_split_file_made_by_the_reference_rule(tmp_path):
  classes = ["Faces", "BACKGROUND_Google", "airplanes", "Faces_easy", "car_side"]
  for c in classes:
    for i in range(10):
      write_image(str(tmp_path / "caltech-101" / "101_ObjectCategories" / c / f"image_{i:04d}.jpg"))
  source = registry.build_source("caltech101", root=str(tmp_path), split_seed=3)
  split_path = tmp_path / "caltech-101" / "split_zhou_Caltech101.json"
  written = json.loads(split_path.read_text())
  rng = random.Random(3)  # the reference's read_and_split_data: sorted kept folders, shuffle, 50% / 20% / rest
  expected = {"train": [], "val": [], "test": []}
  for label, (folder, name) in enumerate([("Faces", "face"), ("airplanes", "airplane"), ("car_side", "car_side")]):
    images = [f"{folder}/image_{i:04d}.jpg" for i in range(10)]
    rng.shuffle(images)
    for split, part in (("train", images[:5]), ("val", images[5:7]), ("test", images[7:])):
      expected[split] += [[path, label, name] for path in part]
  assert written == expected
  assert source.classnames == ["face", "airplane", "car side"]
  assert {k: len(v) for k, v in source.splits.items()} == {"train": 15, "val": 6, "test": 9}
  again = registry.build_source("caltech101", root=str(tmp_path), split_seed=99)  # the saved file is reused
  assert again.splits == source.splits


# -- 5. Dassl's folder layouts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("nested", [True, False])
def test_office_home_in_dassl_layout(tmp_path, nested):
  base = tmp_path / "office_home" if nested else tmp_path
  for domain in ("art", "real_world"):
    for c, cls in enumerate(["Alarm_Clock", "Bike"]):
      for i in range(5):
        write_image(str(base / domain / cls / f"{i:05d}.jpg"), c)
  source = registry.build_source("office_home", root=str(tmp_path), domain="Real World", seed=2)
  assert source.name == "office_home/Real World" and source.classnames == ["Alarm Clock", "Bike"]
  assert len(source.splits["train"]) == 8 and len(source.splits["test"]) == 2
  assert all(e.key.startswith(str(base / "real_world")) and os.path.isfile(e.key) for e in source.splits["train"])
  saved = json.loads((base / "split_office_home_Real_World_train80_seed2.json").read_text())
  assert saved["train"][0][0].startswith("real_world/")
  assert registry.build_source("office_home", root=str(base), domain="art").splits["train"][0].domain == "Art"
  with pytest.raises(FileNotFoundError, match="Office-Home domain folder not found.*clipart"):
    registry.build_source("office_home", root=str(tmp_path), domain="Clipart")


def test_mini_domainnet_in_dassl_layout(tmp_path):
  dataset = tmp_path / "domainnet"  # DATASET.ROOT/domainnet/splits_mini/<domain>_<split>.txt
  for split in ("train", "test"):
    lines = []
    for label, cls in enumerate(["bee", "zebra"]):
      rel = f"sketch/{cls}/sketch_{split}.jpg"
      write_image(str(dataset / rel))
      lines.append(f"{rel} {label}")
    (dataset / "splits_mini").mkdir(exist_ok=True)
    (dataset / "splits_mini" / f"sketch_{split}.txt").write_text("\n".join(lines) + "\n")
  for root in (tmp_path, dataset):
    source = registry.build_source("mini_domainnet", root=str(root), domain="sketch")
    assert source.classnames == ["bee", "zebra"] and len(source.splits["train"]) == 2
    assert source.splits["test"][1].key == str(dataset / "sketch" / "zebra" / "sketch_test.jpg")


# -- 6. each run owns its corrupt-image log, keyed by (source, key) -----------------------------------------------

def index_reader(bad=()):
  def read(example):
    if example.key in bad:
      raise CorruptImageError(f"record {example.key} is broken")
    return np.full((6, 6, 3), example.key * 10, np.uint8)
  return read


def test_corrupt_image_of_one_source_does_not_mask_another():
  log = pipeline.CorruptImageLog()
  examples = [Example(i, i % 2) for i in range(8)]
  a = list(pipeline.eval_batches(examples, index_reader(bad={5}), 4, 8, corrupt_log=log, source_name="A",
                                 worker_threads=1))
  b = list(pipeline.eval_batches(examples, index_reader(), 4, 8, corrupt_log=log, source_name="B", worker_threads=1))
  assert a[0]["mask"].tolist() == [True] * 5 + [False] + [True] * 2
  assert b[0]["mask"].all()
  assert log.entries() == ["A example 5: record 5 is broken"]
  assert len(pipeline.CorruptImageLog()) == 0  # a new run starts with an empty log


def test_class_with_only_corrupt_training_images_stops_the_run():
  log = pipeline.CorruptImageLog()
  examples = [Example(i, i % 3, f"class{i % 3}") for i in range(9)]
  with pytest.raises(ValueError, match=r"world/toy: class 1 \('class1'\) has no readable training image: all 3"):
    pipeline.train_loader(examples, index_reader(bad={1, 4, 7}), 4, 3, seed=0, corrupt_log=log,
                          source_name="world/toy", worker_threads=1)
  assert sorted(log.entries()) == [f"world/toy example {k}: record {k} is broken" for k in (1, 4, 7)]
  # one corrupt image of a class is not enough to stop it: its slot takes the next readable example
  loader = pipeline.train_loader(examples, index_reader(bad={1, 4}), 4, 3, seed=0, corrupt_log=log,
                                 source_name="world/toy2", worker_threads=1)
  assert next(loader)["images"].shape == (3, 4, 4, 3)


def test_loaders_require_a_log_and_a_source_name():
  with pytest.raises(TypeError, match="corrupt_log"):
    pipeline.eval_batches([Example(0, 0)], index_reader(), 4, 1, source_name="A")
  with pytest.raises(TypeError, match="source_name"):
    pipeline.train_loader([Example(0, 0)], index_reader(), 4, 1, 0, corrupt_log=pipeline.CorruptImageLog())
  assert not hasattr(pipeline, "CORRUPT_IMAGES") and not hasattr(pipeline, "corrupt_images")
