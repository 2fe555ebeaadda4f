"""Published numbers (ViT-B/16) as plain data, for the "published" columns of the report (`report.tables`).

`PUBLISHED[(paper, method, dataset, metric)] = value` (percent). Methods use our registry names, with `+` for LAMM
stacked on a base (`coop+lamm`); datasets use our dataset names, `average` for the papers' 11-dataset average.
Metrics:
  base / novel / hm          base-to-novel per dataset (16 shots)
  mean_hm / hm_of_means      the average row's HM under each convention: mean of per-dataset HMs (RPO) or HM of
                             the averaged base and novel accuracies (CoCoOp / MaPLe)
  accuracy@K                 all-class few-shot accuracy with K shots
  accuracy                   shot-independent accuracy (zero-shot), or the source accuracy of domain generalisation
  target/<dataset>, target_mean   domain-generalisation targets and their mean
`PAPERS[paper]` says which protocol the paper's numbers belong to and where they come from.
"""

from __future__ import annotations

from jaxprompt.data.coop_datasets import COOP_DATASETS

PAPERS = {
    "rpo": dict(protocol="base2novel", source="RPO (Lee et al., ICCV 2023), base-to-novel, mean of 3 seeds"),
    "maple": dict(protocol="base2novel", source="MaPLe (Khattak et al., CVPR 2023), base-to-novel averages over "
                                                "11 datasets (CLIP, CoOp, CoCoOp, VPT-deep, IVLP, MaPLe)"),
    "rpo_dg": dict(protocol="all", source="RPO (Lee et al., ICCV 2023), domain generalisation "
                                          "(ImageNet -> V2/Sketch/A/R)"),
    "lamm": dict(protocol="all", source="LAMM (Gao et al., AAAI 2024), all-class few-shot, read off the figure "
                                        "(+-0.5)"),
}

DATASETS = list(COOP_DATASETS)
"""The 11 datasets in the papers' table order."""

PUBLISHED: dict[tuple[str, str, str, str], float] = {}


def _add(paper: str, method: str, dataset: str, metrics: dict) -> None:
  for metric, value in metrics.items():
    PUBLISHED[(paper, method, dataset, metric)] = value


# RPO base-to-novel, mean of 3 seeds: base / novel / hm per dataset; the average's HM is the mean of per-dataset HMs.
for _dataset, (_b, _n, _h) in {
    "imagenet": (76.60, 71.57, 74.00), "caltech101": (97.97, 94.37, 96.03), "oxford_pets": (94.63, 97.50, 96.05),
    "stanford_cars": (73.87, 75.53, 74.69), "oxford_flowers": (94.13, 76.67, 84.50),
    "food101": (90.33, 90.83, 90.58), "fgvc_aircraft": (37.33, 34.20, 35.70), "sun397": (80.60, 77.80, 79.18),
    "dtd": (76.70, 62.13, 68.61), "eurosat": (86.63, 68.97, 76.79), "ucf101": (83.67, 75.43, 79.34)}.items():
  _add("rpo", "rpo", _dataset, {"base": _b, "novel": _n, "hm": _h})
_add("rpo", "rpo", "average", {"base": 81.13, "novel": 75.00, "mean_hm": 77.78})

# Base-to-novel averages over the 11 datasets; their HM is the HM of the averaged base and novel accuracies.
for _method, (_b, _n, _h) in {
    "zeroshot": (69.34, 74.22, 71.70), "coop": (82.69, 63.22, 71.66), "cocoop": (80.47, 71.69, 75.83),
    "vpt": (80.24, 73.43, 76.68), "ivlp": (82.15, 74.07, 77.90), "maple": (82.28, 75.14, 78.55)}.items():
  _add("maple", _method, "average", {"base": _b, "novel": _n, "hm_of_means": _h})

# Domain generalisation: source (ImageNet) / V2 / Sketch / A / R / target mean.
for _method, _values in {
    "zeroshot": (66.73, 60.83, 46.15, 47.77, 73.96, 57.18), "coop": (71.51, 64.20, 47.99, 49.71, 75.21, 59.28),
    "cocoop": (71.02, 64.07, 48.75, 50.63, 76.18, 59.91), "rpo": (71.67, 65.13, 49.27, 50.13, 76.57, 60.28)}.items():
  _add("rpo_dg", _method, "imagenet", dict(zip(
      ["accuracy", "target/imagenet_v2", "target/imagenet_sketch", "target/imagenet_a", "target/imagenet_r",
       "target_mean"], _values)))

# LAMM all-class few-shot: averages over the 11 datasets for 1/2/4/8/16 shots, and 16 shots per dataset.
_add("lamm", "zeroshot", "average", {"accuracy": 65.3})
for _method, _values in {
    "lamm": (69.0, 73.1, 76.0, 78.5, 81.1), "coop": (68.0, 71.0, 73.4, 76.0, 78.5),
    "coop+lamm": (68.9, 73.1, 76.3, 79.0, 81.7), "maple": (68.9, 70.4, 73.4, 77.0, 79.0),
    "maple+lamm": (68.2, 71.0, 74.7, 78.7, 81.2)}.items():
  _add("lamm", _method, "average", {f"accuracy@{k}": v for k, v in zip((1, 2, 4, 8, 16), _values)})
for _dataset, _values in {
    "caltech101": (92.9, 96.9, 95.6, 96.4), "dtd": (44.5, 72.2, 68.4, 73.0), "fgvc_aircraft": (24.8, 45.4, 38.6, 47.1),
    "oxford_pets": (89.1, 93.1, 92.7, 93.3), "stanford_cars": (65.3, 85.1, 76.9, 85.4),
    "oxford_flowers": (71.3, 97.4, 96.0, 97.5), "food101": (86.1, 86.4, 86.4, 86.7),
    "imagenet": (66.7, 72.7, 71.6, 72.8), "sun397": (62.5, 76.1, 74.5, 76.5), "eurosat": (47.8, 82.7, 80.3, 85.0),
    "ucf101": (66.8, 83.8, 82.2, 84.8)}.items():
  _zs, _lamm, _coop, _coop_lamm = _values
  _add("lamm", "zeroshot", _dataset, {"accuracy": _zs})
  _add("lamm", "lamm", _dataset, {"accuracy@16": _lamm})
  _add("lamm", "coop", _dataset, {"accuracy@16": _coop})
  _add("lamm", "coop+lamm", _dataset, {"accuracy@16": _coop_lamm})


def lookup(protocol: str, method: str, dataset: str, metric: str) -> tuple[str, float] | None:
  """(paper, value) of the first paper for this protocol that reports (method, dataset, metric), else None."""
  for paper, info in PAPERS.items():
    if info["protocol"] == protocol and (paper, method, dataset, metric) in PUBLISHED:
      return paper, PUBLISHED[(paper, method, dataset, metric)]
  return None


def has_method(protocol: str, method: str) -> bool:
  """Whether any paper of this protocol reports numbers for `method`."""
  return any(PAPERS[p]["protocol"] == protocol and m == method for p, m, _, _ in PUBLISHED)
