"""The CoOp benchmark: 11 datasets and the four ImageNet variants, read from the community's prepared folders.

`root` is the datasets root holding one folder per dataset (CoOp's DATASET.ROOT), e.g. `<root>/dtd/images/...` and
`<root>/dtd/split_zhou_DescribableTextures.json`; passing the dataset's own folder as `root` works too.

name: <dataset folder>/<images under it> + <split file or lists>
  caltech101: caltech-101/101_ObjectCategories + split_zhou_Caltech101.json
  oxford_pets: oxford_pets/images + split_zhou_OxfordPets.json
  stanford_cars: stanford_cars/ (the folder itself) + split_zhou_StanfordCars.json
  oxford_flowers: oxford_flowers/jpg + split_zhou_OxfordFlowers.json
  food101: food-101/images + split_zhou_Food101.json
  sun397: sun397/SUN397 + split_zhou_SUN397.json
  dtd: dtd/images + split_zhou_DescribableTextures.json
  eurosat: eurosat/2750 + split_zhou_EuroSAT.json
  ucf101: ucf101/UCF-101-midframes + split_zhou_UCF101.json
  fgvc_aircraft: fgvc_aircraft/images/<id>.jpg + variants.txt, images_variant_{train,val,test}.txt
  imagenet: imagenet/images/{train,val}/<wnid>/ + classnames.txt ("<wnid> <name>" per line, label order)
  imagenet_v2: imagenetv2/imagenetv2-matched-frequency-format-val/<label>/ + classnames.txt
  imagenet_sketch: imagenet-sketch/images/<wnid>/ + classnames.txt
  imagenet_a: imagenet-adversarial/imagenet-a/<wnid>/ (200 classes) + classnames.txt (all 1000)
  imagenet_r: imagenet-rendition/imagenet-r/<wnid>/ (200 classes) + classnames.txt (all 1000)

Split files are JSON objects {"train"|"val"|"test": [[relative_path, label, classname], ...]}. Every listed file is
checked to exist when the source is built, and the labels to be 0..n-1 with one class name each (n = the number of
distinct class names in the file): a bad label is an error naming the file and the entry, never a class of its own.

A missing split file is handled as the reference handles it: DTD, EuroSAT, Caltech-101 and Food-101 get their split
made by the reference's rule (`read_and_split_data`: sorted class folders, per class shuffle then 50% train / 20% val /
rest test, EuroSAT and Caltech names renamed, Caltech's two ignored folders dropped) and written to the split file's
path, then read like any split file. The shuffle is `random.Random(split_seed)` (option `split_seed`, default 1) over
the sorted image names; the reference shuffles its global `random` (seeded by the first run's seed) over `os.listdir`
order, so a split it made on another machine differs: copy that split file to get the same one. Oxford Pets,
Stanford Cars, Oxford Flowers, SUN397 and UCF101 (which the reference splits from their annotation files) need the
file: the error names it and where to get it.

ImageNet: the reference lists the images of each class folder in `os.listdir` order (not sorted), so its K-shot draw
for a seed depends on the file system; jaxprompt sorts them by default (`file_order="listdir"` gives the reference's
order on this machine), and a reference few-shot cache (`split_fewshot/shot_K-seed_S.pkl`) can be trained on exactly
(`config.data.split_file=<that .pkl>`, see `fewshot`). ImageNet and its variants have no "val" split (the reference
evaluates on ImageNet's val folder as "test"); the variants only have "test".
"""

from __future__ import annotations

import os
import random

from jaxprompt.data import files
from jaxprompt.data.registry import register
from jaxprompt.data.types import Example, Source

SPLIT_NAMES = ("train", "val", "test")

# Caltech-101: the background class and the duplicate face class are dropped; four folders get readable names.
CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")
CALTECH_RENAMED = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}

# EuroSAT: folder names -> the descriptive names CoOp prompts with (split_zhou_EuroSAT.json already uses these).
EUROSAT_RENAMED = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}

PHOTO = "a photo of a {}."

