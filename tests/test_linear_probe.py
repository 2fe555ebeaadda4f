"""Linear-probe CLIP (`jaxprompt.trainers.linear_probe`): the solver is sklearn's lbfgs problem, the C search is the
reference's coarse-to-fine rule, and a run writes the results schema (and beats chance on the shapes world)."""

import json
import math
import os

import numpy as np
import pytest

from jaxprompt.report import run_files
from jaxprompt.trainers import linear_probe as lp
from tests.conftest import load_config_file

# sklearn 1.9.1 `LogisticRegression(solver="lbfgs", C=0.5, tol=1e-10, max_iter=1000).fit(X, Y)` on this data
# (computed once outside the test suite): coef_.T and intercept_.
X = np.array([[0., 1.], [1., 0.], [2., 2.], [-1., .5], [.5, -1.], [1.5, 1.], [-.5, -.5], [2., -1.], [0., 2.]])
Y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
SKLEARN_COEF = np.array([[-0.696363, 0.360766, 0.335596], [-0.06286, -0.64762, 0.71048]])
SKLEARN_INTERCEPT = np.array([0.476928, 0.077059, -0.553987])


def test_fit_matches_sklearn_and_is_the_penalised_optimum():
  clf = lp.fit_logistic(X, Y, 3, 0.5, tol=1e-10)
  np.testing.assert_allclose(clf.weights, SKLEARN_COEF, atol=2e-6)
  np.testing.assert_allclose(clf.bias, SKLEARN_INTERCEPT, atol=2e-6)
  # The optimum of mean CE + ||W||^2 / (2 C N) with an unpenalised bias: the gradient vanishes there...
  params = np.concatenate([clf.weights.ravel(), clf.bias])
  _, grad = lp.logistic_objective(params, X, np.eye(3)[Y], 1.0 / (0.5 * len(X)))
  assert np.abs(grad).max() < 1e-6
  # ...and stronger regularisation shrinks the weights but not the bias' freedom to fit the class prior.
  strong = lp.fit_logistic(X, Y, 3, 1e-4)
  assert np.abs(strong.weights).max() < 1e-3 * np.abs(clf.weights).max()


def test_objective_gradient_matches_finite_differences():
  rng = np.random.default_rng(0)
  features, labels = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
  params = rng.normal(size=4 * 3 + 3)
  onehot = np.eye(3)[labels]
  _, grad = lp.logistic_objective(params, features, onehot, 0.3)
  step = 1e-6
  numeric = [(lp.logistic_objective(params + step * e, features, onehot, 0.3)[0]
              - lp.logistic_objective(params - step * e, features, onehot, 0.3)[0]) / (2 * step)
             for e in np.eye(len(params))]
  np.testing.assert_allclose(grad, numeric, atol=1e-7)


def blobs(seed, per_class, classes=4, dim=6, spread=1.6):
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(size=(classes, dim))
  labels = np.repeat(np.arange(classes), per_class)
  return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_search_grid_stage_is_the_brute_force_best_and_the_result_is_refit_exactly():
  train_x, train_y = blobs(0, 6)
  val_x, val_y = blobs(1, 5)

  def fit(c):
    return lp.fit_logistic(train_x, train_y, 4, c)

  def score(clf):
    return lp.accuracy_percent(clf, val_x, val_y)

  chosen, trace = lp.search_c(fit, score)
  brute = [score(fit(c)) for c in lp.COARSE_GRID]  # an independent fit per grid value
  grid = [t for t in trace if t["stage"] == "grid"]
  assert [t["c"] for t in grid] == list(lp.COARSE_GRID)
  assert [t["val_accuracy"] for t in grid] == brute
  best = lp.COARSE_GRID[int(np.argmax(brute))]  # the first best, as the reference's np.argmax
  steps = [t for t in trace if t["stage"].startswith("step")]
  assert len(steps) == 16
  assert steps[0]["c"] == pytest.approx(best / 10) and steps[1]["c"] == pytest.approx(best * 10)
  for low, high in zip(steps[::2], steps[1::2]):  # every fitted C's accuracy is that of a fresh fit
    assert low["val_accuracy"] == score(fit(low["c"])) and high["val_accuracy"] == score(fit(high["c"]))
  assert score(chosen) == score(fit(chosen.c))
  np.testing.assert_allclose(chosen.weights, fit(chosen.c).weights)


class Stub:
  def __init__(self, c):
    self.c = c


def test_search_keeps_the_better_end_and_converges_to_the_peak_of_a_unimodal_score():
  peak = 0.37  # log10 C of the best validation accuracy

  def score(clf):
    return -(math.log10(clf.c) - peak) ** 2

  chosen, trace = lp.search_c(Stub, score)
  dense = 10.0 ** np.linspace(-1, 1, 20001)  # brute force over the refined interval [peak/10, peak*10] of C=1
  brute_best = dense[np.argmax([score(Stub(c)) for c in dense])]
  width = 2.0 / 2 ** 7  # log10 width of the interval at the last (8th) comparison
  assert abs(math.log10(chosen.c) - math.log10(brute_best)) <= width
  steps = [t for t in trace if t["stage"].startswith("step")]
  last_low, last_high = steps[-2], steps[-1]
  assert chosen.c == (last_high if last_low["val_accuracy"] < last_high["val_accuracy"] else last_low)["c"]


