"""The benchmark's parts: a ViT-B/16-shaped random backbone, the class list, the machine, and timed jitted calls.

Everything here is a plain function so the tests can run it on a tiny backbone; `bench.py` puts them together.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxprompt import config as run_config
from jaxprompt import methods, parallel, train
from jaxprompt.clip import weights
from jaxprompt.clip.tokenizer import Tokenizer, write_vocabulary

# Caltech101's 100 object classes (CoOp's names, "_" as spaces), the class list of the RPO/CoOp benchmarks.
CALTECH101 = (
    "accordion, airplane, anchor, ant, barrel, bass, beaver, binocular, bonsai, brain, brontosaurus, buddha, "
    "butterfly, camera, cannon, car side, ceiling fan, cellphone, chair, chandelier, cougar body, cougar face, crab, "
    "crayfish, crocodile, crocodile head, cup, dalmatian, dollar bill, dolphin, dragonfly, electric guitar, elephant, "
    "emu, euphonium, ewer, face, ferry, flamingo, flamingo head, garfield, gerenuk, gramophone, grand piano, "
    "hawksbill, headphone, hedgehog, helicopter, ibis, inline skate, joshua tree, kangaroo, ketch, lamp, laptop, "
    "leopard, llama, lobster, lotus, mandolin, mayfly, menorah, metronome, minaret, motorbike, nautilus, octopus, "
    "okapi, pagoda, panda, pigeon, pizza, platypus, pyramid, revolver, rhino, rooster, saxophone, schooner, scissors, "
    "scorpion, sea horse, snoopy, soccer ball, stapler, starfish, stegosaurus, stop sign, strawberry, sunflower, tick, "
    "trilobite, umbrella, watch, water lilly, wheelchair, wild cat, windsor chair, wrench, yin yang").split(", ")

# Words of every template the benchmarked methods use ("a photo of a {}.", placeholders "X", CoOp/MaPLe inits).
TEMPLATE_WORDS = ("a", "photo", "of", "x", ".")


def class_list(count: int) -> list[str]:
  """`count` class names: the Caltech101 list, repeated with a numeric suffix word when count > 100."""
  names = []
  for i in range(count):
    base = CALTECH101[i % len(CALTECH101)]
    names.append(base if i < len(CALTECH101) else f"{base} v{i // len(CALTECH101)}")
  return names


# --- machine ------------------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
  device = jax.devices()[0]
  return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
          "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
          "backend": jax.default_backend(), "devices": jax.device_count(), "device_kind": device.device_kind}


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict[str, float]:
  """Measured float32 matmul throughput: median time of an (n, n) @ (n, n) product -> FLOP/s."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  jax.block_until_ready(matmul(a, b))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  return {"n": n, "seconds": seconds, "flops_per_s": 2.0 * n ** 3 / seconds}


# --- backbone -----------------------------------------------------------------------------------------------------------
def vit_b16_config(vocab_size: int, layers: int = 12):
  """CLIP ViT-B/16 shapes (text 512 x 8 heads, context 77; vision 768 x 12 heads, 224 px / 16; projection 512);
  `layers` sets the depth of both towers (12 = the real model)."""
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top

  return CLIPConfig(
      text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=layers, num_attention_heads=8,
                       vocab_size=vocab_size, max_position_embeddings=77, eos_token_id=vocab_size - 1,
                       bos_token_id=vocab_size - 2, pad_token_id=0),
      vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=layers, num_attention_heads=12,
                         image_size=224, patch_size=16),
      projection_dim=512)


def make_backbone(classnames: Sequence[str], directory: str, *, layers: int = 12, tiny: bool = False,
                  seed: int = 0, extra_words: Sequence[str] = ()) -> weights.Backbone:
  """A random backbone whose word-level vocabulary holds every word of the class names and templates (and
  `extra_words`, in that order, duplicates dropped).

  tiny=True: the test widths of `weights.tiny_config` (with `layers` in both towers) instead of ViT-B/16.
  """
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top

  words = list(TEMPLATE_WORDS) + [word for name in classnames for word in name.lower().split()]
  words = list(dict.fromkeys(words + list(extra_words)))
  write_vocabulary(directory, words)
  hf_tok = CLIPTokenizer.from_pretrained(directory)
  vocab_size = len(hf_tok)  # SOS, EOS are the two largest ids (EOS = vocab_size - 1)
  if tiny:
    config = weights.tiny_config(vocab_size=vocab_size, text_layers=layers, vision_layers=layers,
                                 context_length=77)
  else:
    config = vit_b16_config(vocab_size, layers)
  params = weights.random_params(config, seed, logit_scale=float(np.log(100.0)))
  tokenizer = Tokenizer(hf_tok, config.text_config.max_position_embeddings)
  return weights.Backbone(config, params, tokenizer, source=f"random ({'tiny' if tiny else 'ViT-B/16 shapes'}, "
                                                            f"{layers} layers)")


# --- methods ------------------------------------------------------------------------------------------------------------
def method_config(name: str, layers: int, options: dict[str, Any] | None = None, **common
                  ) -> ml_collections.ConfigDict:
  """The method block for `name` with defaults, deep-prompt depths capped at `layers`, `common` overrides
  (dtype, trim_text, text_chunk) and `options` ({"rpo.fast": False}). lamm stacks on CoOp
  (coop.ctx_init="a photo of a"), as in the LAMM paper."""
  config = methods.default_config()
  config.name = name
  for key, value in common.items():
    config[key] = value
  run_config.fit_depth(ml_collections.ConfigDict({"method": config}), layers)  # caps `config` in place
  if name == "lamm":
    config.lamm.base = "coop"
    config.coop.ctx_init = "a photo of a"
  for key, value in (options or {}).items():
    block, field = key.split(".")
    config[block][field] = value
  return config


