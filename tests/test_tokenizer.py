"""CLIP tokenisation: ids equal the reference algorithm (unicode included), and every real class name of the 11 CoOp
datasets tokenises with a correct name span under its dataset's templates.

The reference is OpenAI CLIP's simple_tokenizer, re-derived below from its definition (ftfy, HTML unescape twice,
whitespace clean-up, lowercase, CLIP's pre-token pattern, byte-level BPE with `</w>`), independently of
`jaxprompt.clip.tokenizer` and of transformers. The real 49408-token vocabulary is not available offline, so the test
trains a BPE vocabulary in the real format (256 byte symbols, the same with `</w>`, one token per merge, SOS, EOS)
over the prompts themselves, seeded with the punctuation merges that make real names fail ( `).` `),` `?,` `?.` ).

tests/data/classnames/<dataset>.txt: one raw class name per line, as CoOp reads them (ImageNet: CoOp's classnames.txt,
i.e. CLIP's cleaned names; Flowers102: cat_to_name.json, trailing spaces kept; the other nine: the class names of
CoOp's split_zhou_*.json files and FGVC's variants.txt). Prompts use them with `_` -> space, as the methods do.
"""

import collections
import heapq
import html
import json
import os
import re

import ftfy
import numpy as np
import pytest
import regex

from jaxprompt.clip.tokenizer import Tokenizer, clean_text, write_vocabulary
from jaxprompt.data import coop_datasets
from jaxprompt.methods.base import prompt_names
from jaxprompt.methods.prompting import POSITIONS, placeholder_template

DATA = os.path.join(os.path.dirname(__file__), "data", "classnames")
DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
            "sun397", "dtd", "eurosat", "ucf101")
FGVC_TEMPLATE = "a photo of a {}, a type of aircraft."  # written inline in coop_datasets.build_fgvc_aircraft
METHOD_TEMPLATES = ["a photo of a {}."] + [placeholder_template(4, position) for position in POSITIONS]
UNICODE_TEXTS = [
    "“Curly” quotes and it’s",           # typographic quotes -> ASCII
    "ﬁsh ﬂower ﬀ",                        # ligatures -> letters
    "ｄｏｇ　ＣＡＴ １２",                    # full-width letters, digits and space
    "fish &amp; chips",                    # an HTML entity
    "a < b &amp; c &amp;amp; d",           # ftfy leaves entities alone next to '<'; CLIP unescapes twice anyway
    "猫と犬, 日本語の文",                    # CJK: byte pieces
    "cafÃ© crème brûlée",                 # mojibake repaired, accents kept
    "  tabs\tand\n\nnewlines  ",
    "naïve café Ǆ İstanbul",
]
PUNCTUATION_MERGES = [(")", ".</w>"), (")", ",</w>"), ("?", ",</w>"), ("?", ".</w>")]


def read_classnames(dataset: str) -> list[str]:
  with open(os.path.join(DATA, dataset + ".txt"), encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f]


def dataset_templates(dataset: str) -> list[str]:
  if dataset == "imagenet":
    return [coop_datasets.PHOTO]
  if dataset == "fgvc_aircraft":
    return [FGVC_TEMPLATE]
  return list(coop_datasets.SPLIT_FILE_DATASETS[dataset][3])


# --- the reference algorithm ------------------------------------------------------------------------------------------
def ref_byte_symbols() -> dict[int, str]:
  """Bytes that print stand for themselves; the other 68 get the code points 256.. in byte order."""
  keep = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
  rest = [b for b in range(256) if b not in keep]
  return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(rest)}}


REF_SYMBOLS = ref_byte_symbols()
REF_PATTERN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                            r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)


def ref_clean(text: str) -> str:
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return regex.sub(r"\s+", " ", text).strip().lower()


