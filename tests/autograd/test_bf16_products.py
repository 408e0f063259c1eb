"""Linear and the fused MLP inside ``bf16_products()``: each product reads exactly the operands
autograd/precision.py says (activations, weights and incoming gradients rounded to bf16) and
everything else stays float32. The oracle is float64 arithmetic on the rounded values, so a
missing or misplaced rounding shows as an error ~100x the tolerance. Runs on the reference
kernels everywhere and on MKL where bf16 products are available."""

from __future__ import annotations

import numpy as np
from kernel_cases import needs_bf16_product

from scratchlm.autograd import ops
from scratchlm.autograd.precision import BF16, FLOAT32, bf16_products, products
from scratchlm.autograd.tensor import Tensor
from scratchlm.kernels import bf16
from scratchlm.kernels.gelu import gelu_backward_reference, gelu_forward_reference


def rounded(x) -> np.ndarray:
    """x as the bf16 numbers a product reads, in float64."""
    return bf16.bf16_to_float32(bf16.round_to_bf16_reference(np.asarray(x, dtype=np.float32))).astype(np.float64)


def normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_the_block_switches_products_on_this_thread_only_and_back():
    assert products() is FLOAT32
    with bf16_products():
        assert products() is BF16
        with bf16_products(False):
            assert products() is FLOAT32
        assert products() is BF16
    assert products() is FLOAT32


def test_linear_rounds_x_w_and_the_incoming_gradient(kernel_mode):
    x, w, b, g = normal((3, 7, 24), 1), normal((40, 24), 2), normal((40,), 3), normal((3, 7, 40), 4)
    tx, tw, tb = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True), Tensor(b, requires_grad=True)
    with bf16_products():
        y = ops.linear(tx, tw, tb)
    y.backward(g)                                              # outside the block: backward follows forward
    x2, g2 = x.reshape(-1, 24), g.reshape(-1, 40)
    assert y.data.dtype == np.float32
    close(y.data.reshape(-1, 40), rounded(x2) @ rounded(w).T + b)
    close(tx.grad.reshape(-1, 24), rounded(g2) @ rounded(w))
    close(tw.grad, rounded(g2).T @ rounded(x2))
    close(tb.grad, g2.astype(np.float64).sum(axis=0))          # the bias gradient from the float32 gradient


def test_feed_forward_rounds_every_product_operand_and_keeps_gelu_in_float32(kernel_mode):
    x, w_fc, b_fc = normal((2, 5, 16), 5), normal((64, 16), 6), normal((64,), 7)
    w_proj, b_proj, g = normal((16, 64), 8), normal((16,), 9), normal((2, 5, 16), 10)
    tensors = [Tensor(a, requires_grad=True) for a in (x, w_fc, b_fc, w_proj, b_proj)]
    with bf16_products():
        y = ops.feed_forward(*tensors)
    y.backward(g)
    x2, g2 = x.reshape(-1, 16).astype(np.float64), g.reshape(-1, 16).astype(np.float64)
    h = rounded(x2) @ rounded(w_fc).T + b_fc                   # (N, H), float32 in the op
    a = gelu_forward_reference(h)
    close(y.data.reshape(-1, 16), rounded(a) @ rounded(w_proj).T + b_proj)
    dh = gelu_backward_reference(rounded(g2) @ rounded(w_proj), h)
    grads = [t.grad for t in tensors]
    close(grads[0].reshape(-1, 16), rounded(dh) @ rounded(w_fc))
    close(grads[1], rounded(dh).T @ rounded(x2))
    close(grads[2], dh.sum(axis=0))                            # fc's bias: the float32 dh, not its bf16
    close(grads[3], rounded(g2).T @ rounded(a))
    close(grads[4], g2.sum(axis=0))


def test_outside_the_block_nothing_is_rounded(kernel_mode):
    x, w = normal((9, 24), 11), normal((12, 24), 12)
    y = ops.linear(Tensor(x), Tensor(w))
    close(y.data, x.astype(np.float64) @ w.astype(np.float64).T)
    assert np.abs(y.data - rounded(x) @ rounded(w).T).max() > 1e-4   # bf16 would differ by this much


def test_a_model_step_in_bf16_is_near_its_float32_step(kernel_mode):
    """The whole model: loss within 0.1% and every gradient within a few bf16 steps (relative norm)."""
    from scratchlm.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=30, d_model=32, n_heads=4, n_layers=2, max_seq_len=16), seed=0)
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 30, (4, 16)), rng.integers(0, 30, (4, 16))

    def step(bf):
        for p in model.parameters():
            p.grad = None
        with bf16_products(bf):
            _, loss = model(ids, targets)
        loss.backward()
        return float(loss.data), {name: p.grad.copy() for name, p in model.named_parameters()}

    (loss32, grads32), (loss16, grads16) = step(False), step(True)
    assert abs(loss16 - loss32) < 1e-3 * loss32
    assert loss16 != loss32                                    # the products did run in bf16
    for name, want in grads32.items():
        error = np.linalg.norm(grads16[name] - want) / np.linalg.norm(want)
        assert error < 3e-2, (name, error)


@needs_bf16_product
def test_mkl_and_the_reference_give_the_same_op_outputs(compiled_kernels):
    x, w = normal((300, 48), 13), normal((96, 48), 14)
    with bf16_products():
        fast = ops.linear(Tensor(x), Tensor(w)).data
    from scratchlm.kernels import dispatch

    previous = dispatch.set_mode("reference")
    try:
        with bf16_products():
            reference = ops.linear(Tensor(x), Tensor(w)).data
    finally:
        dispatch.set_mode(previous)
    close(fast, reference)
