"""Ablation: CoOp context from the phrase "a photo of a" vs random (normal 0.02), M = 4 tokens both, 16 shots.

`ctx_init=` (empty) is the random initialisation; n_ctx is fixed to 4 so both schemes train the same shape
(configs/coop.py).
"""

from launch.sweeps.common import DATASETS, SEEDS

SWEEP = dict(
    config="configs/coop.py",
    grid={"ctx_init": ["a photo of a", ""], "dataset": DATASETS, "seed": SEEDS},
    fixed={"n_ctx": 4, "shots": 16},
)
