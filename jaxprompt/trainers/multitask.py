"""The multi-task run kind: tasks = domains, task grouping, MmAP-MT and its baselines in one framework.

    python -m jaxprompt.main --config configs/mmap_officehome.py:method=mmap,root=/data/office_home --workdir runs/oh

Phases: mesh -> tasks (one few-shot source per domain) -> backbone -> grouping (the config's partition, the
workdir's `grouping.json`, or a probe run) -> model (`jaxprompt.methods.mmap_mt`) -> `train.fit` with one batch per
task per step (losses summed, one optimiser step) -> per-task evaluation -> results.

`config.multitask.mode` picks the model (see `jaxprompt.methods.mmap_mt`): "mmap_mt" (group-shared + task-specific
MmAPs), "mt" (one prompt set of `method.name` for all tasks), "st" (one per task), "zeroshot".
The probe is an ordinary `train.fit` run in `<workdir>/probe/` (so it resumes too) that takes every task's gradient
separately; the mean over its steps of their cosine matrix picks the partition (`grouping.py`).
Re-running the same command resumes: the grouping is read back from `grouping.json` and checked against the
checkpoint's copy; checkpoints hold the trainable tree, optimiser state, step and every task's iterator state.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from jaxprompt import checkpoint, evaluate, parallel, train
from jaxprompt import workdir as workdirs
from jaxprompt.data import fewshot, pipeline, protocol
from jaxprompt.data.registry import build_source
from jaxprompt.data.types import Source
from jaxprompt.methods import mmap_mt
from jaxprompt.report import run_files, run_tables
from jaxprompt.trainers import grouping

log = logging.getLogger(__name__)

Params = dict[str, Any]


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
    specs = [(name.split("/")[-1], name, protocol.main_source_options(data)) for name in block.tasks]
  elif block.domains:
    specs = [(domain, data.name, {**protocol.main_source_options(data), "domain": domain}) for domain in block.domains]
  else:
    raise ValueError("config.multitask needs `tasks` (source names) or `domains` (of config.data.name)")
  tasks = []
  for name, source_name, options in specs:
    source = build_source(source_name, **protocol.source_options(data, options))
    split_path = os.path.join(workdir, f"split_{name.replace(' ', '_').replace('/', '_')}.json")
    source = fewshot.few_shot_source_recorded(source, data.shots, config.seed, split_path,
                                              record=not config.eval_only)
    tasks.append(Task(name, source))
  if len({t.name for t in tasks}) != len(tasks):
    raise ValueError(f"task names must differ: {[t.name for t in tasks]}")
  return tasks


def build_model(mode: str, config, backbone, tasks: list[Task], partition=None):
  """The multi-task model of `mode` over the tasks' class lists and templates."""
  return mmap_mt.build(mode, config.method, backbone, [list(t.source.raw_classnames) for t in tasks],
                       [list(t.source.templates) for t in tasks], partition)


# --- batches: one per task per step -------------------------------------------------------------------------------------
class MultiTaskData:
  """Every task's loader as one `train.TrainData`: batches {"task<t>": {"images", "labels"}}.

  Task t shuffles with seed `seed * 1000 + t` (ours: tasks draw independently); an epoch is a pass over the largest
  task. The state holds every task's iterator state and the grouping, which a restore checks.
  """

  def __init__(self, config, tasks: list[Task], image_size: int, mesh, corrupt, grouped: dict | None):
    self.loaders = [train.train_loader(config, task.source.splits["train"], task.source.reader, image_size,
                                       config.seed * 1000 + t, mesh, corrupt, task.source.name)
                    for t, task in enumerate(tasks)]
    self.grouped = grouped or {}
    self.steps_per_epoch = max(loader.steps_per_epoch for loader in self.loaders)
    self.images_per_step = sum(loader.images_per_step for loader in self.loaders)

  def next_batch(self, mesh) -> dict:
    return {f"task{t}": loader.next_batch(mesh) for t, loader in enumerate(self.loaders)}

  def get_state(self) -> dict:
    return {"tasks": {f"task{t}": loader.get_state() for t, loader in enumerate(self.loaders)},
            "grouping": self.grouped}

  def set_state(self, state: dict) -> None:
    saved = state.get("grouping", {}).get("partition")
    if saved != self.grouped.get("partition"):
      raise ValueError(f"the checkpoint was trained with partition {saved}, this run has "
                       f"{self.grouped.get('partition')}; use another workdir")
    for t, loader in enumerate(self.loaders):
      loader.set_state(state["tasks"][f"task{t}"])


def task_losses(model, trainable, frozen, batches) -> list[tuple[jax.Array, dict]]:
  return [model.loss(trainable, frozen, t, batches[f"task{t}"]["images"], batches[f"task{t}"]["labels"])
          for t in range(model.num_tasks)]


