"""Captions and the pretraining distribution of the shapes world.

The pretraining distribution is designed so that the prompt-learning papers' effects have room to show:
- Domain shift: "sketch" is rare (12 % of images) and some (shape, style) pairs never occur in pretraining
  (`HELD_OUT`); zero-shot accuracy on sketches, and on held-out pairs especially, is lower than on photos.
- Label misalignment (LAMM): each shape has a rare synonym (`RARE_SYNONYMS`, used in 2 % of its captions) and a
  nonsense word that pretraining never uses (`NONSENSE_NAMES`); the tokens exist in the vocabulary, but their
  embeddings are never trained towards the shape. `world_misaligned` names its classes with these words.
- Prompt engineering: captions vary in template, length (3..21 words), word choice and optional parts (colour, size,
  position, background, final period), so text positions up to ~23 are trained and the single template
  "a photo of a {shape}." is a weaker classifier than an ensemble over styles and colours.
"""

from __future__ import annotations

import numpy as np

from jaxprompt.world.generator import COLOURS, POSITIONS, SHAPES, STYLES, Attributes, sample_attributes

STYLE_WEIGHTS = {"photo": 0.34, "cartoon": 0.30, "painting": 0.24, "sketch": 0.12}
HELD_OUT = (("star", "sketch"), ("heart", "sketch"), ("diamond", "painting"), ("cross", "cartoon"))
RARE_SYNONYMS = {"circle": "disc", "square": "block", "triangle": "wedge", "star": "spark", "cross": "plus",
                 "ring": "hoop", "diamond": "rhombus", "heart": "valentine"}
RARE_SYNONYM_RATE = 0.02
NONSENSE_NAMES = {"circle": "dax", "square": "wug", "triangle": "blicket", "star": "toma", "cross": "fep",
                  "ring": "zorp", "diamond": "gazzer", "heart": "kiki"}

STYLE_NOUNS = {
    "photo": ["photo", "photo", "photograph", "picture", "close up photo"],
    "sketch": ["sketch", "sketch", "drawing", "pencil sketch", "line drawing", "doodle"],
    "painting": ["painting", "painting", "oil painting", "watercolour painting", "artwork"],
    "cartoon": ["cartoon", "cartoon", "cartoon drawing", "clip art", "icon"],
}
BACKGROUNDS = {"photo": "textured", "sketch": "white", "painting": "noisy", "cartoon": "plain"}
POSITION_PHRASES = {"middle": "in the middle", "left": "on the left", "right": "on the right",
                    "top": "at the top", "bottom": "at the bottom"}
PREFIXES = ["this is", "here is", "there is", "it is", "look at", "i see", "here we see", "in this image there is"]


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _pick(rng, options):
  return options[int(rng.integers(len(options)))]


def caption(attributes: Attributes, rng: np.random.Generator, shape_word: str | None = None) -> str:
  """A random pretraining caption for `attributes`, e.g. "here is a pencil sketch of a small red star."."""
  shape_word = shape_word or attributes.shape
  body = [shape_word]
  if rng.random() < 0.85:
    body.insert(0, attributes.colour)
  if rng.random() < 0.35:
    body.insert(0, attributes.size)
  body = " ".join(body)
  style = _pick(rng, STYLE_NOUNS[attributes.style])
  form = rng.random()
  if form < 0.10:  # style left out
    text = f"{_article(body)} {body}"
  elif form < 0.55:
    text = f"{_article(style)} {style} of {_article(body)} {body}"
  elif form < 0.80:
    text = f"{_pick(rng, PREFIXES)} {_article(style)} {style} of {_article(body)} {body}"
  elif form < 0.90:
    text = f"{_article(style)} {style} showing {_article(body)} {body}"
  else:
    text = f"{_article(body)} {body} in {_article(style)} {style}"
  if rng.random() < 0.3:
    text += " " + POSITION_PHRASES[attributes.position]
  if rng.random() < 0.15:
    text += f" with a {BACKGROUNDS[attributes.style]} background"
  if rng.random() < 0.5:
    text += " ."
  return text


def sample_pretraining(rng: np.random.Generator) -> tuple[Attributes, str]:
  """One (attributes, caption) draw from the pretraining distribution (held-out pairs excluded, sketch rare)."""
  styles, weights = list(STYLE_WEIGHTS), np.array(list(STYLE_WEIGHTS.values()))
  while True:
    style = styles[int(rng.choice(len(styles), p=weights / weights.sum()))]
    attributes = sample_attributes(rng, style=style)
    if (attributes.shape, attributes.style) not in HELD_OUT:
      break
  shape_word = RARE_SYNONYMS[attributes.shape] if rng.random() < RARE_SYNONYM_RATE else None
  return attributes, caption(attributes, rng, shape_word)


SINGLE_TEMPLATE = "a photo of a {}."


def ensemble_templates() -> list[str]:
  """Zero-shot templates, templates[0] = "a photo of a {}.": the style prompts, then every style x colour prompt."""
  templates = [SINGLE_TEMPLATE] + [f"{_article(s)} {s} of a {{}}." for s in STYLES if s != "photo"]
  templates += [f"a {s} of {_article(c)} {c} {{}}." for s in STYLES for c in COLOURS]
  return templates


def style_templates(style: str) -> list[str]:
  """Templates for a single-domain task: "a photo of a {}." first, then that style's prompts with colours."""
  return [SINGLE_TEMPLATE, f"{_article(style)} {style} of a {{}}."] + [
      f"{_article(style)} {style} of {_article(c)} {c} {{}}." for c in COLOURS]


__all__ = ["STYLE_WEIGHTS", "HELD_OUT", "RARE_SYNONYMS", "NONSENSE_NAMES", "caption", "sample_pretraining",
           "ensemble_templates", "style_templates", "SINGLE_TEMPLATE", "SHAPES", "POSITIONS"]
