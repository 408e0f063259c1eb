"""AdamW owns its parameters: their data and grad are views into its flat buffers.

PyTorch habits must not break that silently: ``model.zero_grad()`` zeroes the views in
place, ``model.to(device)`` moves the optimizer's buffers along with the model, and a
step after anything else rebinds a parameter's data or grad raises instead of updating
arrays the model no longer uses. NumPy's ``to("cpu")`` is a no-op, so the move is tested
with a ``backend.to_device`` that returns copies, as a real device change would.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from scratchlm import backend, errors
from scratchlm.model import GPT, GPTConfig
from scratchlm.optim import AdamW

CONFIG = GPTConfig(vocab_size=17, d_model=16, n_heads=2, n_layers=2, max_seq_len=8, dropout=0.0, tie_weights=False)


def tiny_gpt() -> GPT:
    return GPT(CONFIG, seed=3, dtype=np.float64)


def batch(seed: int = 0):
    """(ids, targets), both (4, 8): one fixed batch, so a few steps visibly lower its loss."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, CONFIG.vocab_size, size=(4, 8)), rng.integers(0, CONFIG.vocab_size, size=(4, 8))


def train(model, opt, zero_grad, steps: int) -> list[float]:
    """The losses of ``steps`` AdamW steps on one batch, zeroing gradients with ``zero_grad()``."""
    ids, targets = batch()
    losses = []
    for _ in range(steps):
        zero_grad()
        _, loss = model(ids, targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def weights(model) -> dict:
    return {name: p.data.copy() for name, p in model.named_parameters()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.fixture
def copying_to_device(monkeypatch):
    """``backend.to_device`` returns a fresh copy, as a move to another device would."""
    monkeypatch.setattr(backend, "to_device", lambda a, device: np.array(a, copy=True))


# ---- zero_grad -------------------------------------------------------------------------
def test_model_zero_grad_keeps_the_views_and_zeroes_them():
    model = tiny_gpt()
    opt = AdamW(model.parameters(), lr=1e-2)
    ids, targets = batch()
    model(ids, targets)[1].backward()
    assert opt.flat_grads.any()
    model.zero_grad()
    assert not opt.flat_grads.any()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.shares_memory(p.grad, opt.flat_grads), name


def test_model_zero_grad_then_step_updates_like_optimizer_zero_grad():
    a, b = tiny_gpt(), tiny_gpt()
    start = weights(a)
    opt_a, opt_b = AdamW(a.parameters(), lr=1e-2), AdamW(b.parameters(), lr=1e-2)
    for _ in range(3):
        train(a, opt_a, opt_a.zero_grad, steps=1)
        train(b, opt_b, b.zero_grad, steps=1)
        assert_same_weights(weights(a), weights(b))
    moved = [np.abs(p.data - start[name]).max() for name, p in b.named_parameters()]
    assert min(moved) > 1e-3                    # every weight learned, so agreeing means something


def test_training_with_model_zero_grad_lowers_the_loss_like_optimizer_zero_grad():
    a, b = tiny_gpt(), tiny_gpt()
    opt_a, opt_b = AdamW(a.parameters(), lr=1e-2), AdamW(b.parameters(), lr=1e-2)
    losses_a = train(a, opt_a, opt_a.zero_grad, steps=8)
    losses_b = train(b, opt_b, b.zero_grad, steps=8)
    np.testing.assert_allclose(losses_b, losses_a, rtol=1e-12)
    assert losses_b[-1] < losses_b[0] - 0.1


def test_parameters_without_an_optimizer_still_drop_their_gradients():
    model = tiny_gpt()
    ids, targets = batch()
    model(ids, targets)[1].backward()
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_parameters_of_a_dropped_optimizer_drop_their_gradients():
    model = tiny_gpt()
    opt = AdamW(model.parameters())
    del opt
    gc.collect()                                # the parameters hold the optimizer weakly
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ---- to(device) ------------------------------------------------------------------------
def test_to_after_adamw_moves_the_optimizer_with_the_model(copying_to_device):
    moved, still = tiny_gpt(), tiny_gpt()
    opt, opt_still = AdamW(moved.parameters(), lr=1e-2), AdamW(still.parameters(), lr=1e-2)
    train(moved, opt, opt.zero_grad, steps=2)
    train(still, opt_still, opt_still.zero_grad, steps=2)
    old = {name: getattr(opt, name) for name in ("flat_params", "flat_grads", "m", "v")}

    moved.to("cpu")

    for name, before in old.items():            # new arrays (a real move), same values
        after = getattr(opt, name)
        assert after is not before and not np.shares_memory(after, before), name
        np.testing.assert_array_equal(after, before, err_msg=name)
    for name, p in moved.named_parameters():
        assert np.shares_memory(p.data, opt.flat_params), name
        assert np.shares_memory(p.grad, opt.flat_grads), name
    # the optimizer now updates the arrays the model computes with, exactly as without the move
    train(moved, opt, moved.zero_grad, steps=2)
    train(still, opt_still, opt_still.zero_grad, steps=2)
    assert_same_weights(weights(moved), weights(still))


def test_to_of_part_of_a_model_refuses_to_split_the_optimizer(copying_to_device):
    model = tiny_gpt()
    opt = AdamW(model.parameters())
    with pytest.raises(errors.ParameterOwnershipError, match="whole model"):
        model.blocks[0].to("cpu")
    for p in model.parameters():                # nothing was moved
        assert np.shares_memory(p.data, opt.flat_params)


def test_to_refuses_before_moving_when_a_parameter_was_rebound(copying_to_device):
    model = tiny_gpt()
    opt = AdamW(model.parameters())
    flat = opt.flat_params
    model.wte.weight.data = model.wte.weight.data.copy()
    with pytest.raises(errors.ParameterOwnershipError, match=r"\.data"):
        model.to("cpu")
    assert opt.flat_params is flat                              # the optimizer did not move
    assert np.shares_memory(model.lm_head.weight.data, flat)    # nor did the other parameters


# ---- the step refuses parameters rebound away from the flat buffers ----------------------
def _new_data(p):
    p.data = p.data.copy()


def _grad_none_then_backward(p):
    p.grad = None


def _new_grad(p):
    p.grad = p.grad.copy()


@pytest.mark.parametrize("name", ["blocks.1.mlp.fc.weight", "norm_f.bias"])      # decayed and not
@pytest.mark.parametrize("rebind, what", [(_new_data, r"\.data"), (_grad_none_then_backward, r"\.grad"),
                                          (_new_grad, r"\.grad")])
def test_step_after_a_parameter_was_rebound_raises(rebind, what, name):
    model = tiny_gpt()
    opt = AdamW(model.parameters(), lr=1e-2)
    rebind(dict(model.named_parameters())[name])
    ids, targets = batch()
    model(ids, targets)[1].backward()           # a None grad becomes a fresh array here
    before = weights(model)
    with pytest.raises(errors.ParameterOwnershipError, match=what):
        opt.step()
    assert_same_weights(weights(model), before)  # refused before touching any weight


def test_a_second_optimizer_takes_the_parameters_over():
    model = tiny_gpt()
    first = AdamW(model.parameters(), lr=1e-2)
    second = AdamW(model.parameters(), lr=1e-2)
    with pytest.raises(errors.ParameterOwnershipError):
        first.step()
    losses = train(model, second, model.zero_grad, steps=4)
    assert losses[-1] < losses[0]
