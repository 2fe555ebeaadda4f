"""Pretrains the world's tiny CLIP contrastively on generated (image, caption) pairs and records what it reaches.

    python -m jaxprompt.world.pretrain --out jaxprompt/world/assets/mini_clip            # the shipped weights
    python -m jaxprompt.world.pretrain --out /tmp/mini --steps 50 --smoke                # a seconds-long check

Phases: config -> model -> data stream (fresh images every step, generated on a background thread) -> jitted
contrastive step (symmetric cross-entropy, AdamW, warm-up + cosine, logit scale clamped at ln 100) -> zero-shot
evaluation on fresh images -> `FlaxCLIPModel.save_pretrained(out)` + tokenizer files + RECORD.md / record.json.
Everything is seeded (model init, per-step data = f(data_seed, step)), so the command reproduces the weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import transformers

from jaxprompt.world import captions, generator, vocab, zeroshot

DEFAULTS = dict(steps=3500, batch_size=128, peak_lr=1e-3, warmup_steps=250, weight_decay=0.1, grad_clip=1.0,
                model_seed=0, data_seed=1, eval_seed=7_000_000, eval_per_style=256, length_multiple=4)
SMOKE = dict(batch_size=16, warmup_steps=2, eval_per_style=16, length_multiple=vocab.CONTEXT_LENGTH)  # one compile


def model_config(vocab_size: int, sos_id: int, eos_id: int, smoke: bool = False) -> transformers.CLIPConfig:
  """The world's CLIP: 3+3 layers, width 128, 4 heads, patch 8 on 32 px, context 32, joint space 128."""
  width, layers, heads = (32, 1, 2) if smoke else (128, 3, 4)
  text = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
              num_attention_heads=heads, max_position_embeddings=vocab.CONTEXT_LENGTH, projection_dim=width,
              bos_token_id=sos_id, eos_token_id=eos_id, pad_token_id=eos_id, hidden_act="quick_gelu")
  vision = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
                image_size=generator.IMAGE_SIZE, patch_size=8, num_channels=3, projection_dim=width,
                hidden_act="quick_gelu")
  return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=width,
                                 logit_scale_init_value=math.log(1 / 0.07))


# --- data ------------------------------------------------------------------------------------------------------------

