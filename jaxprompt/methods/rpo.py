"""RPO: Read-only Prompt Optimization (Lee et al., ICCV 2023), as its reference code does it (docs/methods/rpo.md).

K learnable text prompts and K image prompts are appended to CLIP's sequences. They read the original tokens through
attention but nothing reads them (masks), so CLIP's own representations stay exactly those of plain CLIP. Pair k
gives a text feature t[c, k] and an image feature v[b, k]; the score is the mean over k of their cosine.

Trainable tree: `text_prompts` (K, D_text), `image_prompts` (K, D_vision).

Two exact computations of the same logits (`options.fast`):
* plain: the full masked sequences, forward and backward, as the reference code runs them;
* fast (default): the original tokens' per-layer keys/values are computed without the prompts (text: once per class
  list, cached; image: per batch, without gradients), and only the K prompt rows run through the layers as queries
  against them (see `rpo_readonly.py`).
The text cache is computed from `backbone.params` on first use (not from the `frozen` argument): rebuild the method
(`for_classes` or `build`) if the frozen tree changes. Everything else reads the frozen tree passed in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxprompt.clip.model import BLOCKED, normalize
from jaxprompt.methods import rpo_readonly as readonly
from jaxprompt.methods.base import Method, PromptTokens, encode_classes, prompt_names, register

Array = jax.Array

# The reference uses this one template for every dataset.
TEMPLATE = "a photo of a {}."
INITS = ("st", "random")


@register("rpo")
class RPO(Method):
  """Read-only prompts; see the module docstring."""

  @staticmethod
  def default_options() -> ml_collections.ConfigDict:
    options = ml_collections.ConfigDict()
    options.k = 24                # prompt pairs K (24 in the paper; 4 in the extreme few-shot study)
    options.init = "st"           # "st": the special token (EOS row / class_embedding) + 0.1 * a random unit vector;
                                  # "random": normal, std 0.02
    options.clean_names = False   # False keeps "_" in class names, as the reference code does
    options.fast = True           # True: cached keys/values, prompt rows only (exact); False: full masked sequences
    return options

  def __init__(self, config, backbone, classnames):
    super().__init__(config, backbone, classnames)
    options = self.options
    if options.k < 1:
      raise ValueError(f"rpo.k must be a positive number of prompts, got {options.k}")
    if options.init not in INITS:
      raise ValueError(f"rpo.init must be one of {INITS}, got {options.init!r}")
    self.k = int(options.k)
    names = prompt_names(classnames, clean=options.clean_names)
    # Raises naming the class when n_c + K exceeds the context length.
    tokenized = self.tokenizer.prompts(TEMPLATE, names, reserve=self.k)
    self.tokens = PromptTokens.make(tokenized, trim=config.trim_text, extra=self.k)  # room for the prompt rows
    self.originals = PromptTokens.make(tokenized, trim=config.trim_text)  # original tokens only (fast path)
    self.num_real = np.asarray(tokenized.eos + 1, np.int32)  # n_c: SOS .. EOS
    self.num_image_tokens = self.clip.vision.num_image_tokens  # class token + patches
    params = backbone.params
    # The special tokens the ST initialisation starts from (input rows, no positional embedding).
    self.text_special = np.asarray(params["text_model"]["embeddings"]["token_embedding"]["embedding"]
                                   [self.tokenizer.eot_id], np.float32)
    self.image_special = np.asarray(params["vision_model"]["embeddings"]["class_embedding"], np.float32)
    self._text_cache = None

  # --- trainable tree ---------------------------------------------------------------------------------------------
  def init(self, rng: Array) -> dict[str, Array]:
    """-> {"text_prompts": (K, D_text), "image_prompts": (K, D_vision)}."""
    text_rng, image_rng = jax.random.split(rng)
    return {"text_prompts": self._init_rows(text_rng, self.text_special),
            "image_prompts": self._init_rows(image_rng, self.image_special)}

  def _init_rows(self, rng: Array, special: np.ndarray) -> Array:
    noise = jax.random.normal(rng, (self.k, special.shape[0]), jnp.float32)
    if self.options.init == "random":
      return 0.02 * noise
    unit = noise / jnp.linalg.norm(noise, axis=-1, keepdims=True)
    return jnp.asarray(special)[None] + 0.1 * unit

  # --- text -------------------------------------------------------------------------------------------------------
  def text_hidden(self, frozen, text_prompts: Array, classes: Array) -> Array:
    """Plain path: full masked sequences. classes (c,) indices -> final-normed hidden (c, L, D_text).

    Rows n_c .. n_c+K-1 hold the prompts (whole rows, no positional embedding); query i reads key j iff j <= i and
    j < n_c, so rows < n_c equal plain CLIP and each prompt row reads the original tokens only.
    """
    ids = jnp.asarray(self.tokens.ids)[classes]
    num_real = jnp.asarray(self.num_real)[classes]
    positions = jnp.arange(ids.shape[1])
    slot = positions[None, :, None] == num_real[:, None, None] + jnp.arange(self.k)  # (c, L, K)
    is_prompt = slot.any(-1)
    embeds = self.clip.embed_tokens(frozen, ids)
    written = jnp.einsum("clk,kd->cld", slot.astype(jnp.float32), text_prompts.astype(jnp.float32))
    embeds = jnp.where(is_prompt[..., None], written, embeds)
    bias = self._key_bias(num_real, ids.shape[1])
    return self.clip.encode_text(frozen, embeds, position_mask=(~is_prompt).astype(jnp.float32), bias=bias)

  @staticmethod
  def _key_bias(num_real: Array, length: int) -> Array:
    """(c, 1, 1, L) additive bias: key j readable iff j < n_c (the causal part is the tower's)."""
    return jnp.where(jnp.arange(length)[None] < num_real[:, None], 0.0, BLOCKED)[:, None, None, :]

  def _text_rows_plain(self, frozen, text_prompts: Array, classes: Array) -> Array:
    hidden = self.text_hidden(frozen, text_prompts, classes)
    rows = jnp.asarray(self.num_real)[classes][:, None] + jnp.arange(self.k)  # (c, K)
    return jnp.take_along_axis(hidden, rows[..., None], axis=1)

  def text_cache(self) -> Array:
    """(C, 2, depth, L0, H, Dh): every layer's keys/values of the original tokens, from `backbone.params`.

    Computed on first use (eagerly, even when first called inside a jit trace) and kept.
    """
    if self._text_cache is None:
      with jax.ensure_compile_time_eval():
        def compute(params, classes):
          ids = jnp.asarray(self.originals.ids)[classes]
          return self.clip.text_tower.apply({"params": params["text_model"]}, self.clip.embed_tokens(params, ids),
                                            method=readonly.text_keys_values)
        fn = jax.jit(lambda params: encode_classes(lambda c: compute(params, c),
                                                   jnp.arange(len(self.classnames)), self.config.text_chunk))
        self._text_cache = jax.block_until_ready(fn(self.backbone.params))
    return self._text_cache

  def _text_rows_fast(self, frozen, text_prompts: Array, classes: Array) -> Array:
    cache = self.text_cache()
    if classes.shape[0] != cache.shape[0]:  # a chunk of classes (indexing all of them would make XLA fold a gather)
      cache = cache[classes]
    bias = self._key_bias(jnp.asarray(self.num_real)[classes], cache.shape[3])
    return self.clip.text_tower.apply({"params": frozen["text_model"]}, text_prompts, cache, bias,
                                      method=readonly.text_prompt_rows)

  def text_features(self, trainable, frozen, fast: bool | None = None) -> Array:
    """-> t (C, K, E), unnormalised projected prompt-row features, one per class and prompt."""
    fast = self.options.fast if fast is None else fast
    rows = self._text_rows_fast if fast else self._text_rows_plain
    fn = lambda classes: self.clip.project_text(frozen, rows(frozen, trainable["text_prompts"], classes))
    return encode_classes(fn, jnp.arange(len(self.classnames)), self.config.text_chunk)

  # --- image ------------------------------------------------------------------------------------------------------
  def image_hidden(self, frozen, image_prompts: Array, images: Array) -> Array:
    """Plain path: images (B, H, W, 3) -> post-layernormed hidden (B, T + K, D_vision); T = class token + patches.

    The prompts are appended (no positional embedding, `pre_layrnorm` applied); every query reads keys j < T only.
    """
    length = self.num_image_tokens + self.k
    bias = jnp.where(jnp.arange(length) < self.num_image_tokens, 0.0, BLOCKED)[None, None, None, :]
    return self.clip.encode_image(frozen, images, extra_tokens=image_prompts, bias=bias)

  def image_features(self, trainable, frozen, images: Array, fast: bool | None = None) -> Array:
    """images (B, H, W, 3) -> v (B, K, E), unnormalised."""
    fast = self.options.fast if fast is None else fast
    if fast:
      rows = self.clip.vision_tower.apply({"params": frozen["vision_model"]}, images, trainable["image_prompts"],
                                          method=readonly.image_prompt_rows)
    else:
      rows = self.image_hidden(frozen, trainable["image_prompts"], images)[:, self.num_image_tokens:]
    return self.clip.project_image(frozen, rows)

  # --- score ------------------------------------------------------------------------------------------------------
  def logits(self, trainable, frozen, images: Array, fast: bool | None = None) -> Array:
    """(B, C) = exp(logit_scale) * mean_k cos(v[b, k], t[c, k])."""
    text = self.text_features(trainable, frozen, fast)
    image = self.image_features(trainable, frozen, images, fast)
    return matched_score(self.clip.logit_scale(frozen), image, text)


def matched_score(scale: Array, image: Array, text: Array) -> Array:
  """scale * mean_k <normalize(image[b, k]), normalize(text[c, k])>: (B, K, E), (C, K, E) -> (B, C)."""
  cos = jnp.einsum("bke,cke->bc", normalize(image), normalize(text))
  return scale * cos / image.shape[1]
