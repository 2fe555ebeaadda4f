"""`jaxprompt.load_run` and `python -m jaxprompt.predict` on a tiny trained run: the classifier's logits are the
evaluator's, predictions follow them, the command writes its documented files, class lists and unreadable images
are handled as documented, and the example notebook runs."""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
from PIL import Image

import jaxprompt
from jaxprompt import checkpoint, methods, predict, train
from jaxprompt import workdir as workdir_files
from jaxprompt.data import pipeline, protocol
from tests.conftest import ROOT, smoke_config


def tiny_config(**changes):
  """The smoke run of tests/conftest.py, 2 steps, 2 test images a class."""
  config = smoke_config(**{"train.max_steps": 2, **changes})
  config.data.options.test_per_class = 2
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """One trained CoOp workdir shared by the tests: (config, workdir, test source)."""
  workdir = str(tmp_path_factory.mktemp("predict") / "coop")
  config = tiny_config()
  train.run(config, workdir)
  return config, workdir, protocol.load_source(config.data)


def evaluator_logits(config, workdir, source, classnames=None) -> np.ndarray:
  """What evaluation computes, built independently: the run's method over `classnames` (default: the training
  ones) with the exported prompts, on `pipeline.eval_batches` of the test split, masked rows dropped."""
  backbone = train.load_backbone(config)
  method = methods.build_for_run(config.method, backbone, classnames or source.raw_classnames, source.templates)
  trainable = checkpoint.load_prompts(os.path.join(workdir, "prompts.npz"))[0]
  logits = jax.jit(method.logits)
  batches = pipeline.eval_batches(source.splits["test"], source.reader, method.clip.vision.image_size,
                                  config.data.eval_batch_size, corrupt_log=pipeline.CorruptImageLog(),
                                  source_name=source.name)
  return np.concatenate([np.asarray(logits(trainable, backbone.params, batch["images"]))[batch["mask"]]
                         for batch in batches])


def world_test_images(source) -> list[np.ndarray]:
  return [source.reader(example) for example in source.splits["test"]]


def write_pngs(directory, images) -> list[str]:
  os.makedirs(directory, exist_ok=True)
  paths = []
  for i, pixels in enumerate(images):
    path = os.path.join(directory, f"img{i:02d}.png")
    Image.fromarray(pixels).save(path)  # lossless: the file decodes to the same pixels
    paths.append(path)
  return paths


def test_logits_equal_the_evaluators_and_predict_follows_them(trained, tmp_path):
  config, workdir, source = trained
  images = world_test_images(source)
  expected = evaluator_logits(config, workdir, source)
  classifier = jaxprompt.load_run(workdir, batch_size=config.data.eval_batch_size)
  assert classifier.classnames == list(source.raw_classnames)
  assert len(images) == 16 and expected.shape == (16, 8)
  assert np.ptp(expected, axis=0).max() > 0  # the images are told apart: equality below is not of constants
  np.testing.assert_array_equal(classifier.logits(images), expected)                # a list of uint8 arrays
  np.testing.assert_array_equal(classifier.logits(np.stack(images)), expected)      # one (N, H, W, 3) stack
  paths = write_pngs(tmp_path / "pngs", images)
  np.testing.assert_array_equal(classifier.logits(paths), expected)                 # files
  np.testing.assert_array_equal(classifier.logits([Image.open(p) for p in paths]), expected)  # PIL images
  # Another batch size pads differently; the rows stay the evaluator's up to float rounding.
  np.testing.assert_allclose(jaxprompt.load_run(workdir, batch_size=5).logits(images), expected, rtol=1e-5,
                             atol=1e-5)

  probabilities = classifier.probabilities(images)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)
  top = classifier.predict(images, k=3)
  assert [row[0][0] for row in top] == [classifier.classnames[c] for c in expected.argmax(axis=1)]
  for row, probability_row in zip(top, probabilities):
    assert len(row) == 3 and [p for _, p in row] == sorted((p for _, p in row), reverse=True)
    assert row[0][1] == pytest.approx(probability_row.max(), abs=1e-12)
  everything = classifier.predict(images[:1], k=50)[0]
  assert len(everything) == 8 and sum(p for _, p in everything) == pytest.approx(1.0, abs=1e-12)
  with pytest.raises(ValueError, match="uint8 RGB pixels"):
    classifier.logits(np.stack(images).astype(np.float32))


def test_checkpoint_latest_is_the_exported_prompts(trained):
  config, workdir, source = trained
  images = world_test_images(source)[:4]
  from_checkpoint = jaxprompt.load_run(workdir, checkpoint="latest")
  assert from_checkpoint.source["checkpoint"] == "latest"
  np.testing.assert_array_equal(from_checkpoint.logits(images), jaxprompt.load_run(workdir).logits(images))


