"""VPT-deep base-to-novel: 8 learnable vision tokens in each of the 12 vision layers; text is zero-shot.

    python -m jaxprompt.main --config configs/vpt.py:dataset=dtd,root=/data,seed=1 --workdir runs/vpt/dtd_1

Reference setting: 16 shots, P=8, depth 12, SGD lr 0.0025, batch 4, 5 epochs, seeds 1, 2, 3 (73,728 parameters).
Published average over 11 datasets (base / novel / HM): 80.24 / 73.43 / 76.68.
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="vpt", protocol="base2novel", lr=0.0025, epochs=5, batch_size=4,
                              extra_args={"n_tokens": 8, "depth": 12})
  config.method.vpt.n_tokens = args["n_tokens"]
  config.method.vpt.depth = args["depth"]
  return finish(config, args)
