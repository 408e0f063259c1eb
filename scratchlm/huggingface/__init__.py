"""Hugging Face interchange: GPT-2 folders read as checkpoints, scratchlm models written as GPT-2 folders.

No torch and no transformers: the weights are safetensors files and the tokenizer goes
through the ``tokenizers`` library (the ``hf`` extra). ``load`` reads a folder, ``export``
writes one that ``transformers`` loads with no extra code.
"""
