"""IVLP base-to-novel: independent deep text (2 tokens) and vision (2 tokens) prompts in 12/12 layers.

    python -m jaxprompt.main --config configs/ivlp.py:dataset=dtd,root=/data,seed=1 --workdir runs/ivlp/dtd_1
    python -m jaxprompt.main --config configs/ivlp.py:dataset=dtd,root=/data,seed=1,language_only=True --workdir runs/ivlp_l/dtd_1

Reference setting: 16 shots, SGD lr 0.0035, batch 4, 5 epochs, seeds 1, 2, 3 (30,720 parameters).
Published average over 11 datasets (base / novel / HM): 82.15 / 74.07 / 77.90.
`language_only=True` is the reference's `vit_b16_c2_ep5_batch4_4ctx_language_only` setting: deep text prompts only
(4 tokens from "a photo of a", depth 12; `vision_tokens=0`, `vision_depth=0`: plain image features), lr 0.0025,
batch 4, 5 epochs (24,576 parameters).
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="ivlp", protocol="base2novel", lr=0.0035, epochs=5, batch_size=4,
                              extra_args={"language_only": False})
  if args["language_only"]:
    ivlp = config.method.ivlp
    ivlp.text_tokens, ivlp.vision_tokens, ivlp.vision_depth = 4, 0, 0
    config.optim.lr = 0.0025
  return finish(config, args)
