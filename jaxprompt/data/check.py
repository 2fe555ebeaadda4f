"""`python -m jaxprompt.data.check`: is a dataset tree ready to train on?

    python -m jaxprompt.data.check --dataset dtd --root /data            # one dataset (repeat --dataset for more)
    python -m jaxprompt.data.check --dataset office_home --root /data    # all four domains (or office_home/Art)
    python -m jaxprompt.data.check --all --root /data                    # every known dataset; absent ones listed
    python -m jaxprompt.data.check --all --root /data --deep             # fully decode every image (slow)

Each dataset is built exactly as a run builds it (`registry.build_source`), so what passes here loads in training.
Per split it prints the number of images and classes beside the published figures (`EXPECTED`), then every problem:
files that a split file lists but that do not exist, unreadable images (by default each file is opened and its
header verified with Pillow, in threads; `--deep` decodes the pixels as training does), classes without images and
counts that differ from the published ones. Nothing is written into the dataset tree: where a run would first make a
split file (DTD, EuroSAT, Caltech-101 and Food-101 without theirs, Office-Home always), it is made in a temporary
folder for counting. Exit status 0: every requested dataset is present and clean (`--all`: absent ones are fine);
1: something is missing or wrong; 2: bad arguments.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import sys
import tempfile
import time

from PIL import Image

from jaxprompt.data import coop_datasets, domains, files, registry

# --- the published figures ----------------------------------------------------------------------------------------
COOP_TABLE = "CoOp (Zhou et al., IJCV 2022, arXiv:2109.01134), dataset statistics table"
OFFICE_HOME_PAPER = "Office-Home (Venkateswara et al., CVPR 2017): images per domain"
DOMAINNET_PAPER = "DomainNet (Peng et al., ICCV 2019): official train/test lists"


@dataclasses.dataclass(frozen=True)
class Expected:
  """Published figures for one dataset: classes, images per split (only the splits listed), images in all splits."""

  classes: int | None = None
  splits: dict = dataclasses.field(default_factory=dict)
  total: int | None = None
  source: str = ""

  @classmethod
  def from_dict(cls, d: dict, source: str = "--expected") -> Expected:
    """{"classes": n, "train": n, "val": n, "test": n, "total": n}, every key optional."""
    unknown = set(d) - {"classes", "total", *coop_datasets.SPLIT_NAMES}
    if unknown:
      raise ValueError(f"expected counts: unknown keys {sorted(unknown)}; use classes, train, val, test, total")
    splits = {s: int(d[s]) for s in coop_datasets.SPLIT_NAMES if s in d}
    as_int = lambda key: None if d.get(key) is None else int(d[key])  # noqa: E731
    return cls(as_int("classes"), splits, as_int("total"), source)


def _coop(classes, train, val, test):
  splits = {"train": train, "test": test} if val is None else {"train": train, "val": val, "test": test}
  return Expected(classes, splits, source=COOP_TABLE)


EXPECTED = {
    "imagenet": _coop(1000, 1_281_167, None, 50_000),  # the table rounds train to 1.28M; val folder = test
    "caltech101": _coop(100, 4_128, 1_649, 2_465),
    "oxford_pets": _coop(37, 2_944, 736, 3_669),
    "stanford_cars": _coop(196, 6_509, 1_635, 8_041),
    "oxford_flowers": _coop(102, 4_093, 1_633, 2_463),
    "food101": _coop(101, 50_500, 20_200, 30_300),
    "fgvc_aircraft": _coop(100, 3_334, 3_333, 3_333),
    "sun397": _coop(397, 15_880, 3_970, 19_850),
    "dtd": _coop(47, 2_820, 1_128, 1_692),
    "eurosat": _coop(10, 13_500, 5_400, 8_100),
    "ucf101": _coop(101, 7_639, 1_898, 3_783),
    "imagenet_v2": Expected(1000, {"test": 10_000}, source=COOP_TABLE),
    "imagenet_sketch": Expected(1000, {"test": 50_889}, source=COOP_TABLE),
    "imagenet_a": Expected(200, {"test": 7_500}, source=COOP_TABLE),
    "imagenet_r": Expected(200, {"test": 30_000}, source=COOP_TABLE),
    **{f"office_home/{d}": Expected(65, total=n, source=OFFICE_HOME_PAPER)
       for d, n in zip(domains.OFFICE_HOME_DOMAINS, (2_427, 4_365, 4_439, 4_357))},
    **{f"domainnet/{d}": Expected(345, {"train": tr, "test": te}, source=DOMAINNET_PAPER)
       for d, tr, te in zip(domains.DOMAINNET_DOMAINS, (33_525, 36_023, 50_416, 120_750, 120_906, 48_212),
                            (14_604, 15_582, 21_850, 51_750, 52_041, 20_916))},
    **{f"mini_domainnet/{d}": Expected(126, source="MiniDomainNet (Zhou et al., 2021): 126 classes")
       for d in domains.MINI_DOMAINNET_DOMAINS},
}
"""Published figures per dataset name; a dataset missing here (image_folder) is counted but not compared."""

GROUPS = {
    "office_home": tuple(f"office_home/{d}" for d in domains.OFFICE_HOME_DOMAINS),
    "domainnet": tuple(f"domainnet/{d}" for d in domains.DOMAINNET_DOMAINS),
    "mini_domainnet": tuple(f"mini_domainnet/{d}" for d in domains.MINI_DOMAINNET_DOMAINS),
}
ALL_DATASETS = (coop_datasets.COOP_DATASETS + coop_datasets.DG_TARGETS
                + GROUPS["office_home"] + GROUPS["mini_domainnet"] + GROUPS["domainnet"])
"""What `--all` looks for under the root (image_folder has no fixed place, so only `--dataset image_folder`)."""

# The ImageNet variants' folders (coop_datasets spells them inside its builders): name -> (folder, image folder).
IMAGENET_FOLDERS = {
    "imagenet": ("imagenet", "images"),
    "imagenet_v2": ("imagenetv2", "imagenetv2-matched-frequency-format-val"),
    "imagenet_sketch": ("imagenet-sketch", "images"),
    "imagenet_a": ("imagenet-adversarial", "imagenet-a"),
    "imagenet_r": ("imagenet-rendition", "imagenet-r"),
}


def expand(names) -> list[str]:
  """Dataset names with groups ("office_home") replaced by their domains; raises ValueError on an unknown name."""
  out = []
  for name in names:
    if name in GROUPS:
      out += GROUPS[name]
    elif name in ALL_DATASETS or name == "image_folder":
      out.append(name)
    else:
      known = ", ".join(list(coop_datasets.COOP_DATASETS + coop_datasets.DG_TARGETS) + list(GROUPS) + ["image_folder"])
      raise ValueError(f"unknown dataset {name!r}; known: {known} (a domain as office_home/Art, domainnet/sketch)")
  return out


# --- the report -------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Report:
  """One dataset's check. directory None: absent. counts: split -> (images, classes with images); classes: in all
  splits. problems make it fail, notes do not."""

  name: str
  directory: str | None = None
  counts: dict = dataclasses.field(default_factory=dict)
  classes: int = 0
  expected: Expected | None = None
  problems: list = dataclasses.field(default_factory=list)
  notes: list = dataclasses.field(default_factory=list)
  images_checked: int = 0

  @property
  def status(self) -> str:
    return "absent" if self.directory is None else ("FAIL" if self.problems else "ok")


# --- where a dataset lives --------------------------------------------------------------------------------------------
def _split(name):
  family, _, domain = name.partition("/")
  return family, domain


def locate(name: str, root: str) -> str | None:
  """The dataset's folder under `root` (or `root` itself, as the builders accept), None when it is not there."""
  family, domain = _split(name)
  try:
    if family in coop_datasets.SPLIT_FILE_DATASETS:
      folder, _, split_name, _ = coop_datasets.SPLIT_FILE_DATASETS[family]
      return files.dataset_dir(root, folder, marker=split_name)
    if family == "fgvc_aircraft":
      return files.dataset_dir(root, "fgvc_aircraft", marker="variants.txt")
    if family in IMAGENET_FOLDERS:
      return files.dataset_dir(root, IMAGENET_FOLDERS[family][0], marker="classnames.txt")
    if family == "office_home":
      return domains.office_home_domain_dir(root, domain)[0]
  except FileNotFoundError:
    return None
  if family in ("domainnet", "mini_domainnet"):
    split_folder = "splits" if family == "domainnet" else "splits_mini"
    for base in (root, os.path.join(root, "domainnet")):
      if os.path.exists(os.path.join(base, split_folder, f"{domain}_train.txt")) or (
          os.path.isdir(os.path.join(base, split_folder)) and os.path.isdir(os.path.join(base, domain))):
        return base
    return None
  if family == "image_folder":
    return root if os.path.isdir(root) else None
  raise ValueError(f"unknown dataset {name!r}")


