"""The continual run kind (LAMM's continual setting): tasks are disjoint class subsets, learnt in turn.

    python -m jaxprompt.main --config configs/lamm_continual.py:dataset=dtd,root=/data,method=lamm --workdir runs/cl

Phases: mesh -> source (one K-shot draw over all classes) -> tasks (`fewshot.class_chunks`: base half, then novel
half by default) -> backbone -> for each task: train, then evaluate every seen task on its own classes and the union
classifier over all seen classes -> forgetting -> one table.

One method is built over the full class list; task t trains its view over the task's classes
(`method.for_classes`), continuing from the previous task's trainable tree (fresh optimiser state per task, ours),
and every evaluation is such a view (each seen task's classes, and the union of the seen classes).
  lamm (LAMM on CLIP, `lamm.base="none"`): a view reads and trains only its classes' label rows; the update of every
    other row is zeroed after the optimiser (weight decay and momentum included), so earlier tasks' rows stay
    bit-identical.
  coop / maple (or any method): one prompt set continues from task to task; earlier tasks are re-tested, so
    forgetting shows as a number.

Forgetting (percent points): for each earlier task, its accuracy right after it was learnt minus its accuracy after the
last task; `forgetting` is the largest of these drops (0 for one task). Resume: each task trains in
`<workdir>/task<t>/` with the trainer's checkpoints; a finished task's prompts (`task<t>/prompts.npz`) are reused.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprompt import checkpoint, evaluate, methods, parallel, train
from jaxprompt.data import fewshot, pipeline, protocol
from jaxprompt.report import run_files

log = logging.getLogger(__name__)

Params = dict[str, Any]


def keep_rows(rows: np.ndarray) -> optax.GradientTransformation:
  """Zeroes the `labels` update of every row not in `rows` (applied after the optimiser: decay/momentum included);
  a tree without `labels` passes unchanged."""
  def update(updates, state, params=None):
    if "labels" not in updates:
      return updates, state
    mask = np.zeros(updates["labels"].shape[0], np.float32)
    mask[rows] = 1.0
    return {**updates, "labels": updates["labels"] * jnp.asarray(mask)[:, None, None]}, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def train_task(config, task_dir: str, method, trainable: Params, task_source, frozen, mesh, corrupt, t: int,
               rows) -> Params:
  """Trains `trainable` on one task (`train.fit` in `task_dir`: checkpoints, metrics, stop/resume); a task whose
  prompts were already exported is read back, not re-trained."""
  export = os.path.join(task_dir, "prompts.npz")
  if os.path.exists(export):
    log.info("task %d already trained: %s", t, export)
    return parallel.replicate(jax.tree_util.tree_map(jnp.asarray, checkpoint.load_prompts(export)[0]), mesh)
  seed = config.seed * 1000 + t
  data = train.train_loader(config, task_source.splits["train"], task_source.reader, method.clip.vision.image_size,
                            seed, mesh, corrupt, task_source.name)
  metadata = {"method": method.name, "task": t, "rows": list(map(int, rows)), "method_config": config.method.to_dict()}
  trainable, _ = train.fit(config, task_dir, loss_fn=train.method_loss(method), init=lambda _: trainable,
                           frozen=frozen, data=data, mesh=mesh, seed=seed, extra_transform=keep_rows(np.asarray(rows)),
                           export_metadata=metadata)
  return trainable


def run(config, workdir: str) -> dict[str, Any]:
  """Learns the tasks in turn; returns (and writes) the results with the accuracy table and forgetting."""
  return train.held_run(config, workdir, _run)


def _run(config, workdir: str) -> dict[str, Any]:
  start_time = time.time()
  block = config.continual
  mesh = train.start(config)
  source = protocol.load_source(config.data)
  source = fewshot.few_shot_source_recorded(source, config.data.shots, config.seed, os.path.join(workdir, "split.json"),
                                            split_file=config.data.split_file or None)
  chunks = fewshot.class_chunks(source.num_classes, block.num_tasks)
  backbone = train.load_backbone(config)
  frozen = parallel.replicate(backbone.params, mesh)
  corrupt = pipeline.CorruptImageLog()
  full = methods.build_for_run(config.method, backbone, source.raw_classnames, source.templates)
  trainable = parallel.replicate(full.init(jax.random.key(config.seed)), mesh)

  def view(classes):
    return full.for_classes([source.raw_classnames[c] for c in classes], source.templates)

  metrics: dict[str, float] = {}
  for t, chunk in enumerate(chunks):
    trainable = train_task(config, os.path.join(workdir, f"task{t}"), view(chunk), trainable,
                           fewshot.select_classes(source, chunk), frozen, mesh, corrupt, t, chunk)
    seen = [c for ch in chunks[:t + 1] for c in ch]
    for s, classes in [(s, chunks[s]) for s in range(t + 1)] + [("union", sorted(seen))]:
      name = f"after{t + 1}/" + (f"task{s}" if s != "union" else "union")
      eval_set = protocol.eval_set(name, fewshot.select_classes(source, classes))
      metrics[name] = evaluate.top1_percent(view(classes), trainable, frozen, eval_set, mesh,
                                            config.data.eval_batch_size, corrupt=corrupt, workers=config.data.workers)
    log.info("after task %d: %s", t + 1, {k: round(v, 2) for k, v in metrics.items() if k.startswith(f"after{t + 1}/")})
  last = len(chunks)
  drops = {f"forgetting/task{s}": metrics[f"after{s + 1}/task{s}"] - metrics[f"after{last}/task{s}"]
           for s in range(last - 1)}
  metrics.update(drops)
  metrics["forgetting"] = max(drops.values(), default=0.0)
  run = train.run_info(config, protocol="continual")
  run["options"] = {"continual.num_tasks": block.num_tasks, **run["options"]}
  results = run_files.results_record(
      kind="continual", run=run, metrics=metrics, trainable_params=full.num_trainable(),
      time_s=time.time() - start_time, tasks=[[source.raw_classnames[c] for c in chunk] for chunk in chunks],
      corrupt_images=corrupt.entries())
  run_files.write_results(workdir, results)
  print(run_files.results_table(results), flush=True)
  return results
