"""grain input pipelines: infinite shuffled train batches with a resumable state, padded eval batches with a mask.

Train (`train_loader`): epoch e visits the examples in the order `np.random.default_rng([seed, e, 0, 2])
.permutation(N)`, cut into steps_per_epoch = floor(N / B) global batches of B (the last incomplete batch is dropped,
as the reference's loader does when N >= B). When N < B the reference keeps the single incomplete batch, so an epoch
is one batch of all N examples (its size is N, not B: the step sees a smaller batch, as in the reference). Host p of
P takes rows [p * B/P, (p+1) * B/P) of every global batch, so B (and N when N < B) must be divisible by P. Example i
in epoch e is augmented with `augment_rng(seed, e, i)`: batches are a pure function of (seed, step), which is what
makes a restored iterator continue bit-identically.

Corrupt images (the reader raises `CorruptImageError`, or any decode/OS error) never stop a run: each is logged once
with a warning naming it and recorded in the run's own `CorruptImageLog`, which the run creates, passes to every
loader (`corrupt_log=`, required) and reports at the end (`entries()`). The log is keyed by (source name, example
key), so dataset A's corrupt image 5 never masks dataset B's image 5: every loader is told its source's name
(`source_name=`, required). In a train batch the corrupt image's slot is filled with the next readable example of the
same epoch order (deterministic, so resumption stays exact); in an eval batch its slot is masked out (mask False).

A class that cannot be trained on stops the run: before the first batch the train loader reads each class's training
images in the given order until one decodes (usually one read per class), and raises ValueError naming the class when
none does. The rule is deterministic (same reads on every host and resume) and costs one decode per class.

Decoding and augmentation run in `worker_threads` grain read threads, one batch per thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import threading
from typing import Iterator, Sequence

import grain
import numpy as np

from jaxprompt.data import transforms
from jaxprompt.data.types import CorruptImageError, Example, ImageReader

_ENDLESS = 2**62  # steps in the "infinite" train MapDataset


class CorruptImageLog:
  """One run's record of the corrupt images met so far, keyed by (source name, example key); warns once per image.

  Thread-safe (the loaders read in several threads). `entries()` gives one readable line per image.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._errors: dict[tuple[str, str], tuple[str | int, str]] = {}

  def record(self, source_name: str, key: str | int, error: Exception) -> None:
    """Records that `key` of source `source_name` cannot be read (a warning the first time)."""
    with self._lock:
      if (source_name, str(key)) in self._errors:
        return
      self._errors[(source_name, str(key))] = (key, str(error))
    logging.warning("skipping corrupt image: %s", describe(source_name, key, error))

  def has(self, source_name: str, key: str | int) -> bool:
    with self._lock:
      return (source_name, str(key)) in self._errors

  def entries(self) -> list[str]:
    """Sorted lines "<file path> (source <name>): <error>", or "<name> example <key>: <error>" for index keys."""
    with self._lock:
      items = sorted(self._errors.items())
    return [describe(source_name, key, error) for (source_name, _), (key, error) in items]

  def __len__(self) -> int:
    with self._lock:
      return len(self._errors)


def describe(source_name: str, key: str | int, error) -> str:
  """A corrupt image as one line naming the file (path keys) or the dataset and index (TFDS, world sources)."""
  if isinstance(key, str):
    return f"{key} (source {source_name}): {error}"
  return f"{source_name} example {key}: {error}"


def _read(reader: ImageReader, example: Example, source_name: str, log: CorruptImageLog) -> np.ndarray | None:
  """The example's pixels, or None (logged) if they cannot be read."""
  if log.has(source_name, example.key):
    return None
  try:
    image = reader(example)
  except (CorruptImageError, OSError, ValueError) as error:
    log.record(source_name, example.key, error)
    return None
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    log.record(source_name, example.key,
               ValueError(f"reader returned {image.dtype} {image.shape}, expected uint8 (H, W, 3)"))
    return None
  return image


