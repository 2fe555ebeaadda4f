"""File-system helpers shared by the folder-based sources: the default image reader, image listings, split files.

Every error names the path it is about, so a user can fix their dataset tree without reading this code.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import numpy as np
from etils import epath
from PIL import Image

from jaxprompt import workdir as workdirs
from jaxprompt.data.types import CorruptImageError, Example

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def read_image_file(path: str) -> np.ndarray:
  """Decodes an image file to uint8 (H, W, 3) RGB (greyscale, palette, alpha and high-bit-depth images are converted).

  High bit depths are scaled, never clipped (Pillow's own `convert("RGB")` clips them to 0..255, which turns a 16-bit
  image nearly white and a [0, 1] float image black); see `scale_to_uint8`. Raises FileNotFoundError for a missing
  file and `CorruptImageError` (naming the file) for one that cannot be decoded or whose values cannot be scaled.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"image file not found: {path}")
  try:
    with Image.open(path) as image:
      image.load()  # PIL decodes lazily: force the decode here so truncated files fail inside the try
      if image.mode in WIDE_MODES:
        grey = scale_to_uint8(np.asarray(image), f"mode {image.mode}")
        return np.repeat(grey[..., None], 3, axis=-1)
      rgb = image.convert("RGB")
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    raise CorruptImageError(f"cannot decode image {path}: {error}") from error
  return np.asarray(rgb, dtype=np.uint8)


WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
"""Pillow's single-channel modes wider than 8 bits: 16-bit PNG/TIFF, 32-bit integer TIFF, 32-bit float TIFF."""


def scale_to_uint8(pixels: np.ndarray, where: str) -> np.ndarray:
  """Any-depth pixels (..., C or none) -> uint8 of the same shape, keeping what the values mean.

  uint8: unchanged. uint16 (16-bit PNG/TIFF, mode I;16): round(v * 255 / 65535). Other integers (mode I, 32-bit):
    values in 0..255 are taken as 8-bit, values in 0..65535 (Pillow opens some 16-bit files as mode I) as 16-bit
    (scaled as uint16); anything outside 0..65535 is refused (no scaling of 32-bit ranges is guessed).
  float (mode F): values in [0, 1] -> round(v * 255); values in [0, 255] with some above 1 are taken as 8-bit
    values stored as floats (rounded); NaN/inf or values outside [0, 255] are refused.
  Refusals raise ValueError naming `where` and the value range.
  """
  if pixels.dtype == np.uint8:
    return pixels
  if pixels.size == 0:
    raise ValueError(f"{where}: no pixels")
  if np.issubdtype(pixels.dtype, np.floating):
    if not np.isfinite(pixels).all():
      raise ValueError(f"{where}: float pixels hold NaN or inf")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 255:
      raise ValueError(f"{where}: float pixels range over [{low:g}, {high:g}], expected [0, 1] or [0, 255]")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.round(pixels.astype(np.float64) * scale).astype(np.uint8)
  if not np.issubdtype(pixels.dtype, np.integer):
    raise ValueError(f"{where}: pixels of dtype {pixels.dtype} are not supported")
  low, high = int(pixels.min()), int(pixels.max())
  if pixels.dtype != np.uint16 and 0 <= low and high <= 255:
    return pixels.astype(np.uint8)
  if low < 0 or high > 65535:
    raise ValueError(f"{where}: integer pixels range over [{low}, {high}], expected 0..255 or 0..65535")
  return np.round(pixels.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)


def read_example_file(example: Example) -> np.ndarray:
  """The `ImageReader` of the folder-based sources: `example.key` is the image's path."""
  return read_image_file(str(example.key))


