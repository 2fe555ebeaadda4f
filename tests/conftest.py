"""Shared fixtures: a tiny random CLIP with its own word-level tokenizer (no downloads)."""

import os

# Tests see 8 simulated CPU devices so the multi-device paths run everywhere; single-device tests use one of them.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import pytest  # noqa: E402

from jaxprompt.clip import weights  # noqa: E402


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
  """Tiny random CLIP: text 32 wide x 2 layers, vision 48 wide x 2 layers, 32 px images, patch 8, context 32."""
  return weights.random_backbone(str(tmp_path_factory.mktemp("tiny_clip")), seed=0)
