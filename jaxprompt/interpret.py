"""Prompt interpretation as CoOp reports it: the nearest vocabulary tokens of each learned context vector.

    python -m jaxprompt.interpret --prompts runs/coop/prompts.npz [--backbone embedded] [--k 3] [--json out.json]

Each learned vector that sits where a token embedding would (the input of the text tower) is compared with every row
of the backbone's token embedding table (no positional part) by Euclidean distance, and its k nearest tokens are
listed with their distances. The vectors interpreted, by leaf name (the methods' trainable trees):

    ctx           CoOp (M, D) shared or (C, M, D) class-specific; CoCoOp and MaPLe (n, D)
    text_prompts  IVLP (depth, n, D): layer 0 only (deeper layers replace hidden states, not token embeddings);
                  RPO (K, D)
    labels        LAMM (C, M, D): each class's label tokens

at any depth of the tree (a multi-task export's per-task leaves too), when their last axis is the table's width.
Other leaves (MaPLe's `deep_text` and projections, vision prompts, MmAP factors, meta-nets) are listed as skipped.
The backbone is `--backbone`, else the one in the `config.json` beside the prompts (the run's workdir).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

import numpy as np

import jaxprompt
from jaxprompt import checkpoint, trees

INPUT_LEAVES = ("ctx", "text_prompts", "labels")
"""Leaf names whose vectors live in the token embedding space (see the module docstring)."""


def nearest_tokens(vectors: np.ndarray, table: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """The k nearest rows of `table` (V, D) to each vector (N, D) by Euclidean distance: ids (N, k), distances (N, k),
  nearest first (ties: lower id first). Candidates are ranked by the expanded form, then their distances recomputed
  directly, so an exact copy of a row is at distance 0.0."""
  vectors, table = np.asarray(vectors, np.float64), np.asarray(table, np.float64)
  k = min(k, len(table))
  squared = (vectors * vectors).sum(1)[:, None] + (table * table).sum(1)[None] - 2.0 * vectors @ table.T
  candidates = np.argsort(squared, axis=1, kind="stable")[:, :min(len(table), 4 * k + 8)]
  ids, distances = [], []
  for vector, rows in zip(vectors, candidates):
    exact = np.linalg.norm(table[rows] - vector, axis=1)
    order = np.lexsort((rows, exact))[:k]
    ids.append(rows[order])
    distances.append(exact[order])
  return np.asarray(ids), np.asarray(distances)


def context_groups(path: str, value: np.ndarray, classnames: Sequence[str]) -> tuple[list[tuple[str, np.ndarray]], str]:
  """A leaf as [(group name, vectors (M, D))] plus a note; [] when the leaf is not in the token space."""
  name = path.split("/")[-1]
  if value.ndim == 2:
    return [("shared" if name == "ctx" else "rows", value)], ""
  if value.ndim != 3:
    return [], f"shape {value.shape} is not (M, D) or (G, M, D)"
  if name == "text_prompts":
    return [("layer 0", value[0])], (f"layers 1..{len(value) - 1} replace hidden states, not token embeddings"
                                     if len(value) > 1 else "")
  names = list(classnames) if len(classnames) == len(value) else [f"class {c}" for c in range(len(value))]
  return list(zip(names, value)), ""


def interpret(trainable: dict[str, Any], table: np.ndarray, decode, k: int = 3,
              classnames: Sequence[str] = ()) -> dict[str, Any]:
  """The report of a trainable tree against a token table (V, D): {"k", "leaves": [...], "skipped": {path: why}}.

  decode: token id -> (token as in the vocabulary, readable text). Each leaf entry is {"leaf", "shape", "note",
  "groups": [{"group", "vectors": [{"index", "nearest": [{"id", "token", "text", "distance"}]}]}]}.
  """
  width = table.shape[1]
  report = {"k": int(k), "vocab_size": int(table.shape[0]), "leaves": [], "skipped": {}}
  for path, value in trees.flatten(trainable).items():
    value = np.asarray(value)
    if path.split("/")[-1] not in INPUT_LEAVES:
      report["skipped"][path] = "not in the token embedding space"
      continue
    if value.shape[-1] != width:
      report["skipped"][path] = f"last axis {value.shape[-1]} is not the token table's width {width}"
      continue
    groups, note = context_groups(path, value, classnames)
    if not groups:
      report["skipped"][path] = note
      continue
    entry = {"leaf": path, "shape": list(value.shape), "note": note, "groups": []}
    for group, vectors in groups:
      ids, distances = nearest_tokens(vectors, table, k)
      entry["groups"].append({"group": group, "vectors": [
          {"index": m, "nearest": [dict(zip(("token", "text"), decode(int(i))), id=int(i), distance=float(d))
                                   for i, d in zip(row_ids, row_distances)]}
          for m, (row_ids, row_distances) in enumerate(zip(ids, distances))]})
    report["leaves"].append(entry)
  return report


def format_report(report: dict[str, Any]) -> str:
  """The report as text: per leaf and group, one line per vector `m: word (distance) word (distance) ...`."""
  lines = []
  for entry in report["leaves"]:
    lines.append(f"{entry['leaf']} {tuple(entry['shape'])}: top-{report['k']} nearest of {report['vocab_size']} tokens"
                 + (f" ({entry['note']})" if entry["note"] else ""))
    for group in entry["groups"]:
      lines.append(f"  {group['group']}:")
      for vector in group["vectors"]:
        words = "  ".join(f"{n['text'] or n['token']!s} ({n['distance']:.4f})" for n in vector["nearest"])
        lines.append(f"    {vector['index'] + 1}: {words}")
  for path, why in report["skipped"].items():
    lines.append(f"skipped {path}: {why}")
  return "\n".join(lines) + "\n"


def backbone_of(prompts_path: str, backbone: str) -> tuple[str, str]:
  """(backbone, tokenizer) to interpret against: the argument, else the run's config.json beside the prompts."""
  if backbone:
    return backbone, ""
  config_path = os.path.join(os.path.dirname(os.path.abspath(prompts_path)), "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"no --backbone given and no {config_path} to read the run's backbone from")
  with open(config_path) as f:
    config = json.load(f)
  return config["backbone"], config.get("backbone_tokenizer", "")


def token_decoder(tokenizer):
  """id -> (vocabulary token, readable text) for a `jaxprompt.clip.tokenizer.Tokenizer`."""
  hf = tokenizer.hf

  def decode(token_id: int) -> tuple[str, str]:
    token = hf.decoder.get(token_id, f"<{token_id}>")
    return token, hf.convert_tokens_to_string([token]).strip()
  return decode


def main(argv=None) -> int:
  jaxprompt.flax_only_transformers()
  parser = argparse.ArgumentParser(prog="python -m jaxprompt.interpret", description=__doc__.split("\n\n")[0])
  parser.add_argument("--prompts", required=True, help="a prompt export (prompts.npz)")
  parser.add_argument("--backbone", default="", help="CLIP the prompts were learnt on (default: the run's config)")
  parser.add_argument("--tokenizer", default="", help="tokenizer directory when the weights have none")
  parser.add_argument("--k", type=int, default=3, help="nearest tokens per vector")
  parser.add_argument("--json", default="", help="also write the report as JSON to this file ('-': stdout only)")
  args = parser.parse_args(argv)
  if args.k < 1:
    parser.error(f"--k must be >= 1, got {args.k}")
  from jaxprompt.clip import weights  # pylint: disable=g-import-not-at-top  (loads transformers: after arg errors)

  trainable, metadata = checkpoint.load_prompts(args.prompts)
  name, tokenizer = backbone_of(args.prompts, args.backbone)
  backbone = weights.load(name, tokenizer=args.tokenizer or tokenizer or None)
  table = np.asarray(backbone.model().token_embedding_table(backbone.params))
  report = interpret(trainable, table, token_decoder(backbone.tokenizer), args.k, metadata.get("classnames", ()))
  report = {"prompts": args.prompts, "backbone": name, "method": metadata.get("method", ""), **report}
  if args.json == "-":
    print(json.dumps(report, indent=2))
    return 0
  print(format_report(report), end="")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2)
  if not report["leaves"]:
    print(f"no learned vector of {args.prompts} is in the token embedding space", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
