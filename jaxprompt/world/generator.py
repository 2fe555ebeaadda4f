"""The shapes world: procedural, seeded images of one coloured shape drawn in one of four styles.

An image is fully determined by its attributes (shape, colour, style, size, position) plus the nuisance draws of a
numpy Generator (exact place, rotation jitter, colour jitter, background, texture, stroke noise). Both come from
`np.random.default_rng([seed, index])`, so `render(seed, index)` is a pure function of (seed, index).

Styles (the world's domains, analogues of Office-Home's Real World / Clipart / Art and ImageNet-Sketch):
  photo     shaded filled shape with a soft shadow on a textured, gradient background, sensor noise
  sketch    jittery coloured outline (and hatching) on off-white paper
  painting  blotchy canvas, shape filled with colour-perturbed brush noise, blurred
  cartoon   flat fill with a thick black outline on a flat pastel background
Shapes are drawn at twice the size and box-filtered down (anti-aliasing). 20k images take a few seconds.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "heart")
COLOURS = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 30), "green": (40, 170, 50),
    "cyan": (30, 200, 220), "blue": (35, 60, 220), "purple": (140, 40, 190), "pink": (250, 120, 190),
}
STYLES = ("photo", "sketch", "painting", "cartoon")
SIZES = {"small": (0.20, 0.25), "medium": (0.27, 0.32), "big": (0.34, 0.40)}  # radius / image size
POSITIONS = ("middle", "left", "right", "top", "bottom")
IMAGE_SIZE = 32
_SUPERSAMPLE = 2


@dataclasses.dataclass(frozen=True)
class Attributes:
  """What an image shows; every field is a word of the world's vocabulary."""
  shape: str
  colour: str
  style: str
  size: str
  position: str


def rng_for(*keys: int) -> np.random.Generator:
  """A numpy Generator seeded from a tuple of non-negative ints (seed, index, ...)."""
  return np.random.default_rng([int(k) for k in keys])


def sample_attributes(rng: np.random.Generator, shape=None, colour=None, style=None, size=None,
                      position=None) -> Attributes:
  """Uniform attributes; any attribute given by the caller is kept as it is."""
  pick = lambda options: options[int(rng.integers(len(options)))]
  return Attributes(
      shape=shape or pick(SHAPES), colour=colour or pick(list(COLOURS)), style=style or pick(STYLES),
      size=size or pick(list(SIZES)), position=position or pick(POSITIONS))


def render(seed: int, index: int, size: int = IMAGE_SIZE, **fixed) -> tuple[np.ndarray, Attributes]:
  """Image number `index` of world `seed`: (uint8 (size, size, 3), its Attributes).

  Keyword arguments (shape=, colour=, style=, size_word=, position=) fix attributes; the rest are drawn.
  """
  rng = rng_for(seed, index)
  if "size_word" in fixed:
    fixed["size"] = fixed.pop("size_word")
  attributes = sample_attributes(rng, **fixed)
  return draw(attributes, rng, size), attributes


# ---------------------------------------------------------------------------------------------------------------------
# Geometry: outlines as polygons in a unit frame (radius 1), then placed.

def _regular(n, phase, radius=1.0):
  return [(radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n))
          for k in range(n)]


