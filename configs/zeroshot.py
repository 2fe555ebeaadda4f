"""Zero-shot CLIP: class features of the dataset's template (or an ensemble), nothing trained.

    python -m jaxprompt.main --config configs/zeroshot.py:dataset=dtd,root=/data --workdir runs/zs_dtd
    python -m jaxprompt.main --config configs/zeroshot.py:dataset=dtd,root=/data,protocol=base2novel --workdir runs/zs_b2n_dtd

Published (ViT-B/16): base-to-novel average over 11 datasets 69.34 / 74.22 / HM 71.70 (CoCoOp's table);
all-class zero-shot average 65.3 (LAMM's figure). Per dataset (all classes): Caltech101 92.9, DTD 44.5,
FGVCAircraft 24.8, OxfordPets 89.1, StanfordCars 65.3, Flowers102 71.3, Food101 86.1, ImageNet 66.7, SUN397 62.5,
EuroSAT 47.8, UCF101 66.8.
`ensemble=True` averages the features of every template the dataset source lists (the shapes world lists many).
`template_set=reference_ensemble` is the reference's prompt ensemble (CoOp's `ZeroshotCLIP2`): its seven selected
ImageNet templates plus the dataset's own (for dataset=imagenet the seven alone, as the reference: the config picks
`imagenet_select` there); see jaxprompt/methods/templates.py.

    python -m jaxprompt.main --config configs/zeroshot.py:dataset=dtd,root=/data,template_set=reference_ensemble --workdir runs/zs_ens_dtd
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="zeroshot", protocol="all", lr=0.0, epochs=0, batch_size=32,
                              extra_args={"protocol": "all", "ensemble": False, "template_set": ""})
  config.data.protocol = args["protocol"]
  config.method.ensemble = args["ensemble"]
  template_set = args["template_set"]
  if template_set == "reference_ensemble" and args["dataset"] == "imagenet":
    template_set = "imagenet_select"  # the reference adds no template of its own for ImageNet
  config.method.template_set = template_set
  return finish(config, args)
