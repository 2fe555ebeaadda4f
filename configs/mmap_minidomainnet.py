"""MmAP multi-task on MiniDomainNet: domains clipart, painting, real, sketch = 4 tasks, 126 shared classes.

    python -m jaxprompt.main --config configs/mmap_minidomainnet.py:method=mmap,root=/data/domainnet,seed=1 --workdir runs/mdn/mmap_1

Same arguments and choices as configs/mmap_officehome.py (see its docstring; every choice of ours is listed there).
Data (docs/methods/protocols.md, "Multi-task (MmAP)"): the standard `<root>/splits_mini/{domain}_{train,test}.txt` lists; class names from the folder names;
K shots per class from train (16; shots=-1 = all).
Published claim (MmAP, AAAI 2024): with about 0.09 % of full multi-task fine-tuning's trainable parameters, MmAP-MT
beats full fine-tuning on MiniDomainNet.
"""

from jaxprompt.data.domains import MINI_DOMAINNET_DOMAINS
from jaxprompt.config import multitask_config as build_config


def get_config(arg=None):
  return build_config(arg, dataset="mini_domainnet", domains=MINI_DOMAINNET_DOMAINS)
