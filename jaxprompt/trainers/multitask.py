"""The multi-task driver (specs/mmap.md): tasks = domains, task grouping, MmAP-MT and its baselines in one framework.

    python -m jaxprompt.main --config configs/mmap_officehome.py:method=mmap,root=/data/office_home --workdir runs/oh

Phases: mesh -> tasks (one few-shot source per domain) -> backbone -> grouping (probe, or the config's partition) ->
model -> optimiser -> restore -> jitted multi-task step -> loop -> per-task evaluation -> results.

`config.multitask.mode` picks the model (all trained on the same balanced batches, one per task per step, losses
summed, one optimiser step):
  "mmap_mt":  one group-shared MmAP per group + one task-specific MmAP per task, combined per layer
              (`method.mmap.combine`: "concat" = [shared; specific], 2b tokens, or "sum");
  "mt":       one prompt set of `method.name` shared by all tasks (CoOp-MT, VPT-MT, MaPLe-MT, MmAP-MT without groups);
  "st":       a separate prompt set of `method.name` per task (single-task; independent leaves, so training them in
              one loop equals training each alone);
  "zeroshot": no training.
Re-running the same command resumes: the grouping is read back from `grouping.json` (and checked against the
checkpoint's copy), the checkpoint holds the trainable tree, optimiser state, step and every task's iterator state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprompt import checkpoint, evaluate, parallel, train
from jaxprompt.data import protocol
from jaxprompt.report import run_files as reporting
from jaxprompt.trainers import grouping
from jaxprompt.clip import weights
from jaxprompt.data import fewshot, pipeline
from jaxprompt.data.registry import build_source
from jaxprompt.data.types import Source
from jaxprompt.methods import mmap
from jaxprompt.methods.base import accuracy, cross_entropy

log = logging.getLogger(__name__)

Params = dict[str, Any]
MODES = ("mmap_mt", "mt", "st", "zeroshot")
CLIP_B16_PARAMS = 149.6e6  # ViT-B/16 CLIP, the denominator of the paper's parameter shares


@dataclasses.dataclass
class Task:
  """One task: `name` (e.g. "Art"), its K-shot source (train) with the source's own test split."""
  name: str
  source: Source


# --- tasks --------------------------------------------------------------------------------------------------------------
def load_tasks(config, workdir: str) -> list[Task]:
  """`multitask.tasks` (source names) or `multitask.domains` (of `data.name`), each K-shot, draw recorded."""
  block, data = config.multitask, config.data
  if block.tasks:
    specs = [(name.split("/")[-1], name, data.options.to_dict()) for name in block.tasks]
  elif block.domains:
    specs = [(domain, data.name, {**data.options.to_dict(), "domain": domain}) for domain in block.domains]
  else:
    raise ValueError("config.multitask needs `tasks` (source names) or `domains` (of config.data.name)")
  tasks = []
  for name, source_name, options in specs:
    source = build_source(source_name, **protocol.source_options(data, options))
    split_path = os.path.join(workdir, f"split_{name.replace(' ', '_').replace('/', '_')}.json")
    source = fewshot.few_shot_source_recorded(source, data.shots, config.seed, split_path)
    tasks.append(Task(name, source))
  if len({t.name for t in tasks}) != len(tasks):
    raise ValueError(f"task names must differ: {[t.name for t in tasks]}")
  return tasks


