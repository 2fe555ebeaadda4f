"""The run config: every block declared, strict `:arg` parsing, one depth rule, the multi-task builder."""

import pytest

from jaxprompt import config, methods

KINDS = {"shots": 16, "smoke": False, "lr": 0.002, "dataset": "dtd"}


def test_base_config_declares_every_block_each_run_kind_reads():
  base = config.base_config()
  assert {"data", "method", "optim", "train", "multitask", "continual", "demo", "linear_probe"} <= set(base.keys())
  assert base.multitask.mode == "mmap_mt" and base.continual.num_tasks == 2 and tuple(base.demo.methods) == ()
  # Every registered method has its options block, so `--config.method.<name>.<key>` always names a real key.
  assert set(methods.registered()) <= set(base.method.keys())


@pytest.mark.parametrize("arg,key,value", [("smoke=ture", "smoke", "ture"), ("smoke=maybe", "smoke", "maybe"),
                                           ("shots=4.5", "shots", "4.5"), ("shots=True", "shots", "True"),
                                           ("lr=fast", "lr", "fast")])
def test_parse_arg_rejects_bad_values_naming_key_and_value(arg, key, value):
  with pytest.raises(ValueError) as error:
    config.parse_arg(arg, KINDS)
  assert f"{key}={value!r}" in str(error.value)


def test_parse_arg_types_values_like_their_defaults():
  values = config.parse_arg("shots=4,smoke=TRUE,lr=1e-3,dataset=1e-3", KINDS)
  assert values == {"shots": 4, "smoke": True, "lr": 0.001, "dataset": "1e-3"}  # strings stay as written
  assert isinstance(values["lr"], float) and config.parse_arg("lr=1", KINDS)["lr"] == 1.0
  assert config.parse_arg("smoke=0", KINDS)["smoke"] is False and config.parse_arg(None, KINDS) == KINDS
  with pytest.raises(KeyError, match="unknown config argument 'shot'"):
    config.parse_arg("shot=4", KINDS)
  with pytest.raises(ValueError, match="not key=value"):
    config.parse_arg("shots", KINDS)


def test_fit_depth_caps_every_depth_option_of_every_method():
  capped = config.fit_depth(config.base_config(), 3)
  depth_fields = [(name, option) for name, cls in methods.registered().items()
                  for option in getattr(cls, "depth_options", ())]
  assert ("ivlp", "text_depth") in depth_fields and ("mmap", "depth") in depth_fields
  for name, option in depth_fields:
    assert capped.method[name][option] == min(config.base_config().method[name][option], 3), (name, option)
  assert config.base_config().method.maple.depth > 3  # the default really was capped
  # Only the depth options move.
  assert capped.method.coop.n_ctx == config.base_config().method.coop.n_ctx


def test_paper_configs_fit_shipped_backbones_and_not_others():
  embedded, _ = config.paper_config("backbone=embedded", method="maple", protocol="all", lr=0.1, epochs=1,
                                    batch_size=4)
  assert config.finish(embedded, {}).method.maple.depth == 3
  tiny, _ = config.paper_config("backbone=tiny-random:3", method="maple", protocol="all", lr=0.1, epochs=1,
                                batch_size=4)
  assert config.finish(tiny, {}).method.ivlp.vision_depth == 2
  real, _ = config.paper_config(None, method="maple", protocol="all", lr=0.1, epochs=1, batch_size=4)
  assert config.finish(real, {}).method.maple.depth == config.base_config().method.maple.depth


def test_multitask_config_builds_world_tasks_and_rejects_unknown_methods():
  built = config.multitask_config("dataset=world,backbone=tiny-random,smoke=True", dataset="office_home",
                                  domains=("Art",))
  assert built.run_kind == "multitask" and tuple(built.multitask.tasks) == config.WORLD_TASKS
  assert built.multitask.mode == "mmap_mt" and built.method.mmap.depth == 2 and built.smoke
  coop = config.multitask_config("method=coop", dataset="office_home", domains=("Art", "Clipart"))
  assert coop.multitask.mode == "mt" and tuple(coop.multitask.domains) == ("Art", "Clipart")
  with pytest.raises(ValueError, match="method='rpo'"):
    config.multitask_config("method=rpo", dataset="office_home", domains=())
