"""Benchmark of the prompt methods at ViT-B/16 shapes (random weights), and of each exact fast path.

    python -m jaxprompt.bench --methods coop,lamm,maple,rpo,vpt,mmap --batch 4 --classes 100 --layers 12 \
        --repeats 5 --json bench.json
    python -m jaxprompt.bench --quick          # 1 layer, 25 classes, 2 repeats, chunks of 10: a smoke run

Per method: the trainer's jitted train step (`train.make_train_step`, SGD) timed as the median of `--repeats` calls
after compilation (each blocked on), images/s, compile time, XLA's FLOP count of the step and the achieved FLOP/s
against this machine's measured float32 matmul rate, compiled temporary memory, the backend's peak memory ("n/a" on
CPU, which reports none), and a forward-only (logits) timing. Then every fast path against its plain computation in
the same run, with the speed-up and the max |logit difference| (checked against `--tolerance` for the exact ones):

  trim_text    text sequences cut to the longest real prompt: the text tower alone on the class list, and a CoOp step
  no_backward  CoOp / LAMM steps against their forward-only cost (no backward through the image tower)
  cached_text  VPT's class features computed once, against re-encoding the class prompts at every step
  rpo_fast     RPO's read-only cached path (`rpo.fast`) against the masked full-sequence path (both trimmed)
  rpo_reference  RPO's default (read-only + trimming) against the reference's computation: masked, all 77 tokens
  text_chunk   classes encoded in chunks of `--chunk` (lax.map) against all at once: time and compiled memory
  bfloat16     bfloat16 compute against float32 (difference reported, not expected equal)
  shared_prefix  `method.shared_prefix` on against off: CoOp, CoOp+LAMM, CoCoOp (batch 1), MaPLe, MmAP, IVLP train
               steps and zero-shot encoding of 1000 class names (`bench/shared_prefix.py`; XLA FLOPs of both)

trim_text compares both sides with `method.shared_prefix` off, so it measures trimming alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Any, Sequence

import jax
import numpy as np

import jaxprompt
from jaxprompt.bench import parts as core
from jaxprompt.bench import shared_prefix as prefix_bench
from jaxprompt.clip.model import cosine_logits
from jaxprompt.methods.base import PromptTokens, cross_entropy, accuracy
from jaxprompt.methods.prompting import PromptedMethod, text_params

ALL_METHODS = ("coop", "lamm", "maple", "rpo", "vpt", "mmap")
FAST_PATHS = ("trim_text", "no_backward", "cached_text", "rpo_fast", "rpo_reference", "text_chunk", "bfloat16",
              "shared_prefix")
TARGETS = {"rpo_fast": 3.0, "rpo_reference": 3.0, "trim_text/text_tower": 2.0}


class RecomputedText:
  """A PromptedMethod whose cached class features (VPT) are recomputed from its prompts at every call (plain path)."""

  def __init__(self, method: PromptedMethod):
    self.method = method

  def init(self, rng):
    return self.method.init(rng)

  def logits(self, trainable, frozen, images):
    m = self.method
    text = PromptedMethod.text_embedding(m, trainable, frozen)
    return cosine_logits(m.clip.logit_scale(frozen), m.image_embedding(trainable, frozen, images), text)

  def loss(self, trainable, frozen, images, labels):
    logits = self.logits(trainable, frozen, images)
    return cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}


# --- the measurements -------------------------------------------------------------------------------------------------
def bench_method(method, frozen, images, labels, repeats: int, peak_flops: float, steps: dict | None = None
                 ) -> dict[str, Any]:
  """Train step and forward-only timing of one method (interleaved). `steps`: receives the prepared step by name."""
  step = core.prepare_train_step(method, frozen, images, labels)
  forward = core.prepare_logits(method.logits, method.init(jax.random.key(0)), frozen, images)
  step_t, forward_t = core.measure([step, forward], repeats)
  if steps is not None:
    steps[method.name] = step
  flops_per_s = step_t.flops / step_t.median_s if step_t.flops else None
  return {"method": method.name, "trainable_params": method.num_trainable(),
          "step_s": step_t.median_s, "images_per_s": images.shape[0] / step_t.median_s, "compile_s": step_t.compile_s,
          "step_flops": step_t.flops, "flops_per_s": flops_per_s,
          "fraction_of_peak": flops_per_s / peak_flops if flops_per_s else None,
          "temp_bytes": step_t.temp_bytes, "peak_bytes": step_t.peak_bytes,
          "forward_s": forward_t.median_s, "forward_compile_s": forward_t.compile_s, "forward_flops": forward_t.flops,
          "step_over_forward": step_t.median_s / forward_t.median_s, "step_times_s": step_t.times_s}


def _compare_steps(name: str, steps: tuple, forwards: tuple, repeats: int, **kw) -> dict[str, Any]:
  """steps / forwards: (fast, plain) prepared train steps and logits. Times the steps (and, for the forward-only
  speed-up, the logits: at most 3 repeats) interleaved; compares the logits."""
  fast, plain = core.measure(steps, repeats)
  fast_fwd, plain_fwd = core.measure(forwards, min(repeats, 3))
  return core.compare(name, fast, plain, forwards[0].out, forwards[1].out,
                      forward_speedup=plain_fwd.median_s / fast_fwd.median_s, **kw)


def bench_fast_paths(backbone, frozen, classnames, images, labels, *, layers: int, repeats: int, dtype: str,
                     chunk: int, tolerance: float, paths: Sequence[str], main: dict[str, Any],
                     steps: dict[str, core.Prepared], step_method: str = "coop",
                     shared_prefix_methods: Sequence[str] = prefix_bench.METHODS,
                     zeroshot_classes: int = prefix_bench.ZEROSHOT_CLASSES) -> list[dict[str, Any]]:
  """Each fast path against its plain computation (see the module docstring), timed in this same run.

  main / steps: bench_method results and prepared train steps by method name, reused where the configuration is
  the same (`dtype`, trimmed, unchunked)."""
  results = []
  build = lambda name, **common: core.build_method(name, backbone, classnames, layers, **{"dtype": dtype, **common})
  step_of = lambda method: core.prepare_train_step(method, frozen, images, labels)
  logits_of = lambda fn, trainable: core.prepare_logits(fn, trainable, frozen, images)
  coop = build(step_method)
  trainable = coop.init(jax.random.key(0))
  prepared = {}

  def coop_prepared():
    """The default step_method's (train step, logits), prepared on first use."""
    if not prepared:
      prepared["step"] = steps.get(step_method) or step_of(coop)
      prepared["logits"] = logits_of(coop.logits, trainable)
    return prepared["step"], prepared["logits"]

  if "trim_text" in paths:
    clip = coop.clip
    tokenized = backbone.tokenizer.prompts("a photo of a {}.", classnames)
    encode = jax.jit(lambda params, ids, eos: clip.text_features(params, ids, eos))
    trimmed = PromptTokens.make(tokenized, trim=True)
    towers = [core.prepare(encode, (text_params(frozen), tokens.ids, tokens.eos))
              for tokens in (trimmed, PromptTokens.make(tokenized, trim=False))]
    fast, plain = core.measure(towers, repeats)
    # Unscaled features (|f| ~ 1, logits are 100 x cosines): the tolerance divided by the logit scale.
    results.append(core.compare("trim_text/text_tower", fast, plain, towers[0].out, towers[1].out,
                                tolerance=tolerance / 100.0, target=TARGETS["trim_text/text_tower"],
                                method="text tower", compares="features",
                                detail=f"{len(classnames)} classes, length {trimmed.ids.shape[1]} vs "
                                       f"{tokenized.ids.shape[1]} (longest prompt {tokenized.max_length})"))
    trimmed, untrimmed = build(step_method, shared_prefix=False), build(step_method, trim_text=False,
                                                                      shared_prefix=False)
    results.append(_compare_steps("trim_text/train_step", (step_of(trimmed), step_of(untrimmed)),
                                  (logits_of(trimmed.logits, trainable), logits_of(untrimmed.logits, trainable)),
                                  repeats,
                                  tolerance=tolerance, method=step_method, compares="logits"))

  if "no_backward" in paths:
    for name in ("coop", "lamm"):
      if name in main:
        r = main[name]
        results.append({"name": "no_backward", "method": name, "fast_s": r["step_s"], "plain_s": r["forward_s"],
                        "speedup": None, "ratio_step_over_forward": r["step_over_forward"], "exact": True,
                        "passed": None, "max_abs_diff": None, "tolerance": None, "target_speedup": None,
                        "target_met": None, "compares": "train step vs forward-only logits",
                        "detail": "image features under stop_gradient: no image-tower backward; the text tower "
                                  "runs backward (prompts at its input)"})

  if "cached_text" in paths:
    vpt = build("vpt")
    recomputed = RecomputedText(vpt)
    vpt_trainable = vpt.init(jax.random.key(0))
    results.append(_compare_steps("cached_text/train_step", (steps.get("vpt") or step_of(vpt), step_of(recomputed)),
                                  (logits_of(vpt.logits, vpt_trainable), logits_of(recomputed.logits, vpt_trainable)),
                                  repeats, tolerance=tolerance, method="vpt", compares="logits",
                                  detail="class features cached vs re-encoded every step"))

  if "rpo_fast" in paths:
    rpo = build("rpo")
    plain_rpo = build("rpo", options={"rpo.fast": False})
    rpo_trainable = rpo.init(jax.random.key(0))
    results.append(_compare_steps(
        "rpo_fast/train_step", (steps.get("rpo") or step_of(rpo), step_of(plain_rpo)),
        (logits_of(rpo.logits, rpo_trainable), logits_of(plain_rpo.logits, rpo_trainable)), repeats,
        tolerance=tolerance, target=TARGETS["rpo_fast"], method="rpo", compares="logits",
        detail=f"K={rpo.k}, batch {images.shape[0]}, {len(classnames)} classes"))

  if "rpo_reference" in paths:
    rpo = build("rpo")
    reference = build("rpo", trim_text=False, options={"rpo.fast": False})
    rpo_trainable = rpo.init(jax.random.key(0))
    results.append(_compare_steps(
        "rpo_reference/train_step", (steps.get("rpo") or step_of(rpo), step_of(reference)),
        (logits_of(rpo.logits, rpo_trainable), logits_of(reference.logits, rpo_trainable)), repeats,
        tolerance=tolerance, target=TARGETS["rpo_reference"], method="rpo", compares="logits",
        detail=f"masked, untrimmed: the official code's computation; K={rpo.k}, batch {images.shape[0]}, "
               f"{len(classnames)} classes"))

  if "text_chunk" in paths and 0 < chunk < len(classnames):
    chunked = build(step_method, text_chunk=chunk)
    coop_step, coop_logits = coop_prepared()
    results.append(_compare_steps(f"text_chunk={chunk}/train_step", (step_of(chunked), coop_step),
                                  (logits_of(chunked.logits, trainable), coop_logits), repeats,
                                  tolerance=tolerance, method=step_method, compares="logits",
                                  detail="chunks trade time for memory (see XLA temp)"))

  if "bfloat16" in paths:
    other = build(step_method, dtype="float32" if dtype == "bfloat16" else "bfloat16")
    coop_step, coop_logits = coop_prepared()
    other_step, other_logits = step_of(other), logits_of(other.logits, trainable)
    low, high = ((coop_step, other_step), (coop_logits, other_logits)) if dtype == "bfloat16" else \
        ((other_step, coop_step), (other_logits, coop_logits))
    results.append(_compare_steps("bfloat16/train_step", low, high, repeats, tolerance=None, exact=False,
                                  method=step_method, compares="logits (not expected equal)",
                                  detail="bfloat16 vs float32 compute"))

  if "shared_prefix" in paths:
    results += prefix_bench.bench_shared_prefix(backbone, frozen, classnames, images, labels, layers=layers,
                                                repeats=repeats, dtype=dtype, tolerance=tolerance,
                                                methods=shared_prefix_methods, zeroshot_classes=zeroshot_classes)
  return results