def test_cli_writes_csv_and_json_and_skips_a_corrupt_image(trained, tmp_path, capsys):
  config, workdir, source = trained
  images = world_test_images(source)[:3]
  paths = write_pngs(tmp_path / "photos" / "nested", images)
  broken = tmp_path / "photos" / "broken.png"
  broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
  (tmp_path / "photos" / "notes.txt").write_text("not an image")
  out = tmp_path / "out"
  assert predict.main(["--workdir", workdir, "--top-k", "3", "--out", str(out), str(tmp_path / "photos")]) == 0
  captured = capsys.readouterr()
  assert f"skipping unreadable image {broken}" in captured.err
  expected = jaxprompt.load_run(workdir).predict(paths, k=3)

  with open(out / "predictions.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["image", "rank", "class", "probability", "logit"]
  assert [(row[0], int(row[1])) for row in rows[1:]] == [(path, rank) for path in paths for rank in (1, 2, 3)]
  assert [row[2] for row in rows[1:]] == [name for top in expected for name, _ in top]
  np.testing.assert_allclose([float(row[3]) for row in rows[1:]], [p for top in expected for _, p in top],
                             atol=1e-6)

  record = json.loads((out / "predictions.json").read_text())
  assert record["classnames"] == list(source.raw_classnames) and record["top_k"] == 3
  assert record["model"]["method"] == "coop" and record["model"]["workdir"] == workdir
  assert [p["image"] for p in record["predictions"]] == paths
  assert [[(t["class"], t["probability"]) for t in p["top"]] for p in record["predictions"]] == \
      [[(name, pytest.approx(prob, abs=1e-12)) for name, prob in top] for top in expected]
  assert [s["image"] for s in record["skipped"]] == [str(broken)]
  assert f"{paths[0]}: {expected[0][0][0]} " in captured.out


def test_cli_scores_a_subset_and_a_new_class_list(trained, tmp_path):
  """CoOp's shared context scores any class list; each class's logit does not depend on the others."""
  config, workdir, source = trained
  images = world_test_images(source)[:4]
  paths = write_pngs(tmp_path / "imgs", images)
  full = jaxprompt.load_run(workdir).logits(images)
  names = ["star", "circle", "hexagon"]  # two training classes (reordered) and a new one
  (tmp_path / "classes.txt").write_text("# my classes\nstar\ncircle\n\nhexagon\n")
  out = tmp_path / "out"
  assert predict.main(["--workdir", workdir, "--classnames", str(tmp_path / "classes.txt"), "--top-k", "3",
                       "--out", str(out), *paths]) == 0
  record = json.loads((out / "predictions.json").read_text())
  assert record["classnames"] == names
  got = np.array([[{t["class"]: t["logit"] for t in p["top"]}[name] for name in names]
                  for p in record["predictions"]])
  expected = evaluator_logits(config, workdir, source, classnames=names)[:4]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  star, circle = (list(source.raw_classnames).index(name) for name in ("star", "circle"))
  np.testing.assert_allclose(got[:, :2], full[:, [star, circle]], rtol=1e-5, atol=1e-5)


def test_class_specific_context_refuses_another_class_list_in_one_line(tmp_path, capsys):
  """A csc workdir as training writes it (config.json + the export of its initial prompts, no step taken)."""
  config = tiny_config(**{"method.coop.csc": True})
  workdir = str(tmp_path / "csc")
  source = protocol.load_source(config.data)
  method = methods.build_for_run(config.method, train.load_backbone(config), source.raw_classnames,
                                 source.templates)
  with workdir_files.open_run(config, workdir):  # lock + config.json, as every run writes it
    checkpoint.export_prompts(workdir, method.init(jax.random.key(0)),
                              {"method": "coop", "method_config": config.method.to_dict(),
                               "classnames": list(source.raw_classnames)})
  image = write_pngs(tmp_path / "imgs", world_test_images(source)[:1])[0]
  assert jaxprompt.load_run(workdir).logits([image]).shape == (1, 8)  # its own class list works
  (tmp_path / "classes.txt").write_text("star\ncircle\n")
  code = predict.main(["--workdir", workdir, "--classnames", str(tmp_path / "classes.txt"),
                       "--out", str(tmp_path / "out"), image])
  err = capsys.readouterr().err
  assert code == 2
  assert err.startswith("error: method.coop.csc=True learns one context per training class (8 classes)")
  assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_missing_paths_are_one_line_errors(trained, tmp_path, capsys):
  _, workdir, source = trained
  image = write_pngs(tmp_path / "imgs", world_test_images(source)[:1])[0]
  assert predict.main(["--workdir", str(tmp_path / "nowhere"), image]) == 2
  err = capsys.readouterr().err
  assert err == f"error: {tmp_path / 'nowhere' / 'config.json'} not found: {tmp_path / 'nowhere'} is not a " \
                "jaxprompt workdir\n"
  result = subprocess.run([sys.executable, "-m", "jaxprompt.predict", "--workdir", workdir,
                           str(tmp_path / "missing.jpg")], capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 2
  assert result.stderr == f"error: image path not found: {tmp_path / 'missing.jpg'}\n"


def test_import_stays_light_and_exposes_load_run():
  code = "import sys, jaxprompt; assert 'jax' not in sys.modules; assert callable(jaxprompt.load_run); print('ok')"
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
  assert result.stdout.strip() == "ok", result.stderr
  with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
    jaxprompt.nonexistent  # noqa: B018


def test_example_notebook_runs(tmp_path, monkeypatch):
  """examples/predict_on_own_images.ipynb is nbformat 4 JSON and its code cells run in order, offline."""
  with open(os.path.join(ROOT, "examples", "predict_on_own_images.ipynb")) as f:
    notebook = json.load(f)
  assert notebook["nbformat"] == 4 and "metadata" in notebook
  for cell in notebook["cells"]:
    assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list) and "metadata" in cell
    if cell["cell_type"] == "code":
      assert cell["outputs"] == [] and cell["execution_count"] is None
  source = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
  monkeypatch.chdir(tmp_path)
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the notebook's mkdtemp lands in the test's folder
  namespace = {"__name__": "__main__"}
  exec(compile(source, "predict_on_own_images.ipynb", "exec"), namespace)  # noqa: S102
  assert namespace["config"].backbone == "embedded" and namespace["results"]["steps"] > 0
  assert len(namespace["classifier"].classnames) == 8 and namespace["logits"].shape == (3, 3)
  assert namespace["workdir"].startswith(str(tmp_path))
  assert os.path.exists(os.path.join(namespace["workdir"], "prompts.npz"))


def test_prompt_export_alone_and_the_templates_rule(trained, tmp_path, capsys):
  """An export records the dataset's templates, so it rebuilds its method alone; an export without them (older
  runs) needs --config, or --backbone plus --templates; so does a workdir whose dataset is not on this machine (CoOp's
  block leaves `method.templates` empty)."""
  config, workdir, source = trained
  image = write_pngs(tmp_path / "imgs", world_test_images(source)[:1])[0]
  expected = jaxprompt.load_run(workdir).logits([image])
  export = tmp_path / "export"
  export.mkdir()
  for name in ("prompts.npz", "prompts.json"):
    shutil.copy(os.path.join(workdir, name), export / name)
  prompts = str(export / "prompts.npz")
  alone = predict.load_export(prompts, backbone="tiny-random")
  np.testing.assert_array_equal(alone.logits([image]), expected)
  metadata = json.loads((export / "prompts.json").read_text())
  assert metadata.pop("dataset_templates")
  (export / "prompts.json").write_text(json.dumps(metadata))  # as an export written before templates were recorded

  assert predict.main(["--prompts", prompts, "--backbone", "tiny-random", image]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: method.templates is empty") and "--templates" in err and err.count("\n") == 1
  from_config = predict.load_export(prompts, config=os.path.join(workdir, "config.json"))
  np.testing.assert_array_equal(from_config.logits([image]), expected)
  out = tmp_path / "out"
  assert predict.main(["--prompts", prompts, "--backbone", "tiny-random", "--templates", "a photo of a {}.",
                       "--out", str(out), image]) == 0
  record = json.loads((out / "predictions.json").read_text())
  assert record["model"] == {"method": "coop", "prompts": prompts}
  assert record["classnames"] == list(source.raw_classnames)

  elsewhere = tmp_path / "moved_run"
  elsewhere.mkdir()
  for name in ("prompts.npz", "prompts.json"):
    shutil.copy(export / name, elsewhere / name)  # the export without recorded templates
  moved = json.loads(open(os.path.join(workdir, "config.json")).read())
  moved["data"].update(name="dtd", root=str(tmp_path / "no_datasets_here"), options={})
  (elsewhere / "config.json").write_text(json.dumps(moved))
  with pytest.raises(ValueError, match="templates of data source dtd, which cannot be built here"):
    jaxprompt.load_run(str(elsewhere))
  with_templates = jaxprompt.load_run(str(elsewhere), templates=["a photo of a {}."])
  assert with_templates.classnames == list(source.raw_classnames) and with_templates.logits([image]).shape == (1, 8)
