"""Command line: `python -m jaxprompt.main --config configs/<setting>.py[:arg] --workdir DIR [--config.a.b=v]`.

The config file's `get_config(arg)` builds the run config; it is locked, so an override of a key that does not exist
fails naming the key. `--mode eval` evaluates the workdir's prompts (or `--config.eval_prompts`) without training.

A user error (a bad key or value, a missing file, a diverged run, a changed config, a locked workdir) prints one
line, `error: ...`, and exits with status 2; `JAXPROMPT_DEBUG=1` shows the traceback instead. Anything else is a bug
and keeps its traceback.
"""

import logging
import os
import re
import sys
import warnings

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

import jaxprompt
from jaxprompt import checkpoint, train
from jaxprompt import workdir as workdir_lib
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


USER_ERRORS = (ValueError, KeyError, OSError, train.NonFiniteError, workdir_lib.WorkdirError,
               checkpoint.CheckpointError)
"""What bad input and run faults raise: reported in one line."""


def one_line(error: BaseException) -> str:
  """The error's message on one line (KeyError's quotes and multi-line library messages folded)."""
  message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  return " ".join(str(message).split()) or type(error).__name__


def main(argv):
  if os.environ.get("JAXPROMPT_DEBUG") == "1":
    return run_main(argv)
  try:
    return run_main(argv)
  except USER_ERRORS as error:
    print(f"error: {one_line(error)} (JAXPROMPT_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
    return 2


def parse_flags(argv):
  """absl's flag parsing, with a bad config file argument or a misspelt `--config.<key>` reported in one line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, ValueError) as error:
    if os.environ.get("JAXPROMPT_DEBUG") == "1":
      raise
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__  # the config file's own error is the last line
    text = str(error).replace("\\n", " ").replace("\\'", "'")
    overrides = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
    named = [flag for flag in overrides if f"'{flag.rsplit('.', 1)[-1]}'" in text]
    if isinstance(error, (AttributeError, KeyError)) and named:  # a misspelt --config.<key> override
      hint = re.search(r'Did you mean "(\w+)"', text)
      reason = f"unknown config key {', '.join(named)}" + (f' (did you mean "{hint.group(1)}"?)' if hint else "")
    else:
      reason = one_line(error) if not lines else reason
    print(f"error: {reason} (JAXPROMPT_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
    sys.exit(2)


def run_main(argv):
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
  jaxprompt.flax_only_transformers()
  sys.exit(app.run(main, flags_parser=parse_flags))
