"""The run kinds besides the single-task run (`jaxprompt.train.run`), each a thin list of phases over `train.fit`
and `jaxprompt.evaluate`:

  multitask.py  tasks = domains; task grouping (grouping.py), MmAP-MT and the multi-task baselines
  continual.py  disjoint class subsets learnt in turn; forgetting
  demo.py       several methods on one task, one table
"""
