"""The run config every `configs/*.py` file starts from, and the parser for their `:arg` strings.

A config file is `get_config(arg: str | None) -> ConfigDict`; `arg` is a small comma-separated string such as
`dataset=dtd,shots=16,seed=1` (parsed by `parse_arg`). The returned config is locked by `main`, so an override of a
key that does not exist (`--config.optim.lrr=1`) fails naming the key.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections

from jaxprompt import methods


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults. Config files change what their setting needs."""
  config = ml_collections.ConfigDict()
  config.run_kind = "single"      # "single" (train.py), "multitask", "continual" or "demo": which driver runs
  config.seed = 1                 # run seed: few-shot draw, shuffling, augmentation, prompt init
  config.backbone = "embedded"    # "embedded" (the shipped mini CLIP), a local directory, an .npz/.pt file or a hub id
  config.backbone_tokenizer = ""  # tokenizer directory/hub id when the weights have none (OpenAI state dicts)
  config.smoke = False            # shrink everything (set by config files through `apply_smoke`)
  config.multihost = False        # call jax.distributed.initialize() (also env JAXPROMPT_MULTIHOST=1)
  config.num_devices = 0          # devices in the data mesh (0 = all)
  config.eval_only = False        # evaluate the workdir's checkpoint (or `eval_prompts`) without training
  config.eval_prompts = ""        # a prompt export (prompts.npz) to evaluate instead of the workdir's checkpoint

  config.data = ml_collections.ConfigDict()
  config.data.name = "world_shapes"  # registered data source (see jaxprompt.data.registry.known_sources())
  config.data.root = ""              # dataset root for file-based sources
  config.data.options = ml_collections.ConfigDict()  # extra source options (e.g. domain="Art")
  config.data.shots = 16             # K shots per class from train (<= 0: all)
  config.data.split_file = ""        # a split written by an earlier run, to train on exactly those examples
  config.data.protocol = "all"       # "all" (all-class accuracy) or "base2novel"
  config.data.targets = ()           # extra evaluation datasets (domain generalisation / cross-dataset)
  config.data.target_options = ml_collections.ConfigDict()  # per-target source options: {name: {...}}
  config.data.eval_batch_size = 64
  config.data.workers = 0            # decoding threads (0 = automatic)
  config.data.min_crop_scale = 0.08  # RandomResizedCrop's smallest area fraction (CLIP's 0.08; larger for tiny images)

  config.method = methods.default_config()
  config.method.templates = []     # the dataset's templates (its first, or all with method.ensemble=True)

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
  return config


def parse_arg(arg: str | None, defaults: dict[str, Any]) -> dict[str, Any]:
  """'dataset=dtd,shots=4' -> {'dataset': 'dtd', 'shots': 4, ...defaults}; unknown keys fail naming them.

  Values are parsed as Python literals when possible (4, 0.5, True), else kept as strings. Each value takes the
  type of its default.
  """
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    if "=" not in item:
      raise ValueError(f"config argument {item!r} is not key=value (known keys: {', '.join(defaults)})")
    key, raw = item.split("=", 1)
    if key not in defaults:
      raise KeyError(f"unknown config argument {key!r}; known: {', '.join(defaults)}")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    default = defaults[key]
    if isinstance(default, bool):
      value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
      raise ValueError(f"config argument {key}={raw!r} must be a number")
    elif isinstance(default, str):
      value = str(value) if not isinstance(value, str) else value
    values[key] = type(default)(value) if isinstance(default, (int, float)) and not isinstance(default, bool) \
        else value
  return values


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


# Layers per tower of the embedded mini CLIP (jaxprompt/world/assets/mini_clip): the papers' prompt depths (9, 12)
# are capped at it when a paper config runs on `backbone=embedded`.
EMBEDDED_DEPTH = 3
_DEPTH_FIELDS = ("vpt.depth", "ivlp.text_depth", "ivlp.vision_depth", "maple.depth", "mmap.depth")


def fit_embedded_backbone(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Caps every prompt depth at the embedded mini CLIP's 3 layers, so any paper config runs on the shapes world."""
  for field in _DEPTH_FIELDS:
    name, key = field.split(".")
    config.method[name][key] = min(config.method[name][key], EMBEDDED_DEPTH)
  return config


def finish(config: ml_collections.ConfigDict, args: dict[str, Any]) -> ml_collections.ConfigDict:
  """Last step of a paper config: fit the embedded backbone's depth if it is used, then apply `smoke`."""
  if config.backbone == "embedded":
    config = fit_embedded_backbone(config)
  return apply_smoke(config) if args.get("smoke") else config
