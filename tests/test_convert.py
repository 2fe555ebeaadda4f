"""`python -m jaxprompt.convert`: reference (Dassl / PyTorch) prompt checkpoints <-> our prompt exports.

On the tiny random CLIP (text 32 wide, vision 48, joint 24, 2 layers per tower): our trained trees written under the
reference names and shapes learnt from the reference trainers (a transposed Linear fails the shape table), read back
leaf for leaf with the same logits; checkpoints hand-built with torch in Dassl's layout converted to the leaves they
should give; and the one-line errors.
"""

import collections
import os
import sys
import types

import jax
import ml_collections
import numpy as np
import pytest

from jaxprompt import checkpoint, methods, trees
from jaxprompt.convert import ConversionError, from_reference, read_checkpoint, to_reference, write_checkpoint
from jaxprompt.convert.cli import main
from jaxprompt.convert.names import reference_settings
from jaxprompt.methods.prompting import phrase_embeddings
from tests.conftest import method_config

torch = pytest.importorskip("torch", reason="the converter needs torch (pip install 'jaxprompt[torch]')")

NAMES = ["cat", "dog", "red_circle", "big car", "blue star"]
C, DT, DV, E = 5, 32, 48, 24  # classes, text width, vision width, joint width of the tiny CLIP

# case -> (our method, config overrides, reference variant)
CASES = {
    "coop": ("coop", {"coop.n_ctx": 4}, "coop"),
    "coop_csc": ("coop", {"coop.n_ctx": 3, "coop.csc": True}, "coop"),
    "cocoop": ("cocoop", {}, "cocoop"),
    "maple": ("maple", {}, "maple"),
    "ivlp": ("ivlp", {"ivlp.vision_tokens": 3}, "ivlp"),
    "vpt": ("vpt", {"vpt.n_tokens": 4}, "vpt"),
    "rpo": ("rpo", {"rpo.k": 4}, "rpo"),
    "lamm": ("lamm", {}, "lamm"),
    "coop_lamm": ("lamm", {"lamm.base": "coop", "coop.ctx_init": "a photo of a"}, "coop+lamm"),
    "maple_lamm": ("lamm", {"lamm.base": "maple", "lamm.maple_placement": "after_ctx", "lamm.tokens_per_label": 1},
                   "maple+lamm"),
}
_MAPLE = {"prompt_learner.ctx": (2, DT), "prompt_learner.proj.weight": (DV, DT), "prompt_learner.proj.bias": (DV,),
          "prompt_learner.compound_prompts_text.0": (2, DT),
          "prompt_learner.compound_prompt_projections.0.weight": (DV, DT),
          "prompt_learner.compound_prompt_projections.0.bias": (DV,)}
