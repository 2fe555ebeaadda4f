"""The reference code's parameter names for each method, and how they map onto our trainable leaves.

Learnt from the reference trainers (Dassl `TrainerX` subclasses; a checkpoint is `<output>/<model name>/
model.pth.tar-<epoch>`, a torch pickle of {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}):

| variant | reference trainer | Dassl model name | state_dict of |
|---|---|---|---|
| coop | KaiyangZhou/CoOp `trainers/coop.py` | prompt_learner | the PromptLearner |
| cocoop | KaiyangZhou/CoOp `trainers/cocoop.py` | prompt_learner | the PromptLearner |
| maple | multimodal-prompt-learning `trainers/maple.py` | MultiModalPromptLearner | the whole CustomCLIP |
| ivlp | multimodal-prompt-learning `trainers/independentVL.py` | VLPromptLearner | the whole CustomCLIP |
| vpt | multimodal-prompt-learning `trainers/vpt.py` | prompt_learner | the whole CustomCLIP |
| rpo | mlvlab/RPO `trainers/rpo.py` | prompt_learner | the PromptLearner |
| lamm, coop+lamm | gaojingsheng/LAMM `trainers/coop.py` | prompt_learner | the PromptLearner |
| maple+lamm | gaojingsheng/LAMM `trainers/maple.py` | MultiModalPromptLearner | the whole CustomCLIP |

Shapes (C classes, D_t / D_v text / vision width, E joint width, torch Linear weights are (out, in), our Dense
kernels (in, out)):

    coop        ctx (M, D_t) or class-specific (C, M, D_t)                      -> ctx
    cocoop      ctx (M, D_t)                                                     -> ctx
                meta_net.linear1.weight (E/16, E), .bias (E/16,)                -> meta/linear1/{kernel (T), bias}
                meta_net.linear2.weight (D_t, E/16), .bias (D_t,)               -> meta/linear2/{kernel (T), bias}
    maple       prompt_learner.ctx (n, D_t)                                      -> ctx
                prompt_learner.proj.weight (D_v, D_t), .bias (D_v,)             -> proj/{kernel (T), bias}
                prompt_learner.compound_prompts_text.{i} (n, D_t), i < J-1      -> deep_text[i]
                prompt_learner.compound_prompt_projections.{i}.weight / .bias   -> deep_proj/{kernel[i] (T), bias[i]}
    ivlp        prompt_learner.ctx (n_t, D_t)                                    -> text_prompts[0]
                text_encoder.transformer.resblocks.{i}.VPT_shallow, 1 <= i      -> text_prompts[i]
                image_encoder.VPT (n_v, D_v)                                     -> vision_prompts[0]
                image_encoder.transformer.resblocks.{i}.VPT_shallow, 1 <= i     -> vision_prompts[i]
    vpt         image_encoder.VPT (P, D_v), ...resblocks.{i}.VPT_shallow        -> prompts[0], prompts[i]
    rpo         text_prompt (K, D_t), img_prompt (K, D_v)                        -> text_prompts, image_prompts
    lamm        token_classes (C, M, D_t)                                        -> labels
                ctx (n, D_t): the frozen template words (`--origin-clip`), checked against `lamm.template`
    coop+lamm   ctx, token_classes                                               -> ctx, labels
    maple+lamm  maple's keys, prompt_learner.token_classes (C, 1, D_t)           -> maple's leaves, labels

Skipped on reading (the reference itself deletes or never trains them): the fixed token vectors `token_prefix`,
`token_suffix`, `token_suffix_test`; LAMM's `fix_token` (the initial labels, our method's `labels0`); and in
whole-model checkpoints the frozen CLIP weights (`image_encoder.*`, `text_encoder.*`, `logit_scale` without `VPT`
in the name), whose positional-embedding and projection shapes are checked against the backbone.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

StateDict = dict[str, np.ndarray]


class ConversionError(ValueError):
  """A checkpoint or export that cannot be converted: one line naming the file, the key or the class list."""


@dataclasses.dataclass(frozen=True)
class Key:
  """One reference key (or one per layer) <-> one of our leaves (or rows of it).

  theirs: the reference key; with "{i}" one key per layer row i >= `first` of our leaf (the key's index is the row).
  row: for a key without "{i}", only row `row` of our leaf (IVLP / VPT layer 0). linear: a torch Linear weight
  (out, in) <-> a Dense kernel (in, out), per row when stacked.
  """

  ours: str
  theirs: str
  row: int | None = None
  first: int = 0
  linear: bool = False

  @property
  def layered(self) -> bool:
    return "{i}" in self.theirs

  def count(self, state: StateDict) -> int:
    """Consecutive layer keys present from `first` (0 for a key without "{i}")."""
    i = self.first
    while self.theirs.format(i=i) in state:
      i += 1
    return i - self.first


@dataclasses.dataclass(frozen=True)
class Variant:
  """A reference trainer's prompt checkpoint: names, where Dassl keeps it, and what our method needs to match it.

  infer(state) -> dotted method options the checkpoint fixes ({"maple.depth": 9, ...}); `name` is also the
  `--method` value. class_keys: keys whose leading axis is one row per class (checked against the class list).
  fixed_context: LAMM on CLIP's frozen `ctx` (the template words), checked rather than converted.
  """

  name: str
  method: str
  base: str
  model_dir: str
  source: str
  keys: tuple[Key, ...]
  infer: Callable[[StateDict], dict]
  class_keys: tuple[str, ...] = ()
  ignored: tuple[str, ...] = ()
  whole_model: bool = False
  fixed_context: str = ""
  labels0_key: str = ""

  def reference_keys(self) -> tuple[str, ...]:
    return tuple(key.theirs for key in self.keys)


FIXED_TOKENS = ("token_prefix", "token_suffix", "token_suffix_test")
"""The class-name token vectors every reference prompt learner saves and deletes again on load."""
FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "logit_scale")
"""Whole-model checkpoints (MaPLe, IVLP, VPT): CLIP's own weights under these names are frozen, not prompts."""


# --- the variants -----------------------------------------------------------------------------------------------------
def _coop_infer(state):
  ctx = state["ctx"]
  return {"coop.n_ctx": int(ctx.shape[-2]), "coop.csc": ctx.ndim == 3, "coop.ctx_init": ""}


def _cocoop_infer(state):
  hidden, embed = state["meta_net.linear1.weight"].shape  # (E // ratio, E)
  return {"cocoop.n_ctx": int(state["ctx"].shape[0]), "cocoop.ctx_init": "",
          "cocoop.hidden_ratio": max(1, int(embed) // max(int(hidden), 1))}


_MAPLE_KEYS = (
    Key("ctx", "prompt_learner.ctx"),
    Key("proj/kernel", "prompt_learner.proj.weight", linear=True),
    Key("proj/bias", "prompt_learner.proj.bias"),
    Key("deep_text", "prompt_learner.compound_prompts_text.{i}"),
    Key("deep_proj/kernel", "prompt_learner.compound_prompt_projections.{i}.weight", linear=True),
    Key("deep_proj/bias", "prompt_learner.compound_prompt_projections.{i}.bias"),
)


def _maple_infer(state):
  return {"maple.n_ctx": int(state["prompt_learner.ctx"].shape[0]),
          "maple.depth": 1 + _MAPLE_KEYS[3].count(state)}


_IVLP_KEYS = (
    Key("text_prompts", "prompt_learner.ctx", row=0),
    Key("text_prompts", "text_encoder.transformer.resblocks.{i}.VPT_shallow", first=1),
    Key("vision_prompts", "image_encoder.VPT", row=0),
    Key("vision_prompts", "image_encoder.transformer.resblocks.{i}.VPT_shallow", first=1),
)


def _ivlp_infer(state):
  options = {"ivlp.text_tokens": int(state["prompt_learner.ctx"].shape[0]),
             "ivlp.text_depth": 1 + _IVLP_KEYS[1].count(state)}
  if "image_encoder.VPT" in state:  # the reference allows no vision prompts; ours needs >= 1 layer (then: missing)
    options.update({"ivlp.vision_tokens": int(state["image_encoder.VPT"].shape[0]),
                    "ivlp.vision_depth": 1 + _IVLP_KEYS[3].count(state)})
  return options


_VPT_KEYS = (
    Key("prompts", "image_encoder.VPT", row=0),
    Key("prompts", "image_encoder.transformer.resblocks.{i}.VPT_shallow", first=1),
)


def _vpt_infer(state):
  return {"vpt.n_tokens": int(state["image_encoder.VPT"].shape[0]), "vpt.depth": 1 + _VPT_KEYS[1].count(state)}


def _rpo_infer(state):
  return {"rpo.k": int(state["text_prompt"].shape[0])}


def _labels_infer(key: str, base: str, extra: Callable[[StateDict], dict] | None = None):
  def infer(state):
    options = dict(extra(state)) if extra else {}
    options.update({"lamm.base": base, "lamm.tokens_per_label": int(state[key].shape[1])})
    if base == "maple":
      options["lamm.maple_placement"] = "after_ctx"  # the reference writes the label right after MaPLe's context
    return options
  return infer


_LAMM_IGNORED = FIXED_TOKENS + ("fix_token",)

VARIANTS: dict[str, Variant] = {variant.name: variant for variant in (
    Variant("coop", "coop", "", "prompt_learner", "KaiyangZhou/CoOp trainers/coop.py",
            (Key("ctx", "ctx"),), _coop_infer, class_keys=FIXED_TOKENS, ignored=FIXED_TOKENS),
    Variant("cocoop", "cocoop", "", "prompt_learner", "KaiyangZhou/CoOp trainers/cocoop.py",
            (Key("ctx", "ctx"),
             Key("meta/linear1/kernel", "meta_net.linear1.weight", linear=True),
             Key("meta/linear1/bias", "meta_net.linear1.bias"),
             Key("meta/linear2/kernel", "meta_net.linear2.weight", linear=True),
             Key("meta/linear2/bias", "meta_net.linear2.bias")),
            _cocoop_infer, class_keys=FIXED_TOKENS, ignored=FIXED_TOKENS),
    Variant("maple", "maple", "", "MultiModalPromptLearner", "muzairkhattak/multimodal-prompt-learning trainers/maple.py",
            _MAPLE_KEYS, _maple_infer, class_keys=tuple(f"prompt_learner.{k}" for k in FIXED_TOKENS),
            ignored=tuple(f"prompt_learner.{k}" for k in FIXED_TOKENS), whole_model=True),
    Variant("ivlp", "ivlp", "", "VLPromptLearner", "muzairkhattak/multimodal-prompt-learning trainers/independentVL.py",
            _IVLP_KEYS, _ivlp_infer, class_keys=tuple(f"prompt_learner.{k}" for k in FIXED_TOKENS),
            ignored=tuple(f"prompt_learner.{k}" for k in FIXED_TOKENS), whole_model=True),
    Variant("vpt", "vpt", "", "prompt_learner", "muzairkhattak/multimodal-prompt-learning trainers/vpt.py",
            _VPT_KEYS, _vpt_infer, whole_model=True),
    Variant("rpo", "rpo", "", "prompt_learner", "mlvlab/RPO trainers/rpo.py",
            (Key("text_prompts", "text_prompt"), Key("image_prompts", "img_prompt")), _rpo_infer),
    Variant("lamm", "lamm", "none", "prompt_learner", "gaojingsheng/LAMM trainers/coop.py (--origin-clip)",
            (Key("labels", "token_classes"),), _labels_infer("token_classes", "none"),
            class_keys=("token_classes",) + _LAMM_IGNORED, ignored=_LAMM_IGNORED, fixed_context="ctx",
            labels0_key="fix_token"),
    Variant("coop+lamm", "lamm", "coop", "prompt_learner", "gaojingsheng/LAMM trainers/coop.py",
            (Key("ctx", "ctx"), Key("labels", "token_classes")),
            _labels_infer("token_classes", "coop", _coop_infer),
            class_keys=("token_classes",) + _LAMM_IGNORED, ignored=_LAMM_IGNORED, labels0_key="fix_token"),
    Variant("maple+lamm", "lamm", "maple", "MultiModalPromptLearner", "gaojingsheng/LAMM trainers/maple.py",
            _MAPLE_KEYS + (Key("labels", "prompt_learner.token_classes"),),
            _labels_infer("prompt_learner.token_classes", "maple", _maple_infer),
            class_keys=tuple(f"prompt_learner.{k}" for k in ("token_classes",) + _LAMM_IGNORED),
            ignored=tuple(f"prompt_learner.{k}" for k in _LAMM_IGNORED), whole_model=True,
            labels0_key="prompt_learner.fix_token"),
)}


def variant_of(method: str, base: str = "") -> Variant:
  """Our (method, lamm base) -> the reference variant; an unknown pair lists the known ones."""
  for variant in VARIANTS.values():
    if variant.method == method and variant.base == (base if method == "lamm" else ""):
      return variant
  label = f"{base}+lamm" if method == "lamm" and base not in ("", "none") else method
  raise ConversionError(f"method {label!r} has no reference trainer to convert to or from; known: "
                   f"{', '.join(VARIANTS)}")


def reference_settings(variant: Variant, config, state: StateDict) -> str:
  """The reference trainer's config options that rebuild our prompt around the converted `state` (counts read off
  its shapes, the prompt words off our `method` config block)."""
  counts = variant.infer(state)
  get = lambda dotted: counts.get(dotted, config[dotted.split(".")[0]][dotted.split(".")[1]])

  def words(block: str, n: int) -> str:  # the phrase when the prompt text keeps it (else placeholders)
    phrase = config[block].ctx_init
    if block in ("coop", "cocoop"):
      return phrase if phrase and config[block].get("ctx_rule", "tokens") == "reference" else ""
    return phrase if phrase and len(phrase.split()) >= n else ""

  coop = (f"TRAINER.COOP.N_CTX {get('coop.n_ctx')} TRAINER.COOP.CSC {get('coop.csc')} "
          f"TRAINER.COOP.CTX_INIT '{words('coop', 0)}'")
  maple = (f"TRAINER.MAPLE.N_CTX {get('maple.n_ctx')} TRAINER.MAPLE.PROMPT_DEPTH {get('maple.depth')} "
           f"TRAINER.MAPLE.CTX_INIT '{words('maple', get('maple.n_ctx'))}'")
  settings = {
      "coop": f"{coop} TRAINER.COOP.CLASS_TOKEN_POSITION {config.coop.class_position}",
      "cocoop": f"TRAINER.COCOOP.N_CTX {get('cocoop.n_ctx')} TRAINER.COCOOP.CTX_INIT '{words('cocoop', 0)}'",
      "maple": maple,
      "ivlp": (f"TRAINER.IVLP.N_CTX_TEXT {get('ivlp.text_tokens')} TRAINER.IVLP.N_CTX_VISION "
               f"{get('ivlp.vision_tokens')} TRAINER.IVLP.PROMPT_DEPTH_TEXT {get('ivlp.text_depth')} "
               f"TRAINER.IVLP.PROMPT_DEPTH_VISION {get('ivlp.vision_depth')} "
               f"TRAINER.IVLP.CTX_INIT '{words('ivlp', get('ivlp.text_tokens'))}'"),
      "vpt": f"TRAINER.VPT.N_CTX_VISION {get('vpt.n_tokens')} TRAINER.VPT.PROMPT_DEPTH_VISION {get('vpt.depth')}",
      "rpo": f"TRAINER.RPO.K {get('rpo.k')}",
      "lamm": f"--origin-clip TRAINER.COOP.CTX_INIT '{config.lamm.template.partition('{}')[0].strip()}'",
      "coop+lamm": coop,
      "maple+lamm": maple,
  }
  return settings[variant.name]


def backbone_facts(params) -> dict[str, tuple[int, ...]]:
  """Frozen reference keys whose shapes our backbone fixes (checked when a whole-model checkpoint carries them)."""
  text, vision = params["text_model"]["embeddings"], params["vision_model"]["embeddings"]
  return {
      "text_encoder.positional_embedding": tuple(np.shape(text["position_embedding"]["embedding"])),
      "text_encoder.text_projection": tuple(np.shape(params["text_projection"]["kernel"])),
      "image_encoder.positional_embedding": tuple(np.shape(vision["position_embedding"]["embedding"])),
      "image_encoder.proj": tuple(np.shape(params["visual_projection"]["kernel"])),
  }
