"""CLIP BPE tokenisation of prompts for a list of class names.

`Tokenizer.prompts(template, names)` gives everything a prompt method needs about its text sequences: ids padded to
the context length, the EOS position of each prompt, and where each class name's tokens sit inside it (LAMM replaces
them). Text trimming lives with the methods (`methods.base.PromptTokens.make`).

The tokenisation is OpenAI CLIP's, step for step: `ftfy.fix_text`, HTML-unescape twice, collapse whitespace, lowercase,
split into pre-tokens with CLIP's pattern (runs of letters, single digits, runs of other non-space symbols, the two
special tokens, English contractions), then byte-level BPE (each UTF-8 byte a printable symbol, `</w>` closing a
pre-token). The vocabulary and merges come from transformers' `CLIPTokenizer` (a directory holding `vocab.json` +
`merges.txt`: a hub checkpoint, a saved backbone, or the shapes world's vocabulary), whose `bpe` merges one
pre-token; the text clean-up and the split are done here, so that the result matches the reference also where
`CLIPTokenizer` differs (it falls back to a BERT-style clean-up without ftfy, and unescapes HTML only through ftfy,
which leaves `&amp;` alone in a text holding `<`), and so that every token knows which characters it holds.

`write_vocabulary(directory, words)` writes a small word-level vocabulary in the standard CLIP format, for tests and
for the shapes world.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from typing import Sequence

import ftfy
import numpy as np
import regex

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
# CLIP's pre-tokens: the special tokens, English contractions, letter runs, single digits, other non-space runs.
PRETOKEN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                         r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
END_OF_WORD = "</w>"


@dataclasses.dataclass(frozen=True)
class TokenizedPrompts:
  """Prompts for C classes.

  ids: (C, context) int32, [SOS] tokens [EOS] then zeros.
  eos: (C,) int32 position of EOS in each row.
  name_spans: (C, 2) int32 [start, end): the positions of the tokens that hold the class name's characters:
    `start` holds the name's first character, `end - 1` its last. BPE merges only inside a pre-token (a run of
    letters, one digit, or a run of other non-space symbols), so with a space between `{}` and the template's words
    the span is exactly the name's own tokens, `ids[c, start:end] == encode(name)`. The exception is punctuation
    meeting punctuation: "kite (bird of prey)" in "a photo of a {}." ends in the pre-token `).`, which CLIP's
    vocabulary merges into one token `).</w>`; the span then ends at (includes) that token, which also carries the
    template's `.`. Likewise, when the text before `{}` ends in a symbol and the name starts with one, the span's
    first token can carry template characters. Only such a boundary token differs from `encode(name)`, and the
    span's length can differ from `len(encode(name))` by the merges at its ends.
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


def clean_text(text: str) -> str:
  """CLIP's text clean-up: ftfy, HTML entities unescaped twice, whitespace runs -> one space, stripped, lowercase."""
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return regex.sub(r"\s+", " ", text).strip().lower()


@dataclasses.dataclass(frozen=True)
class Token:
  """One BPE token of a cleaned text: its id and the UTF-8 byte range [start, end) of the cleaned text it holds."""

  id: int
  start: int
  end: int


class Tokenizer:
  """CLIP BPE with the context length of the backbone it belongs to."""

  def __init__(self, hf_tokenizer, context_length: int):
    for attribute in ("bpe", "encoder", "byte_encoder"):
      if not hasattr(hf_tokenizer, attribute):
        raise TypeError(f"Tokenizer needs transformers' CLIPTokenizer (the BPE one), got {type(hf_tokenizer).__name__} "
                        f"without .{attribute}")
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

  def tokens(self, cleaned: str) -> list[Token]:
    """BPE tokens of an already cleaned text (`clean_text`), each with the byte range it holds."""
    tokens = []
    for match in PRETOKEN.finditer(cleaned):
      offset = len(cleaned[:match.start()].encode("utf-8"))
      word = match.group()
      if word in (SOT, EOT):
        tokens.append(Token(self.hf.encoder[word], offset, offset + len(word)))
        continue
      symbols = "".join(self.hf.byte_encoder[b] for b in word.encode("utf-8"))
      for piece in self.hf.bpe(symbols).split(" "):
        size = len(piece) - (len(END_OF_WORD) if piece.endswith(END_OF_WORD) else 0)  # one symbol per byte
        if piece not in self.hf.encoder:
          raise ValueError(f"BPE piece {piece!r} of {cleaned!r} is not in the vocabulary (vocab.json and merges.txt "
                           "do not belong together)")
        tokens.append(Token(self.hf.encoder[piece], offset, offset + size))
        offset += size
    return tokens

  def encode(self, text: str) -> list[int]:
    """Token ids of text, without SOS/EOS."""
    return [token.id for token in self.tokens(clean_text(text))]

  def prompts(self, template: str, names: Sequence[str], *, reserve: int = 0) -> TokenizedPrompts:
    """Tokenises template.format(name) for every class name and locates the name's tokens (see TokenizedPrompts).

    reserve: extra slots the caller will insert into each prompt (CoOp context, RPO prompts); a prompt whose
      length plus `reserve` exceeds the context raises an error naming the class.
    """
    if template.count("{}") != 1:
      raise ValueError(f"template {template!r} must contain exactly one '{{}}'")
    before = template.split("{}")[0]
    ids = np.zeros((len(names), self.context_length), np.int32)
    eos = np.zeros(len(names), np.int32)
    spans = np.zeros((len(names), 2), np.int32)
    texts = []
    for c, name in enumerate(names):
      text = template.format(name)
      cleaned = clean_text(text)
      tokens = self.tokens(cleaned)
      length = len(tokens) + 2
      if length + reserve > self.context_length:
        raise ValueError(f"prompt for class {name!r} ({text!r}) needs {length} tokens plus {reserve} reserved slots, "
                         f"more than the context length {self.context_length}")
      ids[c, :length] = [self.sot_id] + [token.id for token in tokens] + [self.eot_id]
      eos[c] = length - 1
      spans[c] = self._name_span(cleaned, before, name, tokens)
      texts.append(text)
    return TokenizedPrompts(ids, eos, spans, tuple(texts))

  @staticmethod
  def _name_span(full: str, before: str, name: str, tokens: list[Token]) -> tuple[int, int]:
    """[start, end) row positions (SOS at 0) of the tokens of `full` (the cleaned prompt) holding `name`'s bytes.

    The name occupies the bytes from the end of clean(before) to the end of clean(before + name) of `full`; this
    holds when the clean-up acts on the name's characters alone, which is checked.
    """
    lead, head = clean_text(before), clean_text(before + name)
    if not (full.startswith(head) and head.startswith(lead)) or len(head) == len(lead):
      raise ValueError(f"class name {name!r} cannot be located in its cleaned prompt {full!r} (empty name, or text "
                       "clean-up joins it with the template)")
    first, last = len(lead.encode("utf-8")), len(head.encode("utf-8"))
    inside = [i for i, token in enumerate(tokens) if token.end > first and token.start < last]
    return 1 + inside[0], 2 + inside[-1]


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