# The reference state_dict names and shapes each case must produce (reference trainers, tiny widths).
REFERENCE = {
    "coop": {"ctx": (4, DT)},
    "coop_csc": {"ctx": (C, 3, DT)},
    "cocoop": {"ctx": (4, DT), "meta_net.linear1.weight": (E // 16, E), "meta_net.linear1.bias": (E // 16,),
               "meta_net.linear2.weight": (DT, E // 16), "meta_net.linear2.bias": (DT,)},
    "maple": _MAPLE,
    "ivlp": {"prompt_learner.ctx": (2, DT), "text_encoder.transformer.resblocks.1.VPT_shallow": (2, DT),
             "image_encoder.VPT": (3, DV), "image_encoder.transformer.resblocks.1.VPT_shallow": (3, DV)},
    "vpt": {"image_encoder.VPT": (4, DV), "image_encoder.transformer.resblocks.1.VPT_shallow": (4, DV)},
    "rpo": {"text_prompt": (4, DT), "img_prompt": (4, DV)},
    "lamm": {"ctx": (4, DT), "token_classes": (C, 1, DT), "fix_token": (C, 1, DT)},
    "coop_lamm": {"ctx": (4, DT), "token_classes": (C, 1, DT), "fix_token": (C, 1, DT)},
    "maple_lamm": {**_MAPLE, "prompt_learner.token_classes": (C, 1, DT), "prompt_learner.fix_token": (C, 1, DT)},
}
# One reference config setting each case must print (the options that rebuild the prompt there).
SETTINGS = {"coop": "TRAINER.COOP.N_CTX 4 TRAINER.COOP.CSC False", "coop_csc": "TRAINER.COOP.CSC True",
            "cocoop": "TRAINER.COCOOP.N_CTX 4", "maple": "TRAINER.MAPLE.PROMPT_DEPTH 2",
            "ivlp": "TRAINER.IVLP.N_CTX_VISION 3", "vpt": "TRAINER.VPT.N_CTX_VISION 4", "rpo": "TRAINER.RPO.K 4",
            "lamm": "--origin-clip TRAINER.COOP.CTX_INIT 'a photo of a'", "coop_lamm": "TRAINER.COOP.N_CTX 4",
            "maple_lamm": "TRAINER.MAPLE.CTX_INIT 'a photo of a'"}
LINEAR = {"cocoop": {"meta_net.linear1.weight": "meta/linear1/kernel", "meta_net.linear2.weight": "meta/linear2/kernel"},
          "maple": {"prompt_learner.proj.weight": "proj/kernel"}}


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(1), (3, 32, 32, 3))


def trained(method, seed=2):
  """init + a random perturbation: what a training run would export."""
  leaves, treedef = jax.tree_util.tree_flatten(method.init(jax.random.key(0)))
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(treedef, [np.asarray(x + 0.05 * jax.random.normal(k, x.shape))
                                                for x, k in zip(leaves, keys)])


def export_metadata(method, config):
  return {"method": method.name, "method_config": config.to_dict(), "classnames": NAMES}


# --- ours -> reference -> ours ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_keeps_names_shapes_leaves_and_logits(case, tiny_backbone, images, tmp_path):
  name, overrides, variant_name = CASES[case]
  config = method_config(name, **overrides)
  method = methods.build(name, config, tiny_backbone, NAMES)
  ours = trained(method)
  variant, state = to_reference(ours, export_metadata(method, config), tiny_backbone)
  assert variant.name == variant_name
  assert SETTINGS[case] in reference_settings(variant, config, state)
  assert {key: value.shape for key, value in state.items()} == REFERENCE[case]
  flat = trees.flatten(ours)
  for reference_key, leaf in LINEAR.get(case.split("_")[0], {}).items():
    np.testing.assert_array_equal(state[reference_key], flat[leaf].T)  # torch Linear: (out, in)

  path = write_checkpoint(str(tmp_path / variant.model_dir / "model.pth.tar-3"), state, 3)
  read, epoch = read_checkpoint(path)
  assert epoch == 3 and read.keys() == state.keys()
  back, back_config, settled = from_reference(variant.name, read, NAMES, tiny_backbone)
  assert trees.flatten(back).keys() == flat.keys()
  for leaf, value in flat.items():
    np.testing.assert_array_equal(trees.flatten(back)[leaf], value, err_msg=leaf)
  assert settled["name"] == name
  rebuilt = methods.build(back_config.name, back_config, tiny_backbone, NAMES)
  np.testing.assert_allclose(rebuilt.logits(back, tiny_backbone.params, images),
                             method.logits(ours, tiny_backbone.params, images), rtol=1e-6, atol=1e-6)


def test_labels0_and_fixed_template_words_are_written_for_lamm(tiny_backbone):
  config = method_config("lamm")
  method = methods.build("lamm", config, tiny_backbone, NAMES)
  metadata = export_metadata(method, config)
  del metadata["method_config"]["lamm"]["tokens_per_label"]  # an export from before an option existed
  _, state = to_reference(trained(method), metadata, tiny_backbone)
  np.testing.assert_array_equal(state["fix_token"], method.labels0)
  np.testing.assert_array_equal(state["ctx"], phrase_embeddings(tiny_backbone, "a photo of a"))


# --- hand-built reference checkpoints ---------------------------------------------------------------------------------
def rand(*shape):
  return 0.05 * torch.randn(*shape)


def frozen_clip():
  """A few of the frozen CLIP weights a whole-model (MaPLe / IVLP / VPT) checkpoint also holds."""
  return {"image_encoder.conv1.weight": rand(DV, 3, 8, 8), "image_encoder.positional_embedding": rand(17, DV),
          "image_encoder.proj": rand(DV, E), "image_encoder.transformer.resblocks.0.attn.in_proj_weight":
          rand(3 * DV, DV), "text_encoder.positional_embedding": rand(32, DT), "text_encoder.text_projection":
          rand(DT, E), "text_encoder.ln_final.weight": rand(DT), "logit_scale": torch.tensor(4.6)}


def fixed_tokens(prefix=""):
  return {f"{prefix}token_prefix": rand(C, 1, DT), f"{prefix}token_suffix": rand(C, 27, DT)}


def maple_state(prefix="prompt_learner."):
  return {f"{prefix}ctx": rand(2, DT), f"{prefix}proj.weight": rand(DV, DT).half(), f"{prefix}proj.bias":
          rand(DV).half(), f"{prefix}compound_prompts_text.0": rand(2, DT),
          f"{prefix}compound_prompt_projections.0.weight": rand(DV, DT),
          f"{prefix}compound_prompt_projections.0.bias": rand(DV)}


def maple_leaves(s):
  n = lambda key: s[key].float().numpy()
  return {"ctx": n("prompt_learner.ctx"), "proj": {"kernel": n("prompt_learner.proj.weight").T,
                                                   "bias": n("prompt_learner.proj.bias")},
          "deep_text": n("prompt_learner.compound_prompts_text.0")[None],
          "deep_proj": {"kernel": n("prompt_learner.compound_prompt_projections.0.weight").T[None],
                        "bias": n("prompt_learner.compound_prompt_projections.0.bias")[None]}}


def hand_built(variant, backbone):
  """(reference state_dict, the leaves it must convert to, options it fixes) for each variant."""
  if variant == "coop":
    s = {"ctx": rand(C, 6, DT), **fixed_tokens()}
    return s, {"ctx": s["ctx"].numpy()}, {"coop.n_ctx": 6, "coop.csc": True}
  if variant == "cocoop":
    s = {"ctx": rand(3, DT), "meta_net.linear1.weight": rand(1, E), "meta_net.linear1.bias": rand(1),
         "meta_net.linear2.weight": rand(DT, 1), "meta_net.linear2.bias": rand(DT), **fixed_tokens()}
    n = lambda key: s[key].numpy()
    return s, {"ctx": n("ctx"), "meta": {
        "linear1": {"kernel": n("meta_net.linear1.weight").T, "bias": n("meta_net.linear1.bias")},
        "linear2": {"kernel": n("meta_net.linear2.weight").T, "bias": n("meta_net.linear2.bias")}}}, {
        "cocoop.n_ctx": 3}
  if variant == "maple":
    s = {**maple_state(), **fixed_tokens("prompt_learner."), **frozen_clip()}
    return s, maple_leaves(s), {"maple.depth": 2, "maple.n_ctx": 2}
  if variant == "ivlp":
    s = {"prompt_learner.ctx": rand(2, DT), "text_encoder.transformer.resblocks.1.VPT_shallow": rand(2, DT),
         "image_encoder.VPT": rand(3, DV), "image_encoder.transformer.resblocks.1.VPT_shallow": rand(3, DV),
         **fixed_tokens("prompt_learner."), **frozen_clip()}
    text = np.stack([s["prompt_learner.ctx"].numpy(), s["text_encoder.transformer.resblocks.1.VPT_shallow"].numpy()])
    vision = np.stack([s["image_encoder.VPT"].numpy(),
                       s["image_encoder.transformer.resblocks.1.VPT_shallow"].numpy()])
    return s, {"text_prompts": text, "vision_prompts": vision}, {"ivlp.vision_tokens": 3, "ivlp.text_depth": 2}
  if variant == "vpt":
    s = {"image_encoder.VPT": rand(5, DV), **frozen_clip()}  # depth 1: no deeper prompts
    return s, {"prompts": s["image_encoder.VPT"].numpy()[None]}, {"vpt.n_tokens": 5, "vpt.depth": 1}
  if variant == "rpo":
    s = {"text_prompt": rand(6, DT), "img_prompt": rand(6, DV)}
    return s, {"text_prompts": s["text_prompt"].numpy(), "image_prompts": s["img_prompt"].numpy()}, {"rpo.k": 6}
  labels = {"token_classes": rand(C, 1, DT), "fix_token": rand(C, 1, DT), "token_suffix_test": rand(C, 28, DT)}
  if variant == "lamm":  # --origin-clip: ctx is the frozen "a photo of a", saved in half precision
    words = torch.from_numpy(phrase_embeddings(backbone, "a photo of a")).half()
    s = {"ctx": words, **labels, **fixed_tokens()}
    return s, {"labels": s["token_classes"].numpy()}, {"lamm.base": "none", "lamm.tokens_per_label": 1}
  if variant == "coop+lamm":
    s = {"ctx": rand(4, DT), **labels, **fixed_tokens()}
    return s, {"ctx": s["ctx"].numpy(), "labels": s["token_classes"].numpy()}, {"lamm.base": "coop"}
  s = {**maple_state(), **{f"prompt_learner.{k}": v for k, v in {**labels, **fixed_tokens()}.items()},
       **frozen_clip()}
  return s, {**maple_leaves(s), "labels": s["prompt_learner.token_classes"].numpy()}, {
      "lamm.maple_placement": "after_ctx"}


def save_dassl(path, state, epoch=5):
  """torch.save of Dassl's dict: the scheduler pickles whole objects (a warm-up wrapper of an unimportable module
  around torch's cosine schedule around the optimizer), as Dassl's warm-up schedulers do."""
  params = [torch.nn.Parameter(value.float().clone()) for value in state.values()]
  optimizer = torch.optim.SGD(params, lr=0.002, momentum=0.9)
  cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 10)
  module = types.ModuleType("fake_dassl_lr_scheduler")
  warmup = type("ConstantWarmupScheduler", (), {"__module__": module.__name__})
  module.ConstantWarmupScheduler = warmup
  scheduler = warmup()
  scheduler.successor, scheduler.warmup_epoch = cosine, 1
  sys.modules[module.__name__] = module
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"state_dict": collections.OrderedDict(state), "epoch": epoch, "optimizer": optimizer.state_dict(),
                "scheduler": {"successor": scheduler, "last_epoch": 4}, "val_result": np.float64(0.5)}, path)
  finally:
    del sys.modules[module.__name__]  # the converter must read it without the class
  return path


