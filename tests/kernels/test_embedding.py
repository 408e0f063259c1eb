"""kernels/embedding.py: version 1 against the reference; repeats accumulate; bad ids refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import DTYPES, assert_all_close, normal

from scratchlm.kernels import embedding


# ---- embedding --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ids_dtype", [np.int64, np.int32, np.uint16])
@pytest.mark.parametrize("vocab, width, ids_shape", [(65, 256, (4, 32)), (7, 13, (3, 5)),
                                                     (1, 5, (2, 3)), (10, 40, (17,))])
def test_embedding_v1_matches_reference(rng, dtype, ids_dtype, vocab, width, ids_shape):
    weight = normal(rng, (vocab, width), dtype)
    ids = rng.integers(0, vocab, size=ids_shape).astype(ids_dtype)    # repeats in every case
    dout = normal(rng, ids_shape + (width,), dtype)
    out = embedding.embedding_forward_v1(weight, ids)
    assert out.shape == ids_shape + (width,)
    np.testing.assert_array_equal(out, embedding.embedding_forward_reference(weight, ids))
    assert_all_close((embedding.embedding_backward_v1(dout, ids, vocab),),
                     (embedding.embedding_backward_reference(dout, ids, vocab),), dtype)


def test_embedding_backward_accumulates_every_repeat():
    ids = np.array([[3, 3, 3, 3], [3, 0, 3, 3]])                      # id 3 seven times
    dweight = embedding.embedding_backward_v1(np.ones((2, 4, 40)), ids, 5)
    np.testing.assert_array_equal(dweight[:, 0], [1.0, 0.0, 0.0, 7.0, 0.0])
    np.testing.assert_array_equal(dweight, np.repeat(dweight[:, :1], 40, axis=1))


def test_embedding_dispatch_rejects_out_of_range_ids(kernel_mode):
    weight = np.zeros((5, 3), dtype=np.float32)
    with pytest.raises(IndexError):
        embedding.embedding_forward(weight, np.array([0, 5]))
    with pytest.raises(IndexError):
        embedding.embedding_backward(np.ones((2, 3), np.float32), np.array([1, 9]), 5)