def ref_bpe(word: str, ranks: dict) -> list[str]:
  """Merge the lowest-ranked adjacent pair everywhere, left to right, until no ranked pair is left."""
  symbols = [REF_SYMBOLS[b] for b in word.encode("utf-8")]
  parts = symbols[:-1] + [symbols[-1] + "</w>"]
  while True:
    ranked = [(ranks[pair], pair) for pair in zip(parts, parts[1:]) if pair in ranks]
    if not ranked:
      return parts
    first, second = min(ranked)[1]
    merged, i = [], 0
    while i < len(parts):
      if i + 1 < len(parts) and (parts[i], parts[i + 1]) == (first, second):
        merged.append(first + second)
        i += 2
      else:
        merged.append(parts[i])
        i += 1
    parts = merged


def ref_pieces(text: str, ranks: dict) -> list[str]:
  return [piece for word in REF_PATTERN.findall(ref_clean(text)) for piece in ref_bpe(word, ranks)]


def piece_bytes(piece: str) -> bytes:
  decode = {s: b for b, s in REF_SYMBOLS.items()}
  return bytes(decode[s] for s in piece.removesuffix("</w>"))


# --- a real-format vocabulary trained over the prompts ----------------------------------------------------------------
def train_merges(words: collections.Counter, num_merges: int, seed: list) -> list[tuple[str, str]]:
  """Classic BPE training (most frequent adjacent pair first, seen twice at least) after the `seed` merges."""
  pieces = [ref_bpe(w, {pair: i for i, pair in enumerate(seed)}) for w in words]
  freq = list(words.values())
  counts, where = collections.Counter(), collections.defaultdict(set)
  for i, parts in enumerate(pieces):
    for pair in zip(parts, parts[1:]):
      counts[pair] += freq[i]
      where[pair].add(i)
  queue = [(-n, pair) for pair, n in counts.items()]  # lazy max-heap: stale entries are skipped when popped
  heapq.heapify(queue)
  merges, made = list(seed), {a + b for a, b in seed}
  while len(merges) < num_merges and queue:
    n, best = heapq.heappop(queue)
    if -n != counts[best] or -n < 2 or best[0] + best[1] in made:
      continue
    merges.append(best)
    made.add(best[0] + best[1])
    changed = set()
    for i in list(where[best]):
      old = pieces[i]
      for pair in zip(old, old[1:]):
        counts[pair] -= freq[i]
        changed.add(pair)
      new, j = [], 0
      while j < len(old):
        if j + 1 < len(old) and (old[j], old[j + 1]) == best:
          new.append(old[j] + old[j + 1])
          j += 2
        else:
          new.append(old[j])
          j += 1
      pieces[i] = new
      for pair in zip(new, new[1:]):
        counts[pair] += freq[i]
        where[pair].add(i)
        changed.add(pair)
    for pair in changed:
      heapq.heappush(queue, (-counts[pair], pair))
  return merges


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
  """(Tokenizer with context 77, merge ranks) of a CLIP-format vocabulary trained over every prompt tested here."""
  texts = list(UNICODE_TEXTS)
  for dataset in DATASETS:
    for template in dataset_templates(dataset) + METHOD_TEMPLATES:
      texts += [template.format(name) for name in prompt_names(read_classnames(dataset))]
  words = collections.Counter(w for text in texts for w in REF_PATTERN.findall(ref_clean(text)))
  merges = train_merges(words, 2000, PUNCTUATION_MERGES)
  symbols = sorted(REF_SYMBOLS.values())  # CLIP's order: printable bytes, then the others
  vocab = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
  assert len(set(vocab)) == len(vocab)
  directory = tmp_path_factory.mktemp("clip_bpe")
  with open(directory / "vocab.json", "w", encoding="utf-8") as f:
    json.dump({token: i for i, token in enumerate(vocab)}, f, ensure_ascii=False)
  with open(directory / "merges.txt", "w", encoding="utf-8") as f:
    f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
  return Tokenizer.from_directory(str(directory), 77), {pair: i for i, pair in enumerate(merges)}


