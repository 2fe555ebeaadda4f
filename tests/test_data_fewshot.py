"""K-shot sampling (reference-compatible draws), saved splits, base/novel and continual class subsets."""

import logging
import os
import random

import numpy as np
import pytest

from jaxprompt.data import fewshot
from jaxprompt.data.types import Example, Source


def make_examples(labels, prefix="img"):
  return [Example(f"{prefix}{i}.jpg", label, f"class{label}") for i, label in enumerate(labels)]


def make_source(num_classes, per_class=3):
  labels = [c for c in range(num_classes) for _ in range(per_class)]
  return Source(name="toy", classnames=[f"class {c}" for c in range(num_classes)], templates=["a photo of a {}."],
                splits={"train": make_examples(labels, "tr"), "val": make_examples(labels, "va"),
                        "test": make_examples(labels, "te")},
                reader=lambda example: np.zeros((2, 2, 3), np.uint8),
                raw_classnames=[f"class_{c}" for c in range(num_classes)])


def test_draw_equals_the_reference_computed_by_hand():
  # labels in order of first appearance: 2, 0, 1 (not sorted); label 1 has only one item.
  labels = [2, 0, 2, 1, 0, 2, 0, 2, 0]
  train = make_examples(labels, "tr")
  val = make_examples([0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2], "va")
  got = fewshot.few_shot_splits({"train": train, "val": val, "test": train}, shots=2, seed=7)

  # The reference: random.seed(run seed); per label in first-appearance order random.sample(group, K), the whole
  # group when it is smaller; then val with min(K, 4) from the same stream.
  random.seed(7)
  groups = {2: [train[i] for i in (0, 2, 5, 7)], 0: [train[i] for i in (1, 4, 6, 8)], 1: [train[3]]}
  expected_train = random.sample(groups[2], 2) + random.sample(groups[0], 2) + groups[1]
  val_groups = {0: val[0:3], 1: val[3:9], 2: val[9:14]}
  expected_val = random.sample(val_groups[0], 2) + random.sample(val_groups[1], 2) + random.sample(val_groups[2], 2)
  assert got["train"] == expected_train
  assert got["val"] == expected_val
  assert got["test"] == train
  # and pinned literally (CPython's random.sample is stable across versions)
  assert [e.key for e in got["train"]] == [e.key for e in expected_train]
  assert [e.label for e in got["train"]] == [2, 2, 0, 0, 1]


def test_val_gets_at_most_four_shots():
  source = make_source(3, per_class=10)
  got = fewshot.few_shot_source(source, shots=16, seed=1)
  assert len(got.splits["val"]) == 3 * 4 and len(got.splits["train"]) == 30
  got = fewshot.few_shot_source(make_source(3, per_class=20), shots=16, seed=1)
  assert len(got.splits["train"]) == 48 and len(got.splits["val"]) == 12


def test_same_seed_same_shots_different_seeds_differ():
  source = make_source(10, per_class=20)
  a = fewshot.few_shot_source(source, 4, seed=1).splits["train"]
  b = fewshot.few_shot_source(source, 4, seed=1).splits["train"]
  c = fewshot.few_shot_source(source, 4, seed=2).splits["train"]
  assert a == b and a != c
  assert [sum(e.label == k for e in a) for k in range(10)] == [4] * 10


def test_too_few_images_takes_all_and_warns_once(caplog):
  train = make_examples([0] * 5 + [1] * 2 + [2] * 1)
  with caplog.at_level(logging.WARNING):
    got = fewshot.sample_shots(train, 4, random.Random(0))
  assert [e.label for e in got].count(1) == 2 and [e.label for e in got].count(2) == 1
  warnings = [r for r in caplog.records if "fewer than 4" in r.getMessage()]
  assert len(warnings) == 1 and "label 1 (2)" in warnings[0].getMessage()


def test_all_shots_keeps_everything():
  train = make_examples([0, 1, 1])
  assert fewshot.sample_shots(train, -1, random.Random(0)) == train


