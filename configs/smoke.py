"""Seconds-long end-to-end run on a tiny random CLIP and generated images (tests, sweeps, CI).

    python -m jaxprompt.main --config configs/smoke.py:method=coop,seed=1 --workdir /tmp/smoke

Backbone: a tiny random CLIP with a word-level vocabulary (`backbone=tiny-random`, made in a temp dir; no downloads).
Numbers are meaningless (random weights); the run checks that every phase works.
"""

from jaxprompt.config import apply_smoke, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="coop", protocol="all", lr=0.01, epochs=10, batch_size=32,
                              extra_args={"method": "coop", "dataset": "world_shapes", "protocol": "all",
                                          "backbone": "tiny-random"})
  config.method.name = args["method"]
  config.data.protocol = args["protocol"]
  return apply_smoke(config)
