"""Prompt checkpoints of the reference PyTorch code <-> this project's prompt export (`prompts.npz` + `prompts.json`).

    python -m jaxprompt.convert from-reference --method maple \\
        --checkpoint output/base2new/train_base/dtd/shots_16/MaPLe/.../MultiModalPromptLearner/model.pth.tar-5 \\
        --classnames dtd_classnames.txt --out runs/maple_ref [--backbone openai/clip-vit-base-patch16] \\
        [--option maple.ctx_init="a photo of a"]
    python -m jaxprompt.main --config configs/maple_b2n.py:dataset=dtd,root=/data --workdir runs/maple_ref_eval \\
        --mode eval --config.eval_prompts=runs/maple_ref/prompts.npz   # plus the --config.method.* flags printed

    python -m jaxprompt.convert to-reference --prompts runs/maple/prompts.npz --out ref/ [--epoch 5]
    # -> ref/MultiModalPromptLearner/model.pth.tar-5; in the reference repo: --model-dir ref --load-epoch 5 --eval-only

`--method` is one of coop (shared or class-specific context), cocoop, maple, ivlp, vpt, rpo, lamm (on CLIP),
coop+lamm, maple+lamm. A reference checkpoint is Dassl's `<output>/<model name>/model.pth.tar-<epoch>` (a torch
pickle holding `state_dict`, `epoch`, `optimizer`, `scheduler`; a bare state dict also works); the names and shapes
of every variant, and what is skipped, are in `names.py`. `--classnames` is a text file with one class name
per line in the reference's label order (or a JSON list, or a `prompts.json`). What the checkpoint fixes (context
length, prompt depths, K, tokens per label, class-specific context) is read off its shapes; other options that
change the logits (CoOp's `class_position`, MaPLe / IVLP `ctx_init`, LAMM's `template`) are the defaults unless
given with `--option key=value` (keys of the `method` config block). The command prints the `--config.method.*`
flags that evaluate the export.

`to-reference` rebuilds the method from `prompts.json` and writes every trainable leaf under its reference name
(Linear weights transposed back to (out, in)), LAMM's initial labels as `fix_token` and LAMM on CLIP's frozen
template words as `ctx`; a whole-model reference checkpoint (MaPLe, IVLP, VPT) gets only its prompt keys, which the
reference's `load_model` (strict=False) loads over the CLIP it builds itself. Needs torch (`pip install
jaxprompt[torch]`); nothing else in the package does.

Errors are one line: an unknown key, a missing key, a shape that does not fit the backbone (naming the key and both
shapes), a class count that does not match the class list (naming the class-names file).
"""

from jaxprompt.convert.names import VARIANTS, ConversionError, Key, Variant, variant_of
from jaxprompt.convert.reference import from_reference, to_reference
from jaxprompt.convert.torch_files import read_checkpoint, read_classnames, write_checkpoint

__all__ = ["VARIANTS", "ConversionError", "Key", "Variant", "from_reference", "read_checkpoint", "read_classnames",
           "to_reference", "variant_of", "write_checkpoint"]