def test_search_ties_go_to_the_largest_grid_c_then_to_the_lower_end():
  """A flat validation accuracy: the grid keeps its first C (1e6) and every step keeps the lower end (1e5)."""
  chosen, trace = lp.search_c(Stub, lambda clf: 50.0)
  assert chosen.c == pytest.approx(1e5)
  assert [t["c"] for t in trace if t["stage"] == "step7/low"] == [pytest.approx(1e5)]
  assert [t["c"] for t in trace if t["stage"] == "step7/high"] == [pytest.approx(10 ** (5 + 2 / 2 ** 7))]


def test_search_refits_nothing_twice():
  fitted = []

  def fit(c):
    fitted.append(c)
    return Stub(c)

  _, trace = lp.search_c(fit, lambda clf: -abs(math.log10(clf.c) - 2.2))
  assert len(fitted) == len(set(fitted)) == len({t["c"] for t in trace})
  # The grid, then the first step's two ends and one new end per later step, less the step-1 middle 10^2 = 100
  # that the grid already fitted.
  assert len(trace) == 7 + 16 and len(fitted) == 7 + 2 + 7 - 1


def test_class_rows():
  assert lp.class_rows(["a", "b", "c"], ["c", "a"]) == [2, 0]
  assert lp.class_rows(["a", "b"], ["a", "z"]) is None


def run_probe(tmp_path, arg, backbone=None, monkeypatch=None, **options):
  """lp.run of configs/linear_probe.py:arg; `backbone` (the tiny fixture) replaces loading (making one costs ~30 s)."""
  config = load_config_file("configs/linear_probe.py", arg)
  if backbone is not None:
    monkeypatch.setattr(lp.train, "load_backbone", lambda config: backbone)
  config.data.options.test_per_class = options.pop("test_per_class", 4)
  for key, value in options.items():
    config.linear_probe[key] = value
  workdir = str(tmp_path / "run")
  return lp.run(config, workdir), workdir


def test_run_writes_the_results_schema_base_only_for_base2novel(tmp_path, tiny_backbone, monkeypatch):
  results, workdir = run_probe(tmp_path, "dataset=world_shapes,backbone=tiny-random,shots=2,protocol=base2novel,"
                               "targets=world_styles/sketch", tiny_backbone, monkeypatch, refine_steps=2)
  with open(os.path.join(workdir, "results.json")) as f:
    written = json.load(f)
  assert written == json.loads(json.dumps(results))
  assert written["kind"] == "single" and written["schema"] == run_files.SCHEMA
  assert set(written["run"]) == set(run_files.RUN_KEYS)
  assert written["run"]["method"] == "linear_probe" and written["run"]["protocol"] == "base2novel"
  assert written["run"]["options"]["linear_probe.refine_steps"] == 2
  assert set(written["metrics"]) == {"base"}  # no novel weights, so no novel accuracy and no hm
  assert set(written["skipped"]) == {"novel", "target/world_styles/sketch"}  # sketch has all 8 shapes, base has 4
  probe = written["linear_probe"]
  assert probe["train_examples"] == 4 * 2 and probe["val_examples"] == 4 * 2  # 4 base classes, min(K, 4) val shots
  assert len(probe["search"]) == 7 + 2 * 2
  assert probe["c"] in [t["c"] for t in probe["search"]]
  assert written["trainable_params"] == (probe["feature_dim"] + 1) * 4
  assert set(written["per_class"]["base"]) == {"circle", "square", "triangle", "star"}
  for name in ("results.md", "split.json", "config.json", "evaluations/base.json"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "evaluations", "base.json")) as f:
    assert json.load(f)["accuracy"] == written["metrics"]["base"]


def test_run_scores_a_target_with_the_training_classes(tmp_path, tiny_backbone, monkeypatch):
  results, _ = run_probe(tmp_path, "dataset=world_styles/sketch,backbone=tiny-random,shots=1,"
                         "targets=world_styles/photo", tiny_backbone, monkeypatch, refine_steps=0, test_per_class=2)
  assert set(results["metrics"]) == {"accuracy", "target/world_styles/photo"} and not results["skipped"]


def test_run_without_a_val_split_names_the_way_out(tmp_path):
  config = load_config_file("configs/linear_probe.py", "dataset=world_shapes,backbone=tiny-random,shots=1")
  data = lp.protocol.prepare(config, str(tmp_path))
  data.source.splits.pop("val")
  with pytest.raises(ValueError, match="val_split=test"):
    lp.validation_examples(config, data)
  config.linear_probe.val_split = "test"
  drawn = lp.validation_examples(config, data)
  assert len(drawn) == 8 and {e.label for e in drawn} == set(range(8))  # min(K, 4) = 1 per class, from test


def test_probe_beats_chance_on_the_shapes_world_with_the_mini_clip(tmp_path):
  """16 shots of world_shapes with the embedded mini CLIP, a short search (the near-unregularised large-C fits are
  the slow ones): far above 8-way chance (12.5%) on 8 test images per class."""
  results, _ = run_probe(tmp_path, "dataset=world_shapes,backbone=embedded,shots=16,seed=1", test_per_class=8,
                         coarse_grid=(1.0, 1e-2, 1e-4), refine_steps=2)
  assert results["metrics"]["accuracy"] > 25.0
  assert results["linear_probe"]["val_accuracy"] > 25.0


@pytest.mark.slow
def test_probe_reproduces_the_documented_shapes_world_number(tmp_path):
  """configs/linear_probe.py's docstring: world_shapes, embedded, 16 shots, seed 1, full test split: 45.3%."""
  results, _ = run_probe(tmp_path, "dataset=world_shapes,backbone=embedded,shots=16,seed=1", test_per_class=32)
  assert results["metrics"]["accuracy"] == pytest.approx(45.3, abs=1.5)