def ref_ids(tokenizer, text, ranks):
  return [tokenizer.hf.encoder[piece] for piece in ref_pieces(text, ranks)]


# --- tests ------------------------------------------------------------------------------------------------------------
def test_vocabulary_is_clip_format(bpe):
  tokenizer, ranks = bpe
  vocab = tokenizer.hf.encoder
  assert vocab["!"] == 0 and vocab["!</w>"] == 256 and len(vocab) == 512 + len(ranks) + 2
  assert (tokenizer.sot_id, tokenizer.eot_id) == (len(vocab) - 2, len(vocab) - 1)  # EOS = argmax(ids)
  assert len(ranks) > 1500  # a real subword vocabulary, not one token per word


def test_encode_matches_reference_on_unicode(bpe):
  tokenizer, ranks = bpe
  for text in UNICODE_TEXTS:
    assert tokenizer.encode(text) == ref_ids(tokenizer, text, ranks), text
  # What the clean-up must do. transformers' CLIPTokenizer gets every one of these (and the CJK text) wrong without
  # ftfy, and the '<' one even with it.
  same = [("“dog’s” toy", "\"dog's\" toy"), ("ﬁsh ﬂower", "fish flower"), ("ｄｏｇ　ＣＡＴ", "dog cat"),
          ("fish &amp; chips", "fish & chips"), ("a < b &amp; c", "a < b & c"), ("x &amp;amp; y", "x & y"),
          ("  Tabs\tAND\n\nnewlines ", "tabs and newlines")]
  for text, plain in same:
    assert tokenizer.encode(text) == tokenizer.encode(plain), text
  assert len(tokenizer.encode("猫")) == 3  # three UTF-8 bytes, no merge trained for them alone


def test_tokens_hold_their_bytes(bpe):
  tokenizer, _ = bpe
  decode = {i: piece_bytes(piece) for piece, i in tokenizer.hf.encoder.items()}
  for text in UNICODE_TEXTS + ["a photo of a kite (bird of prey).", "2012 Ram C/V Cargo Van Minivan"]:
    cleaned = clean_text(text).encode("utf-8")
    tokens = tokenizer.tokens(clean_text(text))
    for token in tokens:
      assert cleaned[token.start:token.end] == decode[token.id], (text, token)
    assert b"".join(cleaned[t.start:t.end] for t in tokens) == cleaned.replace(b" ", b"")


