"""MmAP multi-task on Office-Home: 4 domains (Art, Clipart, Product, Real World) = 4 tasks, 65 shared classes.

    python -m jaxprompt.main --config configs/mmap_officehome.py:method=mmap,root=/data/office_home,seed=1 --workdir runs/oh/mmap_1
    python -m jaxprompt.main --config configs/mmap_officehome.py:method=coop,mode=mt,root=/data/office_home --workdir runs/oh/coop_mt_1
    python -m jaxprompt.main --config configs/mmap_officehome.py:dataset=world,backbone=tiny-random,smoke=True --workdir /tmp/mt

Args: `method` zeroshot | coop | vpt | maple | mmap; `mode` ("" = zeroshot for zeroshot, mmap_mt for mmap, mt otherwise;
`st` = separate prompts per task, e.g. single-task MmAP with method=mmap,mode=st); `dataset` office_home | world (the
shapes world's photo/sketch/painting/cartoon styles as tasks, no data needed); `root`, `shots` (16; -1 = all), `seed`,
`backbone`, `num_groups` (2), `grouping` exhaustive | threshold, `partition` (e.g. "0+1|2+3", i.e. "0,1|2,3", skips the probe), `combine`
concat | sum, `smoke`. The sweep launch/sweeps/mmap_multitask.py runs method x seed.

Data (docs/methods/protocols.md, "Multi-task (MmAP)"): per-domain stratified 80/20 train/test split with a fixed seed, saved CoOp-style next to the data on first
use; K shots per class from train. Model (docs/methods/mmap.md): probe = one global MmAP on all tasks, task-gradient cosine averaged
over the probe, partition maximising mean within-group affinity; one group-shared MmAP per group + one task-specific
MmAP per task, concatenated per layer (2b tokens); one batch per task per step, losses summed; accuracy per task + mean.
Choices of ours (the paper leaves them open): SGD lr 0.0035, momentum 0.9, weight decay 5e-4, 5 epochs, per-epoch
cosine after one warm-up epoch (docs/methods/protocols.md), 8 images per task per step; num_groups 2; probe = one epoch of the
largest task at the constant lr; the partition score (grouping.py); MmAP b=8, (m, n)=(4, 64), depth 12.
Published claims (MmAP, AAAI 2024): with about 0.09 % of full multi-task fine-tuning's trainable parameters, MmAP-MT
beats full fine-tuning on Office-Home; ranking MmAP-MT > MaPLe-MT > CoOp-MT ~ full fine-tuning > CLIP-Adapter ~ VPT-MT >
BitFit, mean accuracies between 80 and 88 %.
"""

from jaxprompt.data.domains import OFFICE_HOME_DOMAINS
from jaxprompt.config import multitask_config as build_config


def get_config(arg=None):
  return build_config(arg, dataset="office_home", domains=OFFICE_HOME_DOMAINS)
