"""Devices, mesh and shardings: data parallel over every device of every host.

One 1-D mesh `('data',)` with an Auto axis: the batch is sharded along it, everything else (prompts, optimiser
state, the frozen CLIP) is replicated. `jax.jit` with these shardings is the whole parallel story: no pmap.
On a pod slice every host runs the same program; `initialize` starts the multi-host runtime and each host feeds
its own slice of the global batch (`global_batch`).
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

DATA_AXIS = "data"


def initialize(multihost: bool) -> None:
  """Starts the multi-host runtime when asked (config `multihost` or env JAXPROMPT_MULTIHOST=1).

  On TPU VMs and managed clusters JAX finds the coordinator itself. Elsewhere (several processes on one machine, a
  hand-made cluster) set JAXPROMPT_COORDINATOR=host:port, JAXPROMPT_NUM_PROCESSES and JAXPROMPT_PROCESS_ID; CPU
  processes then exchange data through gloo collectives.
  """
  if not (multihost or os.environ.get("JAXPROMPT_MULTIHOST") == "1"):
    return
  if jax.distributed.is_initialized():
    return
  coordinator = os.environ.get("JAXPROMPT_COORDINATOR")
  if coordinator:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator,
                               num_processes=int(os.environ["JAXPROMPT_NUM_PROCESSES"]),
                               process_id=int(os.environ["JAXPROMPT_PROCESS_ID"]))
  else:
    jax.distributed.initialize()
  log.info("multi-host: process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
           jax.local_device_count(), jax.device_count())


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A ('data',) mesh over the first `num_devices` devices (default: all) with an Auto axis."""
  devices = jax.devices()[:num_devices] if num_devices else jax.devices()
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
  if global_batch % mesh.size:
    raise ValueError(f"batch size {global_batch} is not divisible by the {mesh.size} devices of the mesh; "
                     f"choose a multiple of {mesh.size}")


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This host's slice of the batch (leading axis) -> global arrays sharded over the data axis."""
  sharding = batch_sharded(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value)) for key, value in local.items()}


def replicate(tree, mesh: Mesh):
  """Places a pytree on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
