"""Shared fixtures and helpers: a tiny random CLIP with its own word-level tokenizer (no downloads), a ViT-B/16-shaped
zero backbone for parameter counts, a method config sized for the tiny CLIP, and the config-file loader.

Helpers are plain functions (`from tests.conftest import method_config`); fixtures are found by pytest.
"""

import importlib.util
import json
import os
import shutil
import tempfile

# Tests see 8 simulated CPU devices so the multi-device paths run everywhere; single-device tests use one of them.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jaxprompt  # noqa: E402

jaxprompt.flax_only_transformers()  # as our command lines do: transformers without PyTorch (tests that read torch
# files import torch themselves)

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from jaxprompt import config as run_config  # noqa: E402
from jaxprompt import methods  # noqa: E402
from jaxprompt.clip import weights  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_LAYERS = 2  # layers per tower of the tiny random CLIP
# MmAP shapes that fit the tiny CLIP: text 32 wide, vision 48 wide (gcd 16), 2 layers each.
TINY_MMAP = dict(b=4, m=2, n=16)


def pytest_configure(config):
  """One XLA compilation cache for the whole session, shared by the xdist workers and the subprocesses tests start
  (both inherit `JAX_COMPILATION_CACHE_DIR` from this process): many tests compile the same tiny programs. It starts
  empty in every session, so a run costs what it costs on a fresh clone; a cache the user set is used as it is."""
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # the user's, or (in an xdist worker) the controller's
    return
  config.jaxprompt_compile_cache = tempfile.mkdtemp(prefix="jaxprompt-tests-xla-cache-")
  settings = {"jax_compilation_cache_dir": config.jaxprompt_compile_cache,
              "jax_persistent_cache_min_compile_time_secs": 0, "jax_persistent_cache_min_entry_size_bytes": 0}
  for name, value in settings.items():
    os.environ[name.upper()] = str(value)
    jax.config.update(name, value)


def pytest_unconfigure(config):
  if hasattr(config, "jaxprompt_compile_cache"):
    shutil.rmtree(config.jaxprompt_compile_cache, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
  """Tiny random CLIP: text 32 wide x 2 layers, vision 48 wide x 2 layers, 32 px images, patch 8, context 32."""
  return weights.random_backbone(str(tmp_path_factory.mktemp("tiny_clip")), seed=0)


def vit_b16_zero_backbone(tokenizer) -> weights.Backbone:
  """ViT-B/16 shapes (text 512x12, vision 768x12, 224/16, joint 512, context 77) with zero weights.

  `np.zeros` does not touch its pages, so the 150M-parameter tree costs nothing until written. `tokenizer`: any
  tokenizer (the tiny one), re-made with a 77-token context; the vocabulary is its size.
  """
  cfg = weights.tiny_config(text_width=512, text_layers=12, text_heads=8, vision_width=768, vision_layers=12,
                            vision_heads=12, image_size=224, patch_size=16, projection_dim=512, context_length=77,
                            vocab_size=len(tokenizer.hf))
  params = jax.tree_util.tree_map(lambda s: np.zeros(s, np.float32), weights.expected_shapes(cfg),
                                  is_leaf=lambda x: isinstance(x, tuple))
  return weights.Backbone(cfg, params, type(tokenizer)(tokenizer.hf, 77))


@pytest.fixture(scope="session")
def vit_b16_backbone(tiny_backbone):
  """`vit_b16_zero_backbone` with the tiny backbone's tokenizer."""
  return vit_b16_zero_backbone(tiny_backbone.tokenizer)


def method_config(name: str = "coop", **overrides) -> ml_collections.ConfigDict:
  """The `method` block for the tiny CLIP: defaults, prompt depths capped by `config.fit_depth`, MmAP shapes that
  divide its widths, then `overrides` by dotted key ({"coop.n_ctx": 4, "templates": [...]})."""
  config = methods.default_config()
  config.name = name
  run_config.fit_depth(ml_collections.ConfigDict({"method": config}), TINY_LAYERS)  # caps `config` in place
  config.mmap.update(TINY_MMAP)
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file; `path` absolute or relative to the repository root (configs/coop.py)."""
  full = path if os.path.isabs(path) else os.path.join(ROOT, path)
  spec = importlib.util.spec_from_file_location("config_under_test", full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg or None)


# --- generated data trees (test_data_sources, test_data_fidelity) ------------------------------------------------------
def write_image(path, value=0, size=(6, 5)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def make_coop(root, folder, image_subdir, split_name, classes, per_split=(3, 1, 2)):
  """<root>/<folder>/<image_subdir>/<class>/<i>.jpg and the split file; returns the split dict written."""
  image_dir = os.path.join(root, folder, image_subdir)
  split = {"train": [], "val": [], "test": []}
  for label, cls in enumerate(classes):
    i = 0
    for name, count in zip(("train", "val", "test"), per_split):
      for _ in range(count):
        rel = f"{cls}/{cls}_{i}.jpg"
        write_image(os.path.join(image_dir, rel), label)
        split[name].append([rel, label, cls])
        i += 1
  write_json(os.path.join(root, folder, split_name), split)
  return split


# --- the smoke run (tiny random CLIP, world_shapes, CoOp): test_train, test_faults, test_gcs, test_predict ------------
def smoke_config(method: str = "coop", **changes) -> ml_collections.ConfigDict:
  """A seconds-long single-task run config; `changes` are flattened keys ({"optim.lr": 0.1, "seed": 2})."""
  config = run_config.base_config()
  config.backbone = "tiny-random"
  config.data.name = "world_shapes"
  config.method.name = method
  config.optim.lr = 0.01
  config = run_config.apply_smoke(config)
  config.update_from_flattened_dict(changes)
  return config


class FixedBatches:
  """A `train.TrainData` that always returns the same tiny batch {"x": ones (2, 3)} (loop-level tests)."""

  steps_per_epoch, images_per_step = 2, 2

  def next_batch(self, mesh):
    return {"x": np.ones((2, 3), np.float32)}

  def get_state(self):
    return {}

  def set_state(self, state):
    pass


def token_rows(backbone, text: str) -> np.ndarray:
  """The token embedding rows (n, D_text) of `text`'s BPE tokens: what a prompt initialised from `text` holds."""
  table = backbone.params["text_model"]["embeddings"]["token_embedding"]["embedding"]
  return np.asarray(table)[backbone.tokenizer.encode(text)]
