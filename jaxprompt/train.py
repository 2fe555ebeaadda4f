"""The single-task run and THE training loop (`fit`) every run kind trains with.

    python -m jaxprompt.main --config configs/coop.py:dataset=dtd,shots=16 --workdir runs/coop_dtd

`run` reads top to bottom in phases: mesh -> data -> backbone -> method -> (restore + train | load prompts) ->
evaluate -> results. `fit` is the loop: optimiser and schedule -> restore -> jitted step -> loop (log, checkpoint)
-> export. The multi-task and continual run kinds (`jaxprompt/trainers/`) call the same `fit` with their own loss
function and batch source (`TrainData`).

Re-running the same command resumes from the workdir's latest checkpoint (trainable tree, optimiser state, step,
RNG key, data iterator), so an interrupted run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxprompt import checkpoint, evaluate, methods, parallel, trees
from jaxprompt import workdir as workdirs
from jaxprompt.clip import weights
from jaxprompt.data import pipeline, protocol
from jaxprompt.report import evaluation_files, run_files

log = logging.getLogger(__name__)

Params = dict[str, Any]
LossFn = Callable[[Params, Params, Any], tuple[jax.Array, dict[str, jax.Array]]]
"""(trainable, frozen, batch) -> (loss, metrics): what `fit` minimises over the trainable tree."""


class NonFiniteError(RuntimeError):
  """A non-finite loss, gradient, update or trainable tree: the run stops, naming the last good checkpoint."""


NonFiniteLossError = NonFiniteError  # the name earlier versions raised


class TrainData(Protocol):
  """What `fit` draws its batches from: a pure function of (seed, step), with a JSON state saved in checkpoints.

  `next_batch(mesh)` returns the step's global (sharded) batch; `steps_per_epoch` sets the schedule's epochs;
  `images_per_step` is for the progress line; `get_state()`/`set_state(state)` save and restore the iterator.
  """

  steps_per_epoch: int
  images_per_step: int

  def next_batch(self, mesh) -> Any: ...
  def get_state(self) -> dict: ...
  def set_state(self, state: dict) -> None: ...


class LoaderData:
  """One `pipeline.TrainLoader` as `TrainData`: batches {"images": (B, H, W, 3), "labels": (B,)}."""

  def __init__(self, loader: pipeline.TrainLoader, batch_size: int):
    self.loader, self.steps_per_epoch, self.images_per_step = loader, loader.steps_per_epoch, batch_size

  def next_batch(self, mesh) -> dict[str, jax.Array]:
    return parallel.global_batch(next(self.loader), mesh)

  def get_state(self) -> dict:
    return self.loader.get_state()

  def set_state(self, state: dict) -> None:
    self.loader.set_state(state)


def method_loss(method) -> LossFn:
  """A method's own loss over a {"images", "labels"} batch."""
  def loss_fn(trainable, frozen, batch):
    return method.loss(trainable, frozen, batch["images"], batch["labels"])
  return loss_fn


# --- optimiser ----------------------------------------------------------------------------------------------------------
def learning_rate_schedule(optim: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int):
  """step -> learning rate.

  epoch_cosine (the papers'): constant `warmup_lr` for the first `warmup_epochs`, then per-epoch cosine
    lr * 0.5 * (1 + cos(pi * (e - warmup) / E)) for epoch e, E = epochs (so the last epoch does not reach 0).
  step_cosine: linear warm-up over `warmup_steps`, then cosine to 0 at `total_steps`. constant: lr.
  """
  if optim.schedule == "epoch_cosine":
    def schedule(step):
      epoch = step // steps_per_epoch
      cosine = optim.lr * 0.5 * (1 + jnp.cos(jnp.pi * (epoch - optim.warmup_epochs) / optim.epochs))
      return jnp.where(epoch < optim.warmup_epochs, optim.warmup_lr, cosine)
    return schedule
  if optim.schedule == "step_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, optim.lr, max(optim.warmup_steps, 0), max(total_steps, 1))
  if optim.schedule == "constant":
    return optax.constant_schedule(optim.lr)
  raise ValueError(f"config.optim.schedule={optim.schedule!r}: expected epoch_cosine, step_cosine or constant")


