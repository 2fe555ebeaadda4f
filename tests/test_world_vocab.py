"""The world's tokenizer files load with transformers.CLIPTokenizer and tokenize like CLIP's BPE."""

import numpy as np
import pytest
import transformers

from jaxprompt.world import captions, generator, tasks, vocab


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  directory = tmp_path_factory.mktemp("world_tokenizer")
  vocab.write_tokenizer(str(directory))
  return transformers.CLIPTokenizer.from_pretrained(str(directory))


def test_special_tokens_are_the_largest_ids(tokenizer):
  size = len(tokenizer.get_vocab())
  assert tokenizer.eos_token_id == size - 1
  assert tokenizer.bos_token_id == size - 2
  assert tokenizer.pad_token_id == tokenizer.eos_token_id
  ids = tokenizer("a sketch of a red star.")["input_ids"]
  assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
  assert int(np.argmax(ids)) == len(ids) - 1  # the text readout's EOS = argmax(ids)


def test_every_world_word_is_one_token(tokenizer):
  for word in vocab.WORLD_WORDS:
    assert len(tokenizer(word)["input_ids"]) == 3, word


def test_captions_round_trip_and_match_the_fast_word_tokenizer(tokenizer):
  words = vocab.WordTokenizer(tokenizer.get_vocab())
  rng = generator.rng_for(0, 1)
  texts = [captions.sample_pretraining(rng)[1] for _ in range(200)]
  texts += [t.format("star") for t in captions.ensemble_templates()] + ["X X X X heart.", "a photo of a dax."]
  for text in texts:
    ids = tokenizer(text)["input_ids"]
    assert ids == words.ids(text), text
    assert len(ids) <= vocab.CONTEXT_LENGTH
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    assert decoded.replace(" ", "") == text.lower().replace(" ", "")
  encoded = words.encode(texts[:3])
  assert encoded.shape == (3, vocab.CONTEXT_LENGTH) and (encoded[:, -1] == tokenizer.eos_token_id).all()


def test_unknown_words_split_into_pieces_not_unknown(tokenizer):
  ids = tokenizer("a photo of a Annual Crop Land, a type of pet.")["input_ids"]
  assert tokenizer.unk_token_id not in ids[1:-1]
  assert len(ids) > 12
  assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "aphotoofaannualcropland,atypeofpet."


def test_task_class_names_are_single_tokens(tokenizer):
  # LAMM's label length M = min BPE length of a name: one token each keeps M = 1 for the world's tasks.
  names = list(generator.SHAPES) + list(generator.COLOURS)
  names += [n for table in tasks.MISALIGNED_NAMES.values() for n in table.values()]
  for name in names:
    assert len(tokenizer(name)["input_ids"]) == 3, name


def test_word_tokenizer_rejects_long_captions():
  words = vocab.WordTokenizer(vocab.build_vocab()[0])
  with pytest.raises(ValueError, match="tokens"):
    words.encode([" ".join(["star"] * 40)])