def _office_home_split_path(base, domain):
  """Where `domains.build_office_home` keeps a domain's default split (seed 1, 80% train)."""
  return os.path.join(base, f"split_office_home_{domain.replace(' ', '_')}_train80_seed1.json")


# --- building it as a run does ----------------------------------------------------------------------------------------
def build(name: str, root: str, directory: str, scratch: str, report: Report):
  """The run's `Source`, or None with the builder's error in `report.problems`. Split files a run would make first
  are made under `scratch` (the tree is never written); `report.notes` says so."""
  family, domain = _split(name)
  options = {"root": root}
  if family in ("office_home", "domainnet", "mini_domainnet"):
    options["domain"] = domain
  if family in coop_datasets.SPLIT_FILE_DATASETS:
    split_path = os.path.join(directory, coop_datasets.SPLIT_FILE_DATASETS[family][2])
    if not os.path.exists(split_path) and family in coop_datasets.SELF_SPLIT_DATASETS:
      options["split_file"] = os.path.join(scratch, f"{family}.json")
      report.notes.append(f"no split file {split_path}: a run makes it by the reference's rule (counted here from "
                          f"one made in a temporary folder)")
  if family == "office_home":
    split_path = _office_home_split_path(directory, domain)
    if not os.path.exists(split_path):
      options["split_path"] = os.path.join(scratch, f"office_home_{domain}.json")
      report.notes.append(f"split file {split_path} not made yet: the first run makes it (counted here from one "
                          f"made in a temporary folder)")
  try:
    return registry.build_source(family, **options)
  except (OSError, ValueError, KeyError) as error:
    report.problems.append(f"cannot build: {error}")
    return None


