"""`build_for_run` (the run's method block with the dataset's templates) and `method.for_classes` (the trained method
over another class list), for every method."""

import jax
import numpy as np
import pytest

from jaxprompt import methods
from tests.conftest import method_config

NAMES = ["cat", "dog", "red_circle", "big car"]
OTHER = ["tree", "house", "dog"]
TEMPLATES = ["a photo of a {}.", "a sketch of the {}."]

CASES = {
    "zeroshot": ("zeroshot", {}),
    "coop": ("coop", {"coop.n_ctx": 2}),
    "cocoop": ("cocoop", {}),
    "vpt": ("vpt", {}),
    "ivlp": ("ivlp", {}),
    "maple": ("maple", {}),
    "rpo": ("rpo", {"rpo.k": 3}),
    "lamm-none": ("lamm", {}),
    "lamm-coop": ("lamm", {"lamm.base": "coop", "coop.ctx_init": "a photo of a"}),
    "lamm-maple": ("lamm", {"lamm.base": "maple"}),
    "mmap": ("mmap", {}),
}


@pytest.fixture(scope="module")
def images():
  return jax.random.normal(jax.random.key(1), (3, 32, 32, 3))


def moved(trainable):
  """The tree after some training: every leaf moved off its initial value."""
  return jax.tree_util.tree_map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(2), x.shape), trainable)


@pytest.mark.parametrize("case", sorted(CASES))
def test_for_classes_keeps_the_prompts(tiny_backbone, images, case):
  name, overrides = CASES[case]
  method = methods.build_for_run(method_config(name, templates=[], **overrides), tiny_backbone, NAMES, TEMPLATES)
  params = tiny_backbone.params
  trainable = moved(method.init(jax.random.key(0)))
  trained = jax.jit(method.logits)(trainable, params, images)
  same = method.for_classes(NAMES, TEMPLATES)
  assert type(same) is type(method) and same.classnames == NAMES
  np.testing.assert_array_equal(jax.jit(same.logits)(trainable, params, images), trained)
  other = jax.jit(method.for_classes(OTHER, TEMPLATES).logits)(trainable, params, images)
  assert other.shape == (3, len(OTHER)) and np.isfinite(np.asarray(other)).all()


def test_build_for_run_resolves_empty_templates_and_for_classes_does_the_same(tiny_backbone, images):
  params = tiny_backbone.params
  run_block = method_config("zeroshot", templates=[])
  method = methods.build_for_run(run_block, tiny_backbone, NAMES, TEMPLATES)
  assert list(method.config.templates) == TEMPLATES[:1] and list(run_block.templates) == []  # the block is not changed
  ensemble = methods.build_for_run(method_config("zeroshot", templates=[], ensemble=True), tiny_backbone, NAMES,
                                   TEMPLATES)
  assert list(ensemble.config.templates) == TEMPLATES
  # Another dataset's templates: resolved from the run block as build_for_run would.
  target_templates = ["a painting of a {}.", "a photo of a {}."]
  view = method.for_classes(OTHER, target_templates)
  assert list(view.config.templates) == target_templates[:1]
  direct = methods.build_for_run(run_block, tiny_backbone, OTHER, target_templates)
  np.testing.assert_array_equal(jax.jit(view.logits)({}, params, images), jax.jit(direct.logits)({}, params, images))
  assert list(method.for_classes(OTHER).config.templates) == TEMPLATES[:1]  # no templates: the method's own
  # Templates the run config names are kept whatever the dataset's.
  fixed = methods.build_for_run(method_config("zeroshot", templates=["a sketch of the {}."]), tiny_backbone, NAMES,
                                TEMPLATES)
  assert list(fixed.for_classes(OTHER, target_templates).config.templates) == ["a sketch of the {}."]


def test_class_specific_coop_scores_only_its_own_classes(tiny_backbone, images):
  method = methods.build("coop", method_config(**{"coop.csc": True, "coop.n_ctx": 2}), tiny_backbone, NAMES)
  trainable = moved(method.init(jax.random.key(0)))
  params = tiny_backbone.params
  np.testing.assert_array_equal(jax.jit(method.for_classes(NAMES).logits)(trainable, params, images),
                                jax.jit(method.logits)(trainable, params, images))
  with pytest.raises(ValueError, match=r"method\.coop\.csc") as error:
    method.for_classes(["tree", "house"])
  assert "\n" not in str(error.value)
  shared = methods.build("coop", method_config(**{"coop.n_ctx": 2}), tiny_backbone, NAMES)
  assert shared.for_classes(["tree", "house"]).prompts.ids.shape[0] == 2