@pytest.mark.parametrize("variant", ["coop", "cocoop", "maple", "ivlp", "vpt", "rpo", "lamm", "coop+lamm",
                                     "maple+lamm"])
def test_hand_built_dassl_checkpoints_convert(variant, tiny_backbone, tmp_path):
  state, leaves, fixed = hand_built(variant, tiny_backbone)
  path = save_dassl(str(tmp_path / "prompt_learner" / "model.pth.tar-5"), state)
  read, epoch = read_checkpoint(path)
  assert epoch == 5
  tree, config, settled = from_reference(variant, read, NAMES, tiny_backbone, where=path)
  got, want = trees.flatten(tree), trees.flatten(leaves)
  assert got.keys() == want.keys()
  for leaf in want:
    np.testing.assert_allclose(got[leaf], want[leaf], rtol=0, atol=0, err_msg=leaf)
  for key, value in fixed.items():
    assert settled[key] == value, key
  shapes = jax.eval_shape(methods.build(config.name, config, tiny_backbone, NAMES).init, jax.random.key(0))
  assert {k: v.shape for k, v in trees.flatten(shapes).items()} == {k: v.shape for k, v in got.items()}


def test_shallow_maple_has_no_deep_leaves(tiny_backbone):
  state = {key: value for key, value in maple_state().items() if "compound" not in key}  # PROMPT_DEPTH 1
  tree, config, _ = from_reference("maple", numpy_state(state), NAMES, tiny_backbone)
  assert config.maple.depth == 1 and set(trees.flatten(tree)) == {"ctx", "proj/kernel", "proj/bias"}
  metadata = {"method": "maple", "method_config": config.to_dict(), "classnames": NAMES}
  assert set(to_reference(tree, metadata, tiny_backbone)[1]) == set(state)


