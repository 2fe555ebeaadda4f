"""CLIP preprocessing on numpy/Pillow, matching torchvision's RandomResizedCrop / Resize / CenterCrop.

Train: RandomResizedCrop(size, scale 0.08..1, ratio 3/4..4/3, bicubic) -> horizontal flip p=0.5 -> [0, 1] ->
normalise. The crop is cut out first and then resized, exactly as torchvision's `resized_crop` does on PIL images
(`img.crop(box).resize(...)`): resizing with `Image.resize(box=...)` instead would let the bicubic filter read pixels
outside the box and change border pixels by up to ~1 in normalised units.
Test: resize the shorter side to `size` (bicubic) -> center crop -> [0, 1] -> normalise. `size` comes from the
backbone config. The train transform draws from a numpy Generator; `augment_rng(seed, epoch, index)` makes
it a pure function of (seed, epoch, example index), so a resumed run sees the same augmented images.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def augment_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
  """The train transform's generator for example `index` (position in the source split) in `epoch`."""
  return np.random.default_rng([seed, epoch, index, 1])  # the trailing 1 keeps it apart from the shuffle stream


def normalize(image: np.ndarray) -> np.ndarray:
  """uint8 (H, W, 3) -> float32 (H, W, 3) in CLIP's normalised space ((x / 255 - mean) / std)."""
  return (image.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator, scale=(0.08, 1.0),
                            ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """torchvision's RandomResizedCrop.get_params: (top, left, crop height, crop width).

  Ten tries at an area fraction in `scale` and a log-uniform aspect ratio in `ratio`; then the central crop with the
  ratio clamped to `ratio`.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def train_transform(image: np.ndarray, size: int, rng: np.random.Generator, min_scale: float = 0.08) -> np.ndarray:
  """uint8 (H, W, 3) -> float32 (size, size, 3): random resized crop (box from `random_resized_crop_box`, cropped then
  resized bicubic; area fraction min_scale..1), flip p=0.5 (one more draw from `rng`), normalise."""
  height, width = image.shape[:2]
  top, left, h, w = random_resized_crop_box(height, width, rng, scale=(min_scale, 1.0))
  crop = Image.fromarray(image).crop((left, top, left + w, top + h))  # crop first, then resize: as torchvision does
  out = np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC))
  if rng.random() < 0.5:
    out = out[:, ::-1]
  return normalize(out)


def resize_shorter_side(height: int, width: int, size: int) -> tuple[int, int]:
  """torchvision Resize(int): the shorter side becomes `size`, the longer int(size * long / short)."""
  if height <= width:
    return size, int(size * width / height)
  return int(size * height / width), size


def test_transform(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 (H, W, 3) -> float32 (size, size, 3): resize shorter side to `size` (bicubic), center crop, normalise."""
  height, width = image.shape[:2]
  new_h, new_w = resize_shorter_side(height, width, size)
  resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC))
  top = int(round((new_h - size) / 2.0))
  left = int(round((new_w - size) / 2.0))
  return normalize(resized[top:top + size, left:left + size])
