"""Multi-domain datasets (MmAP's tasks): Office-Home, MiniDomainNet and DomainNet, one source per domain.

Office-Home: `<base>/<Domain>/<Class>/*`, domains Art, Clipart, Product, Real World, 65 classes (label = index of
  the sorted class folder names). The domain folder may be spelled as the dataset ships it (`Art`, `Real World`) or as
  Dassl lays it out (`art`, `clipart`, `product`, `real_world`), and `<base>` may be `root` itself or
  `<root>/office_home` (Dassl's DATASET.ROOT convention). No official split: a per-class stratified, seeded train/test
  split (default 80/20) is made once and saved CoOp-style ({"train"|"test": [[relative_path, label, classname], ...]},
  paths relative to `<base>`) as `<base>/split_office_home_<Domain>_train<pct>_seed<seed>.json` (or `split_path`),
  then reused on every run.
MiniDomainNet: `<base>/splits_mini/<domain>_{train,test}.txt`, lines "<domain>/<class>/<file> <label>" (paths relative
  to `<base>`); domains clipart, painting, real, sketch; 126 classes named by their folder. DomainNet: the same with
  `<base>/splits/` (345 classes, six domains). `<base>` is `root` itself or `<root>/domainnet` (Dassl's layout, where
  DATASET.ROOT holds a `domainnet` folder).
"""

from __future__ import annotations

import os
import random

from jaxprompt.data import files
from jaxprompt.data.coop_datasets import read_split_file
from jaxprompt.data.registry import register
from jaxprompt.data.types import Example, Source

OFFICE_HOME_DOMAINS = ("Art", "Clipart", "Product", "Real World")
MINI_DOMAINNET_DOMAINS = ("clipart", "painting", "real", "sketch")
DOMAINNET_DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
TEMPLATES = ["a photo of a {}."]


def stratified_split(per_class: list[list[str]], train_fraction: float, seed: int) -> tuple[list, list]:
  """Splits each class's items into train/test: shuffle (one `random.Random(seed)` stream, classes in label order)
  and put round(n * train_fraction) items, at least one and (when n > 1) at most n - 1, in train.

  per_class[label] -> items. Returns ([(item, label)] train, [(item, label)] test).
  """
  rng = random.Random(seed)
  train, test = [], []
  for label, items in enumerate(per_class):
    items = list(items)
    rng.shuffle(items)
    n_train = min(max(1, round(len(items) * train_fraction)), max(1, len(items) - 1))
    train += [(item, label) for item in items[:n_train]]
    test += [(item, label) for item in items[n_train:]]
  return train, test


def _domain_name(domain: str, known: tuple[str, ...]) -> str:
  by_lower = {d.lower().replace(" ", "_"): d for d in known}
  key = domain.lower().replace(" ", "_")
  if key not in by_lower:
    raise ValueError(f"unknown domain {domain!r}; known domains: {', '.join(known)}")
  return by_lower[key]


def office_home_domain_dir(root: str, domain: str) -> tuple[str, str]:
  """(base folder, domain folder name) of an Office-Home domain in any of the accepted layouts (module docstring)."""
  spellings = (domain, domain.lower().replace(" ", "_"))
  tried = []
  for base in (root, os.path.join(root, "office_home")):
    for folder in spellings:
      tried.append(os.path.join(base, folder))
      if os.path.isdir(tried[-1]):
        return base, folder
  raise FileNotFoundError(f"Office-Home domain folder not found; tried {', '.join(tried)}")


