"""The pretraining distribution keeps its promises: held-out pairs absent, nonsense names unused, sketch rare."""

import collections

from jaxprompt.world import captions, generator, vocab


def _draws(n=4000):
  rng = generator.rng_for(11, 0)
  return [captions.sample_pretraining(rng) for _ in range(n)]


def test_held_out_pairs_and_nonsense_names_never_occur():
  draws = _draws()
  assert not {(a.shape, a.style) for a, _ in draws} & set(captions.HELD_OUT)
  words = {w for _, text in draws for w in text.split()}
  assert not words & set(captions.NONSENSE_NAMES.values())
  assert set(generator.SHAPES) <= words and set(generator.COLOURS) <= words


def test_style_weights_and_rare_synonyms():
  draws = _draws()
  styles = collections.Counter(a.style for a, _ in draws)
  assert styles["sketch"] < 0.6 * styles["photo"]
  synonyms = set(captions.RARE_SYNONYMS.values())
  rate = sum(any(w in synonyms for w in text.split()) for _, text in draws) / len(draws)
  assert 0.005 < rate < 0.05


def test_captions_vary_in_length_and_fit_the_context():
  words = vocab.WordTokenizer(vocab.build_vocab()[0])
  lengths = [len(words.ids(text)) for _, text in _draws(2000)]
  assert min(lengths) <= 6 and max(lengths) >= 18 and max(lengths) <= vocab.CONTEXT_LENGTH


def test_ensemble_templates():
  templates = captions.ensemble_templates()
  assert templates[0] == "a photo of a {}." and all(t.count("{}") == 1 for t in templates)
  assert len(templates) == 4 + len(generator.STYLES) * len(generator.COLOURS)
  for style in generator.STYLES:
    assert captions.style_templates(style)[0] == "a photo of a {}."
