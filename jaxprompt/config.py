"""The run config every `configs/*.py` file starts from, and the parser for their `:arg` strings.

A config file is `get_config(arg: str | None) -> ConfigDict`; `arg` is a small comma-separated string such as
`dataset=dtd,shots=16,seed=1` (parsed by `parse_arg`, strictly typed). `base_config` declares every block every run
kind reads (data, method, optim, train, multitask, continual, demo); the returned config is locked by `main`, so an
override of a key that does not exist (`--config.optim.lrr=1`) fails naming the key.

Builders: `paper_config` + `finish` (single-task paper settings), `multitask_config` (Office-Home, miniDomainNet and
the shapes world's styles as tasks), `apply_smoke` (a seconds-long run), `fit_depth` (prompt depths capped at a
backbone's layers: the one rule for every method, from each method's `depth_options`).
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections

from jaxprompt import methods


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults. Config files change what their setting needs."""
  config = ml_collections.ConfigDict()
  config.run_kind = "single"      # "single" (train.py); "multitask", "continual", "demo", "linear_probe" (trainers/)
  config.seed = 1                 # run seed: few-shot draw, shuffling, augmentation, prompt init
  config.backbone = "embedded"    # "embedded" (the shipped mini CLIP), a local directory, an .npz/.pt file or a hub id
  config.backbone_tokenizer = ""  # tokenizer directory/hub id when the weights have none (OpenAI state dicts)
  config.backbone_overrides = ml_collections.ConfigDict()  # what the weights cannot say (0 / "" = not set):
  config.backbone_overrides.text_heads = 0      # attention heads of the text tower (open_clip / OpenAI state dicts)
  config.backbone_overrides.vision_heads = 0    # attention heads of the vision tower (ViT-H/g/bigG have 16)
  config.backbone_overrides.hidden_act = ""     # "quick_gelu" (OpenAI) | "gelu" (most LAION/DataComp models) | ...
  config.smoke = False            # shrink everything (set by config files through `apply_smoke`)
  config.multihost = False        # call jax.distributed.initialize() (also env JAXPROMPT_MULTIHOST=1)
  config.num_devices = 0          # devices in the data mesh (0 = all)
  config.eval_only = False        # evaluate the workdir's checkpoint (or `eval_prompts`) without training
  config.eval_prompts = ""        # eval mode: a prompt export (prompts.npz) to evaluate instead of the workdir's
  config.eval_checkpoint = ""     # eval mode: "latest" or a step: evaluate that checkpoint (e.g. of an interrupted run)
  config.eval_dir = ""            # eval mode: where results go (default <workdir>/eval/<data>-<what was evaluated>)

  config.data = ml_collections.ConfigDict()
  config.data.name = "world_shapes"  # registered data source (see jaxprompt.data.registry.known_sources())
  config.data.root = ""              # dataset root for file-based sources
  config.data.options = ml_collections.ConfigDict()  # extra source options (e.g. domain="Art"), set by config files
  config.data.source_args = ""       # more source options from the command line: "domain=Art,file_order=listdir"
  config.data.shots = 16             # K shots per class from train (<= 0: all)
  config.data.split_file = ""        # a split written by an earlier run, to train on exactly those examples
  config.data.protocol = "all"       # "all" (all-class accuracy) or "base2novel"
  config.data.targets = ()           # extra evaluation datasets (domain generalisation / cross-dataset)
  config.data.target_options = ml_collections.ConfigDict()  # per-target source options: {name: {...}}
  config.data.eval_batch_size = 64
  config.data.workers = 0            # decoding threads (0 = automatic)
  config.data.min_crop_scale = 0.08  # RandomResizedCrop's smallest area fraction (CLIP's 0.08; larger for tiny images)

  config.method = methods.default_config()
  config.method.templates = ()     # () = the dataset's templates (its first, or all with method.ensemble=True);
                                   # on the command line: --config.method.templates='("a drawing of a {}.",)'


  config.optim = ml_collections.ConfigDict()
  config.optim.name = "sgd"            # "sgd" (momentum, coupled weight decay; the papers') or "adamw"
  config.optim.lr = 0.002
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.optim.epochs = 10
  config.optim.batch_size = 32
  config.optim.schedule = "epoch_cosine"  # "epoch_cosine" (the papers'), "step_cosine" or "constant"
  config.optim.warmup_epochs = 1       # constant warm-up epochs at warmup_lr (epoch_cosine)
  config.optim.warmup_lr = 1e-5
  config.optim.warmup_steps = 0        # linear warm-up steps (step_cosine)

  config.train = ml_collections.ConfigDict()
  config.train.max_steps = 0           # stop after this many steps (0 = epochs * steps_per_epoch)
  config.train.log_every = 10          # steps between progress/metrics lines
  config.train.checkpoint_every = 0    # steps between checkpoints (0 = once per epoch); always at the end
  config.train.keep_checkpoints = 2
  config.train.stop_after = 0          # stop (as if interrupted) after this many steps of this invocation (tests)
  config.train.eval_every_epochs = 0   # validation-split accuracy every N epochs, logged as val/accuracy (0 = never)
  config.train.select = "last"         # "last" (the papers') | "best_val": export the best tree by val/accuracy
  config.train.tensorboard = False      # also write the logged scalars as TensorBoard events (<workdir>/tensorboard)
  config.train.allow_config_change = False  # re-run a workdir with other result-determining keys (history.jsonl)

  config.multitask = multitask_block()
  config.continual = continual_block()
  config.demo = demo_block()
  config.linear_probe = linear_probe_block()
  return config