# name -> (dataset folder, image folder inside it, split file, templates)
SPLIT_FILE_DATASETS = {
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", [PHOTO]),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json", ["a photo of a {}, a type of pet."]),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json", [PHOTO]),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                       ["a photo of a {}, a type of flower."]),
    "food101": ("food-101", "images", "split_zhou_Food101.json", ["a photo of {}, a type of food."]),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json", [PHOTO]),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json", ["{} texture."]),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json", ["a centered satellite photo of {}."]),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", ["a photo of a person doing {}."]),
}


def read_split_file(split_path: str, image_dir: str) -> dict[str, list[Example]]:
  """Reads a CoOp split file: {split: [[relative_path, label, classname], ...]} -> {split: [Example]}.

  Example keys are `image_dir/relative_path`. Raises (naming the file and the entry) on a malformed entry, a label
  outside 0..n-1 (n = the number of distinct class names in the file), a label given two class names, or a missing
  image: a bad label never becomes a class of its own.
  """
  data = files.read_json(split_path)
  if not isinstance(data, dict) or "train" not in data or "test" not in data:
    raise ValueError(f"split file must be a JSON object with keys 'train', 'test' (and optionally 'val'): {split_path}")
  entries = []  # (split, index, entry)
  for split in SPLIT_NAMES:
    for index, entry in enumerate(data.get(split, ())):
      if not (isinstance(entry, (list, tuple)) and len(entry) >= 3 and isinstance(entry[0], str)
              and isinstance(entry[1], int) and not isinstance(entry[1], bool)):
        raise ValueError(f"{split_path}: {split}[{index}] is {entry!r}, expected [relative_path, label, classname]")
      entries.append((split, index, entry))
  check_split_labels(entries, split_path)
  splits = {split: [] for split in SPLIT_NAMES if split in data}
  for split, _, (path, label, classname, *_) in entries:
    splits[split].append(Example(os.path.join(image_dir, path), label, str(classname)))
  for split, examples in splits.items():
    files.check_files_exist(examples, f"split file {split_path} ({split!r})")
  return splits


def check_split_labels(entries, where: str) -> None:
  """Labels of (split, index, [path, label, classname]) entries must be 0..n-1 (n distinct class names), one name
  each; raises ValueError naming `where` and the first offending entry."""
  num_classes = len({str(entry[2]) for _, _, entry in entries})
  name_of: dict[int, tuple[str, str, int]] = {}
  for split, index, entry in entries:
    label, name = entry[1], str(entry[2])
    if not 0 <= label < num_classes:
      raise ValueError(f"{where}: {split}[{index}] = {list(entry)!r} has label {label}, outside 0..{num_classes - 1} "
                       f"(the file names {num_classes} classes)")
    first = name_of.setdefault(label, (name, split, index))
    if first[0] != name:
      raise ValueError(f"{where}: label {label} has two class names: {first[1]}[{first[2]}] says {first[0]!r}, "
                       f"{split}[{index}] = {list(entry)!r} says {name!r}")


def read_and_split_data(image_dir: str, rng: random.Random, ignored=(), renamed=None, p_train=0.5, p_val=0.2):
  """The reference's own split of `<image_dir>/<class>/*` when a dataset has no split file (its DTD rule).

  Classes are the sorted class folders minus `ignored` (label = index). Per class in label order: shuffle the images
  with `rng`, then round(n * p_train) go to train, round(n * p_val) to val and the rest to test; each must be > 0.
  Class names are the folder names, `renamed` applied. Returns {split: [[relative_path, label, classname], ...]}.
  """
  renamed = renamed or {}
  classes = [c for c in files.list_subdirs(image_dir) if c not in ignored]
  if not classes:
    raise ValueError(f"image folder has no class folders to split: {image_dir}")
  split = {"train": [], "val": [], "test": []}
  for label, cls in enumerate(classes):
    images = [f"{cls}/{name}" for name in files.list_images(os.path.join(image_dir, cls))]
    rng.shuffle(images)
    n_train, n_val = round(len(images) * p_train), round(len(images) * p_val)
    if min(n_train, n_val, len(images) - n_train - n_val) <= 0:
      raise ValueError(f"class folder {os.path.join(image_dir, cls)} has {len(images)} images: too few to split "
                       f"{p_train:.0%}/{p_val:.0%}/rest into train/val/test")
    name = renamed.get(cls, cls)
    split["train"] += [[path, label, name] for path in images[:n_train]]
    split["val"] += [[path, label, name] for path in images[n_train:n_train + n_val]]
    split["test"] += [[path, label, name] for path in images[n_train + n_val:]]
  return split


