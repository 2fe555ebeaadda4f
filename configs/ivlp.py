"""IVLP base-to-novel: independent deep text (2 tokens) and vision (2 tokens) prompts in 12/12 layers.

    python -m jaxprompt.main --config configs/ivlp.py:dataset=dtd,root=/data,seed=1 --workdir runs/ivlp/dtd_1

Reference setting: 16 shots, SGD lr 0.0035, batch 4, 5 epochs, seeds 1, 2, 3 (30,720 parameters).
Published average over 11 datasets (base / novel / HM): 82.15 / 74.07 / 77.90.
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="ivlp", protocol="base2novel", lr=0.0035, epochs=5, batch_size=4)
  return finish(config, args)
