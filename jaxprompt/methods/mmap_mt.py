"""The multi-task models (MmAP-MT and its baselines, docs/methods/mmap.md): every task's logits and loss from one
trainable tree.

    model = mmap_mt.build(mode, config.method, backbone, task_classnames, task_templates, partition)
    trainable = model.init(rng)
    logits = model.logits(trainable, frozen, t, images)          # (B, C_t) for task t
    loss, metrics = model.loss(trainable, frozen, t, images, labels)
    view = model.view(t)                                         # task t as a one-task method (.clip, .logits)

`task_classnames[t]` / `task_templates[t]` are task t's class list and dataset templates (the run's `method.templates`
is resolved against them as `build_for_run` does). The modes (`MODES`) and their trainable trees:

  "mmap_mt":  {"shared": {"group<g>": MmAP}, "specific": {"task<t>": MmAP}}: one group-shared MmAP per group of
              `partition` and one task-specific MmAP per task, combined per layer (`method.mmap.combine`);
              shared g from fold_in(rng, g), specific t from fold_in(rng, 1000 + t);
  "mt":       one tree of `method.name` shared by all tasks (CoOp-MT, VPT-MT, MaPLe-MT, ...), from rng itself;
  "st":       {"task<t>": tree of `method.name`}, task t from fold_in(rng, t) (independent leaves: training them in
              one loop equals training each alone);
  "zeroshot": {}: zero-shot CLIP over each task's classes and templates, whatever `method.name` is.
`probe_model(...)` is the grouping probe's model: one global MmAP shared by every task (mode "mt" over MmAPs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import ml_collections

from jaxprompt.methods import mmap
from jaxprompt.methods.base import Method, accuracy, build_for_run, cross_entropy, trainable_count

Array = jax.Array
Params = dict[str, Any]


class MultiTaskModel:
  """What every mode shares: one method per task (`methods[t]`, over task t's classes), `view`, `num_trainable`."""

  mode = "multitask"

  def __init__(self, methods: Sequence[Method]):
    if not methods:
      raise ValueError("a multi-task model needs at least one task")
    self.methods = list(methods)
    self.num_tasks = len(self.methods)
    self.clip = self.methods[0].clip

  @property
  def name(self) -> str:
    return f"multitask-{self.mode}"

  def init(self, rng: Array) -> Params:
    raise NotImplementedError

  def logits(self, trainable: Params, frozen: Params, t: int, images: Array) -> Array:
    raise NotImplementedError

  def loss(self, trainable: Params, frozen: Params, t: int, images: Array, labels: Array
           ) -> tuple[Array, dict[str, Array]]:
    """Task t's cross-entropy and accuracy (modes over registered methods use the method's own loss)."""
    logits = self.logits(trainable, frozen, t, images)
    return cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}

  def num_trainable(self) -> int:
    """Number of trainable parameters of the whole tree (from shapes only)."""
    return trainable_count(self.init)

  def view(self, t: int) -> "TaskView":
    """Task t as a one-task method (`.clip`, `.classnames`, `.logits(trainable, frozen, images)`) for evaluators."""
    return TaskView(self, t)


@dataclasses.dataclass(frozen=True)
class TaskView:
  """One task of a multi-task model, with the one-task method face an evaluator reads."""

  model: MultiTaskModel
  task: int

  @property
  def clip(self):
    return self.model.clip

  @property
  def classnames(self) -> list[str]:
    return self.model.methods[self.task].classnames

  def logits(self, trainable: Params, frozen: Params, images: Array) -> Array:
    return self.model.logits(trainable, frozen, self.task, images)


class GroupedMmAP(MultiTaskModel):
  """MmAP-MT: task t's prompts combine its group's shared MmAP with its own specific MmAP."""

  mode = "mmap_mt"

  def __init__(self, methods: Sequence[mmap.MmAP], partition: Sequence[Sequence[int]]):
    super().__init__(methods)
    self.partition = [list(group) for group in partition]
    self.group_of = {t: g for g, group in enumerate(self.partition) for t in group}
    missing = sorted(set(range(self.num_tasks)) - set(self.group_of))
    if missing:
      raise ValueError(f"the partition {self.partition} leaves tasks {missing} in no group")

  @classmethod
  def create(cls, method_config, backbone, task_classnames, task_templates, partition):
    if partition is None:
      raise ValueError("config.multitask.mode='mmap_mt' needs a partition of the tasks into groups")
    return cls([mmap.MmAP.for_composition(method_config, backbone, names) for names in task_classnames], partition)

  def init(self, rng):
    shared = {f"group{g}": self.methods[0].init(jax.random.fold_in(rng, g)) for g in range(len(self.partition))}
    specific = {f"task{t}": method.init(jax.random.fold_in(rng, 1000 + t)) for t, method in enumerate(self.methods)}
    return {"shared": shared, "specific": specific}

  def task_prompts(self, trainable, t: int) -> tuple[Array, Array]:
    """Task t's per-layer prompts: text (depth, slots, D_text), vision (depth, slots, D_vision)."""
    return self.methods[t].combined_prompts(trainable["shared"][f"group{self.group_of[t]}"],
                                            trainable["specific"][f"task{t}"])

  def logits(self, trainable, frozen, t, images):
    return self.methods[t].logits_from_prompts(frozen, *self.task_prompts(trainable, t), images)