def multitask_loss(model) -> train.LossFn:
  """The sum of the task losses; metrics `loss/task<t>`."""
  def loss_fn(trainable, frozen, batches):
    results = task_losses(model, trainable, frozen, batches)
    return sum(loss for loss, _ in results), {f"loss/task{t}": loss for t, (loss, _) in enumerate(results)}
  return loss_fn


# --- grouping -----------------------------------------------------------------------------------------------------------
def resolve_grouping(config, workdir: str, backbone, tasks: list[Task], frozen, mesh, corrupt) -> dict:
  """The config's partition, else `grouping.json` from an earlier invocation, else a probe run (saved + printed)."""
  block, names = config.multitask, [t.name for t in tasks]
  path = workdirs.as_path(workdir) / "grouping.json"
  if block.partition:
    result = {"tasks": names, "affinity": None, "partition": grouping.parse_partition(block.partition, len(tasks)),
              "source": "config (multitask.partition)"}
  elif path.exists():
    result = workdirs.read_json(path)
    if result["tasks"] != names:
      raise ValueError(f"{path} groups tasks {result['tasks']}, this run has {names}; use another workdir")
    log.info("grouping read from %s", path)
  elif config.eval_only:
    raise FileNotFoundError(f"{path} not found: evaluating an mmap_mt run needs its grouping (or multitask.partition)")
  else:
    result = probe(config, os.path.join(workdir, "probe"), backbone, tasks, frozen, mesh, corrupt)
  if run_files.is_writer() and not config.eval_only:
    grouping.save(workdir, result)
  print(grouping.describe(result) if result["affinity"] is not None else
        f"partition ({result['source']}): {grouping.format_partition(result['partition'])}", flush=True)
  return result


class _AffinityMean:
  """Running sum of the probe's per-step (T, T) affinity, kept in the probe's checkpointed data state."""

  def __init__(self, data: MultiTaskData, num_tasks: int):
    self.data, self.total, self.steps = data, np.zeros((num_tasks, num_tasks)), 0
    self.steps_per_epoch, self.images_per_step = data.steps_per_epoch, data.images_per_step

  def add(self, step: int, metrics: dict) -> None:
    self.total += np.asarray(metrics["affinity"], np.float64)
    self.steps += 1

  def next_batch(self, mesh):
    return self.data.next_batch(mesh)

  def get_state(self) -> dict:
    return {**self.data.get_state(), "affinity_sum": self.total.tolist(), "affinity_steps": self.steps}

  def set_state(self, state: dict) -> None:
    self.data.set_state(state)
    self.total, self.steps = np.asarray(state["affinity_sum"], np.float64), int(state["affinity_steps"])


def probe_gradients(model):
  """The probe's gradient rule: every task's gradient separately; their sum is the update, their (T, T) cosine
  matrix a metric (`affinity`)."""
  def grad_fn(trainable, frozen, batches):
    per_task = [jax.value_and_grad(lambda p, t=t: model.loss(p, frozen, t, batches[f"task{t}"]["images"],
                                                             batches[f"task{t}"]["labels"]), has_aux=True)(trainable)
                for t in range(model.num_tasks)]
    grads = jax.tree_util.tree_map(lambda *g: sum(g), *[g for _, g in per_task])
    loss = sum(value for (value, _), _ in per_task)
    metrics = {f"loss/task{t}": value for t, ((value, _), _) in enumerate(per_task)}
    metrics["affinity"] = grouping.task_affinity([g for _, g in per_task])
    return (loss, metrics), grads
  return grad_fn


def probe(config, probe_dir: str, backbone, tasks: list[Task], frozen, mesh, corrupt) -> dict:
  """Trains one global MmAP on all tasks for `probe_steps` (0 = one epoch of the largest task) at the constant
  `optim.lr` (ours), averaging the per-step task-gradient cosine matrix; then picks the partition."""
  block = config.multitask
  model = mmap_mt.probe_model(config.method, backbone, [list(t.source.raw_classnames) for t in tasks],
                              [list(t.source.templates) for t in tasks])
  data = MultiTaskData(config, tasks, model.clip.vision.image_size, mesh, corrupt, None)
  steps = block.probe_steps or data.steps_per_epoch
  probe_config = ml_collections.ConfigDict(config.to_dict())
  probe_config.optim.epochs = math.ceil(steps / data.steps_per_epoch)
  probe_config.train.update(max_steps=steps, stop_after=0, checkpoint_every=0)
  affinity = _AffinityMean(data, len(tasks))
  # The probe starts from key(seed) itself (not fit's fold_in(key, 0)), as it always has: recorded groupings stay
  # reproducible.
  train.fit(probe_config, probe_dir, loss_fn=multitask_loss(model), init=lambda _: model.init(jax.random.key(
      config.seed)), frozen=frozen, data=affinity, mesh=mesh, seed=config.seed, grad_fn=probe_gradients(model),
      schedule=optax.constant_schedule(config.optim.lr), on_metrics=affinity.add,
      export_metadata={"method": "mmap", "probe": True})
  matrix = affinity.total / max(affinity.steps, 1)
  partition = grouping.choose(matrix, block.grouping, block.num_groups, block.tau)
  return {"tasks": [t.name for t in tasks], "affinity": matrix.tolist(), "partition": partition,
          "source": f"probe ({block.grouping})", "probe_steps": steps, "num_groups": block.num_groups,
          "tau": block.tau}