def check_every_class_readable(examples: Sequence[Example], reader: ImageReader, source_name: str,
                               log: CorruptImageLog, worker_threads: int = 1) -> None:
  """Raises ValueError naming the first class (in label order) none of whose images in `examples` can be read.

  Reads each class's images in their order in `examples` and stops at the first that decodes, so a healthy set costs
  one decode per class. Unreadable images are recorded in `log` as usual.
  """
  by_label: dict[int, list[Example]] = {}
  for example in examples:
    by_label.setdefault(example.label, []).append(example)

  def first_readable(label):
    return any(_read(reader, example, source_name, log) is not None for example in by_label[label])

  labels = sorted(by_label)
  with concurrent.futures.ThreadPoolExecutor(max(1, worker_threads)) as pool:
    readable = list(pool.map(first_readable, labels))
  for label, ok in zip(labels, readable):
    if not ok:
      group = by_label[label]
      raise ValueError(f"{source_name}: class {label} ({group[0].classname!r}) has no readable training image: all "
                       f"{len(group)} are corrupt, e.g. {group[0].key}")


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """floor(N / B) when N >= B, else 1 (one batch of all N examples)."""
  if num_examples <= 0:
    raise ValueError("cannot build a train loader over 0 examples")
  if global_batch_size <= 0:
    raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
  return max(1, num_examples // global_batch_size)


def default_worker_threads() -> int:
  return max(1, min(8, os.cpu_count() or 1))


class TrainLoader:
  """Infinite iterator of {"images": float32 (B_local, S, S, 3), "labels": int32 (B_local,)}.

  B_local = global_batch_size // process_count (or N // process_count when N < global_batch_size).
  `get_state()` is a JSON-able dict (save it with `orbax.checkpoint.args.JsonSave`); `set_state(state)` on a loader
  built with the same arguments makes the next batch the one that followed when the state was taken.
  """

  def __init__(self, examples: Sequence[Example], reader: ImageReader, image_size: int, global_batch_size: int,
               seed: int, *, corrupt_log: CorruptImageLog, source_name: str, process_index: int = 0,
               process_count: int = 1, worker_threads: int | None = None, min_crop_scale: float = 0.08):
    self.examples, self.reader, self.image_size, self.seed = list(examples), reader, image_size, seed
    self.corrupt_log, self.source_name = corrupt_log, source_name
    self.min_crop_scale = min_crop_scale
    self.num_examples = n = len(self.examples)
    self.global_batch_size = global_batch_size
    self.process_index, self.process_count = process_index, process_count
    self.steps_per_epoch = steps_per_epoch(n, global_batch_size)
    epoch_batch = min(n, global_batch_size)
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} is not in 0..{process_count - 1}")
    if epoch_batch % process_count:
      raise ValueError(f"the global batch ({epoch_batch} = min(N={n}, batch={global_batch_size})) is not divisible "
                       f"by process_count={process_count}")
    self.local_batch_size = epoch_batch // process_count
    self._row_offset = process_index * self.local_batch_size
    self._orders: dict[int, np.ndarray] = {}
    self._order_lock = threading.Lock()
    threads = worker_threads or default_worker_threads()
    check_every_class_readable(self.examples, reader, source_name, corrupt_log, threads)
    dataset = grain.MapDataset.range(0, _ENDLESS).map(self.batch)
    self._dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads))
    self._iterator = iter(self._dataset)

  def epoch_order(self, epoch: int) -> np.ndarray:
    """int (N,): the order in which epoch `epoch` visits the examples (cached for the last few epochs)."""
    with self._order_lock:
      if epoch not in self._orders:
        if len(self._orders) >= 4:
          self._orders.pop(min(self._orders))
        self._orders[epoch] = np.random.default_rng([self.seed, epoch, 0, 2]).permutation(self.num_examples)
      return self._orders[epoch]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This host's rows of global batch `step` (a pure function of seed and step)."""
    epoch, position = divmod(step, self.steps_per_epoch)
    order = self.epoch_order(epoch)
    start = position * self.global_batch_size + self._row_offset
    images, labels = [], []
    for slot in range(self.local_batch_size):
      image, label = self._readable(order, start + slot, epoch)
      images.append(image)
      labels.append(label)
    return {"images": np.stack(images), "labels": np.asarray(labels, np.int32)}

  def _readable(self, order, position, epoch):
    """The augmented image at `position` of the epoch order, or of the next readable position (wrapping)."""
    for offset in range(self.num_examples):
      index = int(order[(position + offset) % self.num_examples])
      example = self.examples[index]
      pixels = _read(self.reader, example, self.source_name, self.corrupt_log)
      if pixels is not None:
        rng = transforms.augment_rng(self.seed, epoch, index)
        return transforms.train_transform(pixels, self.image_size, rng, self.min_crop_scale), example.label
    raise RuntimeError(f"none of the {self.num_examples} training images can be read; see the warnings above")

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def _fingerprint(self) -> dict:
    return {"seed": self.seed, "num_examples": self.num_examples, "global_batch_size": self.global_batch_size,
            "process_count": self.process_count, "image_size": self.image_size}

  def get_state(self) -> dict:
    """{"next_step": int, plus the arguments the state is only valid for} (JSON-able)."""
    return {"next_step": int(self._iterator.get_state()["next_index"]), **self._fingerprint()}

  def set_state(self, state: dict) -> None:
    for key, value in self._fingerprint().items():
      if state.get(key) != value:
        raise ValueError(f"data iterator state was saved with {key}={state.get(key)!r}, this loader has {value!r}")
    self._iterator = iter(self._dataset)
    self._iterator.set_state({"next_index": int(state["next_step"])})

  @property
  def next_step(self) -> int:
    return int(self._iterator.get_state()["next_index"])