def is_image_file(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def require_dir(path: str, what: str = "dataset folder") -> str:
  """Returns `path` if it is a directory, else raises FileNotFoundError naming it."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  return path


def require_file(path: str, what: str = "file") -> str:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} not found: {path}")
  return path


def list_subdirs(path: str, ignore: Iterable[str] = ()) -> list[str]:
  """Sorted names of the non-hidden sub-folders of `path` (which must exist)."""
  require_dir(path)
  ignored = set(ignore)
  return sorted(entry.name for entry in os.scandir(path)
                if entry.is_dir() and not entry.name.startswith(".") and entry.name not in ignored)


def list_images(folder: str, order: str = "sorted") -> list[str]:
  """File names of the images in `folder`; raises ValueError naming the folder when it holds none.

  order="sorted" (the default: the same on every machine) or "listdir" (the file system's own order, `os.listdir`,
  which is what the reference's ImageNet reader uses, so its few-shot draw depends on the machine's file system).
  """
  require_dir(folder, "class folder")
  if order not in ("sorted", "listdir"):
    raise ValueError(f"file order must be 'sorted' or 'listdir', got {order!r}")
  names = [name for name in os.listdir(folder) if is_image_file(name) and os.path.isfile(os.path.join(folder, name))]
  if order == "sorted":
    names.sort()
  if not names:
    raise ValueError(f"class folder has no images ({', '.join(IMAGE_EXTENSIONS)}): {folder}")
  return names


def dataset_dir(root: str | os.PathLike, folder: str, marker: str | None = None) -> str:
  """The dataset's own folder: `<root>/<folder>` (the CoOp convention, root = the datasets root), or `root` itself
  when it already is that folder (it contains `marker`, or its name is `folder`)."""
  root = os.path.abspath(os.path.expanduser(os.fspath(root)))
  require_dir(root, "dataset root")
  nested = os.path.join(root, folder)
  if os.path.isdir(nested):
    return nested
  if os.path.basename(root) == folder or (marker is not None and os.path.exists(os.path.join(root, marker))):
    return root
  raise FileNotFoundError(f"dataset folder not found: {nested} (root {root} has no {folder!r} sub-folder)")


def check_files_exist(examples: Sequence[Example], listed_in: str) -> None:
  """Raises FileNotFoundError naming the first few missing files (and the list that names them)."""
  missing = [str(example.key) for example in examples if not os.path.isfile(str(example.key))]
  if missing:
    shown = ", ".join(missing[:5]) + (f" ... ({len(missing)} missing in total)" if len(missing) > 5 else "")
    raise FileNotFoundError(f"{listed_in} lists image files that do not exist: {shown}")


def read_json(path: str, what: str = "split file"):
  """A JSON file (local or gs://, through etils.epath); a missing or invalid file is an error naming it."""
  location = epath.Path(path)
  if not location.is_file():
    raise FileNotFoundError(f"{what} not found: {path}")
  try:
    return json.loads(location.read_text())
  except json.JSONDecodeError as error:
    raise ValueError(f"{what} is not valid JSON: {path}: {error}") from error


def write_json(path: str, obj) -> None:
  """Writes atomically (local: temp file + rename; gs://: one upload) so a crash never leaves half a split file."""
  workdirs.write_json_atomic(path, obj, indent=1)


def classnames_from_labels(pairs: Iterable[tuple[int, str]], where: str) -> list[str]:
  """Class names indexed by label from (label, name) pairs; labels must be 0..n-1, each with one name."""
  names: dict[int, str] = {}
  for label, name in pairs:
    if names.setdefault(label, name) != name:
      raise ValueError(f"{where}: label {label} has two class names, {names[label]!r} and {name!r}")
  if not names:
    raise ValueError(f"{where}: no examples")
  missing = sorted(set(range(max(names) + 1)) - set(names))
  if missing or min(names) < 0:
    raise ValueError(f"{where}: labels must be 0..{max(names)} with none missing; missing {missing[:10]}")
  return [names[label] for label in range(len(names))]


def prompt_name(raw: str) -> str:
  """Prompt-ready class name: underscores become spaces ("american_bulldog" -> "american bulldog")."""
  return raw.replace("_", " ")