# --- the run ------------------------------------------------------------------------------------------------------------
def run(config, workdir: str) -> dict[str, Any]:
  """Groups (mmap_mt), trains (or resumes, or only evaluates), evaluates every task; writes results.json/.md."""
  if config.eval_only:  # evaluation writes nothing into the training run's files (see trainers/evaluation.py)
    return _run(config, workdir)
  return train.held_run(config, workdir, _run)


def _run(config, workdir: str) -> dict[str, Any]:
  start_time = time.time()
  mesh = train.start(config)
  tasks = load_tasks(config, workdir)
  backbone = train.load_backbone(config)
  frozen = parallel.replicate(backbone.params, mesh)
  corrupt = pipeline.CorruptImageLog()
  mode = config.multitask.mode
  grouped = resolve_grouping(config, workdir, backbone, tasks, frozen, mesh, corrupt) if mode == "mmap_mt" else None
  model = build_model(mode, config, backbone, tasks, grouped and grouped["partition"])

  steps_done = 0
  if not jax.tree_util.tree_leaves(jax.eval_shape(model.init, jax.random.key(0))):
    trainable = {}
  elif config.eval_only:
    trainable, steps_done = checkpoint.load_for_eval(config.eval_prompts or os.path.join(workdir, "prompts.npz"),
                                                     model.init, model.name, mesh), None
  else:
    data = MultiTaskData(config, tasks, model.clip.vision.image_size, mesh, corrupt, grouped)
    metadata = {"method": model.name, "method_config": config.method.to_dict(), "tasks": [t.name for t in tasks],
                "partition": grouped and grouped["partition"]}
    trainable, steps_done = train.fit(config, workdir, loss_fn=multitask_loss(model), init=model.init,
                                      frozen=frozen, data=data, mesh=mesh, seed=config.seed,
                                      export_metadata=metadata)

  metrics = {}
  for t, task in enumerate(tasks):
    eval_set = protocol.eval_set(f"task/{task.name}", task.source)
    metrics[eval_set.name] = evaluate.top1_percent(model.view(t), trainable, frozen, eval_set, mesh,
                                                   config.data.eval_batch_size, corrupt=corrupt,
                                                   workers=config.data.workers)
  metrics["mean"] = float(np.mean([metrics[f"task/{t.name}"] for t in tasks]))
  params = model.num_trainable()
  run = train.run_info(config, method=method_label(config), dataset=dataset_label(config), protocol="multitask")
  run["options"] = {"multitask.mode": mode, **run["options"]}
  results = run_files.results_record(
      kind="multitask", run=run, metrics=metrics, trainable_params=params, time_s=time.time() - start_time,
      steps=steps_done, trainable_share_percent=100.0 * params / run_tables.CLIP_B16_PARAMS,
      backbone_params=backbone.num_params(), partition=grouped and grouped["partition"],
      tasks=[t.name for t in tasks], corrupt_images=corrupt.entries())
  out_dir = workdir
  if config.eval_only:
    what = os.path.splitext(os.path.basename(config.eval_prompts))[0] if config.eval_prompts else "prompts"
    out_dir = config.eval_dir or os.path.join(workdir, "eval", f"{dataset_label(config)}-multitask-{what}")
    results["evaluated"] = what
    if run_files.is_writer():
      workdirs.as_path(out_dir).mkdir(parents=True, exist_ok=True)
  run_files.write_results(out_dir, results)
  print(run_files.results_table(results), flush=True)
  return results


def method_label(config) -> str:
  """'zeroshot', 'mmap-mt' (grouped MmAP-MT), '<method>-mt' (one shared set; 'mmap-shared' for MmAP, so it cannot
  be mistaken for grouped MmAP-MT) or '<method>-st' (per task)."""
  mode = config.multitask.mode
  if mode == "mt" and config.method.name == "mmap":
    return "mmap-shared"
  return {"zeroshot": "zeroshot", "mmap_mt": "mmap-mt"}.get(mode, f"{config.method.name}-{mode}")


def dataset_label(config) -> str:
  return config.multitask.name or (config.data.name if not config.multitask.tasks else "multitask")
