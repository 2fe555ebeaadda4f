"""Evaluators: top-1 accuracy of a trained method on each of a run's evaluation sets.

Every protocol reduces to "accuracy of these prompts on these examples with these class names": all-class accuracy,
base and novel (each in its own label space, plus their harmonic mean), and target datasets (domain generalisation,
cross-dataset) with their own class lists and templates. Batches are padded with a validity mask, so every example
counts exactly once however many hosts and devices share the work.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt import methods, parallel
from jaxprompt.report import run_files as reporting
from jaxprompt.data import pipeline
from jaxprompt.data.protocol import EvalSet

log = logging.getLogger(__name__)

Params = dict[str, Any]


def build_method(method_config: ml_collections.ConfigDict, backbone, classnames: Sequence[str],
                 templates: Sequence[str]) -> methods.Method:
  """The configured method over a class list; an empty `templates` config means the dataset's templates."""
  config = ml_collections.ConfigDict(method_config.to_dict())
  if not config.templates:
    config.templates = list(templates) if config.ensemble else list(templates[:1])
  return methods.build(config.name, config, backbone, classnames)


def accuracy(method: methods.Method, trainable: Params, frozen: Params, eval_set: EvalSet, mesh,
             batch_size: int, workers: int = 0) -> float:
  """Top-1 accuracy (percent) of `method` with `trainable` on `eval_set`'s examples."""
  batch_size = -(-batch_size // mesh.size) * mesh.size
  batches = pipeline.eval_batches(eval_set.examples, eval_set.reader, method.clip.vision.image_size, batch_size,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  worker_threads=workers or None)

  @jax.jit
  def count(trainable, frozen, images, labels, mask):
    predictions = jnp.argmax(method.logits(trainable, frozen, images), axis=-1)
    return jnp.sum((predictions == labels) & mask), jnp.sum(mask)

  correct = total = 0
  for local in batches:
    batch = parallel.global_batch(local, mesh)
    hits, seen = count(trainable, frozen, batch["images"], batch["labels"], batch["mask"])
    correct, total = correct + int(hits), total + int(seen)
  if total == 0:
    raise ValueError(f"evaluation set {eval_set.name!r} has no readable examples")
  return 100.0 * correct / total


def evaluate_run(method_config, backbone, trainable: Params, frozen: Params, evals: Sequence[EvalSet], mesh,
                 batch_size: int, workers: int = 0) -> dict[str, float]:
  """Accuracy on every evaluation set; adds the harmonic mean `hm` when both `base` and `novel` are present."""
  metrics = {}
  for eval_set in evals:
    method = build_method(method_config, backbone, eval_set.classnames, eval_set.templates)
    metrics[eval_set.name] = accuracy(method, trainable, frozen, eval_set, mesh, batch_size, workers)
    log.info("%s: %.2f%% on %d examples, %d classes", eval_set.name, metrics[eval_set.name],
                 len(eval_set.examples), len(eval_set.classnames))
  if "base" in metrics and "novel" in metrics:
    metrics["hm"] = reporting.harmonic_mean(metrics["base"], metrics["novel"])
  return metrics


def to_numpy(tree: Params) -> Params:
  return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)