def test_save_and_load_split_roundtrip(tmp_path):
  root = tmp_path / "data"
  root.mkdir()
  examples = []
  for i, label in enumerate([0, 1, 1]):
    path = root / f"{i}.jpg"
    path.write_bytes(b"x")
    examples.append(Example(str(path), label, f"c{label}", "Art" if i else None))
  splits = {"train": examples[:2], "test": examples[2:]}
  out = str(tmp_path / "work" / "split.json")
  fewshot.save_split(out, splits, root=str(root), source="toy", shots=2, seed=1)
  assert fewshot.load_split(out, root=str(root)) == splits
  assert fewshot.split_metadata(out) == {"source": "toy", "shots": 2, "seed": 1}
  (root / "1.jpg").unlink()
  with pytest.raises(FileNotFoundError, match="1.jpg"):
    fewshot.load_split(out, root=str(root))


@pytest.mark.parametrize("n,base,novel", [(37, 19, 18), (101, 51, 50), (47, 24, 23), (10, 5, 5), (1, 1, 0)])
def test_base_novel_sizes(n, base, novel):
  b, v = fewshot.base_novel_labels(list(range(n))[::-1])
  assert (len(b), len(v)) == (base, novel)
  assert b + v == list(range(n))


def test_subsample_classes_relabels():
  source = make_source(37)
  base = fewshot.subsample_classes(source, "base")
  novel = fewshot.subsample_classes(source, "novel")
  assert base.num_classes == 19 and novel.num_classes == 18
  assert novel.classnames[0] == "class 19" and novel.raw_classnames[-1] == "class_36"
  assert sorted({e.label for e in novel.splits["test"]}) == list(range(18))
  # example "te57" has label 19 -> novel label 0
  assert [e.label for e in novel.splits["test"] if e.key == "te57.jpg"] == [0]
  assert len(base.splits["train"]) == 19 * 3 and len(novel.splits["val"]) == 18 * 3
  assert fewshot.subsample_classes(source, "all") is source
  with pytest.raises(ValueError, match="'bogus'"):
    fewshot.subsample_classes(source, "bogus")


def test_continual_chunks():
  assert fewshot.class_chunks(7, 3) == [[0, 1, 2], [3, 4], [5, 6]]
  assert [len(c) for c in fewshot.class_chunks(37, 2)] == [19, 18]
  tasks = fewshot.continual_tasks(make_source(5), 2)
  assert [t.classnames for t in tasks] == [["class 0", "class 1", "class 2"], ["class 3", "class 4"]]
  assert sorted({e.label for e in tasks[1].splits["train"]}) == [0, 1]
  union = fewshot.select_classes(make_source(5), [0, 1, 2, 3], relabel=False)
  assert union.num_classes == 5 and sorted({e.label for e in union.splits["test"]}) == [0, 1, 2, 3]
  with pytest.raises(ValueError, match="num_tasks"):
    fewshot.class_chunks(3, 4)


def test_recorded_split_is_saved_reused_and_accepted_as_input(tmp_path):
  for name in ("tr", "va", "te"):
    for i in range(30):
      (tmp_path / f"{name}{i}.jpg").write_bytes(b"x")
  source = make_source(10)
  source.splits = {s: [Example(str(tmp_path / e.key), e.label, e.classname) for e in examples]
                   for s, examples in source.splits.items()}
  path = str(tmp_path / "work" / "split.json")
  first = fewshot.few_shot_source_recorded(source, 2, seed=1, path=path)
  assert first.splits["train"] == fewshot.few_shot_splits(source.splits, 2, 1)["train"]
  assert fewshot.split_metadata(path)["seed"] == 1
  # a resumed run re-reads the file, whatever the seed now says
  assert fewshot.few_shot_source_recorded(source, 2, seed=9, path=path).splits == first.splits
  # a user-given split file is used and copied into the workdir
  other = str(tmp_path / "work2" / "split.json")
  given = fewshot.few_shot_source_recorded(source, 2, seed=9, path=other, split_file=path)
  assert given.splits == first.splits and os.path.exists(other)
  with pytest.raises(ValueError, match="outside 0..2"):
    fewshot.few_shot_source_recorded(make_source(3), 2, seed=1, path=str(tmp_path / "x.json"), split_file=path)
