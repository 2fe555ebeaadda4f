"""RPO domain generalisation: train on ImageNet (16 shots, all 1000 classes), evaluate on V2, Sketch, A and R.

    python -m jaxprompt.main --config configs/rpo_dg.py:root=/data,seed=1 --workdir runs/rpo_dg/1

`targets=dg` (default): ImageNet-V2, -Sketch, -A, -R; `xd`: the other ten datasets; `none`; or names joined by "+".

Reference setting: K=24, SGD lr 0.005, batch 4, 15 epochs, seeds 1, 2, 3.
Published (source / V2 / Sketch / A / R / target mean): CLIP 66.73 / 60.83 / 46.15 / 47.77 / 73.96 / 57.18;
CoOp 71.51 / 64.20 / 47.99 / 49.71 / 75.21 / 59.28; CoCoOp 71.02 / 64.07 / 48.75 / 50.63 / 76.18 / 59.91;
RPO 71.67 / 65.13 / 49.27 / 50.13 / 76.57 / 60.28.
"""

from jaxprompt.config import finish, paper_config
from jaxprompt.data.coop_datasets import named_targets



def get_config(arg=None):
  config, args = paper_config(arg, method="rpo", protocol="all", lr=0.005, epochs=15, batch_size=4,
                              extra_args={"k": 24, "init": "st", "targets": "dg"})
  config.method.rpo.k = args["k"]
  config.method.rpo.init = args["init"]
  # "dg" = the four ImageNet variants, "xd" the other ten datasets, "none", or names joined by "+"
  # (e.g. targets=imagenet_v2+imagenet_r).
  config.data.targets = named_targets(args["targets"])
  return finish(config, args)
