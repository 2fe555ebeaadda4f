"""Evaluation asks the trained method for views (`for_classes`): what each method carries to another class list."""

import jax
import ml_collections
import numpy as np
import pytest

from jaxprompt import evaluate, methods, parallel
from jaxprompt.data import fewshot, pipeline, protocol
from jaxprompt.data.registry import build_source


@pytest.fixture(scope="module")
def world():
  """world_shapes with 2 test images per class, its base (4) and novel (4) halves as evaluation sets."""
  source = build_source("world_shapes", test_per_class=2, train_per_class=2, val_per_class=1)
  base, novel = fewshot.subsample_classes(source, "base"), fewshot.subsample_classes(source, "novel")
  return {"base": base, "novel": novel, "evals": [protocol.eval_set("base", base), protocol.eval_set("novel", novel)]}


def method_config(name, **options):
  config = methods.default_config()
  config.name = name
  for key, value in options.items():
    config[name][key] = value
  config.templates = []
  return config


def perturbed(trainable, scale=0.05):
  """A stand-in for a trained tree: every leaf moved by a fixed random amount."""
  leaves, tree = jax.tree_util.tree_flatten(trainable)
  keys = jax.random.split(jax.random.key(7), max(len(leaves), 1))
  return jax.tree_util.tree_unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def images(n=3, size=32):
  return np.random.default_rng(0).normal(size=(n, size, size, 3)).astype(np.float32)


def test_lamm_keeps_trained_rows_by_name_and_reads_names_elsewhere(tiny_backbone, world):
  base = world["base"]
  config = method_config("lamm")
  lamm = methods.build_for_run(config, tiny_backbone, base.raw_classnames, base.templates)
  trained = perturbed(lamm.init(jax.random.key(0)))
  frozen = tiny_backbone.params
  novel_names = list(world["novel"].raw_classnames)
  mixed = [base.raw_classnames[1], novel_names[0]]  # one trained class, one never seen
  view = lamm.for_classes(mixed, base.templates)
  got = np.asarray(view.logits(trained, frozen, images()))
  trained_base = np.asarray(lamm.logits(trained, frozen, images()))
  np.testing.assert_allclose(got[:, 0], trained_base[:, 1], rtol=1e-6, atol=1e-6)  # its learned row
  fresh = methods.build_for_run(config, tiny_backbone, mixed, base.templates)
  untrained = np.asarray(fresh.logits(fresh.init(jax.random.key(0)), frozen, images()))
  np.testing.assert_allclose(got[:, 1], untrained[:, 1], rtol=1e-6, atol=1e-6)  # zero-shot LAMM for the new class
  assert not np.allclose(got[:, 0], untrained[:, 0])  # (the learned row really differs from the name)


def test_evaluate_run_novel_lamm_accuracy_is_zero_shot_lamm(tiny_backbone, world):
  base, mesh = world["base"], parallel.make_mesh(1)
  config = method_config("lamm")
  lamm = methods.build_for_run(config, tiny_backbone, base.raw_classnames, base.templates)
  trained = perturbed(lamm.init(jax.random.key(0)), scale=0.5)
  data = ml_collections.ConfigDict({"eval_batch_size": 8, "workers": 1})
  frozen = parallel.replicate(tiny_backbone.params, mesh)
  evaluations = evaluate.evaluate_run(lamm, trained, frozen, world["evals"], mesh, data, pipeline.CorruptImageLog())
  metrics = evaluate.metrics_of(evaluations)
  novel = world["novel"]
  zero_shot = methods.build_for_run(config, tiny_backbone, novel.raw_classnames, novel.templates)
  expected = evaluate.top1_percent(zero_shot, zero_shot.init(jax.random.key(0)), frozen, world["evals"][1], mesh, 8,
                                   corrupt=pipeline.CorruptImageLog())
  assert metrics["novel"] == expected
  assert set(metrics) == {"base", "novel", "hm"}


def test_class_specific_coop_refuses_another_class_list_naming_the_option(tiny_backbone, world):
  base = world["base"]
  coop = methods.build_for_run(method_config("coop", csc=True, n_ctx=2), tiny_backbone, base.raw_classnames,
                               base.templates)
  trainable = coop.init(jax.random.key(0))
  same = coop.for_classes(list(base.raw_classnames), base.templates)  # its own classes: fine
  np.testing.assert_array_equal(np.asarray(same.logits(trainable, tiny_backbone.params, images())),
                                np.asarray(coop.logits(trainable, tiny_backbone.params, images())))
  with pytest.raises(ValueError, match="csc"):
    coop.for_classes(list(world["novel"].raw_classnames), base.templates)


def test_accuracy_counts_every_example_once_on_one_and_eight_devices(tiny_backbone, world):
  """8 test images over 8 devices with batch 3 (padded to 8): the masked count equals a direct argmax count."""
  eval_set = world["evals"][0]
  method = methods.build_for_run(method_config("zeroshot"), tiny_backbone, eval_set.classnames, eval_set.templates)
  results = []
  for devices in (1, 8):
    mesh = parallel.make_mesh(devices)
    frozen = parallel.replicate(tiny_backbone.params, mesh)
    results.append(evaluate.top1_percent(method, {}, frozen, eval_set, mesh, 3, corrupt=pipeline.CorruptImageLog()))
  batch = next(iter(pipeline.eval_batches(eval_set.examples, eval_set.reader, 32, len(eval_set.examples),
                                          corrupt_log=pipeline.CorruptImageLog(), source_name=eval_set.source)))
  predictions = np.argmax(np.asarray(method.logits({}, tiny_backbone.params, batch["images"])), -1)
  direct = 100.0 * np.mean(predictions[batch["mask"]] == batch["labels"][batch["mask"]])
  assert results[0] == results[1] == pytest.approx(direct)
  # The confusion matrix: rows true class, columns prediction; per-class accuracy from its rows.
  mesh = parallel.make_mesh(8)
  evaluation = evaluate.evaluate_set(method, {}, parallel.replicate(tiny_backbone.params, mesh), eval_set, mesh, 3,
                                     corrupt=pipeline.CorruptImageLog())
  labels = batch["labels"][batch["mask"]]
  expected = np.zeros((4, 4), np.int64)
  np.add.at(expected, (labels, predictions[batch["mask"]]), 1)
  np.testing.assert_array_equal(evaluation.confusion, expected)
  per_class = evaluation.per_class()
  for c, name in enumerate(eval_set.classnames):
    assert per_class[name] == pytest.approx(100.0 * np.mean(predictions[batch["mask"]][labels == c] == c))
