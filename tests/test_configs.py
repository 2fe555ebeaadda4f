"""Every paper config builds, and the main methods train end to end from their config files (smoke size).

The end-to-end runs use the embedded mini CLIP (pretrained on the shapes world, where sketches were rare) on the
world's sketch task, train 24 steps on 64 images and check that the loss falls (the task is learnable for this backbone), that the run's files
land in the workdir and that the metrics the protocol promises are reported.
"""

import glob
import importlib.util
import re
import json
import os

import numpy as np
import pytest

from jaxprompt import main, train

from tests.conftest import load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(path_and_arg: str):
  path, _, arg = path_and_arg.partition(":")
  return load_config_file(path, arg or None)


COMMAND = re.compile(r"python -m jaxprompt\.main --config (configs/[\w.]+?\.py)(?::(\S+))? --workdir \S+")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))))
def test_every_config_documents_commands_that_build(path):
  """Each config's docstring gives at least one command; every documented command names this very file and its
  argument builds a config of a known run kind (a typo in a documented argument fails here)."""
  spec = importlib.util.spec_from_file_location("config_under_test", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  commands = COMMAND.findall(module.__doc__ or "")
  assert commands, f"{path}: no `python -m jaxprompt.main --config configs/...` command in the docstring"
  for named, arg in commands:
    assert named == os.path.relpath(path, ROOT), f"{path} documents a command for {named}"
    config = module.get_config(arg or None)
    assert config.run_kind in main.RUN_KINDS, (path, arg)
  assert module.get_config(None).run_kind in main.RUN_KINDS


# (config file and argument, extra overrides that fit the 3-layer mini CLIP)
END_TO_END = [
    ("configs/coop.py", {"method.coop.n_ctx": 4}),
    ("configs/maple_b2n.py", {"method.maple.depth": 3}),
    ("configs/rpo_b2n.py", {"method.rpo.k": 8, "optim.lr": 0.005}),  # larger lr collapse RPO on the mini CLIP
    ("configs/lamm.py:base=coop", {}),
    ("configs/mmap.py", {"method.mmap.depth": 3}),
]


@pytest.mark.parametrize("config_path, overrides", END_TO_END, ids=[c for c, _ in END_TO_END])
def test_method_trains_end_to_end(config_path, overrides, tmp_path):
  path, _, arg = config_path.partition(":")
  arg = ",".join(filter(None, [arg, "dataset=world_styles/sketch,backbone=embedded,shots=8,smoke=True"]))
  config = load_config(f"{path}:{arg}")
  config.data.shots = 8  # smoke mode caps shots at 2
  config.optim.lr = overrides.get("optim.lr", 0.02)
  config.optim.batch_size = 16
  config.optim.warmup_epochs = 0
  config.optim.epochs = 12
  config.train.max_steps = 24
  config.data.min_crop_scale = 1.0  # 32 px images: CLIP's 0.08 crops often cut the shape away
  config.update_from_flattened_dict(overrides)
  workdir = str(tmp_path / "run")
  results = train.run(config, workdir)

  losses = [json.loads(line)["loss"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert len(losses) == 24
  assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.1, losses
  expected = {"accuracy"} if config.data.protocol == "all" else {"base", "novel", "hm"}
  assert set(results["metrics"]) == expected
  assert results["trainable_params"] > 0
  for name in ("config.json", "split.json", "results.json", "results.md", "prompts.npz"):
    assert os.path.exists(os.path.join(workdir, name)), name


@pytest.mark.parametrize("name", ["vpt", "ivlp", "maple_b2n", "maple_xd", "mmap"])
def test_paper_configs_fit_the_embedded_backbone(name):
  """The papers' prompt depths (9, 12) are capped at the mini CLIP's 3 layers with backbone=embedded, only then."""
  embedded = load_config(f"configs/{name}.py:backbone=embedded")
  paper = load_config(f"configs/{name}.py")
  for field in ("vpt.depth", "ivlp.text_depth", "ivlp.vision_depth", "maple.depth", "mmap.depth"):
    block, key = field.split(".")
    assert embedded.method[block][key] == min(paper.method[block][key], 3)
  assert paper.method.vpt.depth == 12 and paper.method.mmap.depth == 12
