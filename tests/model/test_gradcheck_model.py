"""The loss of a whole 2-layer GPT, differentiated by the tape and by finite differences.

The model is tiny (about 1,900 parameters) so EVERY element of every parameter is
checked, in float64, for each positional encoding and each norm, with tied weights,
plus one untied head and one model without biases. Dropout is off (p = 0). The tape's
gradients are taken with both the reference and the fast ("auto") kernels.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from gradcheck import TOLERANCE, numerical_gradient, relative_error

from scratchlm.autograd.function import no_grad
from scratchlm.kernels import dispatch
from scratchlm.model import GPT, GPTConfig

VOCAB, BATCH, SEQ = 11, 2, 5

CASES = {
    "learned-layernorm": dict(pos_encoding="learned", norm="layernorm"),
    "learned-rmsnorm": dict(pos_encoding="learned", norm="rmsnorm"),
    "sinusoidal-layernorm": dict(pos_encoding="sinusoidal", norm="layernorm"),
    "sinusoidal-rmsnorm": dict(pos_encoding="sinusoidal", norm="rmsnorm"),
    "rope-layernorm": dict(pos_encoding="rope", norm="layernorm"),
    "rope-rmsnorm": dict(pos_encoding="rope", norm="rmsnorm"),
    "untied-head": dict(pos_encoding="learned", norm="layernorm", tie_weights=False),
    "no-bias": dict(pos_encoding="rope", norm="layernorm", bias=False),
}


def tiny_gpt(seed=0, **overrides) -> GPT:
    """A 2-layer float64 GPT whose weights are pushed well away from their small init.

    At the usual init (std 0.02) most gradients are tiny, and a relative error of
    such gradients measures rounding noise rather than correctness; larger random
    weights give every parameter a gradient of a healthy size.
    """
    config = GPTConfig(vocab_size=VOCAB, d_model=8, n_heads=2, n_layers=2, max_seq_len=SEQ, dropout=0.0, **overrides)
    model = GPT(config, seed=seed, dtype="float64")
    rng = np.random.default_rng(seed + 100)
    for param in model.parameters():
        param.data += rng.standard_normal(param.shape) * 0.4
    return model


def batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (BATCH, SEQ))                               # (B, T)
    targets = rng.integers(0, VOCAB, (BATCH, SEQ))                           # (B, T)
    targets[1, 2] = -1  # one ignored position
    return ids, targets


@contextmanager
def kernels(mode: str):
    previous = dispatch.set_mode(mode)
    try:
        yield
    finally:
        dispatch.set_mode(previous)


def analytic_gradients(model: GPT, ids, targets, mode: str) -> dict:
    """name -> d loss / d parameter from the tape, with the given kernel mode."""
    model.zero_grad()
    with kernels(mode):
        _, loss = model(ids, targets)
        assert loss.dtype == np.float64
        loss.backward()
    grads = {}
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} received no gradient ({mode} kernels)"
        assert param.grad.dtype == np.float64
        grads[name] = param.grad.copy()
    return grads


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_loss_gradient_of_every_parameter(overrides):
    """Tape gradients with the reference AND the fast kernels against one set of finite differences.

    The finite differences (thousands of forward passes) run on the NumPy references,
    whose per-call cost is lowest on arrays this small.
    """
    model = tiny_gpt(**overrides)
    ids, targets = batch()
    analytic = {mode: analytic_gradients(model, ids, targets, mode) for mode in ("reference", "auto")}

    def evaluate() -> float:
        with no_grad():
            return model(ids, targets)[1].item()

    errors = {}
    with kernels("reference"):
        for name, param in model.named_parameters():
            numeric = numerical_gradient(evaluate, param.data)
            for mode, grads in analytic.items():
                errors[f"{name} ({mode})"] = relative_error(grads[name], numeric)
    bad = {key: error for key, error in errors.items() if not error <= TOLERANCE}
    assert not bad, f"relative gradient errors above {TOLERANCE:g}: {bad}"


def test_parameter_lists_match_the_config():
    names = lambda **kw: {n for n, _ in tiny_gpt(**kw).named_parameters()}
    assert "lm_head.weight" in names(tie_weights=False)
    assert "lm_head.weight" not in names()
    assert "wpe.weight" not in names(pos_encoding="rope")
    assert not any(n.endswith(".bias") for n in names(bias=False))
