"""MetricsLog's TensorBoard event files, read back with an independent decoder: the TFRecord framing parsed here, its
CRCs checked with tensorboardX's CRC-32C, the Events parsed by tensorboardX's protobuf classes (the protobuf library),
and compared with what tensorboardX's own SummaryWriter writes for the same scalars."""

import glob
import json
import math
import os
import struct

import numpy as np
import pytest
import tensorboardX
from tensorboardX import crc32c as tbx_crc32c
from tensorboardX.proto import event_pb2, summary_pb2

from jaxprompt.report import event_files, run_files


def masked(data):
  crc = tbx_crc32c.crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path):
  """Every Event of one file, each record's framing and both CRCs checked."""
  with open(path, "rb") as f:
    data = f.read()
  events, at = [], 0
  while at < len(data):
    header = data[at:at + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[at + 8:at + 12])
    payload = data[at + 12:at + 12 + length]
    (payload_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
    assert header_crc == masked(header) and payload_crc == masked(payload), f"bad CRC in record at byte {at}"
    event = event_pb2.Event()
    event.ParseFromString(payload)
    events.append(event)
    at += 16 + length
  assert at == len(data)  # no torn record at the end
  return events


def scalars(events):
  """{(step, tag): value} over the summary events."""
  return {(e.step, v.tag): v.simple_value for e in events if e.HasField("summary") for v in e.summary.value}


def trainer_records():
  """Records as train.fit writes them: per step {"step", "epoch", ...scalars}, images/s after a progress line,
  validation scores, and a per-class list that only metrics.jsonl keeps."""
  return [{"step": 1, "epoch": 0, "loss": np.float32(2.5), "loss/ce": 2.25, "lr": 0.002, "grad_norm": 0.125,
           "accuracy": 0.25},
          {"step": 2, "epoch": 0, "loss": 1.5, "loss/ce": 1.25, "lr": 0.001, "grad_norm": np.float64(0.5),
           "accuracy": 0.5, "per_class": [1.0, 0.0], "note": "x", "skipped": False},
          {"step": 2, "images_per_s": 512.0},
          {"step": np.int64(4), "epoch": 1, "val/accuracy": 61.25, "loss": float("nan"), "grad_norm": 1e39}]


def test_metrics_log_writes_the_same_scalars_to_tensorboard(tmp_path):
  log = run_files.MetricsLog(str(tmp_path), tensorboard=True)
  for record in trainer_records():
    log.write(record)
  [path] = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  events = read_events(path)
  assert events[0].file_version == "brain.Event:2" and not events[0].HasField("summary")
  assert [e.step for e in events[1:]] == [1, 2, 2, 4]  # one event per record
  assert all(e.wall_time > 1.6e9 for e in events)
  got = scalars(events)
  assert got == pytest.approx({
      (1, "loss"): 2.5, (1, "loss/ce"): 2.25, (1, "lr"): np.float32(0.002), (1, "grad_norm"): 0.125,
      (1, "accuracy"): 0.25, (2, "loss"): 1.5, (2, "loss/ce"): 1.25, (2, "lr"): np.float32(0.001),
      (2, "grad_norm"): 0.5, (2, "accuracy"): 0.5, (2, "images_per_s"): 512.0, (4, "val/accuracy"): 61.25,
      (4, "loss"): math.nan, (4, "grad_norm"): math.inf}, nan_ok=True)  # step/epoch are the axis; lists skipped
  assert got[(1, "lr")] == np.float32(0.002)  # stored as float32, as TensorBoard keeps scalars
  # metrics.jsonl is unchanged by the event file: every key, numpy values as plain JSON.
  lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert lines[1]["per_class"] == [1.0, 0.0] and lines[3]["step"] == 4 and lines[0]["loss"] == 2.5
  assert len(lines) == 4


def test_event_bytes_match_the_protobuf_encoder_and_tensorboardx(tmp_path):
  clock = lambda: 1700000000.25
  ours = event_files.EventFile(str(tmp_path / "ours"), clock=clock)
  ours.write_scalars(300, {"loss": 0.75, "val/accuracy": 88.5})
  events = read_events(ours.path)
  expected = event_pb2.Event(wall_time=1700000000.25, step=300, summary=summary_pb2.Summary(value=[
      summary_pb2.Summary.Value(tag="loss", simple_value=0.75),
      summary_pb2.Summary.Value(tag="val/accuracy", simple_value=88.5)]))
  assert events[1].SerializeToString() == expected.SerializeToString()
  assert os.path.basename(ours.path).startswith("events.out.tfevents.1700000000.")
  # tensorboardX's writer, for the same scalars: the same (step, tag, value) triples.
  writer = tensorboardX.SummaryWriter(str(tmp_path / "tbx"))
  for tag, value in (("loss", 0.75), ("val/accuracy", 88.5)):
    writer.add_scalar(tag, value, 300)
  writer.close()
  [theirs] = glob.glob(str(tmp_path / "tbx" / "events.out.tfevents.*"))
  assert scalars(read_events(theirs)) == scalars(events) == {(300, "loss"): 0.75, (300, "val/accuracy"): 88.5}
  assert read_events(theirs)[0].file_version == events[0].file_version


def test_crc32c_known_answer_and_a_resumed_log_adds_a_file(tmp_path):
  assert event_files.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
  assert event_files.crc32c(b"") == 0 and event_files.crc32c(bytes(32)) == tbx_crc32c.crc32c(bytes(32))
  first = run_files.MetricsLog(str(tmp_path), tensorboard=True)
  first.write({"step": 1, "loss": 1.0})
  second = run_files.MetricsLog(str(tmp_path), tensorboard=True)  # the resumed run
  second.write({"step": 2, "loss": 0.5})
  paths = sorted(glob.glob(str(tmp_path / "tensorboard" / "events.*")))
  assert len(paths) == 2 and first.events.path != second.events.path
  merged = {}
  for path in paths:
    merged.update(scalars(read_events(path)))
  assert merged == {(1, "loss"): 1.0, (2, "loss"): 0.5}


def test_errors_and_tensorboard_off(tmp_path):
  log = run_files.MetricsLog(str(tmp_path / "on"), tensorboard=True)
  os.makedirs(tmp_path / "on")
  with pytest.raises(ValueError, match="step=None: TensorBoard needs an int step"):
    log.write({"loss": 1.0})
  with pytest.raises(ValueError, match="step=2.5"):
    log.write({"step": 2.5, "loss": 1.0})
  assert not os.path.exists(tmp_path / "on" / "metrics.jsonl")  # nothing half-written
  with pytest.raises(ValueError, match="step=-1"):
    event_files.EventFile(str(tmp_path / "ev")).write_scalars(-1, {"loss": 1.0})
  off = tmp_path / "off"
  os.makedirs(off)
  run_files.MetricsLog(str(off)).write({"step": 1, "loss": 1.0})
  assert os.listdir(off) == ["metrics.jsonl"]  # no tensorboard/ without the flag


def test_progress_exposes_the_window_rate():
  now = [0.0]
  progress = run_files.Progress(total_steps=10, steps_per_epoch=5, batch_size=8, start_step=0, clock=lambda: now[0])
  assert math.isnan(progress.images_per_s)
  now[0] = 2.0
  line = progress.line(4, [{"loss": 1.0}] * 4)
  assert progress.images_per_s == 16.0 and "| 16.0 img/s |" in line  # 4 steps x 8 images in 2 s