def _apply_class_rules(splits, ignored=(), renamed=None):
  """Drops examples of ignored classes (relabelling the rest contiguously, order kept) and renames classes."""
  renamed = renamed or {}
  kept = sorted({e.label for examples in splits.values() for e in examples if e.classname not in ignored})
  new_label = {old: new for new, old in enumerate(kept)}
  return {
      split: [Example(e.key, new_label[e.label], renamed.get(e.classname, e.classname), e.domain)
              for e in examples if e.classname not in ignored]
      for split, examples in splits.items()
  }


def _source_from_splits(name, splits, templates, where, notes=""):
  raw = files.classnames_from_labels(((e.label, e.classname) for s in splits.values() for e in s), where)
  return Source(name=name, classnames=[files.prompt_name(c) for c in raw], templates=list(templates), splits=splits,
                reader=files.read_example_file, raw_classnames=raw, notes=notes)


def build_split_file_dataset(name: str, root: str, split_file: str | None = None, split_seed: int = 1) -> Source:
  """One of the nine split-file datasets of `SPLIT_FILE_DATASETS`; `split_file` overrides the split file's path.

  When the split file is missing, DTD, EuroSAT, Caltech-101 and Food-101 get one made by the reference's rule
  (`read_and_split_data`, shuffled by `random.Random(split_seed)`) and written where the reference writes it; the
  other five need the file (the error says where to get it).
  """
  folder, image_subdir, split_name, templates = SPLIT_FILE_DATASETS[name]
  directory = files.dataset_dir(root, folder, marker=split_name)
  image_dir = files.require_dir(os.path.join(directory, image_subdir), "image folder")
  split_path = split_file or os.path.join(directory, split_name)
  if not os.path.exists(split_path):
    if name not in SELF_SPLIT_DATASETS:
      raise FileNotFoundError(f"split file not found: {split_path}; download {split_name} (linked from CoOp's "
                              f"DATASETS.md, KaiyangZhou/CoOp) into {directory}")
    ignored, renamed = SELF_SPLIT_DATASETS[name]
    try:
      made = read_and_split_data(image_dir, random.Random(split_seed), ignored, renamed)
    except ValueError as error:
      raise ValueError(f"split file not found: {split_path}, and making it by the reference's rule failed: "
                       f"{error}") from error
    files.write_json(split_path, made)
  splits = read_split_file(split_path, image_dir)
  if name == "caltech101":
    splits = _apply_class_rules(splits, CALTECH_IGNORED, CALTECH_RENAMED)
  elif name == "eurosat":
    splits = _apply_class_rules(splits, renamed=EUROSAT_RENAMED)
  return _source_from_splits(name, splits, templates, split_path)


# The datasets the reference splits itself (DTD's read_and_split_data) when split_zhou_*.json is missing:
# name -> (ignored class folders, renamed class folders).
SELF_SPLIT_DATASETS = {
    "dtd": ((), None),
    "eurosat": ((), EUROSAT_RENAMED),
    "caltech101": (CALTECH_IGNORED, CALTECH_RENAMED),
    "food101": ((), None),
}


def _register_split_file_dataset(name):
  @register(name)
  def build(root: str, split_file: str | None = None, split_seed: int = 1) -> Source:
    return build_split_file_dataset(name, root, split_file, split_seed)

  build.__name__ = f"build_{name}"
  build.__doc__ = f"{name} from its prepared folder and split file under `root` (see module docstring)."
  return build


