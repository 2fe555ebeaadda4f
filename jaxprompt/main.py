"""Command line: `python -m jaxprompt.main --config configs/<setting>.py[:arg] --workdir DIR [--config.a.b=v]`.

The config file's `get_config(arg)` builds the run config; it is locked, so an override of a key that does not exist
fails naming the key. `--mode eval` evaluates the workdir's prompts (or `--config.eval_prompts`) without training.
"""

import logging
import os
import sys
import warnings

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from jaxprompt import train
from jaxprompt.trainers import continual, demo, evaluation, linear_probe, multitask

RUN_KINDS = {"single": train.run, "multitask": multitask.run, "continual": continual.run, "demo": demo.run,
             "linear_probe": linear_probe.run}
"""`config.run_kind` -> the function that runs it: run(config, workdir) -> results."""
EVAL_KINDS = {"single": evaluation.run, "multitask": multitask.run}
"""`--mode eval`: the run kinds that can evaluate without training (multitask evaluates inside its run)."""

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file: configs/<setting>.py[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results (the run's state).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"], "train (resumes automatically) or eval only.")


def main(argv):
  del argv
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax and friends log every file they touch at INFO
  logging.getLogger("jaxprompt").setLevel(logging.INFO)
  warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")
  config = _CONFIG.value
  if _MODE.value == "eval":
    config.eval_only = True
  kinds = EVAL_KINDS if config.eval_only else RUN_KINDS
  if config.run_kind not in kinds:
    raise ValueError(f"config.run_kind={config.run_kind!r}{' with --mode eval' if config.eval_only else ''}: "
                     f"expected one of {', '.join(kinds)}")
  kinds[config.run_kind](config, _WORKDIR.value)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  flags.mark_flags_as_required(["config", "workdir"])
  sys.exit(app.run(main))