def multitask_block() -> ml_collections.ConfigDict:
  """`config.multitask` (run_kind "multitask", `jaxprompt.trainers.multitask`): tasks, model mode, grouping."""
  block = ml_collections.ConfigDict()
  block.name = ""            # dataset label in results ("" = data.name, or "multitask" for a list of sources)
  block.tasks = ()           # source names, one per task (e.g. world_styles/photo, ...); or else
  block.domains = ()         # domains of data.name (its `domain` option), one per task
  block.mode = "mmap_mt"     # "mmap_mt" | "mt" | "st" | "zeroshot" (jaxprompt.methods.mmap_mt)
  block.num_groups = 2       # groups for the exhaustive search
  block.grouping = "exhaustive"  # "exhaustive" (T <= 8) | "threshold" (cos > tau -> connected components)
  block.tau = 0.0            # threshold of the threshold rule
  block.partition = ""       # forced partition, e.g. "0,1|2,3" (skips the probe)
  block.probe_steps = 0      # probe length (0 = one epoch of the largest task)
  return block


def continual_block() -> ml_collections.ConfigDict:
  """`config.continual` (run_kind "continual", `jaxprompt.trainers.continual`)."""
  block = ml_collections.ConfigDict()
  block.num_tasks = 2        # disjoint class chunks (2 = base half, then novel half); the method is `method.name`
  return block


LINEAR_PROBE_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
"""The reference's initial C values, in its order (np.argmax keeps the first best, so ties go to the larger C)."""


def linear_probe_block() -> ml_collections.ConfigDict:
  """`config.linear_probe` (run_kind "linear_probe", `jaxprompt.trainers.linear_probe`): the C search and the
  solver (defaults: the reference's)."""
  block = ml_collections.ConfigDict()
  block.coarse_grid = LINEAR_PROBE_GRID  # C values tried first, in tie-breaking order
  block.refine_steps = 8           # halvings of the log10 interval around the grid's best (lpclip --num_step 8)
  block.max_iter = 1000            # L-BFGS iterations per fit (sklearn max_iter)
  block.tol = 1e-4                 # projected-gradient tolerance (sklearn tol)
  block.val_split = "val"          # split C is chosen on: "val" (min(K, 4) shots) or "test" (min(K, 4) shots drawn
                                   # from test: the reference's rule for ImageNet, whose Dassl val is its test set)
  return block


def demo_block() -> ml_collections.ConfigDict:
  """`config.demo` (run_kind "demo", `jaxprompt.trainers.demo`): methods run in turn, each with its recipe."""
  block = ml_collections.ConfigDict()
  block.methods = ()                           # method names, one single-task run each
  block.recipes = ml_collections.ConfigDict()  # {method: {"optim": {"lr": ...}, "method": {...}}} overrides
  return block


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_arg(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
  """'dataset=dtd,shots=4' -> {'dataset': 'dtd', 'shots': 4, ...defaults}; unknown keys and bad values fail.

  Each value must fit the type of its default, else a one-line error names the key and the value: a bool takes
  true/false/1/0/yes/no (any case), an int an integer literal (`shots=4.5` fails), a float any number, a string
  the text as written (`lr_tag=1e-3` stays "1e-3").
  """
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    if "=" not in item:
      raise ValueError(f"config argument {item!r} is not key=value (known keys: {', '.join(defaults)})")
    key, raw = item.split("=", 1)
    if key not in defaults:
      raise KeyError(f"unknown config argument {key!r}; known: {', '.join(defaults)}")
    values[key] = _typed_value(key, raw, defaults[key])
  return values


def _typed_value(key: str, raw: str, default: Any) -> Any:
  """`raw` as the type of `default` (see `parse_arg`)."""
  if isinstance(default, str):
    return raw
  if isinstance(default, bool):
    if raw.lower() in _TRUE:
      return True
    if raw.lower() in _FALSE:
      return False
    raise ValueError(f"config argument {key}={raw!r} must be true or false")
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  if isinstance(default, int):
    if isinstance(value, bool) or not isinstance(value, int):
      raise ValueError(f"config argument {key}={raw!r} must be an integer")
    return value
  if isinstance(default, float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"config argument {key}={raw!r} must be a number")
    return float(value)
  return value


def apply_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to a seconds-long run: few shots, tiny batches, two epochs, a handful of steps."""
  config.smoke = True
  config.data.shots = min(config.data.shots, 2) if config.data.shots > 0 else 2
  config.data.eval_batch_size = 16
  config.optim.batch_size = min(config.optim.batch_size, 8)
  config.optim.epochs = min(config.optim.epochs, 2)
  config.train.max_steps = 6
  config.train.log_every = 2
  return config


PAPER_ARGS = {"dataset": "imagenet", "shots": 16, "seed": 1, "root": "", "backbone": "openai/clip-vit-base-patch16",
              "smoke": False}
"""The `:arg` keys every paper config accepts (a config may add its own)."""


def paper_config(arg: str | None, *, method: str, protocol: str, lr: float, epochs: int, batch_size: int,
                 extra_args: dict[str, Any] | None = None) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """A paper setting: dataset/shots/seed/root/backbone/smoke from `arg`, optimiser as the papers' tables say.

  Returns (config, parsed args) so the config file can set its method options from its own extra args. The caller
  must call `finish(config, args)` last (it applies `smoke`).
  """
  args = parse_arg(arg, {**PAPER_ARGS, **(extra_args or {})})
  config = base_config()
  config.seed = args["seed"]
  config.backbone = args["backbone"]
  config.data.name = args["dataset"]
  config.data.root = args["root"]
  config.data.shots = args["shots"]
  config.data.protocol = protocol
  config.method.name = method
  config.optim.lr = lr
  config.optim.epochs = epochs
  config.optim.batch_size = batch_size
  return config, args


# Layers per tower of the embedded mini CLIP (jaxprompt/world/assets/mini_clip) and of the tiny random test CLIP
# (`weights.tiny_config`): the papers' prompt depths (9, 12) are capped at these when a config runs on them.
BACKBONE_LAYERS = {"embedded": 3, "tiny-random": 2}


def fit_depth(config: ml_collections.ConfigDict, layers: int) -> ml_collections.ConfigDict:
  """Caps every method's prompt depths (each method's `depth_options`) at `layers`, the backbone's depth."""
  for name, cls in methods.registered().items():
    for option in getattr(cls, "depth_options", ()):
      config.method[name][option] = min(config.method[name][option], layers)
  return config


