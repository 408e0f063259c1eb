"""Which arithmetic the matrix products of Linear and the MLP use: float32, or bf16 inputs.

``with bf16_products():`` around a forward pass makes every ``LinearOp`` and
``FeedForwardOp`` inside it round its operands (activations, weights, and in backward the
incoming gradients) to bfloat16 and multiply them on the CPU's bf16 units, accumulating
in float32 (``kernels/bf16.py``). Everything else stays float32: the weights the optimizer
updates, its moments, norms, softmax, the loss and the residual stream. Each op keeps the
product it used in its context, so backward runs in the precision of its forward wherever
it is called from.

``Float32Products`` and ``Bf16Products`` share one small interface, so an op is written once:

    operand(x)      the array the product reads: x itself, or its bf16 bits (uint16)
    matmul(a, b)    a (M, K) @ b (K, N) of two operands -> float32 (M, N)
    rounds          whether operands are bf16: kernels that make one can write it so directly
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from scratchlm.kernels import bf16 as bf16_kernels
from scratchlm.kernels import blas as blas_kernels

_state = threading.local()


class Float32Products:
    name = "fp32"
    rounds = False                 # kernels that make an operand write it as float32

    @staticmethod
    def operand(x):
        return x

    @staticmethod
    def matmul(a, b):
        return blas_kernels.matmul(a, b)


class Bf16Products:
    name = "bf16"
    rounds = True                  # kernels that make an operand write its bf16 bits (gelu.py)

    @staticmethod
    def operand(x):
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32):
            raise TypeError(f"bf16 products take float32 NumPy arrays (the CPU), not {type(x).__name__} "
                            f"of {x.dtype}: leave bf16_products() off for float64 or a GPU")
        return bf16_kernels.round_to_bf16(x)                 # same shape, uint16 bits

    @staticmethod
    def matmul(a, b):
        return bf16_kernels.matmul(a, b)


FLOAT32, BF16 = Float32Products(), Bf16Products()
PRECISIONS = (FLOAT32.name, BF16.name)            # --precision's choices


def products():
    """The products ops record now: BF16 inside ``bf16_products()``, FLOAT32 otherwise."""
    return getattr(_state, "products", FLOAT32)


@contextlib.contextmanager
def bf16_products(enabled: bool = True):
    """Within this block (on this thread), Linear and MLP products read bf16 operands."""
    previous = products()
    _state.products = BF16 if enabled else FLOAT32
    try:
        yield
    finally:
        _state.products = previous


def bf16_unavailable_reason(device: str = "cpu") -> str | None:
    """None when ``--precision bf16`` can run on ``device``, else why not, in one line."""
    if device != "cpu":
        return "bf16 products run on the CPU only so far"
    return bf16_kernels.unavailable_reason()