# --- the model ----------------------------------------------------------------------------------------------------------
class MultiTaskModel:
  """Every task's logits and loss from one trainable tree.

  Trees: mmap_mt {"shared": {"group<g>": MmAP}, "specific": {"task<t>": MmAP}}; mt: one tree of `method.name`;
  st {"task<t>": tree}; zeroshot {}. `logits(trainable, frozen, t, images)` (B, H, W, 3) -> (B, C_t).
  """

  def __init__(self, method_config, backbone, tasks: list[Task], mode: str, partition=None):
    if mode not in MODES:
      raise ValueError(f"config.multitask.mode={mode!r}: expected one of {MODES}")
    self.mode, self.num_tasks, self.name = mode, len(tasks), f"multitask-{mode}"
    if mode == "mmap_mt":
      if partition is None:
        raise ValueError("mode 'mmap_mt' needs a partition of the tasks into groups")
      options = method_config.mmap
      slots = 2 * options.b if options.combine == "concat" else options.b
      self.methods = [mmap.MmAP(method_config, backbone, list(t.source.raw_classnames), slots=slots) for t in tasks]
      self.partition = partition
      self.group_of = {t: g for g, group in enumerate(partition) for t in group}
    else:
      self.methods = [evaluate.build_method(method_config, backbone, t.source.raw_classnames, t.source.templates)
                      for t in tasks]
    self.clip = self.methods[0].clip

  def init(self, rng) -> Params:
    if self.mode == "mmap_mt":
      shared = {f"group{g}": self.methods[0].init(jax.random.fold_in(rng, g)) for g in range(len(self.partition))}
      specific = {f"task{t}": m.init(jax.random.fold_in(rng, 1000 + t)) for t, m in enumerate(self.methods)}
      return {"shared": shared, "specific": specific}
    if self.mode == "st":
      return {f"task{t}": m.init(jax.random.fold_in(rng, t)) for t, m in enumerate(self.methods)}
    return self.methods[0].init(rng)

  def num_trainable(self) -> int:
    shapes = jax.eval_shape(self.init, jax.random.key(0))
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))

  def task_prompts(self, trainable, t: int):
    """mmap_mt: task t's per-layer prompts, text (depth, slots, D_t) and vision (depth, slots, D_v)."""
    order, how = self.methods[t].options.kron_order, self.methods[t].options.combine
    shared = mmap.generate_prompts(trainable["shared"][f"group{self.group_of[t]}"], order)
    specific = mmap.generate_prompts(trainable["specific"][f"task{t}"], order)
    return tuple(mmap.combine_prompts(s, p, how) for s, p in zip(shared, specific))

  def logits(self, trainable, frozen, t: int, images):
    if self.mode == "mmap_mt":
      return self.methods[t].logits_from_prompts(frozen, *self.task_prompts(trainable, t), images)
    own = trainable[f"task{t}"] if self.mode == "st" else trainable
    return self.methods[t].logits(own, frozen, images)

  def loss(self, trainable, frozen, t: int, images, labels):
    """Task t's loss (the method's own loss for mt/st, e.g. LAMM's terms; CE for mmap_mt) and metrics."""
    if self.mode == "mmap_mt":
      logits = self.logits(trainable, frozen, t, images)
      return cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}
    own = trainable[f"task{t}"] if self.mode == "st" else trainable
    return self.methods[t].loss(own, frozen, images, labels)

  def view(self, t: int):
    """Task t as a one-task method (`.logits(trainable, frozen, images)`, `.clip`) for `evaluate.accuracy`."""
    return _TaskView(self, t)


@dataclasses.dataclass
class _TaskView:
  model: MultiTaskModel
  task: int

  @property
  def clip(self):
    return self.model.clip

  def logits(self, trainable, frozen, images):
    return self.model.logits(trainable, frozen, self.task, images)


