"""Linear-probe CLIP (run_kind "linear_probe"): L2-regularised multinomial logistic regression on frozen image features.

    python -m jaxprompt.main --config configs/linear_probe.py:dataset=dtd,root=/data,shots=16 --workdir runs/lp_dtd

The baseline of CoOp's and RPO's few-shot tables, as KaiyangZhou/CoOp `lpclip/` runs it:
* features: the frozen CLIP image embedding (`CLIP.image_features`: class token -> post-LayerNorm -> visual
  projection, not normalised) of every image under the *test* transform (no augmentation), for the K-shot train
  split, the min(K, 4)-shot validation split and each evaluation set;
* classifier: scikit-learn's `LogisticRegression(solver="lbfgs", penalty="l2", max_iter=1000)`, i.e. minimise
  mean_i CE(x_i W + b, y_i) + ||W||^2 / (2 C N) (the bias is not penalised) from zeros. `fit_logistic` solves the
  same problem with the same optimiser sklearn's lbfgs path calls (scipy's L-BFGS-B with sklearn's options:
  gtol=tol=1e-4, ftol=64 eps, maxls=50), so no scikit-learn is needed;
* C, chosen on validation accuracy (`search_c`): the coarse grid 1e6, 1e4, ..., 1e-6 (first best wins, i.e. the
  largest C among ties), then 8 refinement steps over [peak/10, peak*10] in log10 space: fit both ends, keep the
  better (the lower end on a tie) and halve the interval towards it. The classifier of the *last* step is the one
  reported, as in the reference (it may score below an earlier candidate; `results["linear_probe"]["search"]` lists
  every C tried with its validation accuracy).

A linear probe has weights only for the classes it was trained on: base-to-novel reports `base` only (no `novel`, no
`hm`), and a target dataset is scored only when its class names are a subset of the training class names (domain
generalisation; ImageNet-A/R's 200 classes are scored over their rows); other sets are listed under
`results["skipped"]` with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
import scipy.optimize
import scipy.special
from jax.experimental import multihost_utils

from jaxprompt import evaluate, parallel, train
from jaxprompt.config import LINEAR_PROBE_GRID
from jaxprompt.data import fewshot, pipeline, protocol
from jaxprompt.report import run_files

log = logging.getLogger(__name__)

COARSE_GRID = LINEAR_PROBE_GRID  # the reference's initial C values (config.linear_probe_block)


# -- the classifier and its solver (sklearn's lbfgs problem) --------------------------------------------------------

@dataclasses.dataclass
class LinearClassifier:
  """logits = x @ weights + bias: weights (D, C), bias (C,); c, iterations and converged describe the fit."""

  weights: np.ndarray
  bias: np.ndarray
  c: float
  iterations: int = 0
  converged: bool = True

  def predict(self, x: np.ndarray) -> np.ndarray:
    """x (N, D) -> class indices (N,) (argmax of the logits; the first class on a tie, as sklearn)."""
    return np.argmax(np.asarray(x, np.float64) @ self.weights + self.bias, axis=-1)

  def rows(self, rows: Sequence[int]) -> LinearClassifier:
    """The classifier over the classes `rows` only (in that order): class i of the result is class rows[i]."""
    rows = list(rows)
    return dataclasses.replace(self, weights=self.weights[:, rows], bias=self.bias[rows])


def logistic_objective(params: np.ndarray, features: np.ndarray, onehot: np.ndarray,
                       alpha: float) -> tuple[float, np.ndarray]:
  """mean_i CE(x_i W + b, y_i) + alpha/2 ||W||^2 and its gradient; sklearn's alpha is 1 / (C N).

  params: (D*C + C,) = [W (D, C) row-major, b (C,)]; features (N, D); onehot (N, C).
  """
  n, dim = features.shape
  num_classes = onehot.shape[1]
  weights, bias = params[:dim * num_classes].reshape(dim, num_classes), params[dim * num_classes:]
  logits = features @ weights + bias
  normaliser = scipy.special.logsumexp(logits, axis=1)
  value = float(np.mean(normaliser - np.sum(onehot * logits, axis=1)) + 0.5 * alpha * np.sum(weights * weights))
  residual = (np.exp(logits - normaliser[:, None]) - onehot) / n  # d(mean CE)/d logits (N, C)
  grad_weights = features.T @ residual + alpha * weights
  return value, np.concatenate([grad_weights.ravel(), residual.sum(axis=0)])


def fit_logistic(features: np.ndarray, labels: np.ndarray, num_classes: int, c: float, *, max_iter: int = 1000,
                 tol: float = 1e-4) -> LinearClassifier:
  """scikit-learn's `LogisticRegression(solver="lbfgs", penalty="l2", C=c, max_iter, tol)` on (features (N, D),
  labels (N,)), multinomial over `num_classes`: float64, zero start, scipy's L-BFGS-B with sklearn's options.
  For two classes sklearn fits one binomial vector instead: its fit at C equals this one at C/2."""
  features = np.asarray(features, np.float64)
  labels = np.asarray(labels, np.int64)
  onehot = np.eye(num_classes)[labels]
  dim = features.shape[1]
  result = scipy.optimize.minimize(
      logistic_objective, np.zeros(dim * num_classes + num_classes), args=(features, onehot, 1.0 / (c * len(labels))),
      method="L-BFGS-B", jac=True,
      options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps})
  if result.status != 0:
    log.warning("linear probe: C=%.4g did not converge in %d iterations (%s)", c, result.nit, result.message)
  params = result.x
  return LinearClassifier(params[:dim * num_classes].reshape(dim, num_classes), params[dim * num_classes:].copy(),
                          float(c), int(result.nit), bool(result.status == 0))


def accuracy_percent(classifier: LinearClassifier, features: np.ndarray, labels: np.ndarray) -> float:
  """Top-1 accuracy in percent of `classifier` on (features (N, D), labels (N,))."""
  return 100.0 * float(np.mean(classifier.predict(features) == np.asarray(labels)))


# -- the C search (lpclip/linear_probe.py) ---------------------------------------------------------------------------

def search_c(fit: Callable[[float], Any], score: Callable[[Any], float], coarse_grid: Sequence[float] = COARSE_GRID,
             refine_steps: int = 8) -> tuple[Any, list[dict[str, Any]]]:
  """The reference's search: the grid (first best wins), then `refine_steps` log10 halvings of [peak/10, peak*10]
  (keep the better end, the lower on a tie). Returns the last step's classifier (the grid's best when
  refine_steps=0) and the trace [{"stage": "grid" | "step{i}/low" | "step{i}/high", "c", "val_accuracy"}, ...].

  fit(c) -> classifier with `.c`; score(classifier) -> validation accuracy. A C met again (an end kept from the
  previous step, or a grid value) reuses its fit: nothing is fitted twice.
  """
  fitted: dict[float, tuple[Any, float]] = {}
  trace: list[dict[str, Any]] = []

  def tried(c: float, stage: str) -> tuple[Any, float]:
    if c not in fitted:
      classifier = fit(c)
      fitted[c] = (classifier, float(score(classifier)))
    trace.append({"stage": stage, "c": float(c), "val_accuracy": fitted[c][1]})
    return fitted[c]

  if not coarse_grid:
    raise ValueError("config.linear_probe.coarse_grid is empty: the search needs at least one C")
  grid_scores = [tried(float(c), "grid")[1] for c in coarse_grid]
  peak = float(coarse_grid[int(np.argmax(grid_scores))])
  chosen = fitted[peak][0]
  low, high = 1e-1 * peak, 1e1 * peak  # the interval's ends as C values, and their log10 below
  log_low, log_high = math.log10(low), math.log10(high)
  for step in range(refine_steps):
    low_fit, low_score = tried(low, f"step{step}/low")
    high_fit, high_score = tried(high, f"step{step}/high")
    middle = 0.5 * (log_low + log_high)
    if low_score < high_score:
      chosen, log_low, low = high_fit, middle, 10.0 ** middle
    else:
      chosen, log_high, high = low_fit, middle, 10.0 ** middle
  return chosen, trace


# -- data: which rows, which validation images, which features -------------------------------------------------------

def class_rows(train_classnames: Sequence[str], eval_classnames: Sequence[str]) -> list[int] | None:
  """The training-class row of each evaluation class (in evaluation order); None when one is not a training class."""
  index = {name: row for row, name in enumerate(train_classnames)}
  if any(name not in index for name in eval_classnames):
    return None
  return [index[name] for name in eval_classnames]


def validation_examples(config: ml_collections.ConfigDict, data: protocol.RunData) -> list:
  """The examples C is chosen on: the run's min(K, 4)-shot val split (drawn with the train split, `split.json`), or
  with `config.linear_probe.val_split="test"` min(K, 4) shots per class of the test split drawn by
  `fewshot.sample_shots` from `random.Random(config.seed)` (the reference's rule for ImageNet)."""
  split, source = config.linear_probe.val_split, data.source
  if split == "val":
    if "val" not in source.splits:
      raise ValueError(f"linear probe: data source {source.name} has no val split to choose C on; add "
                       "--config.linear_probe.val_split=test to draw min(K, 4) shots per class from its test split")
    return list(source.splits["val"])
  if split == "test":
    shots = config.data.shots
    return fewshot.sample_shots(source.splits["test"], min(shots, 4) if shots > 0 else shots,
                                random.Random(config.seed), what="val (from test)")
  raise ValueError(f"config.linear_probe.val_split={split!r}: expected 'val' or 'test'")


def image_features(encode: Callable, frozen, examples: Sequence, reader, source_name: str, image_size: int, mesh,
                   batch_size: int, corrupt: pipeline.CorruptImageLog, workers: int,
                   name: str) -> tuple[np.ndarray, np.ndarray]:
  """`encode(frozen, images)` -> (B, D) of every readable example under the test transform, on every host:
  features float64 (N, D) and labels int64 (N,) in example order (corrupt images left out and logged)."""
  batch_size = -(-batch_size // mesh.size) * mesh.size
  batches = pipeline.eval_batches(examples, reader, image_size, batch_size, corrupt_log=corrupt,
                                  source_name=source_name, process_index=jax.process_index(),
                                  process_count=jax.process_count(), worker_threads=workers or None)
  progress = run_files.EvalProgress(name, len(batches))
  features, labels = [], []
  for done, local in enumerate(batches, 1):
    batch = parallel.global_batch(local, mesh)
    out = {"features": encode(frozen, batch["images"]), "labels": batch["labels"], "mask": batch["mask"]}
    out = multihost_utils.process_allgather(out, tiled=True) if jax.process_count() > 1 else jax.device_get(out)
    keep = np.asarray(out["mask"], bool)
    features.append(np.asarray(out["features"], np.float64)[keep])
    labels.append(np.asarray(out["labels"], np.int64)[keep])
    progress.update(done)
  if not labels or not sum(len(part) for part in labels):
    raise ValueError(f"linear probe: {name} of {source_name} has no readable image")
  return np.concatenate(features), np.concatenate(labels)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Extracts features, searches C on validation, evaluates every set it can; writes `<workdir>/results.json`."""
  if config.eval_only:
    raise ValueError("config.run_kind='linear_probe' has no --mode eval: a run fits and evaluates in seconds, re-run "
                     "it")
  return train.held_run(config, workdir, _run)


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  start_time = time.time()
  options = config.linear_probe
  mesh = train.start(config)
  backbone = train.load_backbone(config)
  data = protocol.prepare(config, workdir)
  clip = backbone.model()
  frozen = parallel.replicate(backbone.params, mesh)
  corrupt = pipeline.CorruptImageLog()
  encode = jax.jit(clip.image_features)

  def features_of(examples, reader, source_name, name):
    return image_features(encode, frozen, examples, reader, source_name, clip.vision.image_size, mesh,
                          config.data.eval_batch_size, corrupt, config.data.workers, name)

  num_classes = len(data.classnames)
  train_x, train_y = features_of(data.train, data.source.reader, data.source.name, "train features")
  val_x, val_y = features_of(validation_examples(config, data), data.source.reader, data.source.name,
                             "val features")
  missing = sorted(set(range(num_classes)) - set(train_y.tolist()))
  if missing:
    raise ValueError(f"linear probe: class {missing[0]} ({data.classnames[missing[0]]!r}) has no readable training "
                     "image")

  def fit(c):
    return fit_logistic(train_x, train_y, num_classes, c, max_iter=options.max_iter, tol=options.tol)

  classifier, trace = search_c(fit, lambda clf: accuracy_percent(clf, val_x, val_y), tuple(options.coarse_grid),
                               options.refine_steps)
  log.info("linear probe: C=%.4g chosen on %d validation images", classifier.c, len(val_y))

  evaluations, skipped = {}, {}
  for eval_set in data.evals:
    rows = class_rows(data.classnames, eval_set.classnames)
    if rows is None:
      skipped[eval_set.name] = ("a linear probe has weights only for its training classes; this set's classes are "
                                "not among them")
      continue
    x, y = features_of(eval_set.examples, eval_set.reader, eval_set.source, eval_set.name)
    evaluations[eval_set.name] = confusion_evaluation(eval_set.name, eval_set.classnames, classifier.rows(rows), x, y)
    log.info("%s: %.2f%% on %d examples", eval_set.name, evaluations[eval_set.name].accuracy, len(y))

  probe = {"c": classifier.c, "val_accuracy": accuracy_percent(classifier, val_x, val_y),
           "iterations": classifier.iterations, "converged": classifier.converged, "feature_dim": int(train_x.shape[1]),
           "train_examples": int(len(train_y)), "val_examples": int(len(val_y)), "search": trace}
  results = run_files.results_record(
      kind="single", run=train.run_info(config, method="linear_probe", options=probe_options(options)),
      metrics=evaluate.metrics_of(evaluations), trainable_params=classifier.weights.size + classifier.bias.size,
      time_s=time.time() - start_time, steps=None, linear_probe=probe, skipped=skipped,
      corrupt_images=corrupt.entries(), per_class={name: e.per_class() for name, e in evaluations.items()})
  return train.write_single_results(workdir, results, evaluations)


def probe_options(options: ml_collections.ConfigDict) -> dict[str, Any]:
  """The results' run.options: the search settings as dotted keys."""
  return {f"linear_probe.{key}": (list(value) if isinstance(value, tuple) else value)
          for key, value in options.to_dict().items()}


def confusion_evaluation(name: str, classnames: Sequence[str], classifier: LinearClassifier, features: np.ndarray,
                         labels: np.ndarray) -> evaluate.Evaluation:
  """The classifier's confusion matrix on (features, labels) as an `evaluate.Evaluation`."""
  num_classes = len(classnames)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, classifier.predict(features)), 1)
  return evaluate.Evaluation(name, list(classnames), confusion)
