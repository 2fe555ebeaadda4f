"""The trainer, in phases: mesh -> data -> backbone -> method -> optimiser -> restore -> jitted step -> loop -> eval.

    python -m jaxprompt.main --config configs/coop.py:dataset=dtd,shots=16 --workdir runs/coop_dtd

Re-running the same command resumes from the workdir's latest checkpoint (trainable tree, optimiser state, step,
RNG key, data iterator), so an interrupted run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxprompt import checkpoint, evaluate, parallel
from jaxprompt.data import protocol
from jaxprompt.report import run_files as reporting
from jaxprompt.clip import weights
from jaxprompt.data import pipeline

log = logging.getLogger(__name__)

Params = dict[str, Any]


class NonFiniteLossError(RuntimeError):
  pass


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
def make_train_step(method, optimizer, schedule, mesh):
  """One jitted step. Gradients are taken with respect to `trainable` only; `frozen` is a plain argument."""
  replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)

  def train_step(trainable, opt_state, frozen, images, labels, step):
    def loss_fn(params):
      return method.loss(params, frozen, images, labels)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    metrics = {**metrics, "loss": loss, "lr": schedule(step), "grad_norm": optax.tree.norm(grads)}
    return trainable, opt_state, metrics

  return jax.jit(train_step, in_shardings=(replicated, replicated, replicated, sharded, sharded, replicated),
                 out_shardings=(replicated, replicated, replicated), donate_argnums=(0, 1))


# --- the run ------------------------------------------------------------------------------------------------------------
def start(config: ml_collections.ConfigDict, workdir: str):
  """Every driver's first phase: multi-host start-up, the ('data',) mesh, the workdir and its resolved config."""
  parallel.initialize(config.multihost)
  mesh = parallel.make_mesh(config.num_devices or None)
  os.makedirs(workdir, exist_ok=True)
  if reporting.is_writer():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  return mesh


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes, or only evaluates) and returns the results written to `<workdir>/results.json`."""
  start_time = time.time()
  mesh = start(config, workdir)

  backbone = weights.load(config.backbone, tokenizer=config.backbone_tokenizer or None)
  log.info("backbone %s: %s parameters", backbone.source, f"{backbone.num_params():,}")
  data = protocol.prepare(config, workdir)
  method = evaluate.build_method(config.method, backbone, data.classnames, data.templates)
  frozen = parallel.replicate(backbone.params, mesh)

  if config.eval_only:
    trainable = _load_for_eval(config, workdir, method, mesh)
    steps_done = None
  else:
    trainable, steps_done = train(config, workdir, method, frozen, data, mesh)

  metrics = evaluate.evaluate_run(config.method, backbone, trainable, frozen, data.evals, mesh,
                                  config.data.eval_batch_size, config.data.workers)
  corrupt = pipeline.corrupt_images()
  if corrupt:
    log.warning("%d corrupt image(s) were skipped: %s", len(corrupt), ", ".join(corrupt[:10]))
  results = {
      "run": {"method": _method_label(config.method), "dataset": config.data.name, "shots": config.data.shots,
              "seed": config.seed, "protocol": config.data.protocol, "backbone": config.backbone,
              "options": _method_options(config.method)},
      "metrics": metrics,
      "trainable_params": method.num_trainable(),
      "time_s": time.time() - start_time,
      "steps": steps_done,
      "corrupt_images": corrupt,
  }
  reporting.write_results(workdir, results)
  print(reporting.results_table(results), flush=True)
  return results


def _method_options(method_config) -> dict[str, Any]:
  """The active method's own options as dotted keys (what sweeps ablate), e.g. {"method.rpo.k": 24}."""
  names = [method_config.name] + ([method_config.lamm.base] if method_config.name == "lamm" else [])
  return {f"method.{name}.{key}": value for name in names if name in method_config
          for key, value in method_config[name].to_dict().items()}


def _method_label(method_config) -> str:
  if method_config.name == "lamm" and method_config.lamm.base not in ("none", ""):
    return f"{method_config.lamm.base}+lamm"
  return method_config.name


def train(config, workdir: str, method, frozen: Params, data: protocol.RunData, mesh) -> tuple[Params, int]:
  """Trains the run's method on the run's data; returns the final trainable tree and the number of steps."""
  metadata = {"method": method.name, "method_config": config.method.to_dict(), "classnames": list(data.classnames)}
  return fit(config, workdir, method, frozen, data.train, data.source.reader, mesh, seed=config.seed,
             export_metadata=metadata)