# --- the step -----------------------------------------------------------------------------------------------------------
def make_multitask_step(model: MultiTaskModel, optimizer, schedule, mesh, *, probe: bool = False):
  """One jitted step over a dict of per-task batches {"task<t>": {"images": (B, H, W, 3), "labels": (B,)}}.

  The loss is the sum of the task losses. With `probe`, every task's gradient is taken separately (their sum is the
  update) and the step also returns their (T, T) cosine matrix. Batches are sharded over the mesh, the rest
  replicated, as in `train.make_train_step`.
  """
  replicated, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  tasks = range(model.num_tasks)

  def task_loss(params, frozen, batches, t):
    return model.loss(params, frozen, t, batches[f"task{t}"]["images"], batch_labels(batches, t))

  def total_loss(params, frozen, batches):
    results = [task_loss(params, frozen, batches, t) for t in tasks]
    return sum(loss for loss, _ in results), {f"loss/task{t}": loss for t, (loss, _) in zip(tasks, results)}

  def step_fn(trainable, opt_state, frozen, batches, step):
    if probe:
      per_task = [jax.value_and_grad(task_loss, has_aux=True)(trainable, frozen, batches, t) for t in tasks]
      grads = jax.tree_util.tree_map(lambda *g: sum(g), *[g for _, g in per_task])
      loss = sum(value for (value, _), _ in per_task)
      metrics = {f"loss/task{t}": value for t, ((value, _), _) in zip(tasks, per_task)}
      affinity = grouping.task_affinity([g for _, g in per_task])
    else:
      (loss, metrics), grads = jax.value_and_grad(total_loss, has_aux=True)(trainable, frozen, batches)
      affinity = jnp.zeros(())
    updates, opt_state = optimizer.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    metrics = {**metrics, "loss": loss, "lr": schedule(step), "grad_norm": optax.tree.norm(grads)}
    return trainable, opt_state, metrics, affinity

  return jax.jit(step_fn, in_shardings=(replicated, replicated, replicated, sharded, replicated),
                 out_shardings=(replicated, replicated, replicated, replicated), donate_argnums=(0, 1))


def batch_labels(batches, t):
  return batches[f"task{t}"]["labels"]


def make_loaders(config, tasks: list[Task], image_size: int, mesh) -> list[pipeline.TrainLoader]:
  """One cycling loader per task; task t shuffles with seed `seed * 1000 + t` (ours: tasks draw independently)."""
  loaders = []
  for t, task in enumerate(tasks):
    examples = task.source.splits["train"]
    parallel.check_batch_size(min(config.optim.batch_size, len(examples)), mesh)
    loaders.append(pipeline.train_loader(examples, task.source.reader, image_size, config.optim.batch_size,
                                         config.seed * 1000 + t, process_index=jax.process_index(),
                                         process_count=jax.process_count(),
                                         worker_threads=config.data.workers or None,
                                         min_crop_scale=config.data.min_crop_scale))
  return loaders


def next_batches(loaders, mesh) -> dict:
  return {f"task{t}": parallel.global_batch(next(loader), mesh) for t, loader in enumerate(loaders)}


# --- grouping -----------------------------------------------------------------------------------------------------------
def resolve_grouping(config, workdir: str, backbone, tasks: list[Task], frozen, mesh) -> dict:
  """The config's partition, else `grouping.json` from an earlier invocation, else a probe run (saved + printed)."""
  block, names = config.multitask, [t.name for t in tasks]
  path = os.path.join(workdir, "grouping.json")
  if block.partition:
    result = {"tasks": names, "affinity": None, "partition": grouping.parse_partition(block.partition, len(tasks)),
              "source": "config (multitask.partition)"}
  elif os.path.exists(path):
    result = json.load(open(path))
    if result["tasks"] != names:
      raise ValueError(f"{path} groups tasks {result['tasks']}, this run has {names}; use another workdir")
    log.info("grouping read from %s", path)
  else:
    result = probe(config, backbone, tasks, frozen, mesh)
  if reporting.is_writer():
    grouping.save(workdir, result)
  print(grouping.describe(result) if result["affinity"] is not None else
        f"partition ({result['source']}): {grouping.format_partition(result['partition'])}", flush=True)
  return result


