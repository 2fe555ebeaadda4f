"""Zero-shot classification with a `transformers.FlaxCLIPModel`, used to record what the world's CLIP can do.

This is the plain HF path (token ids in, `get_text_features` / `get_image_features`), independent of the library's own
towers, so the record measures the saved checkpoint exactly as anyone loading it would see it.
"""

from __future__ import annotations

import numpy as np

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def pixels(images: np.ndarray) -> np.ndarray:
  """uint8 (N, H, W, 3) -> CLIP-normalised float32 (N, 3, H, W), the layout FlaxCLIPModel takes."""
  x = (images.astype(np.float32) / 255.0 - MEAN) / STD
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _normalise(x):
  x = np.asarray(x, np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def token_ids(tokenizer, texts, context_length: int) -> np.ndarray:
  """Texts -> int32 (N, context_length) ids: [SOS] ... [EOS] padded with the tokenizer's pad (EOS) id."""
  encoded = tokenizer(list(texts), padding="max_length", max_length=context_length, truncation=True)
  return np.asarray(encoded["input_ids"], np.int32)


def class_features(model, params, tokenizer, classnames, templates, batch: int = 512) -> np.ndarray:
  """Unit text features per class, averaged over `templates` then renormalised: (C, D)."""
  context = model.config.text_config.max_position_embeddings
  texts = [t.format(name) for name in classnames for t in templates]
  ids = token_ids(tokenizer, texts, context)
  feats = np.concatenate([_normalise(model.get_text_features(ids[i:i + batch], params=params))
                          for i in range(0, len(ids), batch)])
  feats = feats.reshape(len(classnames), len(templates), -1).mean(1)
  return _normalise(feats)


def image_features(model, params, images: np.ndarray, batch: int = 512) -> np.ndarray:
  """uint8 (N, H, W, 3) -> unit image features (N, D)."""
  return np.concatenate([_normalise(model.get_image_features(pixels(images[i:i + batch]), params=params))
                         for i in range(0, len(images), batch)])


def accuracy(image_feats: np.ndarray, text_feats: np.ndarray, labels) -> float:
  """Top-1 accuracy of nearest class feature: image (N, D), classes (C, D), labels (N,)."""
  return float(np.mean(np.argmax(image_feats @ text_feats.T, -1) == np.asarray(labels)))
