"""Reading and writing Dassl's torch checkpoint files, and the class-names file (torch is imported only here).

A Dassl checkpoint is `torch.save({"state_dict", "epoch", "optimizer", "scheduler", "val_result"})`. Its scheduler
entry often pickles whole objects (Dassl's warm-up scheduler holds its successor, which holds the optimizer), which
torch's weights-only loader refuses and which would need Dassl installed to unpickle. Such files are read with an
unpickler that rebuilds tensors and containers and replaces every other object by an inert stand-in, so nothing a
checkpoint names is imported or run.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import types

import numpy as np

from jaxprompt.convert.names import ConversionError, StateDict


def import_torch():
  """torch, or a one-line error saying how to install it."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError("converting reference checkpoints needs torch: pip install 'jaxprompt[torch]' "
                          "(torch==2.13.0, the CPU build is enough)") from None
  return torch


class _Opaque:
  """Stands in for every pickled object that is not a tensor or a container (schedulers, optimizers, numpy scalars)."""

  def __new__(cls, *args, **kwargs):
    return object.__new__(cls)

  def __init__(self, *args, **kwargs):
    pass

  def __call__(self, *args, **kwargs):
    return _Opaque()

  def __setstate__(self, state):
    self.state = state

  def __setitem__(self, key, value):
    pass

  def append(self, value):
    pass

  def extend(self, values):
    pass


_REAL_GLOBALS = frozenset({
    ("collections", "OrderedDict"), ("torch", "Size"), ("torch", "Tensor"), ("torch", "device"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch.nn.parameter", "Parameter"), ("_codecs", "encode"),
    *(("builtins", name) for name in ("set", "frozenset", "list", "dict", "tuple", "int", "float", "bool", "complex",
                                      "bytearray", "slice")),
})
"""What a state dict needs rebuilt for real: tensors (storages are torch's own), containers, dtypes."""


def _tensors_only_pickle(torch) -> types.ModuleType:
  """A pickle module for torch.load whose Unpickler turns every global outside `_REAL_GLOBALS` into `_Opaque`."""

  class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
      if (module, name) in _REAL_GLOBALS or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
        return super().find_class(module, name)
      return _Opaque

  module = types.ModuleType("jaxprompt_tensors_only")
  module.Unpickler = Unpickler
  module.load = lambda file, **kwargs: Unpickler(file, **kwargs).load()
  return module


def read_checkpoint(path: str) -> tuple[StateDict, int | None]:
  """A reference checkpoint (Dassl dict or bare state dict) -> ({key: float32 array}, epoch or None)."""
  torch = import_torch()
  if os.path.isdir(path):
    raise ConversionError(f"{path} is a directory: give the checkpoint file, e.g. {path}/prompt_learner/"
                          "model.pth.tar-50")
  if not os.path.exists(path):
    raise FileNotFoundError(f"reference checkpoint {path} not found")
  try:
    try:
      saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
      saved = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tensors_only_pickle(torch))
  except Exception as error:  # noqa: BLE001  (torch raises RuntimeError, UnpicklingError, EOFError, ...)
    first = (str(error).strip().splitlines() or [""])[0][:200]
    raise ConversionError(f"{path} is not a readable torch checkpoint: {type(error).__name__}: {first}") from None
  if isinstance(saved, dict) and isinstance(saved.get("state_dict"), dict):
    state, epoch = saved["state_dict"], saved.get("epoch")
  elif isinstance(saved, dict) and saved and all(isinstance(v, torch.Tensor) for v in saved.values()):
    state, epoch = saved, None
  else:
    found = ", ".join(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__
    raise ConversionError(f"{path} holds no state_dict (a Dassl checkpoint has state_dict, epoch, optimizer, "
                          f"scheduler); found: {found}")
  arrays = {}
  for key, value in state.items():
    if isinstance(value, torch.Tensor) and value.is_floating_point():
      arrays[str(key)] = value.detach().to(torch.float32).numpy()
    else:  # not a prompt: reported as an unknown key unless the method skips it
      arrays[str(key)] = np.asarray(value.detach().numpy() if isinstance(value, torch.Tensor) else value)
  return arrays, (int(epoch) if isinstance(epoch, (int, np.integer)) else None)


def write_checkpoint(path: str, state: StateDict, epoch: int) -> str:
  """Writes {"state_dict", "epoch", "optimizer": None, "scheduler": None, "val_result": None} (atomically)."""
  torch = import_torch()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tensors = collections.OrderedDict((key, torch.tensor(np.asarray(value, np.float32))) for key, value in state.items())
  temporary = f"{path}.tmp-{os.getpid()}"
  torch.save({"state_dict": tensors, "epoch": int(epoch), "optimizer": None, "scheduler": None,
              "val_result": None}, temporary)
  os.replace(temporary, path)
  return path


def read_classnames(path: str) -> list[str]:
  """One class name per line (blank lines skipped), a JSON list, or a prompts.json ({"classnames": [...]})."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"class names file {path} not found")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if path.endswith(".json"):
    loaded = json.loads(text)
    names = loaded.get("classnames", []) if isinstance(loaded, dict) else loaded
  else:
    names = [line.strip() for line in text.splitlines() if line.strip()]
  if not names or not isinstance(names, list) or not all(isinstance(name, str) for name in names):
    raise ConversionError(f"class names file {path} lists no class names (one per line, or a JSON list)")
  return list(names)
