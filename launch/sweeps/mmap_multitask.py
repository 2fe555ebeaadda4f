"""MmAP multi-task on Office-Home (4 domains = 4 tasks): zero-shot, multi-task baselines and MmAP-MT, 3 seeds.

Methods as in docs/methods/mmap.md ("Model modes"). configs/mmap_officehome.py is expected to take `method` and
`seed` arguments. Report: per-task accuracy and the mean, with trainable parameters, per method.
"""

from launch.sweeps.common import SEEDS

SWEEP = dict(
    config="configs/mmap_officehome.py",
    grid={"method": ["zeroshot", "coop", "vpt", "maple", "mmap"], "seed": SEEDS},
)
