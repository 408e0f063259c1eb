"""kernels/gelu.py: every version against the reference; the rational tanh far from zero.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import DTYPES, assert_all_close, normal

from scratchlm.kernels import gelu

# ---- GELU ------------------------------------------------------------------------------
GELU_VERSIONS = {
    "v1": (gelu.gelu_forward_v1, gelu.gelu_backward_v1, DTYPES),
    "v2": (gelu.gelu_forward_v2, gelu.gelu_backward_v2, [np.float32]),  # rational tanh
}


@pytest.mark.parametrize("version", GELU_VERSIONS)
@pytest.mark.parametrize("shape", [(1,), (3, 5, 7), (2, 1000)])
def test_gelu_versions_match_reference(rng, version, shape):
    forward, backward, dtypes = GELU_VERSIONS[version]
    for dtype in dtypes:
        x, dy = normal(rng, shape, dtype, 3.0), normal(rng, shape, dtype)
        assert_all_close((forward(x),), (gelu.gelu_forward_reference(x),), dtype)
        assert_all_close((backward(dy, x),), (gelu.gelu_backward_reference(dy, x),), dtype)


def test_gelu_v2_far_from_zero_and_at_zero():
    # beyond |u| = 9 the rational tanh is clamped: GELU(x) = x for large x, 0 for very negative x
    x = np.array([-40.0, -9.0, -4.0, -1e-3, 0.0, 1e-3, 4.0, 9.0, 40.0], dtype=np.float32)
    assert_all_close((gelu.gelu_forward_v2(x),), (gelu.gelu_forward_reference(x),), np.float32)
    dy = np.ones_like(x)
    assert_all_close((gelu.gelu_backward_v2(dy, x),), (gelu.gelu_backward_reference(dy, x),),
                     np.float32)


def test_gelu_backward_dispatch_broadcasts_a_smaller_gradient(rng, kernel_mode):
    # a dy that broadcasts against x must not reach version 2, which reads both as flat arrays
    x, dy = normal(rng, (2, 3), np.float32, 3.0), normal(rng, (3,), np.float32)
    want = gelu.gelu_backward_reference(dy, x)
    assert_all_close((gelu.gelu_backward(dy, x),), (want,), np.float32)
