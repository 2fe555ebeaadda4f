"""LAMM all-class few-shot curves: CoOp, MaPLe, LAMM, CoOp+LAMM, MaPLe+LAMM x 11 datasets x 1..16 shots x 3 seeds,
plus zero-shot CLIP once per dataset (docs/methods/lamm.md).

LAMM variants are configs/lamm.py with `base` in {none, coop, maple}. MaPLe few-shot uses configs/maple_b2n.py switched
to the all-class protocol (`data.protocol=all`), since no all-class MaPLe config exists.
Report: accuracy-vs-shots curves per dataset and on average, beside the published averages.
"""

from launch.sweeps.common import DATASETS, SEEDS, SHOTS

SWEEP = dict(
    grid=[
        {"config": ["configs/lamm.py"], "base": ["none", "coop", "maple"], "dataset": DATASETS, "shots": SHOTS,
         "seed": SEEDS},
        {"config": ["configs/coop.py"], "dataset": DATASETS, "shots": SHOTS, "seed": SEEDS},
        {"config": ["configs/maple_b2n.py"], "data.protocol": ["all"], "dataset": DATASETS, "shots": SHOTS,
         "seed": SEEDS},
        {"config": ["configs/zeroshot.py"], "dataset": DATASETS},
    ],
)
