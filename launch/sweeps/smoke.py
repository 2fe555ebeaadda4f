"""Smoke sweep: the real trainer on configs/smoke.py (tiny CLIP, world tasks), 2 seeds, about 20 s per run.

Used by tests/test_launch.py; handy to check an installation: `python launch/sweep.py smoke --root /tmp/runs`.
"""

SWEEP = dict(
    config="configs/smoke.py",
    grid={"seed": [1, 2]},
    fixed={"method": "coop"},
)
