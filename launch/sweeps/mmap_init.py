"""Ablation: MmAP initialisation schemes (`init`, configs/mmap.py), all-class 16 shots, 11 datasets x 3 seeds.

The schemes are `jaxprompt.methods.mmap.INITS`, so the sweep follows the method's own list.
"""

from launch.sweeps.common import DATASETS, SEEDS

from jaxprompt.methods.mmap import INITS

SWEEP = dict(
    config="configs/mmap.py",
    grid={"init": list(INITS), "dataset": DATASETS, "seed": SEEDS},
    fixed={"shots": 16},
)
