"""MaPLe base-to-novel: 2 coupled text/vision prompt tokens, deep to layer 9.

    python -m jaxprompt.main --config configs/maple_b2n.py:dataset=dtd,root=/data,seed=1 --workdir runs/maple_b2n/dtd_1

Reference setting: 16 shots, n=2, depth 9, SGD lr 0.0035, batch 4, 5 epochs, seeds 1, 2, 3 (3,555,072 parameters).
Published average over 11 datasets (base / novel / HM): 82.28 / 75.14 / 78.55.
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="maple", protocol="base2novel", lr=0.0035, epochs=5, batch_size=4,
                              extra_args={"depth": 9, "n_ctx": 2})
  config.method.maple.depth = args["depth"]
  config.method.maple.n_ctx = args["n_ctx"]
  return finish(config, args)
