"""Evaluators: top-1 accuracy of a trained method on each of a run's evaluation sets.

Every protocol reduces to "accuracy of these prompts on these examples with these class names": all-class accuracy,
base and novel (each in its own label space, plus their harmonic mean), target datasets (domain generalisation,
cross-dataset) with their own class lists and templates, a multi-task run's tasks, a continual run's seen classes.
The evaluator never builds a method: it asks the trained one for a view over the evaluation set's classes
(`method.for_classes(classnames, templates)`), so whatever the method learnt per class (LAMM's label rows, CoOp's
class-specific context) is carried over by the method's own rule, or refused with its own message.

Each evaluation keeps its confusion matrix (`Evaluation`): accuracy, per-class accuracy and the matrix itself go
into the results. Batches are padded with a validity mask, so every example counts exactly once however many hosts and devices share
the work.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt import parallel
from jaxprompt.data import pipeline
from jaxprompt.data.protocol import EvalSet
from jaxprompt.report import run_files

log = logging.getLogger(__name__)

Params = dict[str, Any]


@dataclasses.dataclass
class Evaluation:
  """One evaluation set's outcome: `confusion[i, j]` counts examples of class i predicted as class j (C, C)."""

  name: str
  classnames: list[str]
  confusion: np.ndarray

  @property
  def accuracy(self) -> float:
    """Top-1 accuracy in percent over every readable example."""
    return 100.0 * float(np.trace(self.confusion)) / float(self.confusion.sum())

  def per_class(self) -> dict[str, float | None]:
    """Each class's top-1 accuracy in percent (None for a class with no test example)."""
    totals = self.confusion.sum(axis=1)
    return {name: (100.0 * float(self.confusion[c, c]) / float(totals[c]) if totals[c] else None)
            for c, name in enumerate(self.classnames)}

  def record(self) -> dict[str, Any]:
    """JSON-ready: accuracy, per-class accuracy, the confusion matrix and its class order."""
    return {"accuracy": self.accuracy, "per_class": self.per_class(), "classnames": self.classnames,
            "confusion": self.confusion.tolist()}


def evaluate_set(method, trainable: Params, frozen: Params, eval_set: EvalSet, mesh, batch_size: int, *,
                 corrupt: pipeline.CorruptImageLog, workers: int = 0) -> Evaluation:
  """The confusion matrix of `method` (anything with `.clip` and `.logits(trainable, frozen, images)` over
  `eval_set`'s classes) with `trainable` on `eval_set`'s examples. Corrupt images are masked out and recorded."""
  batch_size = -(-batch_size // mesh.size) * mesh.size
  num_classes = len(eval_set.classnames)
  batches = pipeline.eval_batches(eval_set.examples, eval_set.reader, method.clip.vision.image_size, batch_size,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  worker_threads=workers or None, corrupt_log=corrupt, source_name=eval_set.source)

  @jax.jit
  def confusion_of(trainable, frozen, images, labels, mask):
    predictions = jnp.argmax(method.logits(trainable, frozen, images), axis=-1)
    truth = jax.nn.one_hot(labels, num_classes, dtype=jnp.int32) * mask[:, None]
    return truth.T @ jax.nn.one_hot(predictions, num_classes, dtype=jnp.int32)  # (C, C)

  progress = run_files.EvalProgress(eval_set.name, -(-len(eval_set.examples) // batch_size))
  confusion = np.zeros((num_classes, num_classes), np.int64)
  for done, local in enumerate(batches, 1):
    batch = parallel.global_batch(local, mesh)
    confusion += np.asarray(jax.device_get(confusion_of(trainable, frozen, batch["images"], batch["labels"],
                                                        batch["mask"])))
    progress.update(done)
  if confusion.sum() == 0:
    raise ValueError(f"evaluation set {eval_set.name!r} ({eval_set.source}) has no readable examples")
  return Evaluation(eval_set.name, list(eval_set.classnames), confusion)


def top1_percent(method, trainable: Params, frozen: Params, eval_set: EvalSet, mesh, batch_size: int, *,
                 corrupt: pipeline.CorruptImageLog, workers: int = 0) -> float:
  """Top-1 accuracy (percent) of `method` on `eval_set` (see `evaluate_set`)."""
  return evaluate_set(method, trainable, frozen, eval_set, mesh, batch_size, corrupt=corrupt,
                      workers=workers).accuracy


def evaluate_run(method, trainable: Params, frozen: Params, evals: Sequence[EvalSet], mesh,
                 data_config: ml_collections.ConfigDict, corrupt: pipeline.CorruptImageLog) -> dict[str, Evaluation]:
  """Every evaluation set, each through `method.for_classes(...)` (the trained method's view of its classes)."""
  evaluations = {}
  for eval_set in evals:
    view = method.for_classes(eval_set.classnames, eval_set.templates)
    evaluations[eval_set.name] = evaluate_set(view, trainable, frozen, eval_set, mesh, data_config.eval_batch_size,
                                              corrupt=corrupt, workers=data_config.workers)
    log.info("%s: %.2f%% on %d examples, %d classes", eval_set.name, evaluations[eval_set.name].accuracy,
             len(eval_set.examples), len(eval_set.classnames))
  return evaluations


def metrics_of(evaluations: dict[str, Evaluation]) -> dict[str, float]:
  """{set name: accuracy}, plus the harmonic mean `hm` when both `base` and `novel` are present."""
  metrics = {name: evaluation.accuracy for name, evaluation in evaluations.items()}
  if "base" in metrics and "novel" in metrics:
    metrics["hm"] = run_files.harmonic_mean(metrics["base"], metrics["novel"])
  return metrics
