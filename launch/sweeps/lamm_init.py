"""Ablation: LAMM label embeddings from the class names vs random (normal 0.02), on CLIP, 16 shots (configs/lamm.py)."""

from launch.sweeps.common import DATASETS, SEEDS

SWEEP = dict(
    config="configs/lamm.py",
    grid={"init": ["name", "random"], "dataset": DATASETS, "seed": SEEDS},
    fixed={"base": "none", "shots": 16},
)
