"""Task grouping for MmAP-MT: the affinity matrix, the partition searches and the partition text form."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxprompt.trainers import grouping


def block_affinity():
  """Tasks {0, 2} agree strongly, {1, 3} less, across the blocks they disagree."""
  affinity = np.full((4, 4), -0.2)
  affinity[np.ix_([0, 2], [0, 2])] = 0.9
  affinity[np.ix_([1, 3], [1, 3])] = 0.7
  np.fill_diagonal(affinity, 1.0)
  return affinity


def test_partition_counts_are_stirling_and_bell_numbers():
  assert len(list(grouping.set_partitions(4, 2))) == 7  # Stirling S(4, 2)
  assert sum(1 for k in range(1, 6) for _ in grouping.set_partitions(5, k)) == 52  # Bell(5)
  partitions = list(grouping.set_partitions(5, 3))
  assert len(partitions) == 25 and all(len(p) == 3 and all(p) for p in partitions)
  assert len({json.dumps(p) for p in partitions}) == 25  # no partition twice


def test_exhaustive_and_threshold_search():
  affinity = block_affinity()
  assert grouping.best_partition(affinity, 2) == [[0, 2], [1, 3]]
  assert grouping.threshold_partition(affinity, 0.8) == [[0, 2], [1], [3]]
  assert grouping.threshold_partition(affinity, -0.5) == [[0, 1, 2, 3]]
  # The score: mean over tasks of the mean affinity to the other members; a task alone scores 0.
  assert grouping.partition_score(affinity, [[0, 2], [1, 3]]) == pytest.approx((0.9 * 2 + 0.7 * 2) / 4)
  # [[0], [1, 2, 3]]: task 0 alone 0; task 1 mean(-0.2, 0.7); task 2 mean(-0.2, -0.2); task 3 mean(0.7, -0.2).
  assert grouping.partition_score(affinity, [[0], [1, 2, 3]]) == pytest.approx((0 + 0.25 - 0.2 + 0.25) / 4)
  with pytest.raises(ValueError, match="num_groups=5"):
    grouping.best_partition(affinity, 5)
  with pytest.raises(ValueError, match="limited to 8 tasks"):
    grouping.best_partition(np.eye(9), 2)
  with pytest.raises(ValueError, match="multitask.grouping='nearest'"):
    grouping.choose(affinity, "nearest", 2, 0.0)


def test_ties_pick_the_first_partition_in_enumeration_order():
  assert grouping.best_partition(np.eye(4), 2) == next(grouping.set_partitions(4, 2))


def test_task_affinity_is_the_cosine_matrix_of_flattened_gradients():
  grads = [{"a": jnp.array([1.0, 0.0]), "b": jnp.array([[0.0]])},
           {"a": jnp.array([2.0, 0.0]), "b": jnp.array([[0.0]])},
           {"a": jnp.array([0.0, 0.0]), "b": jnp.array([[3.0]])},
           {"a": jnp.array([-1.0, 0.0]), "b": jnp.array([[1.0]])}]
  matrix = np.asarray(grouping.task_affinity(grads))
  np.testing.assert_allclose(np.diag(matrix), 1.0)
  np.testing.assert_allclose(matrix, matrix.T)
  assert matrix[0, 1] == pytest.approx(1.0) and matrix[0, 2] == pytest.approx(0.0)
  assert matrix[0, 3] == pytest.approx(-1 / np.sqrt(2)) and matrix[2, 3] == pytest.approx(1 / np.sqrt(2))
  zero = np.asarray(grouping.task_affinity([{"a": jnp.zeros(2)}, {"a": jnp.ones(2)}]))
  np.testing.assert_allclose(zero, np.eye(2))  # a zero gradient has cosine 0 with the others


def test_partition_text_round_trips_and_bad_text_names_the_field():
  assert grouping.parse_partition("2+0|3,1", 4) == [[0, 2], [1, 3]]
  assert grouping.format_partition(grouping.parse_partition("3|0,1,2", 4)) == "0,1,2|3"
  with pytest.raises(ValueError, match="exactly once"):
    grouping.parse_partition("0,1|1,2", 4)
  with pytest.raises(ValueError, match="multitask.partition='a|b'"):
    grouping.parse_partition("a|b", 2)


def test_save_writes_json_and_heat_map_and_describe_names_groups(tmp_path):
  result = {"tasks": ["photo", "sketch", "painting", "cartoon"], "affinity": block_affinity().tolist(),
            "partition": [[0, 2], [1, 3]], "source": "probe (exhaustive)", "probe_steps": 3}
  grouping.save(str(tmp_path), result)
  assert json.load(open(tmp_path / "grouping.json")) == result
  assert os.path.getsize(tmp_path / "grouping.png") > 1000
  text = grouping.describe(result)
  assert "[photo + painting] | [sketch + cartoon]" in text and "3 probe steps" in text