class SharedPrompts(MultiTaskModel):
  """One prompt set shared by every task (mode "mt"): task t scores its own classes with the same tree."""

  mode = "mt"

  @classmethod
  def create(cls, method_config, backbone, task_classnames, task_templates, partition=None):
    return cls(_task_methods(method_config, backbone, task_classnames, task_templates))

  def init(self, rng):
    return self.methods[0].init(rng)

  def logits(self, trainable, frozen, t, images):
    return self.methods[t].logits(trainable, frozen, images)

  def loss(self, trainable, frozen, t, images, labels):
    """The method's own loss (e.g. LAMM's terms) on task t."""
    return self.methods[t].loss(trainable, frozen, images, labels)


class PerTaskPrompts(MultiTaskModel):
  """A separate prompt set per task (mode "st")."""

  mode = "st"

  @classmethod
  def create(cls, method_config, backbone, task_classnames, task_templates, partition=None):
    return cls(_task_methods(method_config, backbone, task_classnames, task_templates))

  def init(self, rng):
    return {f"task{t}": method.init(jax.random.fold_in(rng, t)) for t, method in enumerate(self.methods)}

  def logits(self, trainable, frozen, t, images):
    return self.methods[t].logits(trainable[f"task{t}"], frozen, images)

  def loss(self, trainable, frozen, t, images, labels):
    """The method's own loss on task t, reading only task t's tree."""
    return self.methods[t].loss(trainable[f"task{t}"], frozen, images, labels)


class ZeroShotTasks(MultiTaskModel):
  """Zero-shot CLIP on every task (mode "zeroshot"): nothing trainable."""

  mode = "zeroshot"

  @classmethod
  def create(cls, method_config, backbone, task_classnames, task_templates, partition=None):
    config = ml_collections.ConfigDict(method_config.to_dict())
    config.name = "zeroshot"
    return cls(_task_methods(config, backbone, task_classnames, task_templates))

  def init(self, rng):
    return {}

  def logits(self, trainable, frozen, t, images):
    return self.methods[t].logits({}, frozen, images)


MODES: dict[str, type[MultiTaskModel]] = {"mmap_mt": GroupedMmAP, "mt": SharedPrompts, "st": PerTaskPrompts,
                                          "zeroshot": ZeroShotTasks}


def _task_methods(method_config, backbone, task_classnames, task_templates) -> list[Method]:
  if len(task_classnames) != len(task_templates):
    raise ValueError(f"{len(task_classnames)} task class lists but {len(task_templates)} template lists")
  return [build_for_run(method_config, backbone, names, templates)
          for names, templates in zip(task_classnames, task_templates)]


def build(mode: str, method_config: ml_collections.ConfigDict, backbone, task_classnames: Sequence[Sequence[str]],
          task_templates: Sequence[Sequence[str]], partition: Sequence[Sequence[int]] | None = None
          ) -> MultiTaskModel:
  """The multi-task model of `mode` (a key of `MODES`) over per-task class lists and templates; `partition` (groups
  of task indices) is needed by "mmap_mt" only."""
  if mode not in MODES:
    raise ValueError(f"config.multitask.mode={mode!r}: expected one of {tuple(MODES)}")
  return MODES[mode].create(method_config, backbone, [list(n) for n in task_classnames],
                            [list(t) for t in task_templates], partition)


def probe_model(method_config: ml_collections.ConfigDict, backbone, task_classnames: Sequence[Sequence[str]],
                task_templates: Sequence[Sequence[str]]) -> SharedPrompts:
  """The grouping probe's model: one global MmAP (`method_config.mmap`) shared by every task, whatever
  `method_config.name` is. Its tree is one MmAP tree, from rng itself."""
  del task_templates  # MmAP's prompts are its own placeholder template
  return SharedPrompts([mmap.MmAP(method_config, backbone, list(names)) for names in task_classnames])
