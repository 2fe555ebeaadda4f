"""Data: sources (split files, image folders, DomainNet lists, TFDS), few-shot and base/novel splits, CLIP
transforms and grain pipelines. Modules: `registry` / `sources` (build_source), `fewshot`, `transforms`,
`pipeline`, `files` (the default image reader)."""
