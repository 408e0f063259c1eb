"""Behaviour of the tape: shared tensors, deep graphs, no_grad, detach, accumulation, dtypes."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import pytest

from scratchlm.autograd import ops
from scratchlm.autograd.function import Function, is_grad_enabled, no_grad
from scratchlm.autograd.tensor import Tensor
from scratchlm.model import ConfigError, GPTConfig


def leaf(values, dtype=np.float64):
    return Tensor(np.asarray(values, dtype=dtype), requires_grad=True)


class Probe(Function):
    """Identity whose backward records the dtype of the gradient flowing back into it."""

    seen: ClassVar[list] = []

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad):
        Probe.seen.append(grad.dtype)
        return grad


def test_tensor_used_twice_gets_the_sum():
    x = leaf([1.0, -2.0, 3.0])
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)

    y = leaf([[1.0, 2.0]])
    z = y.exp()  # an inner node used by two consumers
    (z * 2.0 + z.sum()).sum().backward()
    np.testing.assert_allclose(y.grad, 4.0 * np.exp(y.data))


def test_deep_chain_has_no_recursion_limit():
    x = leaf([0.5, 1.5])
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(2, 1.0001**5000), rtol=1e-9)
    del y  # freeing a 10,000-node graph must not overflow the stack either


def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = ops.exp(x) * 3.0
        parts = ops.split(ops.linear(y.reshape(1, 2), leaf([[1.0, 1.0]])), 1, axis=0)
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    assert all(not p.requires_grad and p.is_leaf for p in parts)
    with pytest.raises(RuntimeError):
        y.sum().backward()


def test_no_grad_restores_state_after_an_error():
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("boom")
    assert is_grad_enabled()


def test_detach_cuts_the_graph():
    x = leaf([1.0, 2.0, 3.0])
    cut = (x * 2.0).detach()
    assert not cut.requires_grad and cut.is_leaf
    np.testing.assert_array_equal(cut.data, 2.0 * x.data)
    (x * 3.0 + cut * x.detach()).sum().backward()
    np.testing.assert_allclose(x.grad, np.full(3, 3.0))


def test_backward_of_non_scalar_with_explicit_grad():
    x = leaf(np.arange(6.0).reshape(2, 3))
    g = np.array([[1.0, -1.0, 2.0], [0.5, 0.0, 3.0]])
    (x * x).backward(g)
    np.testing.assert_allclose(x.grad, 2 * x.data * g)

    w = leaf([[2.0]])
    w.backward(np.array([[5.0]]))  # a leaf takes the gradient directly
    np.testing.assert_allclose(w.grad, [[5.0]])


def test_backward_needs_a_tensor_that_requires_grad():
    with pytest.raises(RuntimeError):
        Tensor(np.ones(3)).sum().backward()


def test_gradients_accumulate_across_backward_calls():
    x = leaf([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 3.0 + 2 * x.data)


def test_constants_get_no_gradient():
    x = leaf([1.0, 2.0])
    c = Tensor(np.array([3.0, 4.0]))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad, c.data)


def test_split_with_one_output_used():
    x = leaf(np.arange(12.0).reshape(2, 6))
    first, middle, last = ops.split(x, 3, axis=1)
    (middle * 2.0).sum().backward()
    expected = np.zeros((2, 6))
    expected[:, 2:4] = 2.0
    np.testing.assert_array_equal(x.grad, expected)


def test_max_ties_share_the_gradient():
    x = leaf([1.0, 3.0, 3.0, 2.0])
    x.max().backward()
    np.testing.assert_allclose(x.grad, [0.0, 0.5, 0.5, 0.0])


def test_float32_stays_float32_through_forward_and_backward():
    """A probe after every op sees the gradient each op's backward hands on: all float32."""
    rng = np.random.default_rng(0)
    x = leaf(rng.standard_normal((2, 3, 8)), np.float32)
    w = leaf(rng.standard_normal((8, 8)) * 0.3, np.float32)
    gain = leaf(np.ones(8), np.float32)
    probe = Probe.apply
    Probe.seen = []
    h = ops.layer_norm(probe(x), gain, Tensor(np.zeros(8, np.float32)))      # (B, T, C)
    h = ops.gelu(probe(ops.linear(probe(h), w)))                             # (B, T, C)
    q = probe(h).reshape(2, 3, 2, 4).permute(0, 2, 1, 3)                     # (B, H, T, D)
    h = probe(ops.causal_attention(q, q, q)).permute(0, 2, 1, 3)             # (B, T, H, D)
    h = probe(ops.rms_norm(probe(h.reshape(6, 8)), gain))                    # (B*T, C)
    loss = ops.cross_entropy(h, np.array([0, 1, 2, 3, 4, -1])) + (h * h).mean().sqrt()
    assert loss.dtype == np.float32
    loss.backward()
    assert Probe.seen == [np.float32] * 7
    assert {x.grad.dtype, w.grad.dtype, gain.grad.dtype} == {np.dtype(np.float32)}


@pytest.mark.parametrize(
    "fn",
    [
        lambda t: (t * 2.5 + 1.0 - 0.5) / 3.0,
        lambda t: 1.0 - 2.0 / (t * t + 1.0),
        lambda t: t**2.0 + t**0.5 + t**3,
        lambda t: ops.masked_fill(t, np.array([True, False, True]), -1e9),
        lambda t: ops.where(np.array([True, False, False]), t, 0.25),
    ],
    ids=["arith", "reflected", "pow", "masked_fill", "where"],
)
def test_python_scalars_do_not_upcast_float32(fn):
    x = leaf([0.5, 1.0, 2.0], np.float32)
    Probe.seen = []
    out = fn(Probe.apply(x))
    assert out.dtype == np.float32
    out.sum().backward()
    assert Probe.seen == [np.float32]
    assert x.grad.dtype == np.float32


def test_python_numbers_become_float32_tensors():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.ones(2)).dtype == np.float64  # an explicit array keeps its dtype


def test_bad_head_count_names_a_valid_one():
    with pytest.raises(ConfigError) as caught:
        GPTConfig(d_model=100, n_heads=3)
    message = str(caught.value)
    suggested = re.search(r"--num-heads (\d+)", message)
    assert suggested, message
    assert 100 % int(suggested.group(1)) == 0
    assert isinstance(caught.value, ValueError)
