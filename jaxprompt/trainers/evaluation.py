"""The evaluation run kind (`--mode eval`, `config.eval_only`): evaluate trained prompts without training, and
without writing into the training run's files.

    python -m jaxprompt.main --config configs/coop.py:dataset=dtd --workdir runs/coop_dtd --mode eval
    ... --mode eval --config.eval_checkpoint=latest          # an interrupted run: its newest checkpoint
    ... --mode eval --config.eval_prompts=other/prompts.npz --config.eval_dir=/tmp/out   # a read-only workdir

What is evaluated: `eval_prompts` (a prompt export) if set, else checkpoint `eval_checkpoint` ("latest" or a step),
else the workdir's `prompts.npz` (written when training finished). Results (results.json, results.md and one
`evaluations/<set>.json` per evaluation set with per-class accuracy and the confusion matrix) go to `eval_dir` if set,
else `<workdir>/eval/<dataset>-<protocol>[-<targets>]-<what>/`. The workdir's config.json, results.json and split.json
are never written.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import ml_collections
import optax

from jaxprompt import checkpoint, evaluate, methods, parallel, train
from jaxprompt import workdir as workdirs
from jaxprompt.data import pipeline, protocol
from jaxprompt.report import run_files

Params = dict[str, Any]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluates what the config names (module docstring); returns the results it wrote."""
  start_time = time.time()
  parallel.initialize(config.multihost)
  mesh = parallel.make_mesh(config.num_devices or None)
  data = protocol.prepare(config, workdir, record_split=False)
  backbone = train.load_backbone(config)
  method = methods.build_for_run(config.method, backbone, data.classnames, data.templates)
  frozen = parallel.replicate(backbone.params, mesh)
  trainable, what = load_trainable(config, workdir, method, mesh)
  out_dir = config.eval_dir or str(workdirs.as_path(workdir) / "eval" / eval_name(config, what))
  corrupt = pipeline.CorruptImageLog()
  evaluations = evaluate.evaluate_run(method, trainable, frozen, data.evals, mesh, config.data, corrupt)
  results = run_files.results_record(
      kind="single", run=train.run_info(config), metrics=evaluate.metrics_of(evaluations),
      trainable_params=method.num_trainable(), time_s=time.time() - start_time, steps=None, evaluated=what,
      corrupt_images=corrupt.entries(), per_class={name: e.per_class() for name, e in evaluations.items()})
  return train.write_single_results(out_dir, results, evaluations)


def eval_name(config: ml_collections.ConfigDict, what: str) -> str:
  """The folder name of an evaluation: its data (dataset, protocol, targets) and what was evaluated."""
  parts = [config.data.name, config.data.protocol, *config.data.targets, what]
  return "-".join(part.replace("/", "_") for part in parts if part)


def load_trainable(config, workdir: str, method, mesh) -> tuple[Params, str]:
  """The trainable tree to evaluate and a tag naming it ("prompts", "step12", the export's file name)."""
  if not jax.tree_util.tree_leaves(jax.eval_shape(method.init, jax.random.key(0))):
    return {}, "zeroshot"
  if config.eval_prompts:
    name = os.path.splitext(os.path.basename(config.eval_prompts))[0]
    return checkpoint.load_for_eval(config.eval_prompts, method.init, method.name, mesh), name
  if config.eval_checkpoint:
    return restore_trainable(config, workdir, method.init, mesh, config.eval_checkpoint)
  path = os.path.join(workdir, "prompts.npz")
  return checkpoint.load_for_eval(path, method.init, method.name, mesh), "prompts"


def restore_trainable(config, workdir: str, init, mesh, which: str) -> tuple[Params, str]:
  """The trainable tree of checkpoint `which` ("latest" or a step number) of `<workdir>/checkpoints`."""
  checkpoints = checkpoint.Checkpoints(workdir, keep=config.train.keep_checkpoints)
  steps = list(checkpoints.manager.all_steps())
  if which == "latest":
    step = checkpoints.latest_step()
  elif str(which).isdigit():
    step = int(which)
  else:
    raise ValueError(f"config.eval_checkpoint={which!r}: expected 'latest' or a step number")
  if step is None or step not in steps:
    raise FileNotFoundError(f"{checkpoints.directory} has no checkpoint {which!r} (steps: {sorted(steps)})")
  trainable = init(jax.random.key(0))
  optimizer = train.make_optimizer(config.optim, optax.constant_schedule(0.0))
  target = parallel.replicate(train.checkpoint_state(trainable, optimizer.init(trainable), 0, jax.random.key(0)),
                              mesh)
  state, _ = checkpoints.restore(target, step)
  checkpoints.close()
  return state["trainable"], f"step{step}"
