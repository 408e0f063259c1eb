"""What the kernel tests share: the dtypes, input makers, the tolerance check of a tuple of
results, and the table of every dispatcher with the compiled version it should pick.

DISPATCHERS rows are (module, dispatcher name, the fast version's name, a function making
small float32 arguments); tests/kernels/test_dispatch.py checks that reference mode never
calls the fast version and auto mode does, and tests/kernels/test_cuda.py runs the same
dispatchers on CuPy arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

from scratchlm.kernels import adamw, attention, bf16, cross_entropy, dropout, embedding, gelu, layernorm, rmsnorm
from scratchlm.kernels._lesson import assert_close

DTYPES = [np.float32, np.float64]
# the tests that run MKL's bf16 product skip where this CPU or this install has none
needs_bf16_product = pytest.mark.skipif(not bf16.available(), reason=f"no bf16 product here: {bf16.unavailable_reason()}")


def normal(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


def assert_all_close(got, want, dtype):
    """Each of two tuples of arrays agrees in dtype, shape and value (the dtype's tolerance)."""
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert_close(g, w, dtype)


def ones(*shape):
    return np.ones(shape, np.float32)


def _attention_backward_args():
    q = k = v = ones(1, 2, 3, 4)
    return np.ones_like(q), q, k, v, attention.attention_forward_reference(q, k, v)[1]


DISPATCHERS = [
    (attention, "attention_forward", "attention_forward_v2", lambda: (ones(1, 2, 3, 4),) * 3),
    (attention, "attention_backward", "attention_backward_v2", _attention_backward_args),
    (adamw, "adamw_step", "adamw_step_v1", lambda: (*(ones(5) for _ in range(4)), 1, 1e-3, 0.9, 0.99, 1e-8, 0.1, 3)),
    (adamw, "grad_norm", "grad_norm_v1", lambda: (ones(5),)),
    (layernorm, "layernorm_forward", "layernorm_forward_v1", lambda: (ones(2, 3), ones(3), np.zeros(3, np.float32))),
    (rmsnorm, "rmsnorm_forward", "rmsnorm_forward_v1", lambda: (ones(2, 3), ones(3))),
    (gelu, "gelu_forward", "gelu_forward_v2", lambda: (ones(2, 3),)),
    (embedding, "embedding_forward", "embedding_forward_v1", lambda: (ones(4, 3), np.array([0, 3]))),
    (cross_entropy, "cross_entropy_forward", "cross_entropy_forward_v1", lambda: (ones(2, 3), np.array([0, 2]))),
    (layernorm, "layernorm_backward", "layernorm_backward_v1",
     lambda: (ones(2, 3), ones(2, 3), ones(3), ones(2), ones(2))),
    (rmsnorm, "rmsnorm_backward", "rmsnorm_backward_v1", lambda: (ones(2, 3), ones(2, 3), ones(3), ones(2))),
    (gelu, "gelu_backward", "gelu_backward_v2", lambda: (ones(2, 3), ones(2, 3))),
    (embedding, "embedding_backward", "embedding_backward_v1", lambda: (ones(2, 3), np.array([0, 3]), 4)),
    (dropout, "dropout", "dropout_v1", lambda: (ones(2, 3), 0.5, 1)),
]