def expected_span(text: str, before: str, name: str, ranks: dict) -> tuple[int, int]:
  """The span re-derived in space-free byte coordinates: the reference pieces that overlap the name's bytes."""
  sizes = [len(piece_bytes(p)) for p in ref_pieces(text, ranks)]
  first = len(ref_clean(before).replace(" ", "").encode("utf-8"))
  last = first + len(ref_clean(name).replace(" ", "").encode("utf-8"))
  ends = np.cumsum(sizes)
  inside = [i for i, end in enumerate(ends) if end > first and end - sizes[i] < last]
  return 1 + inside[0], 2 + inside[-1]


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_class_name_gets_its_span(bpe, dataset):
  tokenizer, ranks = bpe
  raw = read_classnames(dataset)
  assert len(raw) == {"imagenet": 1000, "caltech101": 100, "oxford_pets": 37, "stanford_cars": 196,
                      "oxford_flowers": 102, "food101": 101, "fgvc_aircraft": 100, "sun397": 397, "dtd": 47,
                      "eurosat": 10, "ucf101": 101}[dataset]
  names = prompt_names(raw)
  name_ids = [tokenizer.encode(name) for name in names]
  lamm_m = min(len(ids) for ids in name_ids)
  merged = set()
  for template in dataset_templates(dataset) + METHOD_TEMPLATES:
    before, after = template.split("{}")
    prompts = tokenizer.prompts(template, names)
    for c, name in enumerate(names):
      text = template.format(name)
      ids, eos, (start, end) = prompts.ids[c], prompts.eos[c], prompts.name_spans[c]
      assert ids[0] == tokenizer.sot_id and ids[eos] == tokenizer.eot_id and not ids[eos + 1:].any()
      assert list(ids[1:eos]) == ref_ids(tokenizer, text, ranks), text
      assert (start, end) == expected_span(text, before, name, ranks), text
      assert start + lamm_m <= end  # LAMM's label slots stay inside the name
      # Only a name ending in punctuation right before the template's punctuation can change tokens, and only its last.
      joins = not name[-1].isalnum() and not name[-1].isspace() and after[:1] in (".", ",")
      if list(ids[start:end]) != name_ids[c]:
        merged.add((name, template))
        assert list(ids[start:end - 1]) == name_ids[c][:end - 1 - start], text
      assert ((name, template) in merged) == joins, text  # every such pair has a merge in this vocabulary
  if dataset == "imagenet":
    ending = [n for n in names if n.endswith(")")]
    assert len(ending) == 6 and "kite (bird of prey)" in ending
    assert merged == {(n, t) for n in ending for t in ("a photo of a {}.", "X X X X {}.")}
    kite = tokenizer.prompts(coop_datasets.PHOTO, ["kite (bird of prey)"])
    start, end = kite.name_spans[0]
    pieces = tokenizer.hf.convert_ids_to_tokens(kite.ids[0, start:end].tolist())
    assert pieces[-1] == ").</w>" and "".join(p.removesuffix("</w>") for p in pieces) == "kite(birdofprey)."
    assert kite.eos[0] == end  # the merged token is the prompt's last: the template's "." lives inside it
  if dataset == "oxford_flowers":
    assert merged == {("pink-yellow dahlia?", t) for t in ("a photo of a {}, a type of flower.", "a photo of a {}.",
                                                           "X X X X {}.")}
  if dataset not in ("imagenet", "oxford_flowers"):
    assert not merged


def test_span_covers_tokens_merged_at_both_ends(tmp_path):
  write_vocabulary(str(tmp_path), ["a", "photo", "of", "dog", "((", "))."])
  tokenizer = Tokenizer.from_directory(str(tmp_path), context_length=16)
  prompts = tokenizer.prompts("a photo of a ({}).", ["(dog)", "dog"])
  # "a photo of a ((dog))." -> a photo of a (( dog )). : the name's brackets share tokens with the template's.
  assert tokenizer.hf.convert_ids_to_tokens(prompts.ids[0, 5:8].tolist()) == ["((</w>", "dog</w>", ")).</w>"]
  np.testing.assert_array_equal(prompts.name_spans, [[5, 8], [6, 7]])
  np.testing.assert_array_equal(prompts.eos, [8, 9])  # "(dog)." -> ( dog ) .


def test_overlong_prompt_names_the_class(bpe):
  tokenizer, _ = bpe
  names = prompt_names(read_classnames("stanford_cars"))
  lengths = [len(tokenizer.encode(coop_datasets.PHOTO.format(n))) + 2 for n in names]
  longest = names[int(np.argmax(lengths))]
  fits = Tokenizer(tokenizer.hf, max(lengths))
  assert fits.prompts(coop_datasets.PHOTO, names).max_length == max(lengths)
  with pytest.raises(ValueError, match=re.escape(repr(longest))):
    fits.prompts(coop_datasets.PHOTO, names, reserve=1)
  with pytest.raises(ValueError, match=re.escape(repr(longest))):
    Tokenizer(tokenizer.hf, max(lengths) - 1).prompts(coop_datasets.PHOTO, names)


def test_name_that_cannot_be_located_is_named(bpe):
  tokenizer, _ = bpe
  with pytest.raises(ValueError, match="class name '  '"):
    tokenizer.prompts("a photo of a {}.", ["dog", "  "])
