"""Shared lists for the sweep files: the datasets of the CoOp benchmark family, seeds and shots."""

from jaxprompt.data.coop_datasets import COOP_DATASETS

# The 11 datasets in the order the papers' tables use.
DATASETS = list(COOP_DATASETS)
SEEDS = [1, 2, 3]
SHOTS = [1, 2, 4, 8, 16]