def _unit_outline(shape: str) -> list[tuple[float, float]]:
  """Outline of `shape` in a frame where y points down and the shape spans about [-1, 1]^2."""
  if shape == "circle" or shape == "ring":
    return _regular(48, 0.0)
  if shape == "square":
    return [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
  if shape == "triangle":
    return [(x, y + 0.15) for x, y in _regular(3, -math.pi / 2, 1.05)]
  if shape == "diamond":
    return [(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)]
  if shape == "star":
    points = []
    for k in range(10):
      radius = 1.0 if k % 2 == 0 else 0.42
      angle = -math.pi / 2 + math.pi * k / 5
      points.append((radius * math.cos(angle), radius * math.sin(angle) + 0.08))
    return points
  if shape == "cross":
    a, b = 0.3, 0.9
    return [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
            (-a, -a)]
  if shape == "heart":
    points = []
    for k in range(40):
      t = 2 * math.pi * k / 40
      x = 16 * math.sin(t) ** 3
      y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
      points.append((x / 17.0, -y / 17.0 - 0.05))
    return points
  raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


_OUTLINES = {shape: np.asarray(_unit_outline(shape), np.float64) for shape in SHAPES}


def _place(attributes: Attributes, rng: np.random.Generator, canvas: int):
  """Returns (polygon as [(x, y)], centre, radius) on a canvas of `canvas` pixels."""
  low, high = SIZES[attributes.size]
  radius = canvas * rng.uniform(low, high)
  margin = radius + 1
  slack = canvas / 2 - margin  # how far the centre may move from the middle
  jitter = lambda: rng.uniform(-0.25, 0.25) * slack
  dx, dy = {"middle": (jitter(), jitter()), "left": (-slack * rng.uniform(0.7, 1.0), jitter()),
            "right": (slack * rng.uniform(0.7, 1.0), jitter()), "top": (jitter(), -slack * rng.uniform(0.7, 1.0)),
            "bottom": (jitter(), slack * rng.uniform(0.7, 1.0))}[attributes.position]
  centre = np.array([canvas / 2 + dx, canvas / 2 + dy])
  angle = rng.uniform(-0.2, 0.2)  # radians: small, so a square never turns into a diamond
  rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
  points = _OUTLINES[attributes.shape] @ rotation.T * radius + centre
  return [tuple(p) for p in points], centre, radius


# ---------------------------------------------------------------------------------------------------------------------
# Styles.

def _jitter_colour(rgb, rng, amount):
  return tuple(int(c) for c in np.clip(np.asarray(rgb) + rng.normal(0, amount, 3), 0, 255))


def _smooth_noise(rng, canvas, cells, amplitude):
  """Low-frequency noise (canvas, canvas, 3) float: a coarse random grid upsampled bilinearly."""
  grid = rng.normal(0, amplitude, (cells, cells, 3)).astype(np.float32)
  channels = [np.asarray(Image.fromarray(grid[..., c]).resize((canvas, canvas), Image.BILINEAR)) for c in range(3)]
  return np.stack(channels, -1)


def _fill_shape(draw, attributes, polygon, centre, radius, fill, outline=None, width=0):
  """Draws the shape filled with `fill` (a ring is a thick circle outline), optionally outlined."""
  if attributes.shape == "ring":
    box = [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius]
    thickness = max(2, int(radius * 0.38))
    draw.ellipse(box, outline=fill, width=thickness)
    if outline is not None:
      draw.ellipse(box, outline=outline, width=width)
      inner = radius - thickness
      draw.ellipse([centre[0] - inner, centre[1] - inner, centre[0] + inner, centre[1] + inner], outline=outline,
                   width=width)
    return
  draw.polygon(polygon, fill=fill)
  if outline is not None:
    draw.line(polygon + [polygon[0], polygon[1]], fill=outline, width=width, joint="curve")


def _outline_shape(draw, attributes, polygon, centre, radius, colour, width):
  if attributes.shape == "ring":
    for r in (radius, radius * 0.6):
      draw.ellipse([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], outline=colour, width=width)
  else:
    draw.line(polygon + [polygon[0], polygon[1]], fill=colour, width=width, joint="curve")


def _photo(attributes, rng, canvas):
  top, bottom = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
  ramp = np.linspace(0, 1, canvas, dtype=np.float32)[:, None, None]
  background = top * (1 - ramp) + bottom * ramp + _smooth_noise(rng, canvas, 6, 25.0)
  image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
  polygon, centre, radius = _place(attributes, rng, canvas)
  shadow = Image.new("L", (canvas, canvas), 0)
  offset = radius * 0.12
  shadow_polygon = [(x + offset, y + offset) for x, y in polygon]
  _fill_shape(ImageDraw.Draw(shadow), attributes, shadow_polygon, centre + offset, radius, 110)
  shadow = shadow.filter(ImageFilter.GaussianBlur(canvas / 40))
  image = Image.composite(Image.new("RGB", image.size, (15, 15, 15)), image, shadow)
  mask = Image.new("L", (canvas, canvas), 0)
  _fill_shape(ImageDraw.Draw(mask), attributes, polygon, centre, radius, 255)
  base = np.asarray(_jitter_colour(COLOURS[attributes.colour], rng, 12), np.float32)
  light = np.linspace(1.15, 0.75, canvas, dtype=np.float32)[:, None, None] * rng.uniform(0.85, 1.1)
  shaded = np.clip(base * light + _smooth_noise(rng, canvas, 8, 10.0), 0, 255).astype(np.uint8)
  image = Image.composite(Image.fromarray(shaded), image, mask)
  return image, 6.0


def _sketch(attributes, rng, canvas):
  paper = rng.uniform(225, 255) + rng.normal(0, 4, (canvas, canvas, 1))
  image = Image.fromarray(np.clip(np.repeat(paper, 3, -1), 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  polygon, centre, radius = _place(attributes, rng, canvas)
  colour = _jitter_colour(COLOURS[attributes.colour], rng, 15)
  for _ in range(2):  # two slightly offset strokes, as a hand draws
    shift = rng.normal(0, canvas / 80, 2)
    stroke = [(x + shift[0] + rng.normal(0, canvas / 160), y + shift[1]) for x, y in polygon]
    _outline_shape(draw, attributes, stroke, centre + shift, radius, colour, max(1, canvas // 32))
  return image, 3.0


def _painting(attributes, rng, canvas):
  background = np.broadcast_to(rng.uniform(60, 220, 3), (canvas, canvas, 3)) + _smooth_noise(rng, canvas, 4, 45.0)
  image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
  draw = ImageDraw.Draw(image)
  for _ in range(4):  # brush blotches
    x, y = rng.uniform(0, canvas, 2)
    r = rng.uniform(0.1, 0.25) * canvas
    draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.uniform(50, 230, 3)))
  polygon, centre, radius = _place(attributes, rng, canvas)
  mask = Image.new("L", (canvas, canvas), 0)
  _fill_shape(ImageDraw.Draw(mask), attributes, polygon, centre, radius, 255)
  base = np.asarray(_jitter_colour(COLOURS[attributes.colour], rng, 18), np.float32)
  strokes = np.clip(base + _smooth_noise(rng, canvas, 12, 28.0), 0, 255).astype(np.uint8)
  image = Image.composite(Image.fromarray(strokes), image, mask.filter(ImageFilter.GaussianBlur(canvas / 64)))
  image = image.filter(ImageFilter.GaussianBlur(canvas / 90))
  return image, 14.0


def _cartoon(attributes, rng, canvas):
  pastel = tuple(int(c) for c in rng.uniform(170, 250, 3))
  image = Image.new("RGB", (canvas, canvas), pastel)
  draw = ImageDraw.Draw(image)
  polygon, centre, radius = _place(attributes, rng, canvas)
  colour = _jitter_colour(COLOURS[attributes.colour], rng, 6)
  _fill_shape(draw, attributes, polygon, centre, radius, colour, outline=(0, 0, 0), width=max(2, canvas // 20))
  return image, 0.0


_STYLE_PAINTERS = {"photo": _photo, "sketch": _sketch, "painting": _painting, "cartoon": _cartoon}


def draw(attributes: Attributes, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
  """Draws `attributes` with nuisance draws from `rng`: uint8 (size, size, 3)."""
  canvas = size * _SUPERSAMPLE
  image, noise = _STYLE_PAINTERS[attributes.style](attributes, rng, canvas)
  image = np.asarray(image.resize((size, size), Image.BOX), np.float32)
  if noise:
    image = image + rng.normal(0, noise, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def render_batch(seed: int, indices, size: int = IMAGE_SIZE, **fixed) -> tuple[np.ndarray, list[Attributes]]:
  """Images `indices` of world `seed`: (uint8 (N, size, size, 3), attributes per image)."""
  images, attributes = zip(*(render(seed, int(i), size, **fixed) for i in indices))
  return np.stack(images), list(attributes)
