"""The `shared_prefix` comparison of the benchmark: each text-prompted method's train step (and zero-shot class
encoding) with `method.shared_prefix` on against off, timed alternately in the same run, logits compared.

    python -m jaxprompt.bench --methods '' --fast-paths shared_prefix --repeats 3 --json docs/bench_shared_prefix.json

Each row also carries XLA's FLOP count of both compiled steps (`fast_flops`, `plain_flops`) and the prefix plan
(P shared positions, S suffix positions against the plain path's L).
"""

from __future__ import annotations

from typing import Any

import jax

from jaxprompt.bench import parts as core
from jaxprompt.methods import shared_prefix
from jaxprompt.methods.base import PromptTokens
from jaxprompt.methods.prompting import text_params

# Speed-up targets (plain / fast) of the issue, in one run at the README's settings.
TARGETS = {"coop": 2.5, "lamm": 1.8, "cocoop": 1.8, "maple": 1.3, "mmap": 1.3, "zeroshot": 1.5}
METHODS = ("coop", "lamm", "cocoop", "maple", "mmap", "ivlp")
ZEROSHOT_CLASSES = 1000  # default class count of the zero-shot encoding comparison
ZEROSHOT_TEMPLATE = "a photo of a {}."


def vocabulary_words(zeroshot_classes: int = ZEROSHOT_CLASSES) -> list[str]:
  """Extra words the zero-shot comparison's class list needs in the benchmark's vocabulary."""
  return [word for name in core.class_list(zeroshot_classes) for word in name.lower().split()]


def _plan_detail(method) -> str:
  """'P shared + S suffix vs L' of a built method (its own prompts), or why it has no plan."""
  prompts = getattr(method, "prompts", None) or getattr(getattr(method, "base", None), "prompts", None)
  plan = getattr(method, "plan", None)
  if plan is None and hasattr(method, "prefix_plan"):
    plan = method.prefix_plan(method.init(jax.random.key(0)))
  if plan is None and hasattr(method, "base"):
    plan = method.base.prefix_plan(method.base.init(jax.random.key(0)))
  length = prompts.ids.shape[1]
  if plan is None:
    return f"no shared prefix (plain path, L={length})"
  return f"P={plan.prefix} shared + S={plan.suffix} per class vs L={length}"


def bench_shared_prefix(backbone, frozen, classnames, images, labels, *, layers: int, repeats: int, dtype: str,
                        tolerance: float, methods=METHODS, zeroshot_classes: int = ZEROSHOT_CLASSES
                        ) -> list[dict[str, Any]]:
  """One row per method (train step, on vs off) and one for zero-shot encoding of `zeroshot_classes` names (0 =
  none)."""
  results = []
  for name in methods:
    batch_images, batch_labels = (images[:1], labels[:1]) if name == "cocoop" else (images, labels)
    fast = core.build_method(name, backbone, classnames, layers, dtype=dtype)
    plain = core.build_method(name, backbone, classnames, layers, dtype=dtype, shared_prefix=False)
    trainable = fast.init(jax.random.key(0))
    steps = [core.prepare_train_step(m, frozen, batch_images, batch_labels) for m in (fast, plain)]
    forwards = [core.prepare_logits(m.logits, trainable, frozen, batch_images) for m in (fast, plain)]
    fast_t, plain_t = core.measure(steps, repeats)
    fast_fwd, plain_fwd = core.measure(forwards, min(repeats, 3))
    results.append(core.compare(
        f"shared_prefix/{name}", fast_t, plain_t, forwards[0].out, forwards[1].out, tolerance=tolerance,
        target=TARGETS.get(name), method=name, compares="logits",
        forward_speedup=plain_fwd.median_s / fast_fwd.median_s,
        detail=f"{_plan_detail(fast)}; batch {batch_images.shape[0]}, {len(classnames)} classes"))
  if zeroshot_classes:
    results.append(bench_zeroshot(backbone, frozen, zeroshot_classes, repeats=repeats, tolerance=tolerance))
  return results


def bench_zeroshot(backbone, frozen, count: int, *, repeats: int, tolerance: float) -> dict[str, Any]:
  """Zero-shot class features of `count` names (one template, trimmed), shared prefix against plain."""
  names = core.class_list(count)
  clip = backbone.model()
  tokens = PromptTokens.make(backbone.tokenizer.prompts(ZEROSHOT_TEMPLATE, names), trim=True)
  plan = shared_prefix.plan_prefix(tokens.ids, tokens.eos, context=clip.text.context_length)
  encoders = []
  for variant in (plan, None):
    encode = jax.jit(lambda params, ids, eos, variant=variant: shared_prefix.token_features(clip, params, ids, eos,
                                                                                            variant))
    encoders.append(core.prepare(encode, (text_params(frozen), tokens.ids, tokens.eos)))
  fast, plain = core.measure(encoders, repeats)
  detail = "no shared prefix" if plan is None else f"P={plan.prefix} shared + S={plan.suffix} per class"
  # Unscaled features (|f| ~ 1, logits are 100 x cosines): the tolerance divided by the logit scale.
  return core.compare("shared_prefix/zeroshot_encoding", fast, plain, encoders[0].out, encoders[1].out,
                      tolerance=tolerance / 100.0, target=TARGETS["zeroshot"], method="zeroshot", compares="features",
                      detail=f"{count} class names, '{ZEROSHOT_TEMPLATE}', {detail} vs "
                             f"L={tokens.ids.shape[1]}")
