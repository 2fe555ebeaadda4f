"""Prompt interpretation (`python -m jaxprompt.interpret`): nearest vocabulary tokens of learned context vectors."""

import json

import jax
import numpy as np

from jaxprompt import checkpoint, interpret, methods
from jaxprompt.clip import weights
from tests.conftest import method_config


def test_nearest_tokens_is_the_brute_force_ranking():
  rng = np.random.default_rng(0)
  table, vectors = rng.normal(size=(50, 6)), rng.normal(size=(4, 6))
  ids, distances = interpret.nearest_tokens(vectors, table, 5)
  brute = np.linalg.norm(vectors[:, None] - table[None], axis=-1)
  np.testing.assert_array_equal(ids, np.argsort(brute, axis=1)[:, :5])
  np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :5], rtol=1e-12)


def phrase_coop(backbone, classnames, **options):
  config = method_config("coop", **{"coop.ctx_init": "a photo of a", **options})
  return methods.build("coop", config, backbone, classnames)


def test_a_phrase_context_maps_back_to_its_tokens_at_distance_zero(tiny_backbone, tmp_path, capsys, monkeypatch):
  """CoOp's ctx initialised from "a photo of a", exported as a run would, read back by the CLI (backbone from the
  run's config.json): each of the 4 vectors' nearest token is the phrase's own token at distance exactly 0, the
  next ones strictly further."""
  classnames = ["cat", "dog"]
  coop = phrase_coop(tiny_backbone, classnames)
  checkpoint.export_prompts(str(tmp_path), coop.init(jax.random.key(0)), {"method": "coop", "classnames": classnames})
  (tmp_path / "config.json").write_text(json.dumps({"backbone": "tiny-random", "backbone_tokenizer": ""}))
  loaded = []
  monkeypatch.setattr(weights, "load", lambda name, tokenizer=None: loaded.append(name) or tiny_backbone)
  out = tmp_path / "report.json"
  assert interpret.main(["--prompts", str(tmp_path / "prompts.npz"), "--k", "3", "--json", str(out)]) == 0
  assert loaded == ["tiny-random"]
  report = json.loads(out.read_text())
  (leaf,) = report["leaves"]
  assert leaf["leaf"] == "ctx" and leaf["shape"] == [4, tiny_backbone.config.text_config.hidden_size]
  (group,) = leaf["groups"]
  phrase_ids = tiny_backbone.tokenizer.encode("a photo of a")
  for vector, token_id, word in zip(group["vectors"], phrase_ids, ["a", "photo", "of", "a"]):
    first, *rest = vector["nearest"]
    assert (first["id"], first["text"], first["distance"]) == (token_id, word, 0.0)
    assert len(rest) == 2 and all(n["distance"] > 0 for n in rest)
  printed = capsys.readouterr().out
  assert "1: a (0.0000)" in printed and "2: photo (0.0000)" in printed


def test_class_specific_and_deep_leaves(tiny_backbone):
  """CoOp csc (C, M, D) is grouped by class name; IVLP-style text_prompts (depth, n, D) uses layer 0 only; leaves
  outside the token space (deep_text, vision prompts) are skipped with a reason."""
  table = np.asarray(tiny_backbone.params["text_model"]["embeddings"]["token_embedding"]["embedding"])
  ids = np.array([[3, 7], [11, 13]])
  trainable = {"ctx": table[ids], "text_prompts": np.stack([table[[5, 9]], table[[1, 2]] + 100.0]),
               "deep_text": table[None, [1, 2]], "vision_prompts": np.zeros((2, 2, 48))}
  report = interpret.interpret(trainable, table, lambda i: (f"t{i}", f"w{i}"), k=1, classnames=["cat", "dog"])
  leaves = {entry["leaf"]: entry for entry in report["leaves"]}
  assert set(leaves) == {"ctx", "text_prompts"} and set(report["skipped"]) == {"deep_text", "vision_prompts"}
  assert [g["group"] for g in leaves["ctx"]["groups"]] == ["cat", "dog"]
  assert [[v["nearest"][0]["id"] for v in g["vectors"]] for g in leaves["ctx"]["groups"]] == ids.tolist()
  (layer0,) = leaves["text_prompts"]["groups"]
  assert layer0["group"] == "layer 0" and [v["nearest"][0]["id"] for v in layer0["vectors"]] == [5, 9]
  assert "layers 1..1" in leaves["text_prompts"]["note"]


def test_maple_and_cocoop_ctx_are_interpreted(tiny_backbone):
  """The methods' own init trees: MaPLe's and CoCoOp's `ctx` from "a photo"/"a photo of a" map back exactly."""
  table = np.asarray(tiny_backbone.params["text_model"]["embeddings"]["token_embedding"]["embedding"])
  for name in ("maple", "cocoop"):
    method = methods.build(name, method_config(name), tiny_backbone, ["cat", "dog"])
    report = interpret.interpret(method.init(jax.random.key(0)), table, lambda i: (str(i), str(i)), k=1)
    ctx = next(entry for entry in report["leaves"] if entry["leaf"] == "ctx")
    n = ctx["shape"][0]
    expected = tiny_backbone.tokenizer.encode("a photo of a")[:n]
    assert [v["nearest"][0]["id"] for v in ctx["groups"][0]["vectors"]] == expected
    assert all(v["nearest"][0]["distance"] == 0.0 for v in ctx["groups"][0]["vectors"])
