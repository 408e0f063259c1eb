"""PyTorch parity of every layer and fused op: same weights, same inputs -> same outputs,
same parameter gradients and same input gradients (float32 and float64, with the NumPy
reference kernels and with the fastest ones). Skipped when torch is not installed."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
import torch_reference as ref  # noqa: E402

from scratchlm.autograd import ops  # noqa: E402
from scratchlm.autograd.tensor import Tensor  # noqa: E402
from scratchlm.model import GPTConfig, rope_tables  # noqa: E402
from scratchlm.nn import Block, CausalSelfAttention, Dropout, Embedding, LayerNorm, Linear, RMSNorm  # noqa: E402

pytestmark = pytest.mark.usefixtures("kernel_mode")
DTYPES = [np.float32, np.float64]
B, T, C, H = 3, 16, 32, 4


def leaf_pair(array):
    """The same values as a scratchlm leaf Tensor and a torch leaf tensor, both wanting grads."""
    return Tensor(array.copy(), requires_grad=True), ref.to_torch(array, requires_grad=True)


def check_parity(out, out_t, leaves, leaves_t, rng, upstream=None):
    """Compare outputs; back-propagate the same upstream gradient; compare every leaf's grad."""
    tol = ref.TOLERANCE[out.dtype]
    ref.assert_close(out.data, out_t, tol, "output")
    dy = rng.standard_normal(out.shape).astype(out.dtype) if upstream is None else upstream
    out.backward(dy)
    out_t.backward(ref.to_torch(dy))
    assert set(leaves) == set(leaves_t)
    for name, leaf in leaves.items():
        assert leaf.grad is not None, f"no gradient reached {name}"
        ref.assert_close(leaf.grad, leaves_t[name].grad, tol, f"gradient of {name}")


def check_module(layer, layer_t, inputs, rng, call=None):
    """Run scratchlm ``layer`` and its torch twin on the same float inputs; check all grads."""
    pairs = [leaf_pair(x) for x in inputs]
    call = call or (lambda module, *xs: module(*xs))
    out = call(layer, *(s for s, _ in pairs))
    out_t = call(layer_t, *(t for _, t in pairs))
    leaves = {f"input{i}": s for i, (s, _) in enumerate(pairs)} | dict(layer.named_parameters())
    leaves_t = {f"input{i}": t for i, (_, t) in enumerate(pairs)} | dict(layer_t.named_parameters())
    check_parity(out, out_t, leaves, leaves_t, rng)