def make_batch(step: int, batch_size: int, data_seed: int, tokenizer: vocab.WordTokenizer, length_multiple: int = 4):
  """Batch `step` of the pretraining stream: ids int32 (B, L) with L = longest caption rounded up to
  `length_multiple` (a causal tower gives the EOS feature independently of later padding), pixels float32
  (B, 3, 32, 32)."""
  rng = generator.rng_for(data_seed, step)
  images, texts = [], []
  for _ in range(batch_size):
    attributes, text = captions.sample_pretraining(rng)
    images.append(generator.draw(attributes, rng))
    texts.append(text)
  ids = tokenizer.encode(texts)
  length = int(np.max(np.argmax(ids == tokenizer.eos, axis=1))) + 1
  length = min(ids.shape[1], -(-length // length_multiple) * length_multiple)
  return ids[:, :length], zeroshot.pixels(np.stack(images))


def stream(steps: int, batch_size: int, data_seed: int, tokenizer, length_multiple: int, depth: int = 4):
  """Yields batches 0..steps-1, produced on a background thread."""
  buffer: queue.Queue = queue.Queue(depth)

  def produce():
    for step in range(steps):
      buffer.put(make_batch(step, batch_size, data_seed, tokenizer, length_multiple))

  threading.Thread(target=produce, daemon=True).start()
  for _ in range(steps):
    yield buffer.get()


# --- training --------------------------------------------------------------------------------------------------------

def make_optimizer(cfg):
  """AdamW with warm-up + cosine; returns (optimizer, schedule)."""
  warmup = min(cfg["warmup_steps"], cfg["steps"] // 2)
  schedule = optax.warmup_cosine_decay_schedule(0.0, cfg["peak_lr"], warmup, cfg["steps"],
                                                end_value=cfg["peak_lr"] * 0.01)
  decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)  # no decay on biases, norms, logit scale
  return optax.chain(optax.clip_by_global_norm(cfg["grad_clip"]),
                     optax.adamw(schedule, b1=0.9, b2=0.98, eps=1e-6, weight_decay=cfg["weight_decay"],
                                 mask=decay_mask)), schedule


def make_train_step(model, optimizer):
  """(params, opt_state, ids (B, L), pixels (B, 3, S, S)) -> (params, opt_state, metrics)."""

  def loss_fn(params, ids, pixels):
    logits = model(ids, pixels, params=params).logits_per_image  # (B, B), scaled
    labels = jnp.arange(logits.shape[0])
    loss_i = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    loss_t = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return (loss_i + loss_t) / 2, accuracy

  @jax.jit
  def step(params, opt_state, ids, pixels):
    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, ids, pixels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    params["logit_scale"] = jnp.minimum(params["logit_scale"], math.log(100.0))
    return params, opt_state, {"loss": loss, "batch_accuracy": accuracy, "logit_scale": params["logit_scale"]}

  return step


# --- evaluation ------------------------------------------------------------------------------------------------------

def evaluate(model, params, hf_tokenizer, eval_seed: int, per_style: int) -> dict:
  """Zero-shot accuracies on fresh images (seed `eval_seed`, shapes balanced, every style)."""
  shapes = list(generator.SHAPES)
  single = zeroshot.class_features(model, params, hf_tokenizer, shapes, [captions.SINGLE_TEMPLATE])
  ensemble = zeroshot.class_features(model, params, hf_tokenizer, shapes, captions.ensemble_templates())
  colour_names = list(generator.COLOURS)
  colour_templates = [f"a {s} of a {{}} {shape}." for s in generator.STYLES for shape in shapes]
  colours = zeroshot.class_features(model, params, hf_tokenizer, colour_names, colour_templates)
  misaligned = {kind: zeroshot.class_features(model, params, hf_tokenizer, [names[s] for s in shapes],
                                              [captions.SINGLE_TEMPLATE])
                for kind, names in (("rare_synonyms", captions.RARE_SYNONYMS),
                                    ("nonsense_names", captions.NONSENSE_NAMES))}
  result, all_feats, all_labels, all_colours, all_held = {}, [], [], [], []
  for style_index, style in enumerate(generator.STYLES):
    rendered = [generator.render(eval_seed + style_index, i, shape=shapes[i % len(shapes)], style=style)
                for i in range(per_style)]
    images = np.stack([image for image, _ in rendered])
    labels = np.array([shapes.index(a.shape) for _, a in rendered])
    feats = zeroshot.image_features(model, params, images)
    result[f"{style}/single"] = zeroshot.accuracy(feats, single, labels)
    result[f"{style}/ensemble"] = zeroshot.accuracy(feats, ensemble, labels)
    all_feats.append(feats)
    all_labels.append(labels)
    all_colours.append([colour_names.index(a.colour) for _, a in rendered])
    all_held.append([(a.shape, a.style) in captions.HELD_OUT for _, a in rendered])
  feats, labels = np.concatenate(all_feats), np.concatenate(all_labels)
  held = np.concatenate(all_held)
  result["all/single"] = zeroshot.accuracy(feats, single, labels)
  result["all/ensemble"] = zeroshot.accuracy(feats, ensemble, labels)
  result["held_out_pairs/ensemble"] = zeroshot.accuracy(feats[held], ensemble, labels[held])
  result["seen_pairs_same_styles/ensemble"] = zeroshot.accuracy(
      feats[~held & np.isin(np.repeat(np.arange(4), per_style), [1, 2, 3])], ensemble,
      labels[~held & np.isin(np.repeat(np.arange(4), per_style), [1, 2, 3])])
  result["colour/ensemble"] = zeroshot.accuracy(feats, colours, np.concatenate(all_colours))
  for kind, text_feats in misaligned.items():
    result[f"{kind}/single"] = zeroshot.accuracy(feats, text_feats, labels)
  result["num_images"] = int(len(labels))
  return result


# --- record ----------------------------------------------------------------------------------------------------------

def write_record(out: str, record: dict):
  with open(os.path.join(out, "record.json"), "w") as f:
    json.dump(record, f, indent=2)
  acc = record["zero_shot"]
  history = record["history"]
  speed = f"{record['seconds_per_step']:.3f} s/step on average"
  if len(history) > 2:  # the first interval includes compilation
    interval = history[2]["step"] - history[1]["step"]
    fastest = min(b["elapsed"] - a["elapsed"] for a, b in zip(history[1:], history[2:])) / interval
    speed += f"; the fastest {interval}-step interval ran at {fastest:.3f} s/step"
  rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in acc.items() if k != "num_images")
  text = f"""# The shapes world's CLIP (mini_clip)

Made by a real run of `jaxprompt/world/pretrain.py`; every number below is copied from that run by the script.

Command: `{record['command']}`
Wall time: {record['wall_seconds'] / 60:.1f} min on {record['machine']} ({speed}).
The 2 cores were shared with other jobs, so the wall time depends on their load.
Parameters: {record['num_params']:,}. Final loss (mean of the last 100 steps): {record['final_loss']:.4f};
in-batch image->text accuracy over the last 100 steps: {record['final_batch_accuracy']:.3f};
logit scale exp = {record['final_logit_scale']:.1f}.

## Model
CLIP ViT, {record['model']['vision']}; text {record['model']['text']}; joint space {record['model']['projection_dim']}.
Context length 32 (prompt methods insert up to ~16 learned tokens); pretraining captions are 5..22 tokens with
SOS/EOS, so positions 0..21 are trained (positions 22..31 keep their initial embeddings; causal attention means they
never affect a feature unless a method writes there). The text readout is the first EOS position (EOS id
{record['eos_id']} is the largest id, SOS {record['sos_id']} the second largest; padding uses EOS), i.e. argmax(ids).

## Training
Contrastive symmetric cross-entropy, batch {record['config']['batch_size']}, {record['config']['steps']} steps,
AdamW (b2 0.98, eps 1e-6, weight decay {record['config']['weight_decay']} on matrices only), linear warm-up
{record['config']['warmup_steps']} steps to {record['config']['peak_lr']} then cosine to 1 %, gradient clip
{record['config']['grad_clip']}, logit scale init ln(1/0.07), clamped at ln(100). Fresh images every step:
batch `s` = f(data_seed={record['config']['data_seed']}, s); model init seed {record['config']['model_seed']}.

## Pretraining distribution (room for the papers' effects)
- Styles photo / cartoon / painting / sketch drawn with weights {captions.STYLE_WEIGHTS} (sketch rare).
- Held-out (shape, style) pairs, never seen in pretraining: {list(captions.HELD_OUT)} (domain shift).
- Rare synonyms, used for {captions.RARE_SYNONYM_RATE:.0%} of a shape's captions: {captions.RARE_SYNONYMS}.
- Nonsense names (in the vocabulary, never in a caption): {captions.NONSENSE_NAMES}.
  `world_misaligned` names its classes with these words and the rare synonyms (label misalignment, for LAMM).
- Captions vary template, prefix, style synonym, optional colour (85 %), size (35 %), position (30 %), background
  (15 %) and final period (50 %); 10 % leave the style out.

## Zero-shot accuracy on fresh images
{acc['num_images']} images (eval seed {record['config']['eval_seed']}, shapes balanced, styles equal), chance 1/8.
`single` = "a photo of a {{shape}}."; `ensemble` = mean feature over {record['num_ensemble_templates']} templates
(style and style x colour prompts, `captions.ensemble_templates()`); `colour` = 8-way colour accuracy;
`rare_synonyms` / `nonsense_names` = the single template with the misaligned class names;
`held_out_pairs` = images of the pairs never seen in pretraining, `seen_pairs_same_styles` = the other images of the
same three styles (sketch, painting, cartoon).

| metric | accuracy |
|---|---|
{rows}
"""
  with open(os.path.join(out, "RECORD.md"), "w") as f:
    f.write(text)


# --- main ------------------------------------------------------------------------------------------------------------

def run(out: str, steps: int | None = None, smoke: bool = False, command: str = "", log_every: int = 100) -> dict:
  cfg = dict(DEFAULTS, **(SMOKE if smoke else {}))
  if steps is not None:
    cfg["steps"] = steps
  os.makedirs(out, exist_ok=True)
  vocabulary = vocab.write_tokenizer(out)
  tokenizer = vocab.WordTokenizer(vocabulary)
  config = model_config(len(vocabulary), tokenizer.sos, tokenizer.eos, smoke)
  model = transformers.FlaxCLIPModel(config, seed=cfg["model_seed"], _do_init=True)
  params = model.params
  num_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"mini_clip: {num_params:,} parameters, vocab {len(vocabulary)}, config {cfg}", flush=True)
  optimizer, schedule = make_optimizer(cfg)
  opt_state = optimizer.init(params)
  train_step = make_train_step(model, optimizer)

  history, start, window = [], time.time(), []
  for step, (ids, pixels) in enumerate(stream(cfg["steps"], cfg["batch_size"], cfg["data_seed"], tokenizer,
                                                    cfg["length_multiple"])):
    params, opt_state, metrics = train_step(params, opt_state, ids, pixels)
    metrics = {k: float(v) for k, v in metrics.items()}
    window.append(metrics)
    window = window[-100:]
    if (step + 1) % log_every == 0 or step + 1 == cfg["steps"]:
      elapsed = time.time() - start
      entry = dict(step=step + 1, lr=float(schedule(step)), elapsed=round(elapsed, 1),
                   **{k: round(float(np.mean([m[k] for m in window[-log_every:]])), 4) for k in metrics})
      history.append(entry)
      eta = elapsed / (step + 1) * (cfg["steps"] - step - 1)
      print(json.dumps(entry), f"eta {eta / 60:.1f} min", flush=True)
  wall = time.time() - start

  model.save_pretrained(out, params=params)
  hf_tokenizer = transformers.CLIPTokenizer.from_pretrained(out)
  accuracies = evaluate(model, params, hf_tokenizer, cfg["eval_seed"], cfg["eval_per_style"])
  print(json.dumps(accuracies, indent=1), flush=True)
  record = dict(
      command=command, config=cfg, num_params=int(num_params), wall_seconds=round(wall, 1),
      seconds_per_step=wall / cfg["steps"],
      machine=f"{platform.machine()} x{os.cpu_count()} CPU (shared), jax {jax.__version__}",
      final_loss=float(np.mean([m["loss"] for m in window])),
      final_batch_accuracy=float(np.mean([m["batch_accuracy"] for m in window])),
      final_logit_scale=float(np.exp(params["logit_scale"])), sos_id=tokenizer.sos, eos_id=tokenizer.eos,
      num_ensemble_templates=len(captions.ensemble_templates()),
      model=dict(text=_describe(config.text_config), vision=_describe(config.vision_config),
                 projection_dim=config.projection_dim),
      zero_shot=accuracies, history=history)
  write_record(out, record)
  return record


def _describe(tower) -> str:
  text = (f"{tower.num_hidden_layers} layers, width {tower.hidden_size}, {tower.num_attention_heads} heads, "
          f"mlp {tower.intermediate_size}")
  if hasattr(tower, "patch_size"):
    text += f", patch {tower.patch_size} on {tower.image_size} px"
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="directory for the weights, tokenizer and record")
  parser.add_argument("--steps", type=int, default=None, help=f"default {DEFAULTS['steps']}")
  parser.add_argument("--smoke", action="store_true", help="tiny model and batch: a seconds-long check")
  parser.add_argument("--log-every", type=int, default=100)
  parser.add_argument("--rewrite-record", action="store_true",
                      help="only re-render OUT/RECORD.md from OUT/record.json (no training)")
  args = parser.parse_args(argv)
  if args.rewrite_record:
    with open(os.path.join(args.out, "record.json")) as f:
      write_record(args.out, json.load(f))
    return
  command = "python -m jaxprompt.world.pretrain " + " ".join(
      f"{a}" for a in (argv if argv is not None else __import__("sys").argv[1:]))
  run(args.out, args.steps, args.smoke, command, args.log_every)


if __name__ == "__main__":
  main()
