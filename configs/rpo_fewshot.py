"""RPO extreme few-shot base-to-novel: K=4 prompt pairs, 1 to 16 shots, 10 seeds, 10 datasets (no ImageNet).

    python -m jaxprompt.main --config configs/rpo_fewshot.py:dataset=dtd,root=/data,shots=1,seed=1 --workdir runs/rpo_fs/dtd_1_1

Reference setting: K=4, SGD lr 0.01, batch 4, 15 epochs, shots 1/2/4/8/16, seeds 1..10. The paper reports these as
curves (lower variance across seeds than CoOp/CoCoOp); docs/methods/rpo.md gives no table of numbers for them.
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="rpo", protocol="base2novel", lr=0.01, epochs=15, batch_size=4,
                              extra_args={"k": 4, "init": "st"})
  config.method.rpo.k = args["k"]
  config.method.rpo.init = args["init"]
  return finish(config, args)
