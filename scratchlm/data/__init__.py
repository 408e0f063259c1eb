"""Text in, token ids out: DATA's files and their streaming tokenizing (``corpus.py``), reading text
and cutting batches (``text.py``) and the tokenizers (``tokenizer.py``)."""
