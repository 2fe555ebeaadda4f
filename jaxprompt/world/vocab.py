"""The shapes world's tokenizer, in the standard CLIP BPE format (vocab.json + merges.txt).

CLIP's BPE works on the UTF-8 bytes of each word, each byte mapped to a printable unicode character
(`bytes_to_unicode`); the last character of a word carries the suffix "</w>". Merges (ranked pairs of pieces) are
applied lowest rank first until none applies. Our vocabulary holds:

  ids 0..255      the 256 byte characters (word-inner pieces)
  ids 256..511    the same characters with "</w>" (a one-character word, e.g. "." or "x")
  ids 512..       every intermediate and final piece of the world's words: each world word is ONE token
  id  V-2         <|startoftext|>  (SOS, second-largest id)
  id  V-1         <|endoftext|>    (EOS, the largest id: the text readout finds it as argmax(ids))

Any other word (a user's class name) still tokenizes, into byte pieces or partial words. The files load with
`transformers.CLIPTokenizer.from_pretrained(dir)`.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

SOS = "<|startoftext|>"
EOS = "<|endoftext|>"
CONTEXT_LENGTH = 32  # text positions of the world's CLIP (prompt methods insert up to ~16 learned tokens)

# Words of the world (shapes, colours, styles, sizes, positions, their synonyms), of the caption grammar, of the
# downstream tasks' class names (including deliberately never-trained words for the misaligned task), and of the
# prompt templates used by the papers (docs/methods/protocols.md, "The datasets") so that these templates stay short.
WORLD_WORDS = """
circle square triangle star cross ring diamond heart
disc block wedge spark plus hoop rhombus valentine
red orange yellow green cyan blue purple pink
photo photograph picture image sketch drawing pencil line painting oil watercolour watercolor cartoon clip art
small little tiny big large huge medium
left right top bottom middle centre center corner
on in at of the a an this is here there it its and with shows showing see look we
dax wug blicket toma fep zorp gazzer kiki bouba lorp
background textured plain white dark light bright noisy flat smooth
shape shapes colour color style domain object thing kind sort type texture
photos drawings sketches paintings cartoons
close up closeup rendering rendition art artwork icon doodle
centered satellite person doing pet flower food aircraft itap my one two
""".split()


def bytes_to_unicode() -> dict[int, str]:
  """The GPT-2/CLIP byte -> printable character table (256 entries)."""
  printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
  printable += list(range(ord("®"), ord("ÿ") + 1))
  chars = printable[:]
  extra = 0
  for byte in range(256):
    if byte not in printable:
      printable.append(byte)
      chars.append(256 + extra)
      extra += 1
  return dict(zip(printable, (chr(c) for c in chars)))


_BYTE_CHARS = bytes_to_unicode()


def _word_pieces(word: str) -> tuple[str, ...]:
  chars = [_BYTE_CHARS[b] for b in word.encode("utf-8")]
  return tuple(chars[:-1]) + (chars[-1] + "</w>",)


def _apply_merges(pieces: tuple[str, ...], ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
  """CLIP's BPE on one word: repeatedly merge the adjacent pair of lowest rank."""
  while len(pieces) > 1:
    first, second = min(zip(pieces, pieces[1:]), key=lambda pair: ranks.get(pair, float("inf")))
    if (first, second) not in ranks:
      break
    merged, i = [], 0
    while i < len(pieces):
      if i < len(pieces) - 1 and pieces[i] == first and pieces[i + 1] == second:
        merged.append(first + second)
        i += 2
      else:
        merged.append(pieces[i])
        i += 1
    pieces = tuple(merged)
  return pieces


def build_vocab(words=WORLD_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
  """Returns (vocab: token -> id, merges in rank order) such that every word in `words` is one token.

  Merges are added at the lowest priority, so a later word never changes how an earlier word tokenizes.
  """
  base = list(_BYTE_CHARS.values())
  tokens = base + [c + "</w>" for c in base]
  merges: list[tuple[str, str]] = []
  ranks: dict[tuple[str, str], int] = {}
  seen = set(tokens)
  for word in dict.fromkeys(w.lower() for w in words):
    pieces = _apply_merges(_word_pieces(word), ranks)
    while len(pieces) > 1:
      pair = (pieces[0], pieces[1])
      ranks[pair] = len(merges)
      merges.append(pair)
      if pair[0] + pair[1] not in seen:
        seen.add(pair[0] + pair[1])
        tokens.append(pair[0] + pair[1])
      pieces = _apply_merges(pieces, ranks)
  tokens += [SOS, EOS]
  return {token: i for i, token in enumerate(tokens)}, merges


def write_tokenizer(directory: str, words=WORLD_WORDS) -> dict[str, int]:
  """Writes vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json; returns the vocab."""
  vocab, merges = build_vocab(words)
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False)
  with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": CONTEXT_LENGTH, "bos_token": SOS,
            "eos_token": EOS, "unk_token": EOS, "pad_token": EOS, "do_lower_case": True}
  with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
    json.dump(config, f, indent=2)
  with open(os.path.join(directory, "special_tokens_map.json"), "w") as f:
    json.dump({"bos_token": SOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, f, indent=2)
  return vocab


class WordTokenizer:
  """Fast ids for captions made of world words and punctuation (pretraining), matching CLIPTokenizer's output.

  `encode(texts)` -> int32 (N, CONTEXT_LENGTH): [SOS] tokens [EOS], padded with EOS (like HF's CLIP pad token).
  Words outside the vocabulary raise KeyError: use CLIPTokenizer for free text.
  """

  _split = re.compile(r"[a-z]+|[^\sa-z]")

  def __init__(self, vocab: dict[str, int], context_length: int = CONTEXT_LENGTH):
    self.vocab = vocab
    self.sos, self.eos = vocab[SOS], vocab[EOS]
    self.context_length = context_length
    self._cache: dict[str, list[int]] = {}

  def ids(self, text: str) -> list[int]:
    if text not in self._cache:
      words = self._split.findall(text.lower())
      self._cache[text] = [self.sos] + [self.vocab[w + "</w>"] for w in words] + [self.eos]
    return self._cache[text]

  def encode(self, texts) -> np.ndarray:
    out = np.full((len(texts), self.context_length), self.eos, np.int32)
    for row, text in enumerate(texts):
      ids = self.ids(text)
      if len(ids) > self.context_length:
        raise ValueError(f"caption {text!r} has {len(ids)} tokens > context {self.context_length}")
      out[row, :len(ids)] = ids
    return out
