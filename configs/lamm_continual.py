"""Continual learning (LAMM; docs/methods/lamm.md, "Continual learning"): disjoint class subsets learnt in turn; LAMM vs CoOp / MaPLe.

    python -m jaxprompt.main --config configs/lamm_continual.py:dataset=dtd,root=/data,shots=16,seed=1,method=lamm --workdir runs/cl/lamm_dtd_1
    python -m jaxprompt.main --config configs/lamm_continual.py:dataset=dtd,root=/data,method=coop --workdir runs/cl/coop_dtd_1
    python -m jaxprompt.main --config configs/lamm_continual.py:dataset=world_shapes,backbone=tiny-random,smoke=True --workdir /tmp/cl

Args: `method` lamm (LAMM on CLIP: frozen template "a photo of a {}.", trainable label rows of the current task only)
| coop | maple (one prompt set continuing from the previous task); `num_tasks` (2 = the base half, then the novel half;
contiguous label chunks, earlier chunks one larger when uneven); dataset/shots/seed/root/backbone/smoke as every paper
config. After each task: accuracy on every seen task's own classes and on the union of the seen classes (the union is
our addition: the reference never evaluates it); forgetting = the largest drop of an earlier task (percent points).
Hyper-parameters: LAMM and CoOp as the LAMM paper's few-shot runs (SGD lr 0.002, batch 32, 50 epochs), MaPLe lr
0.0035, batch 4, 5 epochs; w_wc = 1/shots (the reference continual scripts' choice). Ours: every task runs the full
schedule with a fresh optimiser state; CoOp uses ctx_init "a photo of a" (as CoOp+LAMM); LAMM's other rows are frozen
by zeroing their update after the optimiser (so weight decay cannot shrink them).
Published: the LAMM paper shows the continual setting only as a figure (no table); the claim is that LAMM does not
forget earlier tasks (their label rows are untouched) while CoOp and MaPLe do.
"""

from jaxprompt.config import finish, paper_config


def get_config(arg=None):
  config, args = paper_config(arg, method="lamm", protocol="all", lr=0.002, epochs=50, batch_size=32,
                              extra_args={"method": "lamm", "num_tasks": 2})
  config.run_kind = "continual"
  config.continual.num_tasks = args["num_tasks"]
  config.method.name = args["method"]
  config.method.lamm.base = "none"
  config.method.lamm.w_wc = "1/shots"
  config.method.lamm.shots = max(args["shots"], 1)
  config.method.coop.ctx_init = "a photo of a"
  if args["method"] == "maple":
    config.optim.lr, config.optim.batch_size, config.optim.epochs = 0.0035, 4, 5
  config = finish(config, args)
  if config.smoke:
    config.optim.lr = 0.01
    config.method.lamm.shots = config.data.shots
    if config.data.name.startswith("world"):
      config.data.options.test_per_class = 4
  return config
