"""`python -m jaxprompt.bench`: step time, compile time, FLOP/s and every exact fast path against its plain path.

  benchmark.py  the benchmark: methods at ViT-B/16 shapes, fast/plain pairs timed alternately, JSON + table
  parts.py      what it is built from: backbones with random weights, class lists, timing and FLOP helpers
"""
