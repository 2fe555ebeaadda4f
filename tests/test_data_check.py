"""`python -m jaxprompt.data.check` on generated trees: counts against expected figures, missing files, corrupt
images, classes without images, Office-Home, `--all`, and that a tree of thousands of files checks in seconds."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxprompt.data import check

DTD_CLASSES = ["banded", "blotchy", "braided"]


def write_png(path, value=0):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


def make_split_dataset(root, folder, image_subdir, split_name, classes, per_split=(3, 1, 2)):
  """<root>/<folder>/<image_subdir>/<class>/*.png and its split_zhou-style file; returns the split dict."""
  split = {"train": [], "val": [], "test": []}
  for label, cls in enumerate(classes):
    index = 0
    for name, count in zip(("train", "val", "test"), per_split):
      for _ in range(count):
        relative = f"{cls}/{cls}_{index}.png"
        write_png(os.path.join(root, folder, image_subdir, relative), label)
        split[name].append([relative, label, cls])
        index += 1
  with open(os.path.join(root, folder, split_name), "w") as f:
    json.dump(split, f)
  return split


def make_dtd(root, per_split=(3, 1, 2)):
  return make_split_dataset(root, "dtd", "images", "split_zhou_DescribableTextures.json", DTD_CLASSES, per_split)


def make_caltech(root):
  return make_split_dataset(root, "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                            ["BACKGROUND_Google", "accordion", "airplanes"], (2, 1, 1))


def make_office_home(root, domains=("Art", "Clipart"), classes=("Bike", "Mug"), per_class=5):
  for domain in domains:
    for label, cls in enumerate(classes):
      for i in range(per_class):
        write_png(os.path.join(root, domain, cls, f"{i:05d}.png"), label)


def tiny(classes, train=None, val=None, test=None, total=None):
  return check.Expected.from_dict({k: v for k, v in dict(classes=classes, train=train, val=val, test=test,
                                                         total=total).items() if v is not None}, "test figures")


def tree_snapshot(root):
  return sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)


def test_clean_split_file_dataset_matches_overridden_counts(tmp_path):
  make_dtd(str(tmp_path))
  report = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, 3, 6))
  assert report.status == "ok", report.problems
  assert report.counts == {"train": (9, 3), "val": (3, 3), "test": (6, 3)} and report.classes == 3
  assert report.images_checked == 18
  text = check.format_report(report)
  assert "dtd: ok" in text and "test figures" in text


def test_published_counts_are_compared(tmp_path):
  make_dtd(str(tmp_path))
  report = check.check_dataset("dtd", str(tmp_path))  # CoOp's figures: 47 classes, 2,820 / 1,128 / 1,692
  assert report.status == "FAIL"
  assert report.problems == ["train: 9 images, expected 2,820", "val: 3 images, expected 1,128",
                             "test: 6 images, expected 1,692", "3 classes, expected 47"]
  wrong = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, 3, 7))
  assert wrong.problems == ["test: 6 images, expected 7"]
  no_val = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, None, 6))
  assert no_val.status == "ok"  # only the splits the figures list are compared


def test_caltech_counts_after_dropping_ignored_classes(tmp_path):
  make_caltech(str(tmp_path))
  report = check.check_dataset("caltech101", str(tmp_path), expected=tiny(2, 4, 2, 2))
  assert report.status == "ok", report.problems  # BACKGROUND_Google is dropped as the builder drops it
  assert report.counts["train"] == (4, 2)


def test_missing_files_are_all_named(tmp_path):
  split = make_dtd(str(tmp_path))
  image_dir = tmp_path / "dtd" / "images"
  gone = [split["train"][0][0], split["test"][5][0]]
  for relative in gone:
    os.remove(image_dir / relative)
  report = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, 3, 6))
  assert report.status == "FAIL"
  assert report.problems[0].startswith("cannot build:")
  missing = [p for p in report.problems if p.startswith("missing file")]
  assert missing == [f"missing file (train): {image_dir / gone[0]}", f"missing file (test): {image_dir / gone[1]}"]
  assert report.counts["train"] == (9, 3)  # still counted from the split file
  assert report.images_checked == 16


def test_corrupt_images_are_found_cheaply_and_truncated_ones_by_deep(tmp_path):
  split = make_dtd(str(tmp_path))
  image_dir = tmp_path / "dtd" / "images"
  garbage, empty, truncated = (image_dir / split["train"][i][0] for i in (0, 1, 2))
  garbage.write_bytes(b"this is not an image at all")
  empty.write_bytes(b"")
  big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
  Image.fromarray(big).save(truncated)
  truncated.write_bytes(truncated.read_bytes()[:-200])
  report = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, 3, 6))
  unreadable = [p for p in report.problems if p.startswith("unreadable image")]
  assert any(str(garbage) in p for p in unreadable) and any(str(empty) in p and "empty file" in p
                                                            for p in unreadable)
  deep = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, 3, 6), deep=True)
  assert any(str(truncated) in p for p in deep.problems)
  assert sum(p.startswith("unreadable image") for p in deep.problems) == 3
  assert check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, 3, 6), check_images=False).status == "ok"


def test_class_without_images_in_a_split(tmp_path):
  split = make_dtd(str(tmp_path))
  split["val"] = [entry for entry in split["val"] if entry[2] != "braided"]
  with open(tmp_path / "dtd" / "split_zhou_DescribableTextures.json", "w") as f:
    json.dump(split, f)
  report = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 9, 2, 6))
  assert report.problems == ["classes without images in 'val': 'braided'"]


def test_image_folder_empty_class_folder_is_named(tmp_path):
  for split in ("train", "test"):
    for cls in ("cat", "dog"):
      write_png(str(tmp_path / split / cls / "0.png"))
  (tmp_path / "train" / "emu").mkdir()
  report = check.check_dataset("image_folder", str(tmp_path))
  assert report.status == "FAIL"
  assert f"class without images: {tmp_path / 'train' / 'emu'}" in report.problems
  os.rmdir(tmp_path / "train" / "emu")
  assert check.check_dataset("image_folder", str(tmp_path)).status == "ok"


def test_self_split_dataset_without_split_file_is_counted_and_tree_untouched(tmp_path):
  for cls in DTD_CLASSES:
    for i in range(10):
      write_png(str(tmp_path / "dtd" / "images" / cls / f"{i}.png"))
  before = tree_snapshot(str(tmp_path))
  report = check.check_dataset("dtd", str(tmp_path), expected=tiny(3, 15, 6, 9))
  assert report.status == "ok", report.problems  # 50% / 20% / rest of 10 per class
  assert any("no split file" in note for note in report.notes)
  assert tree_snapshot(str(tmp_path)) == before


def test_office_home_domains(tmp_path):
  make_office_home(str(tmp_path))
  before = tree_snapshot(str(tmp_path))
  report = check.check_dataset("office_home/Art", str(tmp_path), expected=tiny(2, 8, test=2, total=10))
  assert report.status == "ok", report.problems
  assert tree_snapshot(str(tmp_path)) == before  # the split a first run would write is made elsewhere
  published = check.check_dataset("office_home/Clipart", str(tmp_path))
  assert "10 images in all splits, expected 4,365" in published.problems
  assert check.check_dataset("office_home/Product", str(tmp_path)).status == "absent"


def test_imagenet_flat_val_folder_is_explained(tmp_path):
  with open(tmp_path / "classnames.txt", "w") as f:
    f.write("n01 goldfish\nn02 shark\n")
  directory = tmp_path / "imagenet"
  os.makedirs(directory)
  os.replace(tmp_path / "classnames.txt", directory / "classnames.txt")
  for wnid in ("n01", "n02"):
    write_png(str(directory / "images" / "train" / wnid / "a.png"))
  for i in range(3):
    write_png(str(directory / "images" / "val" / f"ILSVRC2012_val_{i:08d}.png"))
  report = check.check_dataset("imagenet", str(tmp_path))
  assert report.status == "FAIL"
  assert any("holds 3 images directly" in p and "re-organise" in p for p in report.problems)


def test_cli_all_reports_present_and_absent(tmp_path, capsys):
  make_dtd(str(tmp_path))
  make_caltech(str(tmp_path))
  expected = json.dumps({"dtd": {"classes": 3, "train": 9, "val": 3, "test": 6},
                         "caltech101": {"classes": 2, "train": 4, "val": 2, "test": 2}})
  assert check.main(["--all", "--root", str(tmp_path), "--expected", expected]) == 0
  out = capsys.readouterr().out
  assert "dtd: ok" in out and "caltech101: ok" in out
  absent_line = next(line for line in out.splitlines() if line.startswith("absent: "))
  absent = absent_line[len("absent: "):].split(", ")
  assert set(absent) == set(check.ALL_DATASETS) - {"dtd", "caltech101"}
  assert out.strip().splitlines()[-1].startswith("data check: 2 ok, 0 with problems, ")
  os.remove(tmp_path / "dtd" / "images" / "banded" / "banded_0.png")
  assert check.main(["--all", "--root", str(tmp_path), "--expected", expected]) == 1
  out = capsys.readouterr().out
  assert "1 with problems (dtd)" in out and "banded_0.png" in out


def test_cli_single_dataset_absent_or_unknown(tmp_path, capsys):
  assert check.main(["--dataset", "eurosat", "--root", str(tmp_path)]) == 1
  assert "eurosat: absent" in capsys.readouterr().out
  with pytest.raises(SystemExit) as exit_info:
    check.main(["--dataset", "mnist", "--root", str(tmp_path)])
  assert exit_info.value.code == 2
  make_office_home(str(tmp_path), domains=("Art", "Clipart", "Product", "Real World"))
  code = check.main(["--dataset", "office_home", "--root", str(tmp_path), "--expected",
                     json.dumps({f"office_home/{d}": {"classes": 2, "total": 10}
                                 for d in ("Art", "Clipart", "Product", "Real World")})])
  assert code == 0, capsys.readouterr().out


def test_thousands_of_files_check_from_the_command_line(tmp_path):
  """2,000 files through `python -m jaxprompt.data.check` (its speed is measured, not asserted: 0.4 s here)."""
  classes = [f"class_{i:02d}" for i in range(40)]
  make_split_dataset(str(tmp_path), "dtd", "images", "split_zhou_DescribableTextures.json", classes, (25, 10, 15))
  result = subprocess.run([sys.executable, "-m", "jaxprompt.data.check", "--dataset", "dtd", "--root", str(tmp_path),
                           "--expected", json.dumps({"dtd": {"classes": 40, "train": 1000, "val": 400, "test": 600}})],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "2,000 images header-checked" in result.stdout


def make_domainnet(root, domain="sketch", classes=("apple", "bee"), per_split=(2, 1)):
  for split, count in zip(("train", "test"), per_split):
    lines = []
    for label, cls in enumerate(classes):
      for i in range(count):
        relative = f"{domain}/{cls}/{split}_{i}.png"
        write_png(os.path.join(root, relative), label)
        lines.append(f"{relative} {label}")
    os.makedirs(os.path.join(root, "splits_mini"), exist_ok=True)
    with open(os.path.join(root, "splits_mini", f"{domain}_{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")


def make_fgvc(root, variants=("707-320", "A300B4")):
  directory = os.path.join(root, "fgvc_aircraft")
  os.makedirs(directory)
  with open(os.path.join(directory, "variants.txt"), "w") as f:
    f.write("\n".join(variants) + "\n")
  for split_index, split in enumerate(("train", "val", "test")):
    lines = []
    for label, variant in enumerate(variants):
      image_id = f"{split_index}{label}00"
      write_png(os.path.join(directory, "images", image_id + ".jpg"), label)
      lines.append(f"{image_id} {variant}")
    with open(os.path.join(directory, f"images_variant_{split}.txt"), "w") as f:
      f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("name", ["mini_domainnet/sketch", "fgvc_aircraft"])
def test_list_file_datasets_name_missing_files(tmp_path, name):
  if name == "fgvc_aircraft":
    make_fgvc(str(tmp_path))
    counts, gone = {"train": (2, 2), "val": (2, 2), "test": (2, 2)}, tmp_path / "fgvc_aircraft" / "images" / "2100.jpg"
    expected = tiny(2, 2, 2, 2)
  else:
    make_domainnet(str(tmp_path / "domainnet"))  # Dassl's layout: <root>/domainnet/splits_mini/...
    counts, gone = {"train": (4, 2), "test": (2, 2)}, tmp_path / "domainnet" / "sketch" / "bee" / "test_0.png"
    expected = tiny(2, 4, test=2)
  clean = check.check_dataset(name, str(tmp_path), expected=expected)
  assert clean.status == "ok", clean.problems
  assert clean.counts == counts
  os.remove(gone)
  broken = check.check_dataset(name, str(tmp_path), expected=expected)
  assert f"missing file (test): {gone}" in broken.problems and broken.counts == counts
  assert check.check_dataset("mini_domainnet/clipart", str(tmp_path)).status == "absent"