def make_optimizer(optim: ml_collections.ConfigDict, schedule) -> optax.GradientTransformation:
  """SGD with momentum and *coupled* weight decay (added to the gradient first, as PyTorch does), or AdamW."""
  if optim.name == "sgd":
    return optax.chain(optax.add_decayed_weights(optim.weight_decay), optax.sgd(schedule, momentum=optim.momentum))
  if optim.name == "adamw":
    return optax.adamw(schedule, weight_decay=optim.weight_decay)
  raise ValueError(f"config.optim.name={optim.name!r}: expected 'sgd' or 'adamw'")


# --- the step -----------------------------------------------------------------------------------------------------------
def value_and_grad(loss_fn: LossFn):
  """The default gradient rule: (trainable, frozen, batch) -> ((loss, metrics), grads w.r.t. trainable only)."""
  return jax.value_and_grad(loss_fn, has_aux=True)


def make_train_step(loss_fn: LossFn, optimizer, schedule, mesh, grad_fn=None):
  """One jitted step. Gradients are taken with respect to `trainable` only; `frozen` is a plain argument.

  grad_fn: how gradients are computed (default `value_and_grad(loss_fn)`; the multi-task probe takes one gradient
  per task). Metrics gain loss, lr, grad_norm, update_norm and trainable_norm (the last two catch divergence that
  a finite loss hides: lr=1e30 gives inf prompts).
  """
  replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  grad_fn = grad_fn or value_and_grad(loss_fn)

  def train_step(trainable, opt_state, frozen, batch, step):
    (loss, metrics), grads = grad_fn(trainable, frozen, batch)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    metrics = {**metrics, "loss": loss, "lr": schedule(step), "grad_norm": optax.tree.norm(grads),
               "update_norm": optax.tree.norm(updates), "trainable_norm": optax.tree.norm(trainable)}
    return trainable, opt_state, metrics

  return jax.jit(train_step, in_shardings=(replicated, replicated, replicated, sharded, replicated),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))


def checkpoint_state(trainable: Params, opt_state, step: int, key: jax.Array) -> Params:
  """What a checkpoint holds besides the data iterator: trainable tree, optimiser state, step and RNG key data."""
  # Step and key as host numpy values: identical on every host, so any process may save them (a device-local
  # jax.Array cannot be saved in a multi-host run).
  return {"trainable": trainable, "opt_state": opt_state, "step": np.int64(step),
          "key": np.asarray(jax.random.key_data(key))}


