"""Sources read from tiny generated trees in each community layout, and their error messages."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from jaxprompt.data import registry, sources
from jaxprompt.data.types import CorruptImageError


from tests.conftest import make_coop, write_image, write_json  # noqa: E402  (shared generated-data helpers)


def test_dtd_split_file(tmp_path):
  make_coop(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json", ["banded", "blotchy", "braided"])
  source = registry.build_source("dtd", root=str(tmp_path))
  assert source.classnames == ["banded", "blotchy", "braided"]
  assert source.templates[0] == "{} texture."
  assert {k: len(v) for k, v in source.splits.items()} == {"train": 9, "val": 3, "test": 6}
  assert [e.label for e in source.splits["test"]] == [0, 0, 1, 1, 2, 2]
  first = source.splits["train"][0]
  assert first.key == os.path.join(tmp_path, "dtd", "images", "banded", "banded_0.jpg")
  image = source.reader(first)
  assert image.shape == (5, 6, 3) and image.dtype == np.uint8
  # root may also be the dataset folder itself
  assert registry.build_source("dtd", root=str(tmp_path / "dtd")).splits["train"] == source.splits["train"]


def test_oxford_pets_underscores(tmp_path):
  make_coop(tmp_path, "oxford_pets", "images", "split_zhou_OxfordPets.json", ["Abyssinian", "american_bulldog"])
  source = registry.build_source("oxford_pets", root=str(tmp_path))
  assert source.raw_classnames == ["Abyssinian", "american_bulldog"]
  assert source.classnames == ["Abyssinian", "american bulldog"]
  assert source.templates[0] == "a photo of a {}, a type of pet."


def test_caltech_drops_and_renames(tmp_path):
  make_coop(tmp_path, "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
            ["BACKGROUND_Google", "Faces", "Faces_easy", "airplanes", "car_side"], per_split=(2, 1, 1))
  source = registry.build_source("caltech101", root=str(tmp_path))
  assert source.classnames == ["face", "airplane", "car side"]
  assert source.raw_classnames == ["face", "airplane", "car_side"]
  assert sorted({e.label for e in source.splits["train"]}) == [0, 1, 2]
  assert all("Faces_easy" not in e.key and "BACKGROUND" not in e.key for s in source.splits.values() for e in s)
  assert len(source.splits["train"]) == 6


def test_eurosat_descriptive_names(tmp_path):
  make_coop(tmp_path, "eurosat", "2750", "split_zhou_EuroSAT.json", ["AnnualCrop", "SeaLake", "Forest"],
            per_split=(1, 1, 1))
  source = registry.build_source("eurosat", root=str(tmp_path))
  assert source.classnames == ["Annual Crop Land", "Sea or Lake", "Forest"]
  assert source.templates[0] == "a centered satellite photo of {}."


def test_fgvc_aircraft_lists(tmp_path):
  directory = tmp_path / "fgvc_aircraft"
  variants = ["707-320", "A300B4", "F/A-18"]
  (directory / "images").mkdir(parents=True)
  (directory / "variants.txt").write_text("\n".join(variants) + "\n")
  for split, ids in (("train", ["0001", "0002", "0003"]), ("val", ["0004"]), ("test", ["0005", "0006"])):
    lines = []
    for i, image_id in enumerate(ids):
      write_image(str(directory / "images" / f"{image_id}.jpg"))
      lines.append(f"{image_id} {variants[(int(image_id) + i) % 3]}")
    (directory / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
  source = registry.build_source("fgvc_aircraft", root=str(tmp_path))
  assert source.classnames == variants
  assert [(os.path.basename(e.key), e.label) for e in source.splits["train"]] == [
      ("0001.jpg", 1), ("0002.jpg", 0), ("0003.jpg", 2)]
  assert len(source.splits["val"]) == 1 and len(source.splits["test"]) == 2


def make_imagenet_classnames(path, wnids):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.writelines(f"{w} class {w[-2:]}\n" for w in wnids)


def test_imagenet_and_variants(tmp_path):
  wnids = [f"n0000{i:02d}" for i in range(6)]
  make_imagenet_classnames(str(tmp_path / "imagenet" / "classnames.txt"), wnids)
  for folder in ("train", "val"):
    for w in wnids:
      for i in range(2):
        write_image(str(tmp_path / "imagenet" / "images" / folder / w / f"{i}.JPEG"))
  source = registry.build_source("imagenet", root=str(tmp_path))
  assert source.classnames == [f"class {w[-2:]}" for w in wnids]
  assert set(source.splits) == {"train", "test"} and len(source.splits["train"]) == 12

  # ImageNet-A: a subset of the classes; superset_labels maps into the full label space. README.txt is ignored.
  make_imagenet_classnames(str(tmp_path / "imagenet-adversarial" / "classnames.txt"), wnids)
  for w in (wnids[1], wnids[4]):
    write_image(str(tmp_path / "imagenet-adversarial" / "imagenet-a" / w / "a.jpg"))
  (tmp_path / "imagenet-adversarial" / "imagenet-a" / "README.txt").write_text("readme")
  source_a = registry.build_source("imagenet_a", root=str(tmp_path))
  assert source_a.classnames == ["class 01", "class 04"]
  assert source_a.superset_labels == [1, 4]
  assert [e.label for e in source_a.splits["test"]] == [0, 1]

  make_imagenet_classnames(str(tmp_path / "imagenetv2" / "classnames.txt"), wnids)
  for label in range(6):
    write_image(str(tmp_path / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / str(label) / "x.jpeg"))
  source_v2 = registry.build_source("imagenet_v2", root=str(tmp_path))
  assert [e.label for e in source_v2.splits["test"]] == list(range(6))
  assert source_v2.classnames == source.classnames


def make_office_home(root, per_class=5):
  for domain in ("Art", "Real World"):
    for c, cls in enumerate(["Alarm_Clock", "Backpack", "Bike"]):
      for i in range(per_class):
        write_image(os.path.join(root, domain, cls, f"{i:05d}.jpg"), c)


def test_office_home_split_is_stratified_saved_and_reused(tmp_path):
  make_office_home(str(tmp_path))
  source = registry.build_source("office_home", root=str(tmp_path), domain="real_world", seed=3)
  assert source.name == "office_home/Real World"
  assert source.classnames == ["Alarm Clock", "Backpack", "Bike"]
  train, test = source.splits["train"], source.splits["test"]
  assert [sum(e.label == c for e in train) for c in range(3)] == [4, 4, 4]
  assert [sum(e.label == c for e in test) for c in range(3)] == [1, 1, 1]
  assert all(e.domain == "Real World" for e in train + test)
  assert not {e.key for e in train} & {e.key for e in test}
  split_path = tmp_path / "split_office_home_Real_World_train80_seed3.json"
  saved = json.loads(split_path.read_text())
  assert saved["train"][0][0].startswith("Real World/") and len(saved["test"]) == 3
  # reused: a new image in the folder does not change the saved split
  write_image(str(tmp_path / "Real World" / "Bike" / "99999.jpg"))
  again = registry.build_source("office_home", root=str(tmp_path), domain="Real World", seed=3)
  assert again.splits == source.splits
  other_seed = registry.build_source("office_home", root=str(tmp_path), domain="Art", seed=4,
                                     split_path=str(tmp_path / "custom" / "art.json"))
  assert (tmp_path / "custom" / "art.json").exists() and len(other_seed.splits["train"]) == 12


def make_domainnet(root, split_folder, domains=("clipart", "sketch")):
  classes = ["aircraft_carrier", "bee", "zebra"]
  for domain in domains:
    for split in ("train", "test"):
      lines = []
      for label, cls in enumerate(classes):
        for i in range(2 if split == "train" else 1):
          rel = f"{domain}/{cls}/{domain}_{split}_{i}.jpg"
          write_image(os.path.join(root, rel))
          lines.append(f"{rel} {label}")
      os.makedirs(os.path.join(root, split_folder), exist_ok=True)
      with open(os.path.join(root, split_folder, f"{domain}_{split}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("name,split_folder", [("mini_domainnet", "splits_mini"), ("domainnet", "splits")])
def test_domainnet_lists(tmp_path, name, split_folder):
  make_domainnet(str(tmp_path), split_folder)
  source = registry.build_source(name, root=str(tmp_path), domain="sketch")
  assert source.name == f"{name}/sketch"
  assert source.raw_classnames == ["aircraft_carrier", "bee", "zebra"]
  assert source.classnames == ["aircraft carrier", "bee", "zebra"]
  assert len(source.splits["train"]) == 6 and len(source.splits["test"]) == 3
  assert [e.label for e in source.splits["train"]] == [0, 0, 1, 1, 2, 2]
  assert all(e.domain == "sketch" for e in source.splits["train"])
  with pytest.raises(ValueError, match="unknown domain 'quickdraw'") if name == "mini_domainnet" else \
      pytest.raises(FileNotFoundError, match="quickdraw_train.txt"):
    registry.build_source(name, root=str(tmp_path), domain="quickdraw")


def test_image_folder(tmp_path):
  for split, classes in (("train", ["cat", "dog", "red_fox"]), ("test", ["cat", "red_fox"])):
    for cls in classes:
      for i in range(2):
        write_image(str(tmp_path / split / cls / f"{i}.png"))
  source = registry.build_source("image_folder", root=str(tmp_path))
  assert source.classnames == ["cat", "dog", "red fox"]
  assert set(source.splits) == {"train", "test"}
  assert [e.label for e in source.splits["test"]] == [0, 0, 2, 2]


def test_tfds_source_with_mock_data():
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  (slow import, only here)
  with tfds.testing.mock_data(num_examples=5):
    source = registry.build_source("tfds", dataset="oxford_iiit_pet")
    assert source.num_classes == 37 and source.raw_classnames[1] == "american_bulldog"
    assert source.classnames[1] == "american bulldog"
    assert source.templates[0] == "a photo of a {}, a type of pet."
    assert {k: len(v) for k, v in source.splits.items()} == {"train": 5, "test": 5}
    assert [e.key for e in source.splits["test"]] == [5, 6, 7, 8, 9]
    assert "differ" in source.notes
    image = source.reader(source.splits["test"][2])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert all(0 <= e.label < 37 for e in source.splits["train"])


# -- bad input ----------------------------------------------------------------------------------------------------

def test_missing_root_names_path(tmp_path):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    registry.build_source("dtd", root=missing)
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "dtd")):
    registry.build_source("dtd", root=str(tmp_path))


def test_missing_split_file_names_path(tmp_path):
  (tmp_path / "dtd" / "images").mkdir(parents=True)
  with pytest.raises(ValueError, match="split_zhou_DescribableTextures.json.*no class folders"):
    registry.build_source("dtd", root=str(tmp_path))  # DTD would be split by the reference's rule, but is empty
  (tmp_path / "oxford_pets" / "images").mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match="split_zhou_OxfordPets.json.*DATASETS.md"):
    registry.build_source("oxford_pets", root=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="splits_mini"):
    registry.build_source("mini_domainnet", root=str(tmp_path), domain="real")


def test_split_entry_pointing_at_missing_file(tmp_path):
  split = make_coop(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json", ["banded"])
  split["test"].append(["banded/ghost.jpg", 0, "banded"])
  write_json(str(tmp_path / "dtd" / "split_zhou_DescribableTextures.json"), split)
  with pytest.raises(FileNotFoundError, match="ghost.jpg") as error:
    registry.build_source("dtd", root=str(tmp_path))
  assert "split_zhou_DescribableTextures.json" in str(error.value)


def test_class_folder_without_images(tmp_path):
  make_office_home(str(tmp_path), per_class=2)
  (tmp_path / "Art" / "Empty_Class").mkdir()
  (tmp_path / "Art" / "Empty_Class" / "notes.txt").write_text("not an image")
  with pytest.raises(ValueError, match="Empty_Class"):
    registry.build_source("office_home", root=str(tmp_path), domain="Art")
  (tmp_path / "train" / "cat").mkdir(parents=True)
  (tmp_path / "test").mkdir()
  with pytest.raises(ValueError, match=os.path.join("train", "cat")):
    registry.build_source("image_folder", root=str(tmp_path))


def test_unknown_source_lists_known():
  with pytest.raises(KeyError, match="oxford_pets"):
    registry.build_source("oxford_petz", root="/")


def test_reader_corrupt_and_missing(tmp_path):
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
  with pytest.raises(CorruptImageError, match="bad.jpg"):
    sources.read_image_file(str(bad))
  with pytest.raises(FileNotFoundError, match="gone.jpg"):
    sources.read_image_file(str(tmp_path / "gone.jpg"))
  grey = tmp_path / "grey.png"
  Image.fromarray(np.full((4, 3), 7, np.uint8)).save(grey)
  assert sources.read_image_file(str(grey)).shape == (4, 3, 3)