def run_benchmark(backbone, classnames: Sequence[str], *, method_names: Sequence[str], batch: int, repeats: int,
                  dtype: str = "float32", layers: int = 12, chunk: int = 25, tolerance: float = 2e-3,
                  paths: Sequence[str] = FAST_PATHS, matmul_n: int = 2048, log=print,
                  shared_prefix_methods: Sequence[str] = prefix_bench.METHODS,
                  zeroshot_classes: int = prefix_bench.ZEROSHOT_CLASSES) -> dict[str, Any]:
  """The whole benchmark on a given backbone -> the report dict (see `format_report`). The backbone's vocabulary
  must hold `prefix_bench.vocabulary_words(zeroshot_classes)` for the shared-prefix zero-shot comparison."""
  classnames = list(classnames)
  peak = core.matmul_peak(matmul_n)
  log(f"matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({matmul_n}^3 float32)")
  frozen = jax.device_put(backbone.params)
  images, labels = core.make_batch(backbone, batch, len(classnames))
  main, steps = {}, {}
  for name in method_names:
    log(f"method {name} ...")
    method = core.build_method(name, backbone, classnames, layers, dtype=dtype)
    main[name] = bench_method(method, frozen, images, labels, repeats, peak["flops_per_s"], steps)
    log(f"  step {main[name]['step_s']:.3f} s, compile {main[name]['compile_s']:.1f} s")
  log("fast paths ...")
  step_method = "coop"
  fast = bench_fast_paths(backbone, frozen, classnames, images, labels, layers=layers, repeats=repeats, dtype=dtype,
                          chunk=chunk, tolerance=tolerance, paths=paths, main=main, steps=steps,
                          step_method=step_method, shared_prefix_methods=shared_prefix_methods,
                          zeroshot_classes=zeroshot_classes)
  # The machine is shared: re-measure the matmul rate at the end and keep the faster of the two.
  again = core.matmul_peak(matmul_n)
  peak = max(peak, again, key=lambda p: p["flops_per_s"])
  for r in main.values():
    r["fraction_of_peak"] = r["flops_per_s"] / peak["flops_per_s"] if r["flops_per_s"] else None
  config = backbone.config
  return {
      "machine": core.machine_info(),
      "matmul_peak": peak,
      "settings": {"batch": batch, "classes": len(classnames), "repeats": repeats, "dtype": dtype, "chunk": chunk,
                   "tolerance": tolerance, "layers": layers, "methods": list(method_names),
                   "shared_prefix_methods": list(shared_prefix_methods), "zeroshot_classes": zeroshot_classes},
      "backbone": {"source": backbone.source, "params": backbone.num_params(),
                   "text": f"{config.text_config.hidden_size} x {config.text_config.num_hidden_layers} layers x "
                           f"{config.text_config.num_attention_heads} heads, context "
                           f"{config.text_config.max_position_embeddings}, vocab {config.text_config.vocab_size}",
                   "vision": f"{config.vision_config.hidden_size} x {config.vision_config.num_hidden_layers} layers x "
                             f"{config.vision_config.num_attention_heads} heads, {config.vision_config.image_size} px "
                             f"/ {config.vision_config.patch_size}",
                   "projection": config.projection_dim},
      "methods": main,
      "fast_paths": fast,
      "all_exact_checks_passed": all(r["passed"] for r in fast if r.get("exact") and r.get("passed") is not None),
  }


