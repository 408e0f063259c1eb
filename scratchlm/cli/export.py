"""The ``export`` command: a checkpoint (or a GPT-2 folder) -> a Hugging Face GPT-2 folder.

The model is checked (GPT-2 must be able to express it) and OUTPUT_DIR must not exist
before anything is written; the folder appears whole or not at all.
"""

from __future__ import annotations


def run_export_command(args: dict) -> int:
    from scratchlm.checkpoint import load_checkpoint
    from scratchlm.huggingface.export import export_folder

    checkpoint = load_checkpoint(args["CKPT"])
    output = export_folder(checkpoint, args["CKPT"], args["OUTPUT_DIR"])
    if not args.get("--quiet"):
        print(f"Wrote {output}: load it with transformers' AutoModelForCausalLM.from_pretrained({str(output)!r}) "
              "and AutoTokenizer.from_pretrained")
    return 0
