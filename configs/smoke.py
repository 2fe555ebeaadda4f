"""Seconds-long end-to-end run on a tiny random CLIP and generated images (tests, sweeps, CI).

    python -m jaxprompt.main --config configs/smoke.py:method=coop,seed=1 --workdir /tmp/smoke

Backbone: a tiny random CLIP with a word-level vocabulary (`backbone=tiny-random`, made in a temp dir; no downloads). Numbers are meaningless (random weights); the run checks that every phase works.
"""

from jaxprompt.config import apply_smoke, base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, {"method": "coop", "seed": 1, "dataset": "world_shapes", "protocol": "all",
                         "backbone": "tiny-random"})
  config = base_config()
  config.seed = args["seed"]
  config.backbone = args["backbone"]
  config.data.name = args["dataset"]
  config.data.protocol = args["protocol"]
  config.method.name = args["method"]
  config.optim.lr = 0.01
  return apply_smoke(config)