# --- the report ---------------------------------------------------------------------------------------------------------
def _fmt(value, spec: str, scale: float = 1.0, none: str = "n/a") -> str:
  return none if value is None else format(value / scale, spec)


def format_report(report: dict[str, Any]) -> str:
  """A readable plain-text (markdown) rendering of the report."""
  m, s, b = report["machine"], report["settings"], report["backbone"]
  peak = report["matmul_peak"]["flops_per_s"]
  lines = [f"machine: {m['platform']}, {m['cpu_count']} CPUs, jax {m['jax']}, backend {m['backend']} "
           f"({m['devices']} x {m['device_kind']}); float32 matmul peak {peak / 1e9:.1f} GFLOP/s",
           f"backbone: {b['source']}, {b['params']:,} params; text {b['text']}; vision {b['vision']}",
           f"batch {s['batch']}, {s['classes']} classes, dtype {s['dtype']}, median of {s['repeats']} repeats", "",
           "| method | trainable | step (s) | images/s | compile (s) | forward (s) | step/forward | GFLOP/step | "
           "GFLOP/s | % of matmul peak | XLA temp (MB) | peak mem |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name, r in report["methods"].items():
    lines.append(f"| {name} | {r['trainable_params']:,} | {r['step_s']:.3f} | {r['images_per_s']:.2f} | "
                 f"{r['compile_s']:.1f} | {r['forward_s']:.3f} | {r['step_over_forward']:.2f} | "
                 f"{_fmt(r['step_flops'], '.1f', 1e9)} | {_fmt(r['flops_per_s'], '.1f', 1e9)} | "
                 f"{_fmt(r['fraction_of_peak'], '.0f', 0.01)} | {_fmt(r['temp_bytes'], '.0f', 2 ** 20)} | "
                 f"{_fmt(r['peak_bytes'], '.0f', 2 ** 20)} |")
  lines += ["", "| fast path | method | fast (s) | plain (s) | speed-up | target | max abs diff | check | note |",
            "|---|---|---:|---:|---:|---:|---:|---|---|"]
  for r in report["fast_paths"]:
    if r["name"] == "no_backward":
      lines.append(f"| no_backward (step vs forward) | {r['method']} | {r['fast_s']:.3f} | {r['plain_s']:.3f} | "
                   f"step = {r['ratio_step_over_forward']:.2f} x forward | ~1x | - | - | {r['detail']} |")
      continue
    target = "-" if r["target_speedup"] is None else (f">= {r['target_speedup']:g}x " +
                                                      ("met" if r["target_met"] else "NOT met"))
    check = "reported" if not r["exact"] else ("pass" if r["passed"] else "FAIL") + f" (tol {r['tolerance']:g})"
    note = r.get("detail", "")
    if r.get("forward_speedup") is not None:
      note = (note + "; " if note else "") + f"logits-only speed-up {r['forward_speedup']:.2f}x"
    if r.get("fast_flops") and r.get("plain_flops") and r["name"].startswith("shared_prefix"):
      note += f"; XLA GFLOP {r['fast_flops'] / 1e9:.1f} vs {r['plain_flops'] / 1e9:.1f}"
    if r.get("fast_temp_bytes") is not None and r["name"].startswith("text_chunk"):
      note += f"; XLA temp {r['fast_temp_bytes'] / 2 ** 20:.0f} MB vs {r['plain_temp_bytes'] / 2 ** 20:.0f} MB"
    lines.append(f"| {r['name']} | {r['method']} | {r['fast_s']:.3f} | {r['plain_s']:.3f} | {r['speedup']:.2f}x | "
                 f"{target} | {r['max_abs_diff']:.2e} | {check} | {note} |")
  lines.append("")
  lines.append("all exact checks passed" if report["all_exact_checks_passed"] else "SOME EXACT CHECKS FAILED")
  return "\n".join(lines)


# --- CLI ----------------------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m jaxprompt.bench", description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated method names")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--classes", type=int, default=100, help="class count (Caltech101 names, repeated past 100)")
  parser.add_argument("--layers", type=int, default=12, help="depth of both towers (12 = ViT-B/16)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--chunk", type=int, default=25, help="text_chunk of the chunked-encoding comparison")
  parser.add_argument("--tolerance", type=float, default=2e-3, help="max abs logit difference of an exact fast path")
  parser.add_argument("--fast-paths", default=",".join(FAST_PATHS), help="which comparisons to run ('' = none)")
  parser.add_argument("--shared-prefix-methods", default=",".join(prefix_bench.METHODS),
                      help="methods of the shared_prefix comparison")
  parser.add_argument("--zeroshot-classes", type=int, default=prefix_bench.ZEROSHOT_CLASSES,
                      help="class names of the shared_prefix zero-shot encoding comparison (0 = skip)")
  parser.add_argument("--json", default="", help="also write the report here")
  parser.add_argument("--quick", action="store_true", help="smoke run: 1 layer, 25 classes, 2 repeats, --chunk 10")
  args = parser.parse_args(argv)
  if args.quick:
    args.layers, args.classes, args.repeats, args.chunk = 1, 25, 2, 10
  return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  jaxprompt.flax_only_transformers()
  args = parse_args(argv)
  names = [n for n in args.methods.split(",") if n]
  paths = [p for p in args.fast_paths.split(",") if p]
  unknown = [p for p in paths if p not in FAST_PATHS]
  if unknown:
    raise SystemExit(f"unknown fast path(s) {unknown}; known: {', '.join(FAST_PATHS)}")
  classnames = core.class_list(args.classes)
  with tempfile.TemporaryDirectory(prefix="jaxprompt_bench_") as directory:
    zeroshot_classes = args.zeroshot_classes if "shared_prefix" in paths else 0
    backbone = core.make_backbone(classnames, directory, layers=args.layers,
                                  extra_words=prefix_bench.vocabulary_words(zeroshot_classes))
    report = run_benchmark(backbone, classnames, method_names=names, batch=args.batch, repeats=args.repeats,
                           dtype=args.dtype, layers=args.layers, chunk=args.chunk, tolerance=args.tolerance,
                           paths=paths, log=lambda msg: print(msg, file=sys.stderr, flush=True),
                           shared_prefix_methods=[n for n in args.shared_prefix_methods.split(",") if n],
                           zeroshot_classes=zeroshot_classes)
  print(format_report(report), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=2, default=_json_default)
  return report


def _json_default(value):
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
  main()