# --- when the build fails: list every problem of the kind the builder stopped at --------------------------------------
def raw_listing(name: str, directory: str) -> dict | None:
  """split -> [(path, class name)] read straight from the split file or lists, without stopping at missing files;
  None when the dataset has no such file or it cannot be parsed (the builder's error then says why)."""
  family, domain = _split(name)
  try:
    if family in coop_datasets.SPLIT_FILE_DATASETS or family == "office_home":
      if family == "office_home":
        split_path, image_dir, ignored = _office_home_split_path(directory, domain), directory, ()
      else:
        _, image_subdir, split_name, _ = coop_datasets.SPLIT_FILE_DATASETS[family]
        split_path, image_dir = os.path.join(directory, split_name), os.path.join(directory, image_subdir)
        ignored = coop_datasets.CALTECH_IGNORED if family == "caltech101" else ()
      if not os.path.exists(split_path):
        return None
      data = files.read_json(split_path)
      return {split: [(os.path.join(image_dir, e[0]), str(e[2])) for e in data[split] if str(e[2]) not in ignored]
              for split in coop_datasets.SPLIT_NAMES if split in data}
    if family == "fgvc_aircraft":
      return {split: [(os.path.join(directory, "images", line.split(" ", 1)[0] + ".jpg"), line.split(" ", 1)[1])
                      for line in _lines(os.path.join(directory, f"images_variant_{split}.txt"))]
              for split in coop_datasets.SPLIT_NAMES}
    if family in ("domainnet", "mini_domainnet"):
      split_dir = os.path.join(directory, "splits" if family == "domainnet" else "splits_mini")
      return {split: [(os.path.join(directory, line.rsplit(" ", 1)[0]), line.rsplit(" ", 1)[1])
                      for line in _lines(os.path.join(split_dir, f"{domain}_{split}.txt"))]
              for split in ("train", "test")}
  except (OSError, ValueError, KeyError, IndexError, TypeError):
    return None
  return None


