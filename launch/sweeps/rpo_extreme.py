"""RPO extreme few-shot base-to-novel: K=4, 10 datasets (no ImageNet), 1..16 shots, seeds 1..10.

Config: configs/rpo_fewshot.py.

Report: HM-vs-shots curves per dataset and on average.
"""

from launch.sweeps.common import DATASETS, SHOTS

SWEEP = dict(
    config="configs/rpo_fewshot.py",
    grid={"dataset": [d for d in DATASETS if d != "imagenet"], "shots": SHOTS, "seed": list(range(1, 11))},
)