def test_command_line_both_ways(tiny_backbone, images, tmp_path, capsys):
  state, leaves, _ = hand_built("maple", tiny_backbone)
  path = save_dassl(str(tmp_path / "ref" / "MultiModalPromptLearner" / "model.pth.tar-5"), state)
  names_file = tmp_path / "names.txt"
  names_file.write_text("\n".join(NAMES) + "\n")
  assert main(["from-reference", "--method", "maple", "--checkpoint", path, "--classnames", str(names_file),
               "--out", str(tmp_path / "ours"), "--backbone", "tiny-random"]) == 0
  printed = capsys.readouterr().out
  assert "--config.eval_prompts=" in printed and "--config.method.maple.depth=2" in printed
  trainable, metadata = checkpoint.load_prompts(str(tmp_path / "ours" / "prompts.npz"))
  assert metadata["method"] == "maple" and metadata["classnames"] == NAMES and metadata["reference"]["epoch"] == 5
  for leaf, value in trees.flatten(leaves).items():
    np.testing.assert_array_equal(trees.flatten(trainable)[leaf], value)
  method = methods.build("maple", ml_collections.ConfigDict(metadata["method_config"]), tiny_backbone, NAMES)
  assert np.isfinite(np.asarray(method.logits(trainable, tiny_backbone.params, images))).all()

  assert main(["to-reference", "--prompts", str(tmp_path / "ours"), "--out", str(tmp_path / "back"), "--epoch", "5",
               "--method", "maple", "--backbone", "tiny-random"]) == 0
  assert "--load-epoch 5 --eval-only TRAINER.MAPLE.N_CTX 2 TRAINER.MAPLE.PROMPT_DEPTH 2" in capsys.readouterr().out
  back, epoch = read_checkpoint(str(tmp_path / "back" / "MultiModalPromptLearner" / "model.pth.tar-5"))
  assert epoch == 5 and set(back) == set(_MAPLE)  # prompt keys only; the reference loads them strict=False
  for key in _MAPLE:
    np.testing.assert_array_equal(back[key], state[key].float().numpy(), err_msg=key)


