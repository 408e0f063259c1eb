"""scratchlm: train, sample and evaluate character-level GPT models with an engine written from scratch.

For scripts and notebooks: ``scratchlm.train(data, **settings)``, ``scratchlm.load(path)`` ->
``model.generate(prompt)``, ``model.evaluate(text)`` (``scratchlm/api.py``, docs/python-api.md).

The autograd (``scratchlm.autograd.tensor``, ``scratchlm.autograd.function``, ``scratchlm.autograd.ops``), the layers
(``scratchlm.nn``), the model (``scratchlm.model``) and the optimizer (``scratchlm.optim``)
run on NumPy or CuPy arrays; the hot loops live in ``scratchlm.kernels``. Importing this
package is cheap: ``Tensor`` and ``no_grad`` load NumPy and the autograd when first used, and
nothing loads Numba or CuPy. (So the command line starts at once, and a Ctrl-C while its modules
load reaches its handler instead of printing a traceback.)
"""

__version__ = "0.1.0"

import os

# Before NumPy loads OpenBLAS: its idle worker threads then go to sleep at once instead of
# spinning (yielding) for 2^28 cycles, about 0.1 s, after every matrix product. On a 2-core
# machine those spinning threads took the cores from the Numba kernels that follow each
# product (docs/performance.md).
# A user's own setting wins; if NumPy was imported before scratchlm this comes too late.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from scratchlm._allocator import keep_freed_memory

keep_freed_memory()

__all__ = ["Model", "Tensor", "__version__", "errors", "load", "no_grad", "prepare", "train"]

# name -> the module that defines it, imported on first use
_LAZY = {"load": "scratchlm.api", "train": "scratchlm.api", "prepare": "scratchlm.api", "Model": "scratchlm.api",
         "Tensor": "scratchlm.autograd.tensor", "no_grad": "scratchlm.autograd.function"}


def __getattr__(name):
    """The Python API (``scratchlm.api``: load, train, prepare, Model; docs/python-api.md) and
    ``Tensor`` and ``no_grad``, imported on first use; ``scratchlm.errors`` is an ordinary submodule."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "errors":
        import scratchlm.errors as errors

        return errors
    raise AttributeError(f"module 'scratchlm' has no attribute {name!r}")
