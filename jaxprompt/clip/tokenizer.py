"""CLIP BPE tokenisation of prompts for a list of class names.

`Tokenizer.prompts(template, names)` gives everything a prompt method needs about its text sequences: ids padded to
the context length, the EOS position of each prompt, where each class name's tokens sit inside it (LAMM replaces
them), and the longest real length (text trimming). The BPE itself is transformers' `CLIPTokenizer`, loaded from a
directory holding `vocab.json` + `merges.txt` (a hub checkpoint, a saved backbone, or the shapes world's vocabulary).

`write_vocabulary(directory, words)` writes a small word-level vocabulary in the standard CLIP format, for tests and
for the shapes world.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"


@dataclasses.dataclass(frozen=True)
class TokenizedPrompts:
  """Prompts for C classes.

  ids: (C, context) int32, [SOS] tokens [EOS] then zeros.
  eos: (C,) int32 position of EOS in each row.
  name_spans: (C, 2) int32 [start, end) of the class name's tokens in each row.
  texts: the C prompt strings.
  """

  ids: np.ndarray
  eos: np.ndarray
  name_spans: np.ndarray
  texts: tuple[str, ...]

  @property
  def max_length(self) -> int:
    """Longest real prompt length (SOS..EOS inclusive)."""
    return int(self.eos.max()) + 1

  def trimmed_length(self, multiple: int = 8) -> int:
    """Longest real length rounded up to a multiple of `multiple`, capped at the context length."""
    length = -(-self.max_length // multiple) * multiple
    return min(length, self.ids.shape[1])


class Tokenizer:
  """CLIP BPE with the context length of the backbone it belongs to."""

  def __init__(self, hf_tokenizer, context_length: int):
    self.hf = hf_tokenizer
    self.context_length = context_length
    self.sot_id = hf_tokenizer.convert_tokens_to_ids(SOT)
    self.eot_id = hf_tokenizer.convert_tokens_to_ids(EOT)

  @classmethod
  def from_directory(cls, directory: str, context_length: int) -> "Tokenizer":
    from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top

    for name in ("vocab.json", "merges.txt"):
      if not os.path.exists(os.path.join(directory, name)):
        raise FileNotFoundError(f"tokenizer file {os.path.join(directory, name)} not found")
    return cls(CLIPTokenizer.from_pretrained(directory), context_length)

  def save(self, directory: str) -> None:
    self.hf.save_pretrained(directory)

  def encode(self, text: str) -> list[int]:
    """Token ids of text, without SOS/EOS."""
    return self.hf.encode(text, add_special_tokens=False)

  def prompts(self, template: str, names: Sequence[str], *, reserve: int = 0) -> TokenizedPrompts:
    """Tokenises template.format(name) for every class name.

    reserve: extra slots the caller will insert into each prompt (CoOp context, RPO prompts); a prompt whose
      length plus `reserve` exceeds the context raises an error naming the class.
    """
    if template.count("{}") != 1:
      raise ValueError(f"template {template!r} must contain exactly one '{{}}'")
    prefix = self.encode(template.split("{}")[0])
    ids = np.zeros((len(names), self.context_length), np.int32)
    eos = np.zeros(len(names), np.int32)
    spans = np.zeros((len(names), 2), np.int32)
    texts = []
    for c, name in enumerate(names):
      text = template.format(name)
      tokens = self.encode(text)
      name_tokens = self.encode(name)
      length = len(tokens) + 2
      if length + reserve > self.context_length:
        raise ValueError(f"prompt for class {name!r} ({text!r}) needs {length} tokens plus {reserve} reserved slots, "
                         f"more than the context length {self.context_length}")
      start = 1 + len(prefix)
      if tokens[start - 1:start - 1 + len(name_tokens)] != name_tokens:
        raise ValueError(f"class name {name!r} does not tokenise to the same tokens inside {text!r}")
      ids[c, :length] = [self.sot_id] + tokens + [self.eot_id]
      eos[c] = length - 1
      spans[c] = (start, start + len(name_tokens))
      texts.append(text)
    return TokenizedPrompts(ids, eos, spans, tuple(texts))


def _byte_symbols() -> dict[int, str]:
  """CLIP's (GPT-2's) reversible byte -> printable unicode symbol table."""
  printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
      list(range(ord("®"), ord("ÿ") + 1))
  symbols = {b: chr(b) for b in printable}
  extra = 0
  for b in range(256):
    if b not in symbols:
      symbols[b] = chr(256 + extra)
      extra += 1
  return symbols


def write_vocabulary(directory: str, words: Sequence[str]) -> None:
  """Writes vocab.json + merges.txt of a CLIP-format BPE in which every word of `words` is a single token.

  The vocabulary holds all 256 byte symbols (alone and word-final), one merge chain per word, then SOS and EOS as
  the two largest ids (CLIP reads the EOS position as argmax(ids)). Unknown words still tokenise, into characters.
  """
  os.makedirs(directory, exist_ok=True)
  symbols = list(_byte_symbols().values())
  vocab = symbols + [s + "</w>" for s in symbols]
  ranks: dict[tuple[str, str], int] = {}
  known = set(vocab)
  for word in dict.fromkeys(w.lower() for w in words):
    # Add merges (at the lowest priority, so earlier words keep their tokenisation) until BPE, run with every
    # merge so far, turns this word into one token.
    pieces = _apply_merges(word, ranks)
    while len(pieces) > 1:
      ranks[(pieces[0], pieces[1])] = len(ranks)
      if pieces[0] + pieces[1] not in known:
        known.add(pieces[0] + pieces[1])
        vocab.append(pieces[0] + pieces[1])
      pieces = _apply_merges(word, ranks)
  vocab += [SOT, EOT]
  with open(os.path.join(directory, "vocab.json"), "w") as f:
    json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
  with open(os.path.join(directory, "merges.txt"), "w") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in ranks))


def _apply_merges(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
  """CLIP's BPE on one word: repeatedly merge every occurrence of the best-ranked adjacent pair."""
  pieces = list(word[:-1]) + [word[-1] + "</w>"]
  while len(pieces) > 1:
    pairs = [(ranks[pair], pair) for pair in zip(pieces, pieces[1:]) if pair in ranks]
    if not pairs:
      break
    first, second = min(pairs)[1]
    merged, i = [], 0
    while i < len(pieces):
      if i + 1 < len(pieces) and pieces[i] == first and pieces[i + 1] == second:
        merged.append(first + second)
        i += 2
      else:
        merged.append(pieces[i])
        i += 1
    pieces = merged
  return pieces