def probe(config, backbone, tasks: list[Task], frozen, mesh) -> dict:
  """Trains one global MmAP on all tasks for `probe_steps` (0 = one epoch of the largest task) at the constant
  `optim.lr` (ours), averaging the per-step task-gradient cosine matrix; then picks the partition."""
  block = config.multitask
  method_config = config.method.copy_and_resolve_references()
  method_config.name = "mmap"
  model = MultiTaskModel(method_config, backbone, tasks, "mt")
  loaders = make_loaders(config, tasks, model.clip.vision.image_size, mesh)
  steps = block.probe_steps or max(loader.steps_per_epoch for loader in loaders)
  schedule = optax.constant_schedule(config.optim.lr)
  optimizer = train.make_optimizer(config.optim, schedule)
  trainable = parallel.replicate(model.init(jax.random.key(config.seed)), mesh)
  opt_state = optimizer.init(trainable)
  step_fn = make_multitask_step(model, optimizer, schedule, mesh, probe=True)
  total = np.zeros((len(tasks), len(tasks)))
  for step in range(steps):
    trainable, opt_state, metrics, affinity = step_fn(trainable, opt_state, frozen, next_batches(loaders, mesh),
                                                      jnp.asarray(step))
    total += np.asarray(jax.device_get(affinity), np.float64)
    log.info("probe step %d/%d loss %.4f", step + 1, steps, float(metrics["loss"]))
  affinity = total / steps
  partition = grouping.choose(affinity, block.grouping, block.num_groups, block.tau)
  return {"tasks": [t.name for t in tasks], "affinity": affinity.tolist(), "partition": partition,
          "source": f"probe ({block.grouping})", "probe_steps": steps, "num_groups": block.num_groups,
          "tau": block.tau}


# --- the run ------------------------------------------------------------------------------------------------------------
def run(config, workdir: str) -> dict[str, Any]:
  """Groups (mmap_mt), trains (or resumes, or only evaluates), evaluates every task; writes results.json/.md."""
  start_time = time.time()
  mesh = train.start(config, workdir)
  tasks = load_tasks(config, workdir)
  backbone = weights.load(config.backbone, tokenizer=config.backbone_tokenizer or None)
  frozen = parallel.replicate(backbone.params, mesh)
  mode = config.multitask.mode
  grouped = resolve_grouping(config, workdir, backbone, tasks, frozen, mesh) if mode == "mmap_mt" else None
  model = MultiTaskModel(config.method, backbone, tasks, mode, grouped and grouped["partition"])

  steps_done = 0
  if mode == "zeroshot" or not jax.tree_util.tree_leaves(jax.eval_shape(model.init, jax.random.key(0))):
    trainable = {}
  elif config.eval_only:
    trainable, steps_done = train._load_for_eval(config, workdir, model, mesh), None
  else:
    trainable, steps_done = train_tasks(config, workdir, model, tasks, frozen, mesh, grouped)

  metrics = {}
  for t, task in enumerate(tasks):
    eval_set = protocol.eval_set(f"task/{task.name}", task.source)
    metrics[eval_set.name] = evaluate.accuracy(model.view(t), trainable, frozen, eval_set, mesh,
                                               config.data.eval_batch_size, config.data.workers)
  metrics["mean"] = float(np.mean([metrics[f"task/{t.name}"] for t in tasks]))
  params = model.num_trainable()
  results = {
      "run": {"method": method_label(config), "dataset": dataset_label(config), "shots": config.data.shots,
              "seed": config.seed, "protocol": "multitask", "backbone": config.backbone,
              "options": {"multitask.mode": mode, **train._method_options(config.method)}},
      "metrics": metrics,
      "trainable_params": params,
      "trainable_share_percent": 100.0 * params / CLIP_B16_PARAMS,
      "backbone_params": backbone.num_params(),
      "partition": grouped and grouped["partition"],
      "tasks": [t.name for t in tasks],
      "time_s": time.time() - start_time,
      "steps": steps_done,
      "corrupt_images": pipeline.corrupt_images(),
  }
  reporting.write_results(workdir, results, results_table(results))
  print(results_table(results), flush=True)
  return results


def method_label(config) -> str:
  """'zeroshot', 'mmap-mt' (grouped MmAP-MT), '<method>-mt' (one shared set) or '<method>-st' (per task)."""
  mode = config.multitask.mode
  return {"zeroshot": "zeroshot", "mmap_mt": "mmap-mt"}.get(mode, f"{config.method.name}-{mode}")


def dataset_label(config) -> str:
  return config.multitask.name or (config.data.name if not config.multitask.tasks else "multitask")


