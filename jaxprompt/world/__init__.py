"""The shapes world: a procedural image world and a tiny CLIP pretrained on it, so every paper's setting runs on a CPU.

  generator.py  seeded Pillow renderer: 8 shapes x 8 colours x 4 styles (photo, sketch, painting, cartoon), 32 px
  captions.py   caption grammar and the pretraining distribution (held-out pairs, rare style, misaligned names)
  vocab.py      the world's CLIP BPE tokenizer files (vocab.json + merges.txt), EOS = largest id
  pretrain.py   contrastive pretraining of the tiny CLIP; writes a directory FlaxCLIPModel.from_pretrained loads
  zeroshot.py   zero-shot accuracy through the plain transformers API (for the record and tests)
  tasks.py      downstream tasks registered as data sources: world_shapes, world_styles/<style>, world_misaligned,
                world_colours
  assets/mini_clip/  the shipped weights, tokenizer and RECORD.md
"""

import os

MINI_CLIP_DIR = os.path.join(os.path.dirname(__file__), "assets", "mini_clip")
"""Directory of the shipped world CLIP: `FlaxCLIPModel.from_pretrained(MINI_CLIP_DIR)`."""