def build_method(name: str, backbone, classnames, layers: int, options: dict[str, Any] | None = None, **common):
  return methods.build(name, method_config(name, layers, options, **common), backbone, classnames)


def make_batch(backbone, batch: int, num_classes: int, seed: int = 0):
  size = backbone.config.vision_config.image_size
  images = jax.random.normal(jax.random.key(seed), (batch, size, size, 3), jnp.float32)
  labels = jnp.arange(batch, dtype=jnp.int32) % num_classes
  return images, labels


# --- timing -------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Timing:
  """One compiled function timed: compile seconds, per-call seconds (median and all), and XLA's cost/memory."""

  compile_s: float
  median_s: float
  times_s: list[float]
  flops: float | None
  temp_bytes: int | None
  peak_bytes: int | None

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _cost_flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def _temp_bytes(compiled) -> int | None:
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  return None if analysis is None else int(getattr(analysis, "temp_size_in_bytes", 0))


def peak_memory() -> int | None:
  """The backend's peak bytes in use on device 0, or None where it reports nothing (CPU)."""
  stats = jax.devices()[0].memory_stats()
  return None if not stats else stats.get("peak_bytes_in_use")


@dataclasses.dataclass
class Prepared:
  """A compiled function with its arguments, ready to be called repeatedly (`thread` feeds donated state back)."""

  compiled: Any
  args: tuple
  compile_s: float
  thread: Callable[[tuple, Any], tuple] | None = None
  out: Any = None

  def call(self) -> float:
    """One blocked call; returns its wall time in seconds."""
    if self.thread is not None and self.out is not None:
      self.args = self.thread(self.args, self.out)
    start = time.perf_counter()
    self.out = jax.block_until_ready(self.compiled(*self.args))
    return time.perf_counter() - start


def prepare(jitted, args: tuple, thread: Callable[[tuple, Any], tuple] | None = None) -> Prepared:
  """Compiles jitted for args (timed) and makes one warm-up call (first-call allocation, not counted)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  prepared = Prepared(compiled, args, time.perf_counter() - start, thread)
  prepared.call()
  return prepared


def measure(prepared: Sequence[Prepared], repeats: int) -> list[Timing]:
  """Times each prepared function `repeats` times, interleaved round-robin (A B A B ...) so that load from other
  processes on a shared machine hits every variant alike. Returns one Timing (median) per function."""
  times = [[] for _ in prepared]
  for _ in range(repeats):
    for i, p in enumerate(prepared):
      times[i].append(p.call())
  return [Timing(p.compile_s, statistics.median(t), t, _cost_flops(p.compiled), _temp_bytes(p.compiled),
                 peak_memory()) for p, t in zip(prepared, times)]


def sgd_optimizer():
  """The papers' optimiser (SGD, momentum 0.9, coupled weight decay 5e-4) at a constant learning rate."""
  optim = ml_collections.ConfigDict({"name": "sgd", "lr": 0.002, "momentum": 0.9, "weight_decay": 5e-4})
  schedule = optax.constant_schedule(optim.lr)
  return train.make_optimizer(optim, schedule), schedule


def prepare_train_step(method, frozen, images, labels) -> Prepared:
  """The trainer's own jitted step (`train.make_train_step` over `train.method_loss`, SGD, one-device mesh),
  compiled, with the donated trainable tree and optimiser state threaded from call to call."""
  optimizer, schedule = sgd_optimizer()
  step = train.make_train_step(train.method_loss(method), optimizer, schedule, parallel.make_mesh(1))
  trainable = method.init(jax.random.key(0))
  batch = {"images": images, "labels": labels}
  args = (trainable, optimizer.init(trainable), frozen, batch, jnp.asarray(0))
  return prepare(step, args, thread=lambda args, out: (out[0], out[1]) + args[2:])


def prepare_logits(logits_fn, trainable, frozen, images) -> Prepared:
  """Forward-only: logits_fn(trainable, frozen, images) jitted and compiled."""
  return prepare(jax.jit(logits_fn), (trainable, frozen, images))


def compare(name: str, fast: Timing, plain: Timing, fast_out, plain_out, *, tolerance: float | None,
            exact: bool = True, target: float | None = None, **extra) -> dict[str, Any]:
  """A fast path against its plain counterpart: speed-up, max |difference| of their outputs and pass/fail.

  exact=False (bfloat16): the difference is reported, not checked. target: the speed-up aimed for (reported).
  """
  diff = float(np.max(np.abs(np.asarray(fast_out, np.float64) - np.asarray(plain_out, np.float64))))
  speedup = plain.median_s / fast.median_s
  return {"name": name, "fast_s": fast.median_s, "plain_s": plain.median_s, "speedup": speedup,
          "max_abs_diff": diff, "tolerance": tolerance, "exact": exact,
          "passed": (diff <= tolerance) if exact else None,
          "target_speedup": target, "target_met": None if target is None else speedup >= target,
          "fast_compile_s": fast.compile_s, "plain_compile_s": plain.compile_s,
          "fast_temp_bytes": fast.temp_bytes, "plain_temp_bytes": plain.temp_bytes,
          "fast_flops": fast.flops, "plain_flops": plain.flops, **extra}
