"""PyTorch parity of a whole GPT: same weights, same batch -> same logits, same loss and
the same gradient for EVERY parameter, for each position encoding x norm, tied and
untied head, with and without biases. Skipped when torch is not installed."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_reference as ref  # noqa: E402

from scratchlm.model import GPT, GPTConfig  # noqa: E402

pytestmark = pytest.mark.usefixtures("kernel_mode")
BATCH, SEQ = 4, 16


def small_config(**overrides) -> GPTConfig:
    return GPTConfig(vocab_size=65, d_model=32, n_heads=4, n_layers=2, max_seq_len=SEQ, dropout=0.0, **overrides)


def batch(rng, vocab: int):
    """ids and targets (B, T); a few targets are -1 (ignored by the loss)."""
    ids = rng.integers(0, vocab, size=(BATCH, SEQ))
    targets = rng.integers(0, vocab, size=(BATCH, SEQ))
    targets[:, :2] = -1
    return ids, targets


def check_gpt_parity(config: GPTConfig, dtype, rng) -> None:
    model = GPT(config, seed=3, dtype=dtype)
    ref.perturb(model, rng, 0.05)  # non-trivial norms and biases; sharper attention
    model_t = ref.reference_like(model, ref.GPT(config))
    ids, targets = batch(rng, config.vocab_size)

    logits, loss = model(ids, targets)
    loss.backward()
    logits_t, loss_t = model_t(ref.to_torch(ids), ref.to_torch(targets))
    loss_t.backward()

    tol = ref.TOLERANCE[np.dtype(dtype)]
    ref.assert_close(logits.data, logits_t, tol, "logits")
    ref.assert_close(loss.data, loss_t, tol, "loss")
    grads_t = ref.gradients(model_t)
    names = [name for name, _ in model.named_parameters()]
    assert sorted(names) == sorted(grads_t)
    for name, p in model.named_parameters():
        assert p.grad is not None and grads_t[name] is not None, f"no gradient for {name}"
        ref.assert_close(p.grad, grads_t[name], tol, f"gradient of {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope"])
def test_gpt_matches_torch(pos_encoding, norm, tie_weights, dtype, rng):
    check_gpt_parity(small_config(pos_encoding=pos_encoding, norm=norm, tie_weights=tie_weights), dtype, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_gpt_without_bias_matches_torch(pos_encoding, dtype, rng):
    check_gpt_parity(small_config(pos_encoding=pos_encoding, bias=False), dtype, rng)