def _lines(path):
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def folder_problems(name: str, root: str, directory: str) -> list[str]:
  """Class folders without images (and ImageNet's val folder left flat) where the classes are read from folders: the
  ImageNets, image_folder, and Office-Home / DTD-like datasets whose split file is still to be made."""
  family, domain = _split(name)
  parents = []
  if family in IMAGENET_FOLDERS:
    image_dir = os.path.join(directory, IMAGENET_FOLDERS[family][1])
    parents = [os.path.join(image_dir, s) for s in ("train", "val")] if family == "imagenet" else [image_dir]
  elif family == "image_folder":
    parents = [os.path.join(root, s) for s in coop_datasets.SPLIT_NAMES]
  elif family == "office_home" and not os.path.exists(_office_home_split_path(directory, domain)):
    parents = [os.path.join(*domains.office_home_domain_dir(root, domain))]
  elif family in coop_datasets.SELF_SPLIT_DATASETS and not os.path.exists(
      os.path.join(directory, coop_datasets.SPLIT_FILE_DATASETS[family][2])):  # without its split file, the folders
    parents = [os.path.join(directory, coop_datasets.SPLIT_FILE_DATASETS[family][1])]
  problems = []
  for parent in filter(os.path.isdir, parents):
    entries = list(os.scandir(parent))
    class_dirs = sorted(e.path for e in entries if e.is_dir() and not e.name.startswith("."))
    loose = [e for e in entries if e.is_file() and files.is_image_file(e.name)]
    if family == "imagenet" and loose and not class_dirs:
      problems.append(f"{parent} holds {len(loose)} images directly, not <wnid>/ class folders: re-organise the "
                      f"ImageNet validation set (docs/DATASETS.md)")
    problems += [f"class without images: {d}" for d in class_dirs
                 if not any(files.is_image_file(n) for n in os.listdir(d))]
  return problems


# --- images -----------------------------------------------------------------------------------------------------------
def image_problem(path: str, deep: bool = False) -> str | None:
  """Why `path` cannot be read, or None. Cheap: a non-empty file whose header Pillow opens and verifies (catches
  non-images, empty and garbled files, bad PNG chunks); deep: decoded to RGB exactly as training reads it."""
  try:
    if deep:
      files.read_image_file(path)
      return None
    if os.path.getsize(path) == 0:
      return "empty file"
    with Image.open(path) as image:
      image.verify()
  except Exception as error:  # pylint: disable=broad-except  (any failure to read is the finding)
    return f"{type(error).__name__}: {error}".replace(f" '{path}'", "").replace(path, "").splitlines()[0]
  return None


