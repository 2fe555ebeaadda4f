"""Task grouping for MmAP-MT (docs/methods/mmap.md, "Grouping (the probe)"): gradient affinity and the partition search.

During the probe every task's gradient g_t with respect to one global MmAP is taken at each step; the T x T cosine
matrix cos(g_i, g_j) is averaged over the probe steps (`task_affinity` computes one step's matrix inside the jitted
probe step). The partition of the tasks into groups is then chosen from the averaged matrix A:

  exhaustive (T <= 8): over every partition into exactly `num_groups` non-empty groups, maximise the mean over tasks
    of a task's mean affinity to the other members of its group (a task alone in its group scores 0, the neutral
    cosine; our reading of "mean within-group affinity", the paper gives no formula). Ties: the first partition in
    enumeration order (restricted growth strings), so the choice is deterministic.
  threshold: tasks i, j are linked when A[i, j] > tau; the groups are the connected components (`num_groups` unused).

Partitions are lists of groups, each a sorted list of task indices, groups ordered by their smallest task; as text
"0,1|2,3" (the config field `multitask.partition`).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np

from jaxprompt import workdir as workdirs
from jaxprompt.report import plots

Partition = list[list[int]]
MAX_EXHAUSTIVE_TASKS = 8


def task_affinity(task_grads: Sequence) -> jax.Array:
  """Per-task gradient pytrees (T of them, same structure) -> (T, T) cosine matrix (unit diagonal; a zero gradient
  has cosine 0 with everything but itself)."""
  flat = jnp.stack([ravel_pytree(g)[0] for g in task_grads])  # (T, P)
  norms = jnp.linalg.norm(flat, axis=1, keepdims=True)
  unit = flat / jnp.maximum(norms, 1e-12)
  return jnp.fill_diagonal(unit @ unit.T, 1.0, inplace=False)


def set_partitions(num_tasks: int, num_groups: int) -> Iterator[Partition]:
  """Every partition of range(num_tasks) into exactly num_groups non-empty groups (restricted growth strings)."""
  def grow(assignment: list[int], used: int):
    if len(assignment) == num_tasks:
      if used == num_groups:
        yield [[t for t, g in enumerate(assignment) if g == group] for group in range(num_groups)]
      return
    if used + (num_tasks - len(assignment)) < num_groups:
      return
    for group in range(min(used + 1, num_groups)):
      yield from grow(assignment + [group], max(used, group + 1))

  yield from grow([], 0)


def partition_score(affinity: np.ndarray, partition: Partition) -> float:
  """Mean over tasks of the task's mean affinity to the other members of its group (0 for a task alone)."""
  scores = []
  for group in partition:
    for t in group:
      others = [u for u in group if u != t]
      scores.append(float(np.mean(affinity[t, others])) if others else 0.0)
  return float(np.mean(scores))


def best_partition(affinity: np.ndarray, num_groups: int) -> Partition:
  """The exhaustive search (see the module docstring)."""
  num_tasks = affinity.shape[0]
  if not 1 <= num_groups <= num_tasks:
    raise ValueError(f"multitask.num_groups={num_groups} must be in 1..{num_tasks} (the number of tasks)")
  if num_tasks > MAX_EXHAUSTIVE_TASKS:
    raise ValueError(f"exhaustive grouping is limited to {MAX_EXHAUSTIVE_TASKS} tasks (got {num_tasks}); use "
                     "multitask.grouping='threshold' or give multitask.partition")
  best, best_score = None, -np.inf
  for partition in set_partitions(num_tasks, num_groups):
    score = partition_score(affinity, partition)
    if score > best_score + 1e-12:
      best, best_score = partition, score
  return best


def threshold_partition(affinity: np.ndarray, tau: float) -> Partition:
  """Connected components of the graph with an edge i - j when affinity[i, j] > tau."""
  num_tasks = affinity.shape[0]
  component = list(range(num_tasks))

  def root(t):
    while component[t] != t:
      t = component[t]
    return t

  for i in range(num_tasks):
    for j in range(i + 1, num_tasks):
      if affinity[i, j] > tau:
        component[root(j)] = root(i)
  groups: dict[int, list[int]] = {}
  for t in range(num_tasks):
    groups.setdefault(root(t), []).append(t)
  return canonical(list(groups.values()))


def canonical(partition: Partition) -> Partition:
  return sorted((sorted(group) for group in partition), key=lambda group: group[0])


def parse_partition(text: str, num_tasks: int) -> Partition:
  """'0,1|2,3' (or '0+1|2+3', usable inside a config's `:arg` string) -> [[0, 1], [2, 3]]; every task exactly
  once, else an error naming the config field."""
  try:
    groups = text.replace(" ", "").replace("+", ",").split("|")
    partition = [[int(t) for t in group.split(",")] for group in groups]
  except ValueError:
    raise ValueError(f"multitask.partition={text!r}: expected task indices like '0,1|2,3'") from None
  seen = sorted(t for group in partition for t in group)
  if seen != list(range(num_tasks)):
    raise ValueError(f"multitask.partition={text!r} must name each of the tasks 0..{num_tasks - 1} exactly once")
  return canonical(partition)


def format_partition(partition: Partition) -> str:
  return "|".join(",".join(str(t) for t in group) for group in partition)


def choose(affinity: np.ndarray, grouping: str, num_groups: int, tau: float) -> Partition:
  if grouping == "exhaustive":
    return best_partition(affinity, num_groups)
  if grouping == "threshold":
    return threshold_partition(affinity, tau)
  raise ValueError(f"multitask.grouping={grouping!r}: expected 'exhaustive' or 'threshold'")


def describe(result: dict) -> str:
  """The matrix and partition as text (printed at the end of the probe)."""
  names, matrix = result["tasks"], np.asarray(result["affinity"])
  width = max(len(n) for n in names) + 2
  lines = ["task affinity (mean cosine of task gradients over %s probe steps):" % result.get("probe_steps", "?"),
           " " * width + "".join(f"{n[:8]:>9}" for n in names)]
  lines += [f"{name:<{width}}" + "".join(f"{v:9.3f}" for v in row) for name, row in zip(names, matrix)]
  groups = [" + ".join(names[t] for t in group) for group in result["partition"]]
  lines.append(f"partition ({result['source']}): " + " | ".join(f"[{g}]" for g in groups))
  return "\n".join(lines)


def save(workdir: str, result: dict) -> None:
  """`grouping.json` (tasks, affinity, partition, how it was chosen) and `grouping.png` (a heat map)."""
  workdirs.write_json_atomic(workdirs.as_path(workdir) / "grouping.json", result)
  if result.get("affinity") is not None:
    plots.affinity_heatmap(result, str(workdirs.as_path(workdir) / "grouping.png"))