# --- the loop -----------------------------------------------------------------------------------------------------------
def fit(config, workdir: str, *, loss_fn: LossFn, init: Callable[[jax.Array], Params], frozen: Params,
        data: TrainData, mesh, seed: int, extra_transform: optax.GradientTransformation | None = None,
        grad_fn=None, schedule=None, on_metrics: Callable[[int, dict], None] | None = None,
        export_metadata: dict | None = None,
        validate: Callable[[Params], dict[str, float]] | None = None) -> tuple[Params, int]:
  """The training loop, resuming from `<workdir>/checkpoints` when there are any; returns (trainable, steps).

  init: key -> the trainable tree to start from (called with fold_in(key(seed), 0)); extra_transform: an optax
  transform applied after the optimiser (continual learning masks old label rows with it); schedule: overrides the
  config's (the probe's constant lr); on_metrics(step, host_metrics): sees every step's metrics, non-scalar ones
  included; validate(trainable) -> metrics: run every `train.eval_every_epochs` epochs and logged (with
  `train.select="best_val"` the best tree by `val/accuracy` is exported, not the last). On completion the trainable
  tree is exported to `<workdir>/prompts.npz`; a run stopped by `train.stop_after` checkpoints, exports nothing and
  raises SystemExit (the same for every run kind).
  """
  optim = config.optim
  steps_per_epoch = data.steps_per_epoch
  total_steps = optim.epochs * steps_per_epoch
  if config.train.max_steps:
    total_steps = min(total_steps, config.train.max_steps)
  schedule = schedule or learning_rate_schedule(optim, steps_per_epoch, total_steps)
  optimizer = make_optimizer(optim, schedule)
  if extra_transform is not None:
    optimizer = optax.chain(optimizer, extra_transform)

  key = jax.random.key(seed)
  trainable = init(jax.random.fold_in(key, 0))
  state = parallel.replicate(checkpoint_state(trainable, optimizer.init(trainable), 0, key), mesh)
  checkpoints = checkpoint.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  restored = checkpoints.restore_latest(state)  # the newest good checkpoint; bad newer ones are moved aside
  if restored is not None:
    state, data_state, restored_step = restored
    data.set_state(data_state)
    log.info("resumed from %s at step %d", checkpoints.path(restored_step), int(state["step"]))
  step = int(state["step"])
  if run_files.is_writer():
    workdirs.rewind_metrics(workdir, step)  # steps after the checkpoint are logged again: drop the old lines

  train_step = make_train_step(loss_fn, optimizer, schedule, mesh, grad_fn)
  metrics_log = run_files.MetricsLog(workdir, tensorboard=config.train.tensorboard)
  progress = run_files.Progress(total_steps, steps_per_epoch, data.images_per_step, step)
  checkpoint_every = config.train.checkpoint_every or steps_per_epoch
  trainable, opt_state, pending, window = state["trainable"], state["opt_state"], [], []
  validate_every = config.train.eval_every_epochs * steps_per_epoch if validate else 0
  best = _BestTree(workdir) if validate and config.train.select == "best_val" else None
  stop_at = min(step + config.train.stop_after, total_steps) if config.train.stop_after else total_steps
  while step < stop_at:
    trainable, opt_state, metrics = train_step(trainable, opt_state, frozen, data.next_batch(mesh),
                                               np.int32(step))
    step += 1
    pending.append((step, metrics))
    boundary = step % checkpoint_every == 0 or step == stop_at
    log_line = step % config.train.log_every == 0 or step == stop_at
    if log_line or boundary:  # metrics are flushed before every checkpoint; the progress line keeps its cadence
      window = _flush_metrics(pending, window, metrics_log, checkpoints, steps_per_epoch, on_metrics,
                              progress if log_line else None)
      pending = []
    if validate_every and (step % validate_every == 0 or step == total_steps):
      scores = validate(trainable)
      metrics_log.write({"step": step, **scores})
      log.info("step %d: %s", step, scores)
      if best is not None:
        best.offer(step, scores["val/accuracy"], trainable)
    if boundary:
      checkpoints.save(step, checkpoint_state(trainable, opt_state, step, key), data.get_state())
  checkpoints.wait()
  checkpoints.close()
  if step < total_steps:
    raise SystemExit(f"stopped after step {step} of {total_steps} (train.stop_after); re-run the same command to "
                     "resume")
  metadata = {**(export_metadata or {}), "step": step}
  if best is not None:
    trainable = parallel.replicate(best.load(), mesh)
    metadata.update(selected="best_val", selected_step=best.step, val_accuracy=best.score)
  if run_files.is_writer():
    checkpoint.export_prompts(workdir, trainable, metadata)
  return trainable, step


class _BestTree:
  """The best trainable tree by validation accuracy so far, kept on disk (`<workdir>/best_val.npz` + `.json`) so a
  resumed run still knows it; ties keep the earlier step."""

  def __init__(self, workdir: str):
    self.path, self.meta_path = workdirs.as_path(workdir) / "best_val.npz", workdirs.as_path(workdir) / "best_val.json"
    self.step, self.score = None, -math.inf
    if self.meta_path.exists() and self.path.exists():
      meta = workdirs.read_json(self.meta_path)
      self.step, self.score = meta["step"], meta["val_accuracy"]

  def offer(self, step: int, score: float, trainable: Params) -> None:
    if score <= self.score:
      return
    self.step, self.score = step, score
    if run_files.is_writer():
      workdirs.write_npz_atomic(self.path, checkpoint.flatten_tree(trainable))
      workdirs.write_json_atomic(self.meta_path, {"step": step, "val_accuracy": score})

  def load(self) -> Params:
    with self.path.open("rb") as f, np.load(f) as archive:
      return trees.unflatten({key: jnp.asarray(archive[key]) for key in archive.files})


