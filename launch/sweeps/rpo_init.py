"""Ablation: RPO's ST-initialisation vs random (normal 0.02), base-to-novel, 11 datasets x 3 seeds (configs/rpo_b2n.py).

Report: a table and a bar plot of HM per dataset for the two schemes, with error bars over seeds.
"""

from launch.sweeps.common import DATASETS, SEEDS

SWEEP = dict(
    config="configs/rpo_b2n.py",
    grid={"init": ["st", "random"], "dataset": DATASETS, "seed": SEEDS},
)