def known_backbone_layers(backbone: str) -> int | None:
  """Layers of a backbone this package ships or makes ("embedded", "tiny-random[:seed]"); None for others."""
  return BACKBONE_LAYERS.get(backbone.split(":")[0])


def finish(config: ml_collections.ConfigDict, args: dict[str, Any]) -> ml_collections.ConfigDict:
  """Last step of a paper config: fit the prompt depths to a shipped backbone if one is used, then apply `smoke`."""
  layers = known_backbone_layers(config.backbone)
  if layers is not None:
    config = fit_depth(config, layers)
  return apply_smoke(config) if args.get("smoke") else config


# --- multi-task settings (configs/mmap_officehome.py, configs/mmap_minidomainnet.py) ------------------------------------
MULTITASK_ARGS = {"method": "mmap", "mode": "", "dataset": "", "root": "", "shots": 16, "seed": 1,
                  "backbone": "openai/clip-vit-base-patch16", "num_groups": 2, "grouping": "exhaustive",
                  "partition": "", "combine": "concat", "smoke": False}
MULTITASK_METHODS = ("zeroshot", "coop", "vpt", "maple", "mmap")
WORLD_TASKS = tuple(f"world_styles/{style}" for style in ("photo", "sketch", "painting", "cartoon"))


def multitask_config(arg: str | None, *, dataset: str, domains: tuple[str, ...]) -> ml_collections.ConfigDict:
  """A multi-task setting: `dataset`'s `domains` are the tasks (`dataset=world`, or any world task such as
  world_shapes: the shapes world's 4 styles, the world's domains).

  The config files' docstrings document every argument. The recipe is ours (the paper publishes none): MaPLe's SGD
  lr 0.0035, 5 epochs, 8 images per task per step.
  """
  args = parse_arg(arg, {**MULTITASK_ARGS, "dataset": dataset})
  method = args["method"]
  if method not in MULTITASK_METHODS:
    raise ValueError(f"config argument method={method!r}: expected one of {', '.join(MULTITASK_METHODS)}")
  config = base_config()
  config.run_kind = "multitask"
  config.seed, config.backbone = args["seed"], args["backbone"]
  block = config.multitask
  block.mode = args["mode"] or {"zeroshot": "zeroshot", "mmap": "mmap_mt"}.get(method, "mt")
  block.num_groups, block.grouping, block.partition = args["num_groups"], args["grouping"], args["partition"]
  config.method.name = method
  config.method.mmap.combine = args["combine"]
  config.data.shots, config.data.root = args["shots"], args["root"]
  world = args["dataset"] == "world" or args["dataset"].startswith("world_")
  if world:
    config.data.name, block.name, block.tasks = "world_styles", "world_styles", WORLD_TASKS
  else:
    config.data.name, block.domains = args["dataset"], tuple(domains)
  config.optim.lr, config.optim.epochs, config.optim.batch_size = 0.0035, 5, 8
  if config.backbone.startswith("tiny-random"):  # the test CLIP: widths 32 / 48 (gcd 16) fit MmAP's (m, n) = (2, 16)
    config.method.mmap.update(dict(b=4, m=2, n=16))
  config = finish(config, args)
  if config.smoke:
    block.probe_steps = 2
    config.optim.lr = 0.01
    if world:
      config.data.options.test_per_class = 4
  return config
