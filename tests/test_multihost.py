"""Multi-host training: two processes of 4 CPU devices each (gloo collectives on loopback) train exactly like one
process of 8 devices. Each process feeds only its rows of every global batch and every host writes its share of
the orbax checkpoint, so this exercises the pod-slice start-up, per-host input and multi-host checkpointing."""

import os
import socket
import subprocess
import sys

import numpy as np

from jaxprompt import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND = [sys.executable, "-m", "jaxprompt.main", "--config", "configs/smoke.py", "--config.train.max_steps=4",
           "--config.optim.warmup_epochs=0", "--config.train.checkpoint_every=2"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAXPROMPT_")}
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env.update(extra)
  return env


def test_two_processes_equal_one(tmp_path):
  single = str(tmp_path / "single")
  subprocess.run(COMMAND + ["--workdir", single], env=_env(8), cwd=ROOT, check=True, capture_output=True,
                 timeout=600)

  multi = str(tmp_path / "multi")
  port = _free_port()
  processes = [subprocess.Popen(COMMAND + ["--workdir", multi], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env=_env(4, JAXPROMPT_MULTIHOST="1", JAXPROMPT_COORDINATOR=f"127.0.0.1:{port}",
                                         JAXPROMPT_NUM_PROCESSES="2", JAXPROMPT_PROCESS_ID=str(i)))
               for i in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for p, output in zip(processes, outputs):
    assert p.returncode == 0, output[-3000:]
  assert "process 0 of 2" in outputs[0] and "process 1 of 2" in outputs[1]

  ours = checkpoint.flatten_tree(checkpoint.load_prompts(os.path.join(multi, "prompts.npz"))[0])
  reference = checkpoint.flatten_tree(checkpoint.load_prompts(os.path.join(single, "prompts.npz"))[0])
  assert sorted(ours) == sorted(reference)
  for key in ours:
    np.testing.assert_allclose(ours[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=key)
  assert sorted(os.listdir(os.path.join(multi, "checkpoints"))) == ["2", "4"]
