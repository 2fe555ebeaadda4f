"""Ready-made sweeps: one file per table or ablation, each exporting `SWEEP` (see launch/sweep.py)."""