def train_loader(examples: Sequence[Example], reader: ImageReader, image_size: int, global_batch_size: int, seed: int,
                 *, corrupt_log: CorruptImageLog, source_name: str, process_index: int = 0, process_count: int = 1,
                 worker_threads: int | None = None, min_crop_scale: float = 0.08) -> TrainLoader:
  """The infinite shuffled train iterator (see `TrainLoader` and the module docstring).

  corrupt_log: the run's log (shared by all its loaders); source_name: the name of the source the examples come from
  (`Source.name`), which keys the log. Raises ValueError naming a class none of whose images can be read.
  """
  return TrainLoader(examples, reader, image_size, global_batch_size, seed, corrupt_log=corrupt_log,
                     source_name=source_name, process_index=process_index, process_count=process_count,
                     worker_threads=worker_threads, min_crop_scale=min_crop_scale)


class EvalBatches:
  """Iterable of {"images": float32 (B_local, S, S, 3), "labels": int32 (B_local,), "mask": bool (B_local,)}.

  ceil(N / B) global batches on every host; global batch b holds examples b*B .. b*B+B-1 in order, host p the rows
  [p * B/P, (p+1) * B/P). Rows past the end (and corrupt images) have mask False, zero images and label 0, so summing
  `mask`-weighted results over all hosts counts every readable example exactly once.
  """

  def __init__(self, examples: Sequence[Example], reader: ImageReader, image_size: int, global_batch_size: int, *,
               corrupt_log: CorruptImageLog, source_name: str, process_index: int = 0, process_count: int = 1,
               worker_threads: int | None = None):
    if global_batch_size <= 0 or global_batch_size % process_count:
      raise ValueError(f"global_batch_size={global_batch_size} must be positive and divisible by "
                       f"process_count={process_count}")
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index {process_index} is not in 0..{process_count - 1}")
    self.examples, self.reader, self.image_size = list(examples), reader, image_size
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self._row_offset = process_index * self.local_batch_size
    self.num_batches = math.ceil(len(self.examples) / global_batch_size)
    self.corrupt_log, self.source_name = corrupt_log, source_name
    self.worker_threads = worker_threads or default_worker_threads()

  def __len__(self) -> int:
    return self.num_batches

  def batch(self, b: int) -> dict[str, np.ndarray]:
    size = self.image_size
    images = np.zeros((self.local_batch_size, size, size, 3), np.float32)
    labels = np.zeros((self.local_batch_size,), np.int32)
    mask = np.zeros((self.local_batch_size,), bool)
    start = b * self.global_batch_size + self._row_offset
    for slot, index in enumerate(range(start, min(start + self.local_batch_size, len(self.examples)))):
      example = self.examples[index]
      pixels = _read(self.reader, example, self.source_name, self.corrupt_log)
      if pixels is not None:
        images[slot] = transforms.test_transform(pixels, size)
        labels[slot] = example.label
        mask[slot] = True
    return {"images": images, "labels": labels, "mask": mask}

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    if self.num_batches == 0:
      return iter(())
    dataset = grain.MapDataset.range(0, self.num_batches).map(self.batch)
    threads = self.worker_threads
    return iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)))


def eval_batches(examples: Sequence[Example], reader: ImageReader, image_size: int, global_batch_size: int, *,
                 corrupt_log: CorruptImageLog, source_name: str, process_index: int = 0, process_count: int = 1,
                 worker_threads: int | None = None) -> EvalBatches:
  """Padded, masked evaluation batches (see `EvalBatches`); iterate it once per evaluation.

  corrupt_log / source_name: as for `train_loader` (the run's log; the name of the examples' source).
  """
  return EvalBatches(examples, reader, image_size, global_batch_size, corrupt_log=corrupt_log,
                     source_name=source_name, process_index=process_index, process_count=process_count,
                     worker_threads=worker_threads)
