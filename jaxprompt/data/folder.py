"""A user's own data as an image folder: `<root>/<split>/<class>/*` (split in train, val, test).

Classes are the sorted union of the class folders of all splits (label = index), so the label space is the same in
every split; a class may be absent from a split, but a class folder without images is an error naming it.
"""

from __future__ import annotations

import os

from jaxprompt.data import files
from jaxprompt.data.registry import register
from jaxprompt.data.types import Example, Source


@register("image_folder")
def build_image_folder(root: str, templates: list[str] | tuple[str, ...] = ("a photo of a {}.",),
                       name: str = "image_folder") -> Source:
  """Splits are the sub-folders of `root` named train, val or test (train and test are required)."""
  root = os.path.abspath(os.path.expanduser(root))
  files.require_dir(root, "dataset root")
  for required in ("train", "test"):
    files.require_dir(os.path.join(root, required), f"{required!r} split folder")
  split_names = [s for s in ("train", "val", "test") if os.path.isdir(os.path.join(root, s))]
  classes = sorted({c for s in split_names for c in files.list_subdirs(os.path.join(root, s))})
  if not classes:
    raise ValueError(f"image folder has no class folders under {root}/<split>/")
  splits = {}
  for split in split_names:
    examples = []
    for label, cls in enumerate(classes):
      folder = os.path.join(root, split, cls)
      if os.path.isdir(folder):
        examples += [Example(os.path.join(folder, f), label, cls) for f in files.list_images(folder)]
    splits[split] = examples
  for template in templates:
    if template.count("{}") != 1:
      raise ValueError(f"template {template!r} must contain exactly one '{{}}'")
  return Source(name=name, classnames=[files.prompt_name(c) for c in classes], templates=list(templates),
                splits=splits, reader=files.read_example_file, raw_classnames=classes)