def unreadable_images(paths, deep: bool = False, workers: int | None = None) -> list[tuple[str, str]]:
  """(path, reason) for each unreadable image of `paths`, checked in a thread pool, in the order given."""
  workers = workers or min(32, 4 * (os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    reasons = pool.map(lambda p: image_problem(p, deep), paths, chunksize=64)
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


# --- one dataset ------------------------------------------------------------------------------------------------------
def check_dataset(name: str, root: str, expected: Expected | None = None, deep: bool = False,
                  check_images: bool = True, workers: int | None = None) -> Report:
  """Builds `name` under `root` as a run does and checks it; `expected` overrides `EXPECTED[name]`."""
  root = os.path.abspath(os.path.expanduser(root))
  report = Report(name, expected=expected if expected is not None else EXPECTED.get(name))
  report.directory = locate(name, root) if os.path.isdir(root) else None
  if report.directory is None:
    return report
  with tempfile.TemporaryDirectory(prefix="jaxprompt_check_") as scratch:
    source = build(name, root, report.directory, scratch, report)
  if source is not None:  # the builder has checked that every listed file exists
    present = _count_source(report, source)
  else:
    present = _count_listing(report, raw_listing(name, report.directory) or {})
    report.problems += folder_problems(name, root, report.directory)
  if check_images:
    present = list(dict.fromkeys(present))
    report.images_checked = len(present)
    report.problems += [f"unreadable image: {path} ({reason})" for path, reason in unreadable_images(present, deep,
                                                                                                    workers)]
  report.problems += count_mismatches(report)
  return report


def _count_source(report: Report, source) -> list[str]:
  """Counts a built source into `report` (a class without images in a split is a problem, a note for image_folder,
  which allows it); returns its image paths."""
  report.classes = source.num_classes
  for split, examples in source.splits.items():
    labels = {e.label for e in examples}
    report.counts[split] = (len(examples), len(labels))
    empty = [repr(source.raw_classnames[c]) for c in range(source.num_classes) if c not in labels]
    if empty:
      shown = ", ".join(empty[:10]) + (f" ... ({len(empty)} in all)" if len(empty) > 10 else "")
      (report.notes if report.name == "image_folder" else report.problems).append(
          f"classes without images in {split!r}: {shown}")
  return [str(e.key) for examples in source.splits.values() for e in examples]


def _count_listing(report: Report, listing: dict) -> list[str]:
  """Counts a raw listing into `report`, naming each listed file that does not exist; returns those that do."""
  report.classes = len({label for examples in listing.values() for _, label in examples})
  present = []
  for split, examples in listing.items():
    report.counts[split] = (len(examples), len({label for _, label in examples}))
    for path, _ in examples:
      if os.path.isfile(path):
        present.append(path)
      else:
        report.problems.append(f"missing file ({split}): {path}")
  return present


def count_mismatches(report: Report) -> list[str]:
  """Counts that differ from the expected figures (each names the split and both numbers)."""
  expected = report.expected
  if expected is None or not report.counts:
    return []
  problems = []
  for split, count in expected.splits.items():
    if split not in report.counts:
      problems.append(f"split {split!r} missing (expected {count:,} images)")
    elif report.counts[split][0] != count:
      problems.append(f"{split}: {report.counts[split][0]:,} images, expected {count:,}")
  if expected.classes is not None and report.classes != expected.classes:
    problems.append(f"{report.classes:,} classes, expected {expected.classes:,}")
  total = sum(n for n, _ in report.counts.values())
  if expected.total is not None and total != expected.total:
    problems.append(f"{total:,} images in all splits, expected {expected.total:,}")
  return problems


# --- output -----------------------------------------------------------------------------------------------------------
def format_report(report: Report, max_listed: int = 20) -> str:
  """The per-dataset table, notes and problems (at most `max_listed` problem lines, then a count)."""
  lines = [f"{report.name}: {report.status}  ({report.directory})"]
  expected = report.expected or Expected()
  rows = [("split", "images", "expected", "classes", "expected")]
  for split in [s for s in coop_datasets.SPLIT_NAMES if s in report.counts or s in expected.splits]:
    images, classes = report.counts.get(split, ("-", "-"))
    rows.append((split, _n(images), _n(expected.splits.get(split)), _n(classes), _n(expected.classes)))
  if report.counts:
    rows.append(("all", _n(sum(n for n, _ in report.counts.values())), _n(expected.total), _n(report.classes),
                 _n(expected.classes)))
  widths = [max(len(row[i]) for row in rows) for i in range(5)]
  lines += ["  " + "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]
  if report.expected is not None:
    lines.append(f"  expected figures: {report.expected.source}")
  lines += [f"  note: {note}" for note in report.notes]
  lines += [f"  problem: {p}" for p in report.problems[:max_listed]]
  if len(report.problems) > max_listed:
    lines.append(f"  ... and {len(report.problems) - max_listed} more problems ({len(report.problems)} in all)")
  return "\n".join(lines)


def _n(value) -> str:
  return "-" if value is None else (f"{value:,}" if isinstance(value, int) else str(value))


def summary(reports: list[Report], seconds: float, how: str = "header-checked") -> str:
  """The one-line summary: datasets ok / with problems (named) / absent, images checked and `how`, time taken."""
  failed = [r.name for r in reports if r.status == "FAIL"]
  absent = [r.name for r in reports if r.status == "absent"]
  checked = sum(r.images_checked for r in reports)
  parts = [f"{sum(r.status == 'ok' for r in reports)} ok", f"{len(failed)} with problems"
           + (f" ({', '.join(failed)})" if failed else ""), f"{len(absent)} absent"]
  images = "images not checked" if how == "not checked" else f"{checked:,} images {how}"
  return f"data check: {', '.join(parts)}; {images} in {seconds:.1f} s"


def load_expected(text: str) -> dict[str, Expected]:
  """--expected: a JSON file or inline JSON object {name: {"classes": n, "train": n, ...}}."""
  raw = files.read_json(text, "expected-counts file") if os.path.isfile(text) else json.loads(text)
  if not isinstance(raw, dict):
    raise ValueError(f"--expected must be a JSON object of dataset name -> counts, got {text!r}")
  return {name: Expected.from_dict(counts) for name, counts in raw.items()}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxprompt.data.check", description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True, help="datasets root (CoOp's $DATA) or one dataset's folder")
  parser.add_argument("--dataset", action="append", default=[], help="dataset name, repeatable (office_home/Art ...)")
  parser.add_argument("--all", action="store_true", help="every known dataset under --root; absent ones are listed")
  parser.add_argument("--deep", action="store_true", help="decode every image fully instead of verifying its header")
  parser.add_argument("--no-images", action="store_true", help="skip the image checks (structure and counts only)")
  parser.add_argument("--expected", help="JSON file or object overriding the expected counts: {name: {...}}")
  parser.add_argument("--workers", type=int, default=None, help="threads for the image checks")
  parser.add_argument("--max-listed", type=int, default=20, help="problem lines shown per dataset")
  args = parser.parse_args(argv)
  if args.all == bool(args.dataset):
    parser.error("give --dataset NAME (one or more) or --all")
  try:
    names = list(ALL_DATASETS) if args.all else expand(args.dataset)
    overrides = load_expected(args.expected) if args.expected else {}
  except (ValueError, TypeError, AttributeError, OSError) as error:
    parser.error(f"--expected / --dataset: {error}")
  if not os.path.isdir(os.path.expanduser(args.root)):
    print(f"dataset root not found: {args.root}")
    return 1
  start = time.perf_counter()
  reports = []
  for name in names:
    report = check_dataset(name, args.root, overrides.get(name), deep=args.deep, check_images=not args.no_images,
                           workers=args.workers)
    reports.append(report)
    if report.status != "absent":
      print(format_report(report, args.max_listed), flush=True)
    elif not args.all:
      print(f"{name}: absent (not found under {args.root}; see docs/DATASETS.md for its expected tree)")
  absent = [r.name for r in reports if r.status == "absent"]
  if args.all and absent:
    print(f"absent: {', '.join(absent)}")
  nothing = args.all and len(absent) == len(reports)
  if nothing:
    print(f"no dataset found under {args.root}")
  print(summary(reports, time.perf_counter() - start, "not checked" if args.no_images else
                "decoded" if args.deep else "header-checked"))
  failed = any(r.status == "FAIL" for r in reports) or (absent and not args.all)
  return 1 if failed or nothing else 0


if __name__ == "__main__":
  sys.exit(main())