for _name in SPLIT_FILE_DATASETS:
  _register_split_file_dataset(_name)


@register("fgvc_aircraft")
def build_fgvc_aircraft(root: str) -> Source:
  """FGVC-Aircraft (100 variants) from the official lists: variants.txt gives the label order; each line of
  images_variant_{train,val,test}.txt is "<image id> <variant name>" with the image at images/<image id>.jpg."""
  directory = files.dataset_dir(root, "fgvc_aircraft", marker="variants.txt")
  image_dir = files.require_dir(os.path.join(directory, "images"), "image folder")
  variants_path = files.require_file(os.path.join(directory, "variants.txt"), "class list")
  with open(variants_path) as f:
    classnames = [line.strip() for line in f if line.strip()]
  label_of = {name: label for label, name in enumerate(classnames)}
  splits = {}
  for split in SPLIT_NAMES:
    list_path = files.require_file(os.path.join(directory, f"images_variant_{split}.txt"), "split list")
    examples = []
    with open(list_path) as f:
      for line_number, line in enumerate(f, 1):
        if not line.strip():
          continue
        image_id, _, variant = line.strip().partition(" ")
        if variant not in label_of:
          raise ValueError(f"{list_path}:{line_number}: variant {variant!r} is not in {variants_path}")
        examples.append(Example(os.path.join(image_dir, image_id + ".jpg"), label_of[variant], variant))
    files.check_files_exist(examples, f"split list {list_path}")
    splits[split] = examples
  return Source(name="fgvc_aircraft", classnames=[files.prompt_name(c) for c in classnames],
                templates=["a photo of a {}, a type of aircraft."], splits=splits, reader=files.read_example_file,
                raw_classnames=classnames)


def read_imagenet_classnames(path: str) -> dict[str, str]:
  """classnames.txt: one "<wnid> <class name>" line per class, in ImageNet label order -> {wnid: name}."""
  files.require_file(path, "class list")
  names = {}
  with open(path) as f:
    for line_number, line in enumerate(f, 1):
      wnid, _, name = line.strip().partition(" ")
      if not wnid:
        continue
      if not name:
        raise ValueError(f"{path}:{line_number}: expected '<wnid> <class name>', got {line.strip()!r}")
      names[wnid] = name
  return names


def _read_wnid_folders(image_dir, wnids, names, where, file_order="sorted"):
  """Examples of `image_dir/<wnid>/*` for each wnid in order, label = position in `wnids`; the images of a folder in
  `file_order` (see `files.list_images`)."""
  examples = []
  for label, wnid in enumerate(wnids):
    if wnid not in names:
      raise ValueError(f"class folder {os.path.join(image_dir, wnid)} is not listed in {where}")
    folder = os.path.join(image_dir, wnid)
    examples += [Example(os.path.join(folder, f), label, names[wnid]) for f in files.list_images(folder, file_order)]
  return examples


def _imagenet_source(name, splits, classnames, notes="", superset_labels=None):
  return Source(name=name, classnames=[files.prompt_name(c) for c in classnames], templates=[PHOTO], splits=splits,
                reader=files.read_example_file, raw_classnames=list(classnames), notes=notes,
                superset_labels=superset_labels)


@register("imagenet")
def build_imagenet(root: str, file_order: str = "sorted") -> Source:
  """ImageNet: images/train/<wnid>/* -> "train", images/val/<wnid>/* -> "test"; label = sorted-wnid index.

  file_order: the order of the images inside each class folder, which the K-shot draw depends on: "sorted" (the same
  on every machine) or "listdir" (the reference's: `os.listdir` order, so the reference's draw on this machine).
  """
  directory = files.dataset_dir(root, "imagenet", marker="classnames.txt")
  classnames_path = os.path.join(directory, "classnames.txt")
  names = read_imagenet_classnames(classnames_path)
  splits = {}
  wnids = None
  for folder, split in (("train", "train"), ("val", "test")):
    image_dir = os.path.join(directory, "images", folder)
    split_wnids = files.list_subdirs(image_dir)
    if wnids is not None and split_wnids != wnids:
      raise ValueError(f"{image_dir} has different class folders than {os.path.join(directory, 'images', 'train')}")
    wnids = split_wnids
    splits[split] = _read_wnid_folders(image_dir, wnids, names, classnames_path, file_order)
  return _imagenet_source("imagenet", splits, [names[w] for w in wnids],
                          notes="no val split: the ImageNet val folder is the test split, as in the reference")