def fit(config, workdir: str, method, frozen: Params, examples, reader, mesh, *, seed: int,
        initial: Params | None = None, extra_transform: optax.GradientTransformation | None = None,
        export_metadata: dict | None = None) -> tuple[Params, int]:
  """The training loop over `examples`, resuming from `<workdir>/checkpoints` when there are any.

  initial: the trainable tree to start from (default `method.init`); extra_transform: an optax transform applied
  after the optimiser (continual learning masks old label rows with it). On completion the trainable tree is
  exported to `<workdir>/prompts.npz`; a run stopped by `train.stop_after` raises SystemExit after checkpointing.
  """
  optim = config.optim
  parallel.check_batch_size(min(optim.batch_size, len(examples)), mesh)
  loader = pipeline.train_loader(examples, reader, method.clip.vision.image_size, optim.batch_size, seed,
                                 process_index=jax.process_index(), process_count=jax.process_count(),
                                 worker_threads=config.data.workers or None,
                                 min_crop_scale=config.data.min_crop_scale)
  steps_per_epoch = loader.steps_per_epoch
  total_steps = optim.epochs * steps_per_epoch
  if config.train.max_steps:
    total_steps = min(total_steps, config.train.max_steps)
  schedule = learning_rate_schedule(optim, steps_per_epoch, total_steps)
  optimizer = make_optimizer(optim, schedule)
  if extra_transform is not None:
    optimizer = optax.chain(optimizer, extra_transform)

  key = jax.random.key(seed)
  trainable = method.init(jax.random.fold_in(key, 0)) if initial is None else initial
  state = parallel.replicate(checkpoint_state(trainable, optimizer.init(trainable), 0, key), mesh)
  checkpoints = checkpoint.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state, loader_state = checkpoints.restore(state)
    loader.set_state(loader_state)
    log.info("resumed from %s at step %d", checkpoints.path(checkpoints.latest_step()), int(state["step"]))
  step = int(state["step"])

  train_step = make_train_step(method, optimizer, schedule, mesh)
  metrics_log = reporting.MetricsLog(workdir)
  progress = reporting.Progress(total_steps, steps_per_epoch, optim.batch_size, step)
  every = config.train.checkpoint_every or steps_per_epoch
  trainable, opt_state = state["trainable"], state["opt_state"]
  pending, last_saved = [], checkpoints.latest_step()
  stop_at = min(step + config.train.stop_after, total_steps) if config.train.stop_after else total_steps
  while step < stop_at:
    batch = parallel.global_batch(next(loader), mesh)
    trainable, opt_state, metrics = train_step(trainable, opt_state, frozen, batch["images"], batch["labels"],
                                               jnp.asarray(step))
    step += 1
    pending.append((step, metrics))
    boundary = step % every == 0 or step == stop_at
    if step % config.train.log_every == 0 or boundary:
      _flush_metrics(pending, metrics_log, progress, last_saved, checkpoints, steps_per_epoch)
      pending = []
    if boundary:
      checkpoints.save(step, checkpoint_state(trainable, opt_state, step, key), loader.get_state())
      last_saved = step
  checkpoints.wait()
  checkpoints.close()
  if step < total_steps:
    raise SystemExit(f"stopped after step {step} of {total_steps} (train.stop_after); re-run the same command to "
                     "resume")
  if reporting.is_writer():
    checkpoint.export_prompts(workdir, trainable, {**(export_metadata or {}), "step": step})
  return trainable, step


def checkpoint_state(trainable: Params, opt_state, step: int, key: jax.Array) -> Params:
  """What a checkpoint holds besides the data iterator: trainable tree, optimiser state, step and RNG key data."""
  # Step and key as host numpy values: identical on every host, so any process may save them (a device-local
  # jax.Array cannot be saved in a multi-host run).
  return {"trainable": trainable, "opt_state": opt_state, "step": np.int64(step),
          "key": np.asarray(jax.random.key_data(key))}


def _flush_metrics(pending, metrics_log, progress, last_saved, checkpoints, steps_per_epoch) -> None:
  """Fetches the pending steps' metrics, stops on a non-finite loss, writes JSON lines and the progress line."""
  for step, metrics in pending:
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not math.isfinite(values["loss"]):
      where = checkpoints.path(last_saved) if last_saved is not None else "none saved yet"
      raise NonFiniteLossError(f"non-finite loss {values['loss']} at step {step}; last good checkpoint: {where}")
    metrics_log.write({"step": step, "epoch": (step - 1) // steps_per_epoch, **values})
  progress.log(step, values)


def _load_for_eval(config, workdir: str, method, mesh) -> Params:
  """The trainable tree to evaluate: `config.eval_prompts`, else the workdir's prompt export (written when a training
  run finishes). A method with nothing to train (zero-shot) needs neither."""
  shapes = jax.eval_shape(method.init, jax.random.key(0))
  path = config.eval_prompts or os.path.join(workdir, "prompts.npz")
  if not jax.tree_util.tree_leaves(shapes):
    return {}
  trainable, _ = checkpoint.load_prompts(path)
  got = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), trainable)
  want = jax.tree_util.tree_map(lambda x: tuple(x.shape), shapes)
  if got != want:
    raise ValueError(f"prompts at {path} do not fit method {method.name}: got {got}, expected {want}")
  return parallel.replicate(jax.tree_util.tree_map(jnp.asarray, trainable), mesh)
