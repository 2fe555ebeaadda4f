"""Full ViT-B/16 shapes (12 + 12 layers, 224 px, random weights): too slow for CI, run with `pytest -m slow`.

At the papers' size, RPO's read-only fast path equals its masked path and every method's jitted train step runs and
yields finite, non-zero gradients for its whole trainable tree.
"""

import jax
import numpy as np
import pytest

from jaxprompt import parallel, train
from jaxprompt.bench import parts as bench_core

pytestmark = pytest.mark.slow

METHODS = ("zeroshot", "coop", "cocoop", "vpt", "ivlp", "maple", "rpo", "lamm", "mmap")


@pytest.fixture(scope="module")
def full_backbone(tmp_path_factory):
  classnames = bench_core.class_list(10)
  return bench_core.make_backbone(classnames, str(tmp_path_factory.mktemp("vit_b16"))), classnames


def test_rpo_fast_path_equals_masked_path_at_full_size(full_backbone):
  backbone, classnames = full_backbone
  images, _ = bench_core.make_batch(backbone, 2, len(classnames))
  method = bench_core.build_method("rpo", backbone, classnames, 12)
  trainable = method.init(jax.random.key(0))
  fast = jax.jit(lambda t, f, x: method.logits(t, f, x, fast=True))(trainable, backbone.params, images)
  plain = jax.jit(lambda t, f, x: method.logits(t, f, x, fast=False))(trainable, backbone.params, images)
  np.testing.assert_allclose(fast, plain, atol=2e-3)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_at_full_size(full_backbone, name):
  backbone, classnames = full_backbone
  images, labels = bench_core.make_batch(backbone, 2, len(classnames))
  method = bench_core.build_method(name, backbone, classnames, 12)
  trainable = method.init(jax.random.key(0))
  if not jax.tree_util.tree_leaves(trainable):
    assert method.logits(trainable, backbone.params, images).shape == (2, len(classnames))
    return
  optimizer, schedule = bench_core.sgd_optimizer()
  step = train.make_train_step(train.method_loss(method), optimizer, schedule, parallel.make_mesh(1))
  batch = {"images": images, "labels": labels}
  new, _, metrics = step(trainable, optimizer.init(trainable), backbone.params, batch, np.int32(1))
  assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
  moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), new,
                                 method.init(jax.random.key(0)))
  assert all(value > 0 for value in jax.tree_util.tree_leaves(moved)), moved