# --- errors -----------------------------------------------------------------------------------------------------------
def numpy_state(state):
  return {key: value.float().numpy() for key, value in state.items()}


def convert(variant, state, backbone, names=NAMES, **kwargs):
  return from_reference(variant, numpy_state(state), names, backbone, where="ck.pth", classnames_file="names.txt",
                        **kwargs)


def test_unknown_key_is_named(tiny_backbone):
  state, _, _ = hand_built("cocoop", tiny_backbone)
  with pytest.raises(ConversionError, match=r"ck.pth: unknown key meta_net.linear3.weight for cocoop"):
    convert("cocoop", {**state, "meta_net.linear3.weight": rand(2, 2)}, tiny_backbone)
  maple, _, _ = hand_built("maple", tiny_backbone)
  with pytest.raises(ConversionError, match=r"unknown key image_encoder.VPT "):  # a prompt MaPLe does not have
    convert("maple", {**maple, "image_encoder.VPT": rand(2, DV)}, tiny_backbone)


def test_shape_that_does_not_fit_names_key_and_both_shapes(tiny_backbone):
  state, _, _ = hand_built("coop+lamm", tiny_backbone)
  with pytest.raises(ConversionError, match=r"ctx has shape \(4, 33\), but coop\+lamm on this backbone expects "
                                            r"\(4, 32\)"):
    convert("coop+lamm", {**state, "ctx": rand(4, 33)}, tiny_backbone)
  cocoop, _, _ = hand_built("cocoop", tiny_backbone)  # a Dense kernel passed without the transpose
  with pytest.raises(ConversionError, match=r"meta_net.linear2.weight has shape \(1, 32\).*expects \(32, 1\)"):
    convert("cocoop", {**cocoop, "meta_net.linear2.weight": rand(1, DT)}, tiny_backbone)
  maple, _, _ = hand_built("maple", tiny_backbone)  # trained on another CLIP (ViT-B/16 positions)
  with pytest.raises(ConversionError, match=r"image_encoder.positional_embedding has shape \(197, 768\), this "
                                            r"backbone's is \(17, 48\)"):
    convert("maple", {**maple, "image_encoder.positional_embedding": rand(197, 768)}, tiny_backbone)
  deep = {**maple, **{f"prompt_learner.compound_prompts_text.{i}": rand(2, DT) for i in (1, 2)},
          **{f"prompt_learner.compound_prompt_projections.{i}.{p}": rand(*s) for i in (1, 2)
             for p, s in (("weight", (DV, DT)), ("bias", (DV,)))}}
  with pytest.raises(ValueError, match=r"maple.depth=4 prompted layers"):
    convert("maple", deep, tiny_backbone)


def test_missing_key_is_named(tiny_backbone):
  state, _, _ = hand_built("maple", tiny_backbone)
  del state["prompt_learner.proj.weight"]
  with pytest.raises(ConversionError, match=r"ck.pth lacks prompt_learner.proj.weight"):
    convert("maple", state, tiny_backbone)


