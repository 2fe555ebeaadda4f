"""CoOp base-to-novel: context "a photo of a" (4 tokens) trained on the base half, tested on base and novel.

    python -m jaxprompt.main --config configs/coop_b2n.py:dataset=dtd,root=/data,seed=1 --workdir runs/coop_b2n/dtd_1

Reference setting: 16 shots, SGD lr 0.002, batch 32, 200 epochs, seeds 1, 2, 3; `coop.ctx_rule="reference"` (the
reference code's reading of `ctx_init`: one learnt token per word; the same as all tokens for "a photo of a").
Published average over 11 datasets (base / novel / HM): 82.69 / 63.22 / 71.66.
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="coop", protocol="base2novel", lr=0.002, epochs=200, batch_size=32)
  config.method.coop.ctx_init = "a photo of a"
  config.method.coop.ctx_rule = "reference"
  return finish(config, args)
