"""The benchmark on a tiny random backbone: report structure and the exactness checks of the fast paths (no timing
assertions)."""

import json

import numpy as np
import pytest

from jaxprompt.bench import benchmark as bench
from jaxprompt.bench import parts as core
from jaxprompt.bench import shared_prefix as prefix_bench

CLASSES = ["accordion", "car side", "ceiling fan", "ant", "electric guitar", "yin yang"]  # unequal name lengths
ZEROSHOT_CLASSES = 120  # past the 100 Caltech101 names (suffixed "v1" names): long enough that the prefix pays


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  backbone = core.make_backbone(CLASSES, str(tmp_path_factory.mktemp("bench_vocab")), layers=1, tiny=True,
                                extra_words=prefix_bench.vocabulary_words(ZEROSHOT_CLASSES))
  return bench.run_benchmark(backbone, CLASSES, method_names=["coop", "rpo"], batch=2, repeats=1, layers=1,
                             chunk=4, matmul_n=256, log=lambda msg: None,
                             paths=[p for p in bench.FAST_PATHS if p != "bfloat16"],  # bfloat16: not exact, slow
                             shared_prefix_methods=["coop", "cocoop"], zeroshot_classes=ZEROSHOT_CLASSES)


def test_class_list_is_caltech101_and_repeats():
  assert len(core.CALTECH101) == 100 and core.CALTECH101[0] == "accordion" and core.CALTECH101[-1] == "yin yang"
  names = core.class_list(205)
  assert len(names) == 205 and len(set(names)) == 205 and names[100] == "accordion v1"


def test_vocabulary_and_vit_b16_shapes(tmp_path):
  backbone = core.make_backbone(CLASSES, str(tmp_path), layers=1, tiny=True)
  tok = backbone.tokenizer
  assert tok.eot_id == backbone.config.text_config.vocab_size - 1  # EOS is the largest id
  assert len(tok.encode("a photo of a ceiling fan.")) == 7  # every word is one token
  config = core.vit_b16_config(vocab_size=49408)
  shapes = core.weights.flatten(core.weights.expected_shapes(config))
  assert sum(int(np.prod(s)) for s in shapes.values()) == 149_620_737  # docs/methods/clip.md


def test_report_structure(report):
  assert set(report) >= {"machine", "matmul_peak", "settings", "backbone", "methods", "fast_paths"}
  assert report["machine"]["backend"] and report["machine"]["jax"]
  assert report["matmul_peak"]["flops_per_s"] > 0
  assert set(report["methods"]) == {"coop", "rpo"}
  for r in report["methods"].values():
    for key in ("step_s", "images_per_s", "compile_s", "forward_s", "step_over_forward", "trainable_params"):
      assert r[key] > 0, key
    assert "peak_bytes" in r and "step_flops" in r
  names = [r["name"] for r in report["fast_paths"]]
  assert names == ["trim_text/text_tower", "trim_text/train_step", "no_backward", "cached_text/train_step",
                   "rpo_fast/train_step", "rpo_reference/train_step", "text_chunk=4/train_step",
                   "shared_prefix/coop", "shared_prefix/cocoop", "shared_prefix/zeroshot_encoding"]
  json.dumps(report, default=bench._json_default)  # serialisable
  text = bench.format_report(report)
  assert "| coop |" in text and "rpo_fast/train_step" in text and "peak mem" in text


def test_shared_prefix_rows(report):
  rows = {r["name"]: r for r in report["fast_paths"] if r["name"].startswith("shared_prefix")}
  coop = rows["shared_prefix/coop"]
  assert coop["target_speedup"] == 2.5 and "P=17 shared" in coop["detail"]  # [SOS] + 16 context tokens
  assert "batch 1" in rows["shared_prefix/cocoop"]["detail"]  # CoCoOp as in the paper
  assert f"{ZEROSHOT_CLASSES} class names" in rows["shared_prefix/zeroshot_encoding"]["detail"]
  for r in rows.values():
    assert r["fast_flops"] < r["plain_flops"], r["name"]  # XLA counts less work on the shared-prefix side


def test_exact_fast_paths_give_equal_logits(report):
  exact = [r for r in report["fast_paths"] if r["exact"] and r["passed"] is not None]
  assert len(exact) == 9
  for r in exact:
    assert r["passed"], (r["name"], r["max_abs_diff"], r["tolerance"])
    assert r["speedup"] > 0
  assert report["all_exact_checks_passed"]


def test_cli_arguments():
  args = bench.parse_args(["--quick", "--methods", "coop"])
  assert (args.layers, args.classes, args.repeats, args.methods) == (1, 25, 2, "coop")
