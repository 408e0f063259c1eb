"""scratchlm: train, sample and evaluate character-level GPT models with an engine written from scratch.

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

__all__ = ["Tensor", "no_grad", "__version__"]


def __getattr__(name):
    """``scratchlm.Tensor`` and ``scratchlm.no_grad``, imported on first use."""
    if name == "Tensor":
        from scratchlm.autograd.tensor import Tensor

        return Tensor
    if name == "no_grad":
        from scratchlm.autograd.function import no_grad

        return no_grad
    raise AttributeError(f"module 'scratchlm' has no attribute {name!r}")