GUARDED = ("loss", "grad_norm", "update_norm", "trainable_norm")
"""Metrics that must stay finite: any non-finite one stops the run."""


def _flush_metrics(pending, window, metrics_log, checkpoints, steps_per_epoch, on_metrics, progress):
  """Fetches the pending steps' metrics, stops on divergence and writes their JSON lines. With `progress`, prints
  the line over the window (earlier unprinted steps + these) and logs its images/s with the last step; returns the
  steps not yet printed."""
  window = list(window)
  for index, (step, metrics) in enumerate(pending):
    host = jax.device_get(metrics)
    if on_metrics is not None:
      on_metrics(step, host)
    values = {k: float(v) for k, v in host.items() if np.ndim(v) == 0}
    diverged = [name for name in GUARDED if name in values and not math.isfinite(values[name])]
    if diverged:
      checkpoints.wait()  # the last save may still be in flight: name one that is finalised
      last = checkpoints.latest_step()
      where = checkpoints.path(last) if last is not None else "none saved yet"
      details = ", ".join(f"{name}={values[name]}" for name in diverged)
      raise NonFiniteError(f"training diverged at step {step} ({details}); last good checkpoint: {where}")
    window.append(values)
    if progress is not None and index == len(pending) - 1:
      progress.log(step, window)
      window, values = [], {**values, "images_per_s": progress.images_per_s}
    metrics_log.write({"step": step, "epoch": (step - 1) // steps_per_epoch, **values})
  return window


# --- the single-task run ------------------------------------------------------------------------------------------------
def start(config: ml_collections.ConfigDict):
  """Every run kind's first phase: multi-host start-up and the ('data',) mesh. (The workdir itself, its lock and
  recorded config, is `jaxprompt.workdir.open_run`, which every run kind holds around its run.)"""
  parallel.initialize(config.multihost)
  return parallel.make_mesh(config.num_devices or None)


def load_backbone(config: ml_collections.ConfigDict) -> weights.Backbone:
  """The frozen CLIP the config names (`backbone`, `backbone_tokenizer`, `backbone_overrides`)."""
  backbone = weights.load(config.backbone, tokenizer=config.backbone_tokenizer or None,
                          overrides=config.backbone_overrides.to_dict())
  log.info("backbone %s: %s parameters", backbone.source, f"{backbone.num_params():,}")
  return backbone


def held_run(config: ml_collections.ConfigDict, workdir: str, body: Callable[[Any, str], dict]) -> dict[str, Any]:
  """body(config, workdir) while this process holds the workdir (`workdir.open_run`: lock, config check,
  config.json, history); every run kind runs this way. The multi-host runtime starts first: the lock asks JAX for
  the process index, and nothing may touch JAX before `jax.distributed.initialize`."""
  parallel.initialize(config.multihost)
  with workdirs.open_run(config, workdir):
    return body(config, workdir)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) and evaluates, writing `<workdir>/results.json`. (`--mode eval` runs
  `jaxprompt.trainers.evaluation.run` instead, which never writes into the training files.)"""
  if config.eval_only:
    raise ValueError("config.eval_only=True: evaluation runs through jaxprompt.trainers.evaluation.run "
                     "(python -m jaxprompt.main --mode eval), not train.run")
  return held_run(config, workdir, _run)


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  start_time = time.time()
  mesh = start(config)
  data = protocol.prepare(config, workdir)  # before the backbone: a missing dataset fails in seconds
  backbone = load_backbone(config)
  method = methods.build_for_run(config.method, backbone, data.classnames, data.templates)
  frozen = parallel.replicate(backbone.params, mesh)
  corrupt = pipeline.CorruptImageLog()
  trainable, steps_done = train_method(config, workdir, method, frozen, data, mesh, corrupt)
  evaluations = evaluate.evaluate_run(method, trainable, frozen, data.evals, mesh, config.data, corrupt)
  results = run_files.results_record(
      kind="single", run=run_info(config), metrics=evaluate.metrics_of(evaluations),
      trainable_params=method.num_trainable(), time_s=time.time() - start_time, steps=steps_done,
      corrupt_images=corrupt.entries(), per_class={name: e.per_class() for name, e in evaluations.items()})
  return write_single_results(workdir, results, evaluations)


def write_single_results(out_dir: str, results: dict[str, Any], evaluations: dict) -> dict[str, Any]:
  """results.json + results.md and each evaluation's per-class / confusion files in `out_dir`; prints the table."""
  if run_files.is_writer():
    workdirs.as_path(out_dir).mkdir(parents=True, exist_ok=True)
    run_files.write_results(out_dir, results)
    evaluation_files.write_evaluations(out_dir, evaluations)
  print(run_files.results_table(results), flush=True)
  return results


def run_info(config: ml_collections.ConfigDict, **changes) -> dict[str, Any]:
  """The results' "run" block: what the run was (method label, dataset, shots, seed, protocol, backbone, options)."""
  info = {"method": run_files.method_label(config.method), "dataset": config.data.name, "shots": config.data.shots,
          "seed": config.seed, "protocol": config.data.protocol, "backbone": config.backbone,
          "options": run_files.method_options(config.method)}
  return {**info, **changes}


def train_loader(config, examples, reader, image_size: int, seed: int, mesh, corrupt, source_name: str):
  """The shuffled, augmented, resumable loader over `examples` (batch `optim.batch_size`) as `TrainData`."""
  batch_size = config.optim.batch_size
  parallel.check_batch_size(min(batch_size, len(examples)), mesh)
  loader = pipeline.train_loader(examples, reader, image_size, batch_size, seed, process_index=jax.process_index(),
                                 process_count=jax.process_count(), worker_threads=config.data.workers or None,
                                 min_crop_scale=config.data.min_crop_scale, corrupt_log=corrupt,
                                 source_name=source_name)
  return LoaderData(loader, batch_size)


def train_method(config, workdir: str, method, frozen: Params, data: protocol.RunData, mesh,
                 corrupt: pipeline.CorruptImageLog) -> tuple[Params, int]:
  """Trains the run's method on the run's data; returns the final trainable tree and the number of steps.

  A method with nothing to train (zero-shot) runs no step. With `train.eval_every_epochs`, the validation split is
  evaluated every that many epochs (logged as `val/accuracy`); `train.select="best_val"` then exports the tree of
  the best validation accuracy instead of the last (recorded in prompts.json)."""
  if not jax.tree_util.tree_leaves(jax.eval_shape(method.init, jax.random.key(0))):
    return {}, 0
  loader = train_loader(config, data.train, data.source.reader, method.clip.vision.image_size, config.seed, mesh,
                        corrupt, data.source.name)
  metadata = {"method": method.name, "method_config": config.method.to_dict(), "classnames": list(data.classnames),
              "dataset_templates": list(data.templates)}  # so an export alone rebuilds the method (predict)
  validate = None
  if config.train.eval_every_epochs:
    validate = validation(config, method, frozen, data, mesh, corrupt)
  elif config.train.select != "last":
    raise ValueError(f"config.train.select={config.train.select!r} needs config.train.eval_every_epochs > 0")
  return fit(config, workdir, loss_fn=method_loss(method), init=method.init, frozen=frozen, data=loader, mesh=mesh,
             seed=config.seed, export_metadata=metadata, validate=validate)


def validation(config, method, frozen, data: protocol.RunData, mesh, corrupt):
  """trainable -> {"val/accuracy": percent} on the training classes' validation split (for `fit`'s `validate`)."""
  if "val" not in data.source.splits or not data.source.splits["val"]:
    raise ValueError(f"config.train.eval_every_epochs: data source {data.source.name} has no validation split")
  val_set = protocol.EvalSet("val", data.classnames, data.source.splits["val"], data.source.reader, data.templates,
                             data.source.name)

  def validate(trainable):
    return {"val/accuracy": evaluate.top1_percent(method, trainable, frozen, val_set, mesh,
                                                  config.data.eval_batch_size, corrupt=corrupt,
                                                  workers=config.data.workers)}
  return validate