def randn(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(dtype, bias, rng):
    layer = Linear(C, 3 * C, bias, rng=rng, dtype=dtype)
    ref.perturb(layer, rng, 0.2)
    layer_t = ref.reference_like(layer, torch.nn.Linear(C, 3 * C, bias=bias))
    check_module(layer, layer_t, [randn(rng, (B, T, C), dtype)], rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_accumulates_repeated_ids(dtype, rng):
    vocab = 7
    layer = Embedding(vocab, C, rng=rng, dtype=dtype)
    layer_t = ref.reference_like(layer, torch.nn.Embedding(vocab, C))
    ids = rng.integers(0, vocab - 2, size=(B, T))  # (B, T): many repeats, two rows never used
    out, out_t = layer(ids), layer_t(ref.to_torch(ids))
    check_parity(out, out_t, {"weight": layer.weight}, {"weight": layer_t.weight}, rng)
    assert not layer.weight.grad[vocab - 2 :].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm(dtype, bias, rng):
    layer = LayerNorm(C, bias=bias, dtype=dtype)
    ref.perturb(layer, rng, 0.3)
    layer_t = ref.reference_like(layer, torch.nn.LayerNorm(C, eps=1e-5, bias=bias))
    check_module(layer, layer_t, [randn(rng, (B, T, C), dtype, 2.0) + 0.5], rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm(dtype, rng):
    layer = RMSNorm(C, dtype=dtype)
    ref.perturb(layer, rng, 0.3)
    layer_t = ref.reference_like(layer, torch.nn.RMSNorm(C, eps=1e-5))
    check_module(layer, layer_t, [randn(rng, (B, T, C), dtype, 2.0) + 0.5], rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_tanh(dtype, rng):
    x = randn(rng, (B, T, 4 * C), dtype, 3.0)  # covers both tails, where tanh saturates
    (xs, xt) = leaf_pair(x)
    check_parity(ops.gelu(xs), F.gelu(xt, approximate="tanh"), {"x": xs}, {"x": xt}, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_attention_core_matches_sdpa(dtype, rng):
    q, k, v = (leaf_pair(randn(rng, (B, H, T, C // H), dtype, 1.5)) for _ in range(3))
    out = ops.causal_attention(q[0], k[0], v[0])
    out_t = F.scaled_dot_product_attention(q[1], k[1], v[1], is_causal=True)
    check_parity(out, out_t, {"q": q[0], "k": k[0], "v": v[0]}, {"q": q[1], "k": k[1], "v": v[1]}, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_attention_core_with_fewer_queries_than_keys(dtype, rng):
    tq, tk = 5, T  # the last 5 positions attend over all 16 keys (cached generation)
    q = leaf_pair(randn(rng, (B, H, tq, C // H), dtype, 1.5))
    k, v = (leaf_pair(randn(rng, (B, H, tk, C // H), dtype, 1.5)) for _ in range(2))
    allowed = torch.arange(tk)[None, :] <= torch.arange(tk - tq, tk)[:, None]  # (Tq, Tk)
    out = ops.causal_attention(q[0], k[0], v[0])
    out_t = F.scaled_dot_product_attention(q[1], k[1], v[1], attn_mask=allowed)
    check_parity(out, out_t, {"q": q[0], "k": k[0], "v": v[0]}, {"q": q[1], "k": k[1], "v": v[1]}, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_rotate_half(dtype, rng):
    x = leaf_pair(randn(rng, (B, H, T, C // H), dtype))
    cos, sin = rope_tables(np.arange(T), C // H, dtype)
    out = ops.rope(x[0], cos, sin)
    out_t = ref.apply_rope(x[1], ref.rope_angles(T, C // H))
    check_parity(out, out_t, {"x": x[0]}, {"x": x[1]}, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_ignore_index(dtype, rng):
    n, vocab = B * T, 65
    logits = leaf_pair(randn(rng, (n, vocab), dtype, 2.0))
    targets = rng.integers(0, vocab, size=n)
    targets[rng.random(n) < 0.3] = -1  # (N,) about a third of the rows do not count
    assert (targets == -1).any() and (targets != -1).any()
    loss = ops.cross_entropy(logits[0], targets, ignore_index=-1)
    loss_t = F.cross_entropy(logits[1], ref.to_torch(targets), ignore_index=-1)
    upstream = np.asarray(1.7, dtype=dtype)  # a non-unit dL/dloss must scale the gradient
    check_parity(loss, loss_t, {"logits": logits[0]}, {"logits": logits[1]}, rng, upstream)
    assert not logits[0].grad[targets == -1].any()


def small_config(**overrides) -> GPTConfig:
    return GPTConfig(vocab_size=65, d_model=C, n_heads=H, n_layers=2, max_seq_len=T, **overrides)


def rope_call(use_rope: bool, dtype):
    """How to call an attention layer or block on x: with the RoPE tables each side expects."""
    if not use_rope:
        return None

    def call(module, x):
        if isinstance(x, Tensor):
            return module(x, rope_tables(np.arange(T), C // H, dtype))
        return module(x, ref.rope_angles(T, C // H))

    return call


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("use_rope", [False, True])
def test_causal_self_attention(dtype, bias, use_rope, rng):
    layer = CausalSelfAttention(C, H, bias, Dropout(0.0, rng), rng=rng, proj_std=0.02, dtype=dtype)
    ref.perturb(layer, rng, 0.2)
    layer_t = ref.reference_like(layer, ref.Attention(small_config(bias=bias)))
    check_module(layer, layer_t, [randn(rng, (B, T, C), dtype)], rng, rope_call(use_rope, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("use_rope", [False, True])
def test_block(dtype, norm, use_rope, rng):
    config = small_config(norm=norm)
    block = Block(config, rng=rng, dropout=Dropout(0.0, rng), dtype=dtype)
    ref.perturb(block, rng, 0.2)
    block_t = ref.reference_like(block, ref.Block(config))
    check_module(block, block_t, [randn(rng, (B, T, C), dtype)], rng, rope_call(use_rope, dtype))
