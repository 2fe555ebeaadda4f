"""Per evaluation set: `evaluations/<set>.json` (accuracy, per-class accuracy, confusion matrix) and, for up to
`MAX_PLOTTED_CLASSES` classes, `evaluations/<set>_confusion.png` (rows: true class, columns: predicted)."""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure  # drawn on a Figure: pyplot's global backend is never touched

from jaxprompt import workdir as workdirs

MAX_PLOTTED_CLASSES = 100


def file_stem(name: str) -> str:
  """An evaluation set's name as a file name ("target/imagenet_v2" -> "target_imagenet_v2")."""
  return name.replace("/", "_")


def write_evaluations(out_dir: str, evaluations: Mapping[str, Any]) -> list[str]:
  """Writes each `evaluate.Evaluation`'s record (and its heat map when small enough); returns the paths."""
  folder = workdirs.as_path(out_dir) / "evaluations"
  folder.mkdir(parents=True, exist_ok=True)
  paths = []
  for name, evaluation in evaluations.items():
    path = folder / f"{file_stem(name)}.json"
    workdirs.write_json_atomic(path, {"name": name, **evaluation.record()}, indent=None)
    paths.append(str(path))
    if len(evaluation.classnames) <= MAX_PLOTTED_CLASSES:
      paths.append(confusion_png(folder / f"{file_stem(name)}_confusion.png", name, evaluation.classnames,
                                 evaluation.confusion))
  return paths


def confusion_png(path, title: str, classnames, confusion: np.ndarray) -> str:
  """A row-normalised confusion heat map (each row sums to 1 over the classes' test examples)."""
  totals = np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  size = min(2 + 0.25 * len(classnames), 24)
  fig = Figure(figsize=(size, size))
  ax = fig.add_subplot()
  image = ax.imshow(confusion / totals, vmin=0, vmax=1, cmap="Blues")
  ticks = range(len(classnames))
  fontsize = 8 if len(classnames) <= 30 else 4
  ax.set_xticks(ticks, classnames, rotation=90, fontsize=fontsize)
  ax.set_yticks(ticks, classnames, fontsize=fontsize)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(f"{title}: {100.0 * np.trace(confusion) / max(confusion.sum(), 1):.1f}% top-1")
  fig.colorbar(image, ax=ax, fraction=0.046)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  workdirs.write_bytes_atomic(path, buffer.getvalue())
  return str(path)