@register("office_home")
def build_office_home(root: str, domain: str, seed: int = 1, train_fraction: float = 0.8,
                      split_path: str | None = None) -> Source:
  """One Office-Home domain with its saved stratified train/test split (made on first use, see module docstring)."""
  domain = _domain_name(domain, OFFICE_HOME_DOMAINS)
  root = os.path.abspath(os.path.expanduser(root))
  files.require_dir(root, "dataset root")
  base, folder = office_home_domain_dir(root, domain)
  domain_dir = os.path.join(base, folder)
  if split_path is None:
    tag = domain.replace(" ", "_")
    split_path = os.path.join(base, f"split_office_home_{tag}_train{round(train_fraction * 100)}_seed{seed}.json")
  if not os.path.exists(split_path):
    classes = files.list_subdirs(domain_dir)
    if not classes:
      raise ValueError(f"Office-Home domain folder has no class folders: {domain_dir}")
    per_class = [[os.path.join(folder, c, f) for f in files.list_images(os.path.join(domain_dir, c))] for c in classes]
    train, test = stratified_split(per_class, train_fraction, seed)
    files.write_json(split_path, {
        "train": [[path, label, classes[label]] for path, label in train],
        "test": [[path, label, classes[label]] for path, label in test],
    })
  splits = read_split_file(split_path, base)
  splits = {s: [Example(e.key, e.label, e.classname, domain) for e in examples] for s, examples in splits.items()}
  raw = files.classnames_from_labels(((e.label, e.classname) for s in splits.values() for e in s), split_path)
  return Source(name=f"office_home/{domain}", classnames=[files.prompt_name(c) for c in raw], templates=TEMPLATES,
                splits=splits, reader=files.read_example_file, raw_classnames=raw,
                notes=f"train/test split {split_path} (stratified, {train_fraction:.0%} train, seed {seed})")


def read_domainnet_list(list_path: str, root: str, domain: str) -> list[Example]:
  """A DomainNet list file: lines "<domain>/<class>/<file> <label>" -> Examples (class name = the class folder)."""
  files.require_file(list_path, "split list")
  examples = []
  with open(list_path) as f:
    for line_number, line in enumerate(f, 1):
      if not line.strip():
        continue
      path, _, label = line.strip().rpartition(" ")
      parts = path.split("/")
      if not path or not label.lstrip("-").isdigit() or len(parts) < 3:
        raise ValueError(f"{list_path}:{line_number}: expected '<domain>/<class>/<file> <label>', got {line.strip()!r}")
      examples.append(Example(os.path.join(root, path), int(label), parts[-2], domain))
  files.check_files_exist(examples, f"split list {list_path}")
  return examples


def _build_domainnet(name, root, domain, split_folder, known):
  domain = _domain_name(domain, known)
  root = os.path.abspath(os.path.expanduser(root))
  files.require_dir(root, "dataset root")
  nested = os.path.join(root, "domainnet")  # Dassl's layout: DATASET.ROOT/domainnet/splits_mini/...
  if not os.path.isdir(os.path.join(root, split_folder)) and os.path.isdir(os.path.join(nested, split_folder)):
    root = nested
  split_dir = files.require_dir(os.path.join(root, split_folder), "split folder")
  splits = {split: read_domainnet_list(os.path.join(split_dir, f"{domain}_{split}.txt"), root, domain)
            for split in ("train", "test")}
  raw = files.classnames_from_labels(((e.label, e.classname) for s in splits.values() for e in s),
                                     os.path.join(split_dir, f"{domain}_{{train,test}}.txt"))
  return Source(name=f"{name}/{domain}", classnames=[files.prompt_name(c) for c in raw], templates=TEMPLATES,
                splits=splits, reader=files.read_example_file, raw_classnames=raw)


@register("mini_domainnet")
def build_mini_domainnet(root: str, domain: str) -> Source:
  """One MiniDomainNet domain (126 classes) from `<root>/splits_mini/<domain>_{train,test}.txt`."""
  return _build_domainnet("mini_domainnet", root, domain, "splits_mini", MINI_DOMAINNET_DOMAINS)


@register("domainnet")
def build_domainnet(root: str, domain: str) -> Source:
  """One full DomainNet domain (345 classes) from `<root>/splits/<domain>_{train,test}.txt`."""
  return _build_domainnet("domainnet", root, domain, "splits", DOMAINNET_DOMAINS)