def _build_imagenet_variant(name, root, folder, image_subdir, subset):
  directory = files.dataset_dir(root, folder, marker="classnames.txt")
  classnames_path = os.path.join(directory, "classnames.txt")
  names = read_imagenet_classnames(classnames_path)
  image_dir = os.path.join(directory, image_subdir)
  wnids = files.list_subdirs(image_dir)
  examples = _read_wnid_folders(image_dir, wnids, names, classnames_path)
  superset = None
  if subset:  # ImageNet-A/R: 200 classes; map each to its ImageNet label (classnames.txt lists all 1000 in order)
    order = {wnid: label for label, wnid in enumerate(names)}
    superset = [order[w] for w in wnids]
  return _imagenet_source(name, {"test": examples}, [names[w] for w in wnids], superset_labels=superset,
                          notes="test-only domain-generalisation target")


@register("imagenet_v2")
def build_imagenet_v2(root: str) -> Source:
  """ImageNetV2 matched-frequency: imagenetv2-matched-frequency-format-val/<label 0..999>/*, names from
  classnames.txt."""
  directory = files.dataset_dir(root, "imagenetv2", marker="classnames.txt")
  classnames_path = os.path.join(directory, "classnames.txt")
  classnames = list(read_imagenet_classnames(classnames_path).values())
  image_dir = files.require_dir(os.path.join(directory, "imagenetv2-matched-frequency-format-val"), "image folder")
  examples = []
  for label, name in enumerate(classnames):
    folder = os.path.join(image_dir, str(label))
    examples += [Example(os.path.join(folder, f), label, name) for f in files.list_images(folder)]
  return _imagenet_source("imagenet_v2", {"test": examples}, classnames, notes="test-only domain-generalisation target")


@register("imagenet_sketch")
def build_imagenet_sketch(root: str) -> Source:
  """ImageNet-Sketch: images/<wnid>/*, 1000 classes."""
  return _build_imagenet_variant("imagenet_sketch", root, "imagenet-sketch", "images", subset=False)


@register("imagenet_a")
def build_imagenet_a(root: str) -> Source:
  """ImageNet-A: imagenet-a/<wnid>/* (200 classes); `superset_labels` maps them into ImageNet's 1000 labels."""
  return _build_imagenet_variant("imagenet_a", root, "imagenet-adversarial", "imagenet-a", subset=True)


@register("imagenet_r")
def build_imagenet_r(root: str) -> Source:
  """ImageNet-R: imagenet-r/<wnid>/* (200 classes); `superset_labels` maps them into ImageNet's 1000 labels."""
  return _build_imagenet_variant("imagenet_r", root, "imagenet-rendition", "imagenet-r", subset=True)


# --- the papers' dataset lists (one place; configs, sweeps and the report read them from here) --------------------------
COOP_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
                 "sun397", "dtd", "eurosat", "ucf101")
"""The 11 datasets of CoOp's few-shot and base-to-novel tables, in the papers' column order."""
DG_TARGETS = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
"""Domain generalisation: the ImageNet variants a run trained on ImageNet is evaluated on."""
XD_TARGETS = tuple(name for name in COOP_DATASETS if name != "imagenet")
"""Cross-dataset transfer: the other 10 datasets a run trained on ImageNet is evaluated on."""


def named_targets(text: str) -> tuple[str, ...]:
  """A config's `targets` argument: "dg", "xd", "none" (or ""), or source names joined by "+"."""
  named = {"dg": DG_TARGETS, "xd": XD_TARGETS, "none": (), "": ()}
  if text in named:
    return named[text]
  return tuple(filter(None, text.split("+")))
