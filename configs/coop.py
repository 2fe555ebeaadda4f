"""CoOp few-shot (all classes): 16 learnable context tokens shared by all classes, class name at the end.

    python -m jaxprompt.main --config configs/coop.py:dataset=dtd,root=/data,shots=16,seed=1 --workdir runs/coop/dtd_16_1

Reference setting (ViT-B/16): M=16 random context, SGD lr 0.002, batch 32, epochs 200 for 8/16 shots, 100 for 2/4,
50 for 1 shot (ImageNet: 50), seeds 1, 2, 3. Options: `n_ctx`, `ctx_init` ("" = random; e.g. "a photo of a"),
`class_position` (end/middle/front), `csc` (class-specific context), `ctx_rule` (default "reference": a `ctx_init`
phrase gives M = its word count and learns its first M BPE tokens, the rest stays fixed text, and `csc` is ignored
with a warning, as the reference code; "tokens": every token of the phrase is learnt, tiled per class with csc).
Published averages over the 11 datasets (LAMM's figure, +-0.5) by shots 1/2/4/8/16: 68.0 / 71.0 / 73.4 / 76.0 / 78.5.
16 shots per dataset: Caltech101 95.6, DTD 68.4, FGVCAircraft 38.6, OxfordPets 92.7, StanfordCars 76.9,
Flowers102 96.0, Food101 86.4, ImageNet 71.6, SUN397 74.5, EuroSAT 80.3, UCF101 82.2.
"""

from jaxprompt.config import finish, paper_config


def coop_epochs(dataset: str, shots: int) -> int:
  if dataset == "imagenet":
    return 50
  return 200 if shots >= 8 else 100 if shots >= 2 else 50


def get_config(arg=None):
  config, args = paper_config(arg, method="coop", protocol="all", lr=0.002, epochs=200, batch_size=32,
                              extra_args={"n_ctx": 16, "ctx_init": "", "class_position": "end", "csc": False,
                                          "ctx_rule": "reference"})
  config.optim.epochs = coop_epochs(args["dataset"], args["shots"])
  for key in ("n_ctx", "ctx_init", "class_position", "csc", "ctx_rule"):
    config.method.coop[key] = args[key]
  return finish(config, args)
