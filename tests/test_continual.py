"""Continual learning (docs/methods/lamm.md): LAMM keeps earlier tasks' label rows bit-identical; the table's shape."""

import os

import numpy as np

from jaxprompt import checkpoint
from jaxprompt.trainers import continual
from jaxprompt.data import fewshot
from tests.conftest import load_config_file


def load_config(arg="dataset=world_shapes,backbone=tiny-random,smoke=True"):
  config = load_config_file("configs/lamm_continual.py", arg)
  config.train.max_steps = 2
  config.data.options.test_per_class = 2
  return config


def test_keep_rows_zeroes_other_rows_updates():
  import jax.numpy as jnp
  updates = {"labels": jnp.ones((4, 2, 3)), "ctx": jnp.ones((2,))}
  kept, _ = continual.keep_rows(np.array([1, 3])).update(updates, None)
  np.testing.assert_array_equal(kept["labels"][:, 0, 0], [0, 1, 0, 1])
  np.testing.assert_array_equal(kept["ctx"], 1)


def test_lamm_keeps_old_rows_and_table_shape(tmp_path):
  workdir = str(tmp_path / "lamm")
  results = continual.run(load_config(), workdir)
  assert results["run"]["protocol"] == "continual"
  assert set(results["metrics"]) == {"after1/task0", "after1/union", "after2/task0", "after2/task1", "after2/union",
                                     "forgetting/task0", "forgetting"}
  first = checkpoint.load_prompts(os.path.join(workdir, "task0", "prompts.npz"))[0]["labels"]
  second = checkpoint.load_prompts(os.path.join(workdir, "task1", "prompts.npz"))[0]["labels"]
  old, new = fewshot.class_chunks(8, 2)
  np.testing.assert_array_equal(first[old], second[old])  # task 0's rows untouched by task 1 (bit-identical)
  assert not np.array_equal(first[new], second[new])
  table = open(os.path.join(workdir, "results.md")).read()
  rows = [line for line in table.splitlines() if line.startswith("| after task")]
  assert len(rows) == 2 and all(len(row.strip("|").split("|")) == 4 for row in rows)  # label, task0, task1, union
  assert "forgetting" in table
