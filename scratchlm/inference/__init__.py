"""Using a trained model: the KV-cache decoder (``decoder.py``), sampling text (``sampling.py``),
scoring a text (``scoring.py``, what ``evaluate`` reports) and the interactive prompt loop."""