def test_class_count_mismatch_names_the_class_list(tiny_backbone, tmp_path):
  state, _, _ = hand_built("coop", tiny_backbone)  # class-specific context (5, 6, 32)
  bare = {"ctx": state["ctx"]}
  with pytest.raises(ConversionError, match=r"ck.pth: ctx has 5 class rows, but names.txt lists 4 classes"):
    convert("coop", bare, tiny_backbone, names=NAMES[:4])
  lamm, _, _ = hand_built("maple+lamm", tiny_backbone)
  with pytest.raises(ConversionError, match=r"prompt_learner.token_classes has 5 class rows, but names.txt lists 6"):
    convert("maple+lamm", lamm, tiny_backbone, names=NAMES + ["tree"])
  path = save_dassl(str(tmp_path / "prompt_learner" / "model.pth.tar-5"), state)
  names_file = tmp_path / "classes.txt"
  names_file.write_text("cat\ndog\n")
  with pytest.raises(SystemExit) as stop:  # the command line: one line naming the file
    main(["from-reference", "--method", "coop", "--checkpoint", path, "--classnames", str(names_file), "--out",
          str(tmp_path / "out"), "--backbone", "tiny-random"])
  message = str(stop.value)
  assert "\n" not in message and f"{names_file} lists 2 classes" in message and "token_prefix has 5" in message


def test_lamm_on_clip_context_must_be_the_frozen_template(tiny_backbone):
  state, _, _ = hand_built("lamm", tiny_backbone)
  with pytest.raises(ConversionError, match=r"is not the frozen template words 'a photo of a'.*coop\+lamm"):
    convert("lamm", {**state, "ctx": state["ctx"].float() + 0.1}, tiny_backbone)
  with pytest.raises(ConversionError, match=r"not the frozen template words 'a photo of the'"):
    convert("lamm", state, tiny_backbone, options={"lamm.template": "a photo of the {}."})


def test_to_reference_errors(tiny_backbone):
  config = method_config("maple")
  method = methods.build("maple", config, tiny_backbone, NAMES)
  ours = trained(method)
  bad = {**ours, "ctx": np.zeros((3, DT), np.float32)}
  with pytest.raises(ConversionError, match=r"prompts: leaf ctx has shape \(3, 32\), but maple on this backbone "
                                            r"expects \(2, 32\)"):
    to_reference(bad, export_metadata(method, config), tiny_backbone)
  with pytest.raises(ConversionError, match=r"lists 4"):
    to_reference(ours, export_metadata(method, config), tiny_backbone, classnames=NAMES[:4])
  ivlp_config = method_config("lamm", **{"lamm.base": "ivlp"})
  ivlp = methods.build("lamm", ivlp_config, tiny_backbone, NAMES)
  with pytest.raises(ConversionError, match=r"'ivlp\+lamm' has no reference trainer"):
    to_reference(trained(ivlp), export_metadata(ivlp, ivlp_config), tiny_backbone)
  vpt_config = method_config("vpt", **{"vpt.template": "a sketch of a {}."})
  vpt = methods.build("vpt", vpt_config, tiny_backbone, NAMES)
  with pytest.raises(ConversionError, match=r"reference VPT scores 'a photo of a \{\}.'"):
    to_reference(trained(vpt), export_metadata(vpt, vpt_config), tiny_backbone)
  name_config = method_config("lamm", **{"lamm.base": "maple"})  # our default placement: the name tokens
  named = methods.build("lamm", name_config, tiny_backbone, NAMES)
  with pytest.raises(ConversionError, match=r"maple_placement='after_ctx'"):
    to_reference(trained(named), export_metadata(named, name_config), tiny_backbone)


def test_unreadable_file_and_unknown_option(tiny_backbone, tmp_path):
  junk = tmp_path / "model.pth.tar-1"
  junk.write_bytes(b"not a checkpoint")
  with pytest.raises(ConversionError, match=r"model.pth.tar-1 is not a readable torch checkpoint"):
    read_checkpoint(str(junk))
  torch.save({"weights": [1, 2]}, str(tmp_path / "other.pt"))
  with pytest.raises(ConversionError, match=r"holds no state_dict.*found: weights"):
    read_checkpoint(str(tmp_path / "other.pt"))
  state, _, _ = hand_built("rpo", tiny_backbone)
  with pytest.raises(ConversionError, match=r"rpo.kk: unknown method option"):
    convert("rpo", state, tiny_backbone, options={"rpo.kk": 3})
