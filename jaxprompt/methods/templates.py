"""Named template sets for zero-shot ensembles: `config.method.template_set = "<name>"`.

A set is a function of the dataset's own templates (its source's list, e.g. ["{} texture."] for DTD), resolved by
`base.resolve_templates` when a run's method is built (`build_for_run`) or viewed over another dataset
(`for_classes(names, templates)`), so each evaluation set gets its own dataset's template.

  "reference_ensemble"  the reference's prompt ensemble (KaiyangZhou/CoOp, trainers/zsclip.py `ZeroshotCLIP2`): its
                        seven selected ImageNet templates (`IMAGENET_TEMPLATES_SELECT`) plus the dataset's own
                        (first) template, eight in all. For ImageNet itself the reference adds nothing (seven): use
                        "imagenet_select" there (configs/zeroshot.py does so for dataset=imagenet).
  "imagenet_select"     the seven selected ImageNet templates alone.
"""

from __future__ import annotations

from typing import Callable, Sequence

# The seven templates the reference selected from CLIP's 80 ImageNet prompts, in its order.
IMAGENET_SELECT = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def _reference_ensemble(dataset_templates: Sequence[str]) -> list[str]:
  if not dataset_templates:
    raise ValueError("template_set='reference_ensemble' adds the dataset's own template, but the dataset lists none")
  return list(IMAGENET_SELECT) + [dataset_templates[0]]


TEMPLATE_SETS: dict[str, Callable[[Sequence[str]], list[str]]] = {
    "reference_ensemble": _reference_ensemble,
    "imagenet_select": lambda dataset_templates: list(IMAGENET_SELECT),
}


def named_set(name: str, dataset_templates: Sequence[str]) -> list[str]:
  """The templates of set `name` for a dataset whose own templates are `dataset_templates`."""
  if name not in TEMPLATE_SETS:
    raise ValueError(f"method.template_set={name!r} is not a template set; known: {', '.join(sorted(TEMPLATE_SETS))}")
  return TEMPLATE_SETS[name](dataset_templates)
