"""Launching runs: `sweep.py` (grids of runs, local or printed for a cluster), `tpu_vm.py` (Cloud TPU VMs and pod
slices), `sweeps/` (ready-made sweeps for the papers' tables and the init-scheme ablations).

Aggregation of finished runs is `python -m jaxprompt.report RUNS_DIR`.
"""
