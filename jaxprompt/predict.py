"""Learned prompts on one's own images: `load_run(workdir)` gives a `Classifier`; the command line prints and writes
each image's top-k classes with their probabilities.

    python -m jaxprompt.predict --workdir runs/coop_dtd photos/ cat.jpg
    python -m jaxprompt.predict --workdir runs/coop_dtd --classnames my_classes.txt --top-k 3 photos/
    python -m jaxprompt.predict --prompts shared/prompts.npz --backbone embedded --templates "a photo of a {}." a.png

    import jaxprompt
    classifier = jaxprompt.load_run("runs/coop_dtd")
    classifier.predict(["cat.jpg"], k=3)           # [[("banded", 0.61), ("striped", 0.22), ("zigzagged", 0.05)]]

What is loaded: the run's `config.json` (method block, backbone) and its prompt export `prompts.npz` (+ `prompts.json`:
the training class names), or checkpoint `checkpoint` ("latest" or a step) of `<workdir>/checkpoints`. The method is
built as training built it (`methods.build_for_run` over the training classes and the training dataset's templates),
then viewed over another class list with `method.for_classes` when one is given; a method that cannot score another
list (CoOp with class-specific context) refuses with its own message. Templates matter only when the run's
`method.templates` is empty or names a `template_set`: they are then the training dataset's own, read from its data
source (the world tasks need nothing on disk); when that source cannot be built, pass `templates=[...]`
(`--templates`). A prompt export alone (`load_export`, `--prompts`) needs `--config` (a run's config.json or a
config file `configs/x.py[:arg]`) or the export's own method block plus `--backbone`.

Images (one rule): raw RGB pixels, each a file path, a PIL image or a uint8 array (H, W, 3) (or one uint8 stack
(N, H, W, 3)); each is read as the data sources read files (`files.read_image_file`: greyscale, palette, alpha and
16-bit images converted) and transformed exactly as evaluation does (`transforms.test_transform`: shorter side to
the backbone's size, bicubic, centre crop, CLIP normalisation). Already-normalised batches go to `batch_logits`.
Batches are padded with zero images to `batch_size` (as evaluation pads), so every batch reuses one compilation.

Outputs of the command (`--out DIR`, default ./predictions): `predictions.csv` with columns image, rank, class,
probability, logit (one row per image and rank, rank 1 = most probable) and `predictions.json` ({"model": what was
loaded, "classnames", "top_k", "predictions": [{"image", "top": [{"class", "probability", "logit"}]}], "skipped":
[{"image", "error"}]}). An unreadable image is reported by name and skipped; a missing path stops with one line.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import sys
from typing import Any, Iterable, Sequence

import jax
import ml_collections
import numpy as np
from PIL import Image

import jaxprompt
from jaxprompt import checkpoint as prompt_files
from jaxprompt import methods, parallel, train
from jaxprompt import workdir as workdir_files
from jaxprompt.data import files, fewshot, protocol, transforms
from jaxprompt.data.types import CorruptImageError

Params = dict[str, Any]
CSV_COLUMNS = ("image", "rank", "class", "probability", "logit")


# --- the classifier ---------------------------------------------------------------------------------------------------
class Classifier:
  """A trained method with its trainable tree and frozen CLIP, scoring images over `classnames` (C classes).

  logits(images) -> float32 (N, C); probabilities(images) -> float64 (N, C), rows sum to 1; predict(images, k) ->
  per image the k most probable (class, probability) pairs. `images` as the module docstring says.
  """

  def __init__(self, method, trainable: Params, frozen: Params, *, batch_size: int = 32,
               source: dict[str, Any] | None = None):
    if batch_size < 1:
      raise ValueError(f"batch_size={batch_size} must be >= 1")
    self.method, self.trainable, self.frozen, self.batch_size = method, trainable, frozen, batch_size
    self.source = dict(source or {})  # what was loaded (workdir, prompts, checkpoint), for the outputs
    self.classnames = list(method.classnames)
    self.image_size = method.clip.vision.image_size
    self._logits = jax.jit(method.logits)

  def for_classes(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> "Classifier":
    """The same prompts over another class list (`method.for_classes`; the training templates unless given)."""
    view = self.method.for_classes(list(classnames), templates)
    return Classifier(view, self.trainable, self.frozen, batch_size=self.batch_size, source=self.source)

  def preprocess(self, image) -> np.ndarray:
    """One image (path, PIL image or uint8 (H, W, 3)) -> float32 (S, S, 3), normalised as evaluation does."""
    return transforms.test_transform(pixels_of(image), self.image_size)

  def batch_logits(self, batch: np.ndarray) -> np.ndarray:
    """float32 (N, S, S, 3), already normalised -> float32 (N, C), `batch_size` images per call (zero-padded)."""
    batch = np.asarray(batch, np.float32)
    if batch.ndim != 4 or batch.shape[1:] != (self.image_size, self.image_size, 3):
      raise ValueError(f"normalised images must be (N, {self.image_size}, {self.image_size}, 3), got {batch.shape}")
    out = []
    for start in range(0, len(batch), self.batch_size):
      chunk = batch[start:start + self.batch_size]
      padded = np.zeros((self.batch_size,) + chunk.shape[1:], np.float32)
      padded[:len(chunk)] = chunk
      out.append(np.asarray(jax.device_get(self._logits(self.trainable, self.frozen, padded)))[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, len(self.classnames)), np.float32)

  def logits(self, images) -> np.ndarray:
    """Raw images -> float32 (N, C), read and transformed `batch_size` at a time. An unreadable file raises
    `CorruptImageError` naming it (the command line skips such files instead)."""
    images = image_list(images)
    out = [self.batch_logits(np.stack([self.preprocess(image) for image in images[start:start + self.batch_size]]))
           for start in range(0, len(images), self.batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(self.classnames)), np.float32)

  def probabilities(self, images) -> np.ndarray:
    """float64 (N, C): softmax of `logits` (computed in float64, so each row sums to 1)."""
    return softmax(self.logits(images))

  def predict(self, images, k: int = 5) -> list[list[tuple[str, float]]]:
    """Per image its min(k, C) most probable classes as (class name, probability), most probable first."""
    return [[(name, probability) for name, probability, _ in row] for row in self.top_k(self.logits(images), k)]

  def top_k(self, logits: np.ndarray, k: int) -> list[list[tuple[str, float, float]]]:
    """logits (N, C) -> per row the min(k, C) best (class name, probability, logit); ties keep class order."""
    probabilities = softmax(logits)
    rows = []
    for row_logits, row_probabilities in zip(logits, probabilities):
      order = np.argsort(-row_logits, kind="stable")[:max(1, min(k, len(self.classnames)))]
      rows.append([(self.classnames[c], float(row_probabilities[c]), float(row_logits[c])) for c in order])
    return rows


def softmax(logits: np.ndarray) -> np.ndarray:
  """(N, C) -> float64 (N, C) probabilities."""
  shifted = np.asarray(logits, np.float64) - np.max(logits, axis=-1, keepdims=True)
  exp = np.exp(shifted)
  return exp / exp.sum(axis=-1, keepdims=True)


def image_list(images) -> list:
  """The `images` argument as a list of single images (a uint8 stack (N, H, W, 3) becomes N arrays)."""
  if isinstance(images, np.ndarray) and images.ndim == 4:
    return list(images)
  if isinstance(images, (str, os.PathLike, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim == 3):
    return [images]
  return list(images)


def pixels_of(image) -> np.ndarray:
  """uint8 (H, W, 3) RGB of a path (read as the data sources read files), a PIL image or a uint8 array."""
  if isinstance(image, (str, os.PathLike)):
    return files.read_image_file(os.fspath(image))
  if isinstance(image, Image.Image):
    image.load()
    if image.mode in files.WIDE_MODES:
      grey = files.scale_to_uint8(np.asarray(image), f"PIL image mode {image.mode}")
      return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), np.uint8)
  pixels = np.asarray(image)
  if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
    raise ValueError(f"an image array must be uint8 RGB pixels (H, W, 3), got {pixels.dtype} {pixels.shape}; "
                     "normalised float batches go to Classifier.batch_logits")
  return pixels


# --- loading a run ----------------------------------------------------------------------------------------------------
def load_run(workdir: str, *, classnames: Sequence[str] | None = None, checkpoint: str | int | None = None,
             prompts: str | None = None, templates: Sequence[str] | None = None,
             batch_size: int = 32) -> Classifier:
  """The trained method of a single-task run's workdir as a `Classifier`.

  classnames: score these classes instead of the training ones (through `method.for_classes`); checkpoint: "latest"
  or a step of `<workdir>/checkpoints` instead of the final export `prompts.npz`; prompts: another prompt export to
  load with this run's config; templates: the training dataset's templates, when its source cannot be built here.
  """
  config_path = workdir_files.as_path(workdir) / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"{config_path} not found: {workdir} is not a jaxprompt workdir")
  config = ml_collections.ConfigDict(workdir_files.read_json(config_path))
  if config.get("run_kind", "single") != "single":
    raise ValueError(f"{config_path}: run_kind={config.run_kind!r}; load_run reads single-task runs only")
  if checkpoint is not None and prompts is not None:
    raise ValueError("load_run: give a checkpoint or a prompt export, not both")
  prompts_path = os.fspath(prompts or os.path.join(os.fspath(workdir), "prompts.npz"))
  loaded = {"workdir": os.fspath(workdir)}
  loaded.update({"checkpoint": str(checkpoint)} if checkpoint is not None else {"prompts": prompts_path})
  return _classifier(config, prompts_path, loaded, classnames=classnames, templates=templates,
                     batch_size=batch_size, has_data=True,
                     checkpoint=(workdir, str(checkpoint)) if checkpoint is not None else None)


def load_export(prompts: str, *, config: str | ml_collections.ConfigDict | None = None, backbone: str | None = None,
                classnames: Sequence[str] | None = None, templates: Sequence[str] | None = None,
                batch_size: int = 32) -> Classifier:
  """A prompt export (`prompts.npz` + `prompts.json`) alone as a `Classifier`.

  config: a run config (ConfigDict, a run's config.json or a config file `configs/x.py[:arg]`); without one the
  export's own method block (`prompts.json` "method_config") and `backbone` are used, and the training dataset's
  templates must come from the method block or `templates`.
  """
  if config is not None:
    run_config = config if isinstance(config, ml_collections.ConfigDict) else read_config(config)
    run_config.backbone = backbone or run_config.backbone
  else:
    metadata = _metadata(prompts)
    if "method_config" not in metadata:
      raise ValueError(f"{_metadata_path(prompts)} has no method_config: pass a config (--config)")
    if not backbone:
      raise ValueError(f"prompt export {prompts} without a config needs a backbone (--backbone)")
    from jaxprompt.config import base_config  # noqa: PLC0415  (the defaults of every other block)
    run_config = base_config()
    run_config.method = ml_collections.ConfigDict(metadata["method_config"])
    run_config.backbone = backbone
  return _classifier(run_config, os.fspath(prompts), {"prompts": os.fspath(prompts)}, classnames=classnames,
                     templates=templates, batch_size=batch_size, has_data=config is not None)


def read_config(path: str) -> ml_collections.ConfigDict:
  """A run config from a run's config.json or a config file `configs/x.py[:arg]` (its `get_config(arg)`)."""
  if path.endswith(".json"):
    if not os.path.isfile(path):
      raise FileNotFoundError(f"config file {path} not found")
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  file, _, arg = path.partition(":")
  if not os.path.isfile(file):
    raise FileNotFoundError(f"config file {file} not found")
  spec = importlib.util.spec_from_file_location("jaxprompt_predict_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


def _classifier(config, prompts_path: str, loaded: dict, *, classnames, templates, batch_size, has_data: bool,
                checkpoint: tuple[str, str] | None = None) -> Classifier:
  """Builds the method as training did (training classes and templates), loads its trainable tree from
  `prompts_path` or `checkpoint` (workdir, "latest" or step), views it over `classnames` if given.

  has_data: whether `config.data` describes the training data (else nothing is read from a data source)."""
  mesh = parallel.make_mesh(1)
  backbone = train.load_backbone(config)
  metadata = _metadata(prompts_path)
  trained = metadata.get("classnames") or _source_classnames(config, classnames, has_data)
  templates = templates or metadata.get("dataset_templates")  # recorded by training since the export has them
  method = methods.build_for_run(config.method, backbone, trained, dataset_templates(config, templates, has_data))
  if checkpoint is None:
    trainable = prompt_files.load_for_eval(prompts_path, method.init, method.name, mesh)
  elif jax.tree_util.tree_leaves(jax.eval_shape(method.init, jax.random.key(0))):
    from jaxprompt.trainers import evaluation  # noqa: PLC0415  (the eval run kind's checkpoint restore)
    trainable, _ = evaluation.restore_trainable(config, checkpoint[0], method.init, mesh, checkpoint[1])
  else:
    trainable = {}  # nothing trained (zero-shot)
  if classnames is not None and list(classnames) != list(method.classnames):
    method = method.for_classes(list(classnames))
  return Classifier(method, trainable, parallel.replicate(backbone.params, mesh), batch_size=batch_size,
                    source=loaded)


def _metadata_path(prompts_path) -> str:
  return os.path.join(os.path.dirname(os.fspath(prompts_path)), "prompts.json")


def _metadata(prompts_path) -> dict:
  path = _metadata_path(prompts_path)
  return workdir_files.read_json(path) if workdir_files.as_path(path).exists() else {}


def _source_classnames(config, classnames, has_data: bool) -> list[str]:
  """The training classes when no prompts.json names them: the data source's (base half under base2novel)."""
  where = "the export has no prompts.json naming its training classes"
  if not has_data:
    if classnames is not None:
      return list(classnames)
    raise ValueError(f"{where}; pass the class names (--classnames)")
  try:
    source = protocol.load_source(config.data)
  except (OSError, ValueError, KeyError, ImportError) as error:  # a dataset that is not on this machine
    raise ValueError(f"{where} and data source {config.data.name} cannot be built here ({_first_line(error)}); "
                     "pass the class names (--classnames)") from error
  if config.data.protocol == "base2novel":
    source = fewshot.subsample_classes(source, "base")
  return list(source.raw_classnames)


def needs_dataset_templates(method_config: ml_collections.ConfigDict) -> bool:
  """Whether building the method reads the dataset's templates (`methods.base.resolve_templates`)."""
  return bool(method_config.get("template_set", "")) or not method_config.get("templates", [])


def dataset_templates(config, templates: Sequence[str] | None, has_data: bool) -> list[str]:
  """The training dataset's templates: `templates` if given; none when the method block fixes its own; else the
  training data source's (built from `config.data`), or a one-line error saying to pass them."""
  if templates:
    return list(templates)
  if not needs_dataset_templates(config.method):
    return []
  if not has_data:
    raise ValueError("method.templates is empty, so the method needs the training dataset's templates: pass "
                     "--templates (or --config with the run's data block)")
  try:
    return list(protocol.load_source(config.data).templates)
  except (OSError, ValueError, KeyError, ImportError) as error:  # a dataset that is not on this machine
    raise ValueError(f"method.templates is empty, so the method needs the templates of data source "
                     f"{config.data.name}, which cannot be built here ({_first_line(error)}); pass them (--templates "
                     "'a photo of a {}.' or templates=[...])") from error


def _first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


# --- the command line -------------------------------------------------------------------------------------------------
def image_paths(inputs: Iterable[str]) -> list[str]:
  """Files as given, directories searched recursively (sorted; image extensions of `files.IMAGE_EXTENSIONS`, hidden
  entries skipped). A path that does not exist raises FileNotFoundError naming it."""
  found = []
  for path in inputs:
    if os.path.isfile(path):
      found.append(path)
    elif os.path.isdir(path):
      for directory, subdirs, names in os.walk(path):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found += [os.path.join(directory, name) for name in sorted(names) if files.is_image_file(name)]
    else:
      raise FileNotFoundError(f"image path not found: {path}")
  return found


def read_classnames(path: str) -> list[str]:
  """A class list: a JSON list (.json) or one name per line (blank lines and '#' comments skipped)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"class names file {path} not found")
  with open(path) as f:
    names = json.load(f) if path.endswith(".json") else [
        line.strip() for line in f if line.strip() and not line.strip().startswith("#")]
  if not names or not all(isinstance(name, str) and name for name in names):
    raise ValueError(f"{path}: expected a non-empty list of class names")
  duplicates = sorted({name for name in names if names.count(name) > 1})
  if duplicates:
    raise ValueError(f"{path}: class names listed twice: {', '.join(duplicates)}")
  return names


def predict_files(classifier: Classifier, paths: Sequence[str], k: int):
  """(predictions [(path, [(class, probability, logit)])], skipped [(path, error)]): unreadable files are skipped
  with a warning on stderr naming them."""
  predictions, skipped = [], []
  for start in range(0, len(paths), classifier.batch_size):
    kept, batch = [], []
    for path in paths[start:start + classifier.batch_size]:
      try:
        batch.append(classifier.preprocess(path))
      except (CorruptImageError, OSError, ValueError) as error:
        print(f"skipping unreadable image {path}: {_first_line(error)}", file=sys.stderr)
        skipped.append((path, _first_line(error)))
        continue
      kept.append(path)
    if kept:
      predictions += zip(kept, classifier.top_k(classifier.batch_logits(np.stack(batch)), k))
  return predictions, skipped


def write_outputs(out_dir: str, classifier: Classifier, k: int, predictions, skipped) -> tuple[str, str]:
  """Writes `predictions.csv` and `predictions.json` under `out_dir` (module docstring); returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  csv_path, json_path = os.path.join(out_dir, "predictions.csv"), os.path.join(out_dir, "predictions.json")
  with open(csv_path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for path, top in predictions:
      for rank, (name, probability, logit) in enumerate(top, 1):
        writer.writerow([path, rank, name, f"{probability:.6f}", f"{logit:.6f}"])
  record = {"model": {"method": classifier.method.name, **classifier.source}, "classnames": classifier.classnames,
            "top_k": k,
            "predictions": [{"image": path, "top": [{"class": name, "probability": probability, "logit": logit}
                                                    for name, probability, logit in top]}
                            for path, top in predictions],
            "skipped": [{"image": path, "error": error} for path, error in skipped]}
  workdir_files.write_json_atomic(json_path, record)
  return csv_path, json_path


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m jaxprompt.predict",
                                   description="Top-k classes of images under a trained run's prompts.")
  parser.add_argument("images", nargs="+", help="image files or directories (searched recursively)")
  parser.add_argument("--workdir", help="a single-task run's workdir (config.json + prompts.npz)")
  parser.add_argument("--prompts", help="a prompt export prompts.npz (with --workdir: instead of the workdir's)")
  parser.add_argument("--config", help="with --prompts alone: a run's config.json or configs/x.py[:arg]")
  parser.add_argument("--backbone", help="with --prompts alone: the CLIP the prompts were trained on")
  parser.add_argument("--checkpoint", help="'latest' or a step of <workdir>/checkpoints instead of prompts.npz")
  parser.add_argument("--classnames", help="classes to score: one per line, or a .json list (default: training's)")
  parser.add_argument("--templates", action="append", help="the training dataset's templates (repeatable)")
  parser.add_argument("--top-k", type=int, default=5, help="classes listed per image (default 5)")
  parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
  parser.add_argument("--out", default="predictions", help="output folder (default ./predictions)")
  args = parser.parse_args(argv)
  if not args.workdir and not args.prompts:
    parser.error("give --workdir or --prompts")
  if args.top_k < 1:
    parser.error(f"--top-k must be >= 1, got {args.top_k}")
  return args


def run(args) -> int:
  paths = image_paths(args.images)
  if not paths:
    raise FileNotFoundError(f"no image files in {', '.join(args.images)}")
  classnames = read_classnames(args.classnames) if args.classnames else None
  if args.workdir:
    classifier = load_run(args.workdir, classnames=classnames, checkpoint=args.checkpoint, prompts=args.prompts,
                          templates=args.templates, batch_size=args.batch_size)
  else:
    classifier = load_export(args.prompts, config=args.config, backbone=args.backbone, classnames=classnames,
                             templates=args.templates, batch_size=args.batch_size)
  predictions, skipped = predict_files(classifier, paths, args.top_k)
  for path, top in predictions:
    print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability, _ in top))
  csv_path, json_path = write_outputs(args.out, classifier, args.top_k, predictions, skipped)
  print(f"{len(predictions)} images classified, {len(skipped)} skipped; wrote {csv_path} and {json_path}")
  return 0


def main(argv=None) -> int:
  jaxprompt.flax_only_transformers()
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    return run(args)
  except (OSError, ValueError, KeyError, prompt_files.CheckpointError) as error:
    print(f"error: {_first_line(error)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.exit(main())
