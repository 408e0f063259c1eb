"""Text in, token ids out: reading text files (``text.py``) and the tokenizers (``tokenizer.py``)."""