def results_table(results: dict) -> str:
  """Markdown: per-task accuracy and the mean, trainable parameters and their share of CLIP ViT-B/16's 149.6M."""
  run = results["run"]
  lines = [f"# {run['method']} on {run['dataset']} (multi-task, {run['shots']} shots, seed {run['seed']})", ""]
  if results.get("partition"):
    lines += ["groups: " + " | ".join("[" + ", ".join(results["tasks"][t] for t in g) + "]"
                                      for g in results["partition"]), ""]
  lines += ["| task | accuracy |", "|---|---|"]
  lines += [f"| {name.replace('task/', '')} | {value:.2f} |" for name, value in results["metrics"].items()]
  lines += [f"| trainable parameters | {results['trainable_params']:,} "
            f"({results['trainable_share_percent']:.4f} % of 149.6M) |", f"| time (s) | {results['time_s']:.1f} |", ""]
  return "\n".join(lines)


def train_tasks(config, workdir: str, model: MultiTaskModel, tasks: list[Task], frozen, mesh, grouped):
  """The multi-task loop (train.train's structure): one batch per task per step, checkpoints with every task's
  iterator state and the grouping; returns (trainable, steps done)."""
  optim = config.optim
  loaders = make_loaders(config, tasks, model.clip.vision.image_size, mesh)
  steps_per_epoch = max(loader.steps_per_epoch for loader in loaders)  # an epoch = a pass over the largest task
  total_steps = optim.epochs * steps_per_epoch
  if config.train.max_steps:
    total_steps = min(total_steps, config.train.max_steps)
  schedule = train.learning_rate_schedule(optim, steps_per_epoch, total_steps)
  optimizer = train.make_optimizer(optim, schedule)

  key = jax.random.key(config.seed)
  trainable = model.init(jax.random.fold_in(key, 0))
  state = parallel.replicate(train.checkpoint_state(trainable, optimizer.init(trainable), 0, key), mesh)
  checkpoints = checkpoint.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  if checkpoints.latest_step() is not None:
    state, extra = checkpoints.restore(state)
    for t, loader in enumerate(loaders):
      loader.set_state(extra["tasks"][f"task{t}"])
    if grouped is not None and extra.get("grouping", {}).get("partition") != grouped["partition"]:
      raise ValueError(f"the checkpoint was trained with partition {extra.get('grouping', {}).get('partition')}, "
                       f"this run has {grouped['partition']}; use another workdir")
    log.info("resumed from %s at step %d", checkpoints.path(checkpoints.latest_step()), int(state["step"]))
  step = int(state["step"])

  def extra_state():
    return {"tasks": {f"task{t}": loader.get_state() for t, loader in enumerate(loaders)}, "grouping": grouped or {}}

  step_fn = make_multitask_step(model, optimizer, schedule, mesh)
  metrics_log = reporting.MetricsLog(workdir)
  progress = reporting.Progress(total_steps, steps_per_epoch, optim.batch_size * len(tasks), step)
  every = config.train.checkpoint_every or steps_per_epoch
  trainable, opt_state, pending = state["trainable"], state["opt_state"], []
  last_saved = checkpoints.latest_step()
  stop_at = step + config.train.stop_after if config.train.stop_after else total_steps
  while step < min(total_steps, stop_at):
    trainable, opt_state, metrics, _ = step_fn(trainable, opt_state, frozen, next_batches(loaders, mesh),
                                               jnp.asarray(step))
    step += 1
    pending.append((step, metrics))
    boundary = step % every == 0 or step == total_steps
    if step % config.train.log_every == 0 or boundary or step == stop_at:
      train._flush_metrics(pending, metrics_log, progress, last_saved, checkpoints, steps_per_epoch)
      pending = []
    if boundary or (step == stop_at and step < total_steps):
      checkpoints.save(step, train.checkpoint_state(trainable, opt_state, step, key), extra_state())
      last_saved = step
  checkpoints.wait()
  checkpoints.close()
  if reporting.is_writer():
    checkpoint.export_prompts(workdir, trainable, {"method": model.name, "method_config": config.method.to_dict(),
                                                   "tasks": [t.name for t in tasks], "step": step,
                                                   "partition": grouped and grouped["partition"]})
  if step < total_steps:
    raise SystemExit(f"stopped after step {step} of {total_steps} (train.stop_after); re-run the same command to "
                     "resume")
  return trainable, step
