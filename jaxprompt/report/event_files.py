"""TensorBoard event files for scalars, written with the standard library alone (no TensorFlow, no torch).

    <logdir>/events.out.tfevents.<time>.<host>.<pid>.<n>   one file per `EventFile`; a resumed run adds a file and
                                                           TensorBoard merges them by step

The file is TFRecord framing around serialised `tensorboard.Event` protocol buffers:

    record   = uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
    masked   = ((crc >> 15) | (crc << 17)) + 0xa282ead8   (mod 2**32), crc = CRC-32C (Castagnoli)
    Event    = wall_time (field 1, double) | step (2, int64) | file_version (3, string) or summary (5, Summary)
    Summary  = repeated value (1): Value = tag (1, string) | simple_value (2, float)

The first record holds file_version "brain.Event:2"; each `write_scalars` call is one Event holding every scalar of
that step. This is what tensorboardX's `add_scalar` writes too (simple_value summaries), so TensorBoard reads the
files as it reads theirs. tensorboardX itself is not used: importing it imports torch whenever torch is installed.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from typing import Callable, Mapping

FILE_VERSION = "brain.Event:2"
FLOAT32_MAX = 3.4028234663852886e38


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The CRC TFRecord stores: rotated right by 15 bits plus a constant."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
  """One TFRecord: length, its masked CRC, the data, its masked CRC."""
  length = struct.pack("<Q", len(data))
  return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


# --- protocol-buffer encoding (only the wire types these messages use) -----------------------------------------------
def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    low, value = value & 0x7F, value >> 7
    out.append(low | (0x80 if value else 0))
    if not value:
      return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int | None = None, *, file_version: str | None = None,
           summary: bytes | None = None) -> bytes:
  out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time)
  if step is not None:
    out += _varint(2 << 3 | 0) + _varint(step)
  if file_version is not None:
    out += _length_delimited(3, file_version.encode())
  if summary is not None:
    out += _length_delimited(5, summary)
  return out


def scalar_summary(scalars: Mapping[str, float]) -> bytes:
  """A Summary holding one simple_value per tag (float32, as TensorBoard stores scalars)."""
  return b"".join(_length_delimited(1, _length_delimited(1, tag.encode()) + _varint(2 << 3 | 5) + _float32(value))
                  for tag, value in scalars.items())


def _float32(value: float) -> bytes:
  """value as a little-endian float32; beyond float32's range it becomes +-inf (as a cast would), not an error."""
  value = float(value)
  if math.isfinite(value) and abs(value) > FLOAT32_MAX:
    value = math.copysign(math.inf, value)
  return struct.pack("<f", value)


class EventFile:
  """Appends scalar Events to a new event file under `logdir` (created on the first write).

  write_scalars(step, {tag: value}): one Event at `step` (an int >= 0) holding every value as a float32. Each write
  opens, appends and closes the file, so what was written is on disk whatever happens to the process next.
  """

  def __init__(self, logdir: str, *, clock: Callable[[], float] = time.time):
    self.logdir, self.clock = logdir, clock
    self.path: str | None = None

  def _start(self) -> None:
    os.makedirs(self.logdir, exist_ok=True)
    stem = f"events.out.tfevents.{int(self.clock()):010d}.{socket.gethostname()}.{os.getpid()}"
    n = 0
    while os.path.exists(os.path.join(self.logdir, f"{stem}.{n}")):
      n += 1
    self.path = os.path.join(self.logdir, f"{stem}.{n}")
    with open(self.path, "xb") as f:
      f.write(tfrecord(_event(self.clock(), file_version=FILE_VERSION)))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
      raise ValueError(f"TensorBoard event step={step!r}: expected an int >= 0")
    if not scalars:
      return
    if self.path is None:
      self._start()
    with open(self.path, "ab") as f:
      f.write(tfrecord(_event(self.clock(), step, summary=scalar_summary(scalars))))
