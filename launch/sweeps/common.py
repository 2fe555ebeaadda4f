"""Shared lists for the sweep files: the datasets of the CoOp benchmark family, seeds and shots."""

# The 11 datasets in the order the papers' tables use.
DATASETS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
            "sun397", "dtd", "eurosat", "ucf101"]
SEEDS = [1, 2, 3]
SHOTS = [1, 2, 4, 8, 16]
