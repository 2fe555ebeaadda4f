"""MmAP single-task: one source prompt shared by text and vision through Kronecker products with per-layer scales.

    python -m jaxprompt.main --config configs/mmap.py:dataset=dtd,root=/data,shots=16,seed=1 --workdir runs/mmap/dtd_16_1

Defaults (ours: the MmAP paper publishes no single-task recipe): b=8 tokens, (m, n) = (4, 64), depth 12,
source shared across layers, kron order scale-then-source, init "xavier" (chosen from the shapes-world ablation in
docs/world_results.md; `init=normal` is the paper's source std 0.02 / scales std 1.0),
736 parameters; optimiser as MaPLe's (SGD lr 0.0035, batch 4, 5 epochs), all-class few-shot protocol
(`protocol=base2novel` for base-to-novel). The paper's claims are for multi-task learning (configs/mmap_officehome.py).
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="mmap", protocol="all", lr=0.0035, epochs=5, batch_size=4,
                              extra_args={"protocol": "all", "init": "xavier", "kron_order": "scale_source"})
  config.data.protocol = args["protocol"]
  config.method.mmap.init = args["init"]
  config.method.mmap.kron_order = args["kron_order"]
  return finish(config, args)
