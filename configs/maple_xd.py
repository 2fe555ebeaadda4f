"""MaPLe cross-dataset transfer and domain generalisation: train on ImageNet (16 shots, all 1000 classes), evaluate
on other datasets with their own class lists.

    python -m jaxprompt.main --config configs/maple_xd.py:root=/data,seed=1,targets=dg --workdir runs/maple_dg/1
    python -m jaxprompt.main --config configs/maple_xd.py:root=/data,seed=1,targets=xd --workdir runs/maple_xd/1

Reference setting: depth 3, lr 0.0026, 2 epochs, batch 4, n=2. `targets=dg`: ImageNet-V2, -Sketch, -A, -R;
`targets=xd`: the other 10 datasets; or names joined by "+". (MaPLe's published DG row is not tabulated here (docs/methods/maple.md); compare with RPO's table in
configs/rpo_dg.py.)
"""

from jaxprompt.config import finish, paper_config
from jaxprompt.data.coop_datasets import named_targets



def get_config(arg=None):
  config, args = paper_config(arg, method="maple", protocol="all", lr=0.0026, epochs=2, batch_size=4,
                              extra_args={"targets": "dg"})
  config.method.maple.depth = 3
  # "dg", "xd", "none", or target names joined by "+" (e.g. world tasks: targets=world_styles/sketch+world_colours).
  config.data.targets = named_targets(args["targets"])
  return finish(config, args)
