"""Seconds-long end-to-end run on a tiny random CLIP and generated images (tests, sweeps, CI).

    python -m jaxprompt.main --config configs/smoke.py:method=coop,seed=1 --workdir /tmp/smoke

Backbone: a tiny random CLIP written into the workdir's parent on first use (`backbone=random:<dir>`), so the run needs
no downloads. Numbers are meaningless (random weights); the run checks that every phase works.
"""

from jaxprompt.config import apply_smoke, base_config, parse_arg


def get_config(arg=None):
  args = parse_arg(arg, {"method": "coop", "seed": 1, "dataset": "world_shapes", "protocol": "all", "backbone": "embedded"})
  config = base_config()
  config.seed = args["seed"]
  config.backbone = args["backbone"]
  config.data.name = args["dataset"]
  config.data.protocol = args["protocol"]
  config.method.name = args["method"]
  config.optim.lr = 0.01
  return apply_smoke(config)
