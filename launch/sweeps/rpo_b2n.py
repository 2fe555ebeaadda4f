"""RPO base-to-novel on the 11 datasets, 3 seeds, 16 shots (RPO Table 1; docs/methods/rpo.md; configs/rpo_b2n.py).

    python launch/sweep.py rpo_b2n --root runs --pass root=/data && python -m jaxprompt.report runs/rpo_b2n
-> per-dataset B / N / HM beside the published numbers, with both averaging conventions.
"""

from launch.sweeps.common import DATASETS, SEEDS

SWEEP = dict(
    config="configs/rpo_b2n.py",
    grid={"dataset": DATASETS, "seed": SEEDS},
)
