"""One training run: the loop (``loop.py``), its set-up (``job.py``), what it writes (``outputs.py``),
what it shows (``progress.py``) and data-parallel training over MPI (``distributed*.py``)."""
