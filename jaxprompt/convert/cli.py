"""`python -m jaxprompt.convert {from-reference,to-reference}` (see the package docstring for the commands)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

import jax
import ml_collections
import numpy as np

import jaxprompt
from jaxprompt import checkpoint
from jaxprompt.convert.names import VARIANTS, ConversionError, reference_settings
from jaxprompt.convert.reference import from_reference, parse_options, to_reference
from jaxprompt.convert.torch_files import read_checkpoint, read_classnames, write_checkpoint

DEFAULT_BACKBONE = "openai/clip-vit-base-patch16"  # the reference papers' backbone


def eval_flags(settled: dict) -> list[str]:
  """{"name": "maple", "maple.depth": 9} -> ["--config.method.name=maple", "--config.method.maple.depth=9"]."""
  return [f"--config.method.{key}={shlex.quote(str(value))}" for key, value in settled.items()]


def parser() -> argparse.ArgumentParser:
  parse = argparse.ArgumentParser(prog="python -m jaxprompt.convert",
                                  description="Reference PyTorch prompt checkpoints <-> prompts.npz exports.")
  commands = parse.add_subparsers(dest="command", required=True)
  source = commands.add_parser("from-reference", help="reference checkpoint -> prompts.npz + prompts.json")
  source.add_argument("--method", required=True, choices=list(VARIANTS))
  source.add_argument("--checkpoint", required=True, help="Dassl's <model name>/model.pth.tar-<epoch>")
  source.add_argument("--classnames", required=True, help="one class name per line, in the reference's label order")
  source.add_argument("--out", required=True, help="directory for prompts.npz and prompts.json")
  source.add_argument("--option", action="append", default=[], help="method option key=value (repeatable)")
  target = commands.add_parser("to-reference", help="prompts.npz + prompts.json -> reference checkpoint")
  target.add_argument("--prompts", required=True, help="a prompts.npz (or the directory holding it)")
  target.add_argument("--out", required=True, help="reference output dir: gets <model name>/model.pth.tar-<epoch>")
  target.add_argument("--epoch", type=int, default=1, help="the file's epoch (the reference's --load-epoch)")
  target.add_argument("--method", default="", choices=[""] + list(VARIANTS), help="check the export is this one")
  target.add_argument("--classnames", default="", help="class list to check against (default: prompts.json's)")
  for command in (source, target):
    command.add_argument("--backbone", default=DEFAULT_BACKBONE, help="the frozen CLIP (any weights.load source)")
    command.add_argument("--backbone-tokenizer", default="", help="tokenizer for state-dict backbones")
  return parse


def from_reference_command(args, backbone) -> str:
  classnames = read_classnames(args.classnames)
  state, epoch = read_checkpoint(args.checkpoint)
  trainable, config, settled = from_reference(args.method, state, classnames, backbone,
                                              options=parse_options(args.option), where=args.checkpoint,
                                              classnames_file=args.classnames)
  metadata = {"method": config.name, "method_config": config.to_dict(), "classnames": classnames,
              "reference": {"checkpoint": os.path.abspath(args.checkpoint), "epoch": epoch, "variant": args.method,
                            "trainer": VARIANTS[args.method].source}}
  path = checkpoint.export_prompts(args.out, trainable, metadata)
  count = sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(trainable))
  print(f"wrote {path} ({count:,} parameters) from {args.checkpoint} (epoch {epoch}); evaluate with\n"
        f"  python -m jaxprompt.main --config <config> --workdir <dir> --mode eval --config.eval_prompts={path} "
        + " ".join(eval_flags(settled)))
  return path


def to_reference_command(args, backbone) -> str:
  prompts = os.path.join(args.prompts, "prompts.npz") if os.path.isdir(args.prompts) else args.prompts
  trainable, metadata = checkpoint.load_prompts(prompts)
  classnames = read_classnames(args.classnames) if args.classnames else None
  variant, state = to_reference(trainable, metadata, backbone, classnames=classnames, where=prompts,
                                classnames_file=args.classnames or "the class list")
  if args.method and args.method != variant.name:
    raise ConversionError(f"{prompts} holds {variant.name} prompts, not {args.method}")
  path = write_checkpoint(os.path.join(args.out, variant.model_dir, f"model.pth.tar-{args.epoch}"), state, args.epoch)
  settings = reference_settings(variant, ml_collections.ConfigDict(metadata["method_config"]), state)
  print(f"wrote {path} ({len(state)} keys) for {variant.source}; there: --model-dir {args.out} "
        f"--load-epoch {args.epoch} --eval-only {settings}")
  return path


def main(argv: Sequence[str] | None = None) -> int:
  """Runs one command; any conversion problem exits with a one-line `error: ...`."""
  jaxprompt.flax_only_transformers()
  args = parser().parse_args(argv)
  from jaxprompt.clip import weights  # pylint: disable=g-import-not-at-top

  try:
    backbone = weights.load(args.backbone, tokenizer=args.backbone_tokenizer or None)
    command = from_reference_command if args.command == "from-reference" else to_reference_command
    command(args, backbone)
  except (ConversionError, FileNotFoundError, ValueError, KeyError) as error:
    raise SystemExit(f"error: {str(error).strip()}") from None
  return 0


if __name__ == "__main__":
  sys.exit(main())
