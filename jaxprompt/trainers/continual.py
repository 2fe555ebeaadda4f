"""The continual-learning driver (specs/lamm.md, "Continual learning"): tasks are disjoint class subsets, learnt in turn.

    python -m jaxprompt.main --config configs/lamm_continual.py:dataset=dtd,root=/data,method=lamm --workdir runs/cl

Phases: mesh -> source (one K-shot draw over all classes) -> tasks (`fewshot.class_chunks`: base half, then novel
half by default) -> backbone -> for each task: train, then evaluate every seen task on its own classes and the union
classifier over all seen classes -> forgetting -> one table.

  lamm (LAMM on CLIP, `lamm.base="none"`): one method over the full class list; task t trains only its own label rows
    (`LAMM.for_rows`); the update of every other row is zeroed after the optimiser (weight decay and momentum
    included), so earlier tasks' rows stay bit-identical.
  coop / maple: one prompt set continues from the previous task (fresh optimiser state per task, ours), built over
    the current task's class names; earlier tasks are re-tested, so forgetting shows as a number.

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

from jaxprompt import checkpoint, evaluate, parallel, train
from jaxprompt.data import protocol
from jaxprompt.report import run_files as reporting
from jaxprompt.clip import weights
from jaxprompt.data import fewshot

log = logging.getLogger(__name__)

Params = dict[str, Any]
METHODS = ("lamm", "coop", "maple")


def keep_rows(rows: np.ndarray) -> optax.GradientTransformation:
  """Zeroes the `labels` update of every row not in `rows` (applied after the optimiser: decay/momentum included)."""
  def update(updates, state, params=None):
    if "labels" not in updates:
      return updates, state
    mask = np.zeros(updates["labels"].shape[0], np.float32)
    mask[rows] = 1.0
    return {**updates, "labels": updates["labels"] * jnp.asarray(mask)[:, None, None]}, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def task_method(config, backbone, full, source, classes):
  """The method over `classes` (labels of `source`, ascending): LAMM's rows of the full table, else a fresh build."""
  if config.continual.method == "lamm":
    return full.for_rows(classes)
  return evaluate.build_method(config.method, backbone, [source.raw_classnames[c] for c in classes], source.templates)


def fit(config, task_dir: str, method, trainable: Params, examples, reader, frozen, mesh, t: int, rows) -> Params:
  """Trains `trainable` on one task's examples (the trainer's loop: checkpoints, metrics, progress, stop/resume)."""
  export = os.path.join(task_dir, "prompts.npz")
  if os.path.exists(export):
    log.info("task %d already trained: %s", t, export)
    return parallel.replicate(jax.tree_util.tree_map(jnp.asarray, checkpoint.load_prompts(export)[0]), mesh)
  metadata = {"method": method.name, "task": t, "rows": list(map(int, rows)), "method_config": config.method.to_dict()}
  trainable, _ = train.fit(config, task_dir, method, frozen, examples, reader, mesh, seed=config.seed * 1000 + t,
                           initial=trainable, extra_transform=keep_rows(np.asarray(rows)), export_metadata=metadata)
  return trainable


def run(config, workdir: str) -> dict[str, Any]:
  """Learns the tasks in turn; returns (and writes) the results with the accuracy table and forgetting."""
  start_time = time.time()
  block = config.continual
  if block.method not in METHODS:
    raise ValueError(f"config.continual.method={block.method!r}: expected one of {METHODS}")
  mesh = train.start(config, workdir)
  source = protocol.load_source(config.data)
  source = fewshot.few_shot_source_recorded(source, config.data.shots, config.seed, os.path.join(workdir, "split.json"),
                                            split_file=config.data.split_file or None)
  chunks = fewshot.class_chunks(source.num_classes, block.num_tasks)
  backbone = weights.load(config.backbone, tokenizer=config.backbone_tokenizer or None)
  frozen = parallel.replicate(backbone.params, mesh)
  full = evaluate.build_method(config.method, backbone, source.raw_classnames, source.templates)
  trainable = parallel.replicate(full.init(jax.random.key(config.seed)), mesh)

  metrics: dict[str, float] = {}
  for t, chunk in enumerate(chunks):
    task_source = fewshot.select_classes(source, chunk)
    method = task_method(config, backbone, full, source, chunk)
    rows = chunk if block.method == "lamm" else []
    trainable = fit(config, os.path.join(workdir, f"task{t}"), method, trainable, task_source.splits["train"],
                    source.reader, frozen, mesh, t, rows)
    seen = [c for ch in chunks[:t + 1] for c in ch]
    for s, classes in [(s, chunks[s]) for s in range(t + 1)] + [("union", sorted(seen))]:
      name = f"after{t + 1}/" + (f"task{s}" if s != "union" else "union")
      eval_source = fewshot.select_classes(source, classes)
      eval_set = protocol.eval_set(name, eval_source)
      metrics[name] = evaluate.accuracy(task_method(config, backbone, full, source, classes), trainable, frozen,
                                        eval_set, mesh, config.data.eval_batch_size, config.data.workers)
    log.info("after task %d: %s", t + 1, {k: round(v, 2) for k, v in metrics.items() if k.startswith(f"after{t + 1}/")})
  last = len(chunks)
  drops = {f"forgetting/task{s}": metrics[f"after{s + 1}/task{s}"] - metrics[f"after{last}/task{s}"]
           for s in range(last - 1)}
  metrics.update(drops)
  metrics["forgetting"] = max(drops.values(), default=0.0)
  label = "lamm" if block.method == "lamm" else block.method
  results = {
      "run": {"method": label, "dataset": config.data.name, "shots": config.data.shots, "seed": config.seed,
              "protocol": "continual", "backbone": config.backbone,
              "options": {"continual.num_tasks": block.num_tasks, **train._method_options(config.method)}},
      "metrics": metrics,
      "tasks": [[source.raw_classnames[c] for c in chunk] for chunk in chunks],
      "trainable_params": full.num_trainable(),
      "time_s": time.time() - start_time,
  }
  reporting.write_results(workdir, results, results_table(results))
  print(results_table(results), flush=True)
  return results


def table_rows(metrics: dict[str, float], num_tasks: int) -> list[list[str]]:
  """Rows "after task t" x columns task0..task{T-1}, union (blank for tasks not yet seen)."""
  rows = []
  for t in range(1, num_tasks + 1):
    cells = [f"{metrics[f'after{t}/task{s}']:.2f}" if s < t else "" for s in range(num_tasks)]
    rows.append([f"after task {t}"] + cells + [f"{metrics[f'after{t}/union']:.2f}"])
  return rows


def results_table(results: dict) -> str:
  run, metrics, tasks = results["run"], results["metrics"], results["tasks"]
  header = ["", *[f"task{s} ({len(c)} classes)" for s, c in enumerate(tasks)], "union of seen"]
  lines = [f"# continual {run['method']} on {run['dataset']} ({run['shots']} shots, seed {run['seed']})", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in table_rows(metrics, len(tasks))]
  lines += ["", f"forgetting (max drop on earlier tasks): {metrics['forgetting']:.2f} points; trainable parameters "
            f"{results['trainable_params']:,}; time {results['time_s']:.1f} s", ""]
  return "\n".join(lines)
