"""The optimiser and the learning-rate schedule.

``lr_at`` unit tests (no torch needed), then 20 training steps of scratchlm's flat-buffer
AdamW + global gradient clipping + schedule against torch.optim.AdamW +
clip_grad_norm_ on identical models and batches, in float64: the losses, the
returned gradient norms and the final weights must agree. Those are skipped when
torch is not installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratchlm.model import GPT, GPTConfig
from scratchlm.optim import AdamW, lr_at

BASE_LR = 3e-3


# ---- the schedule ------------------------------------------------------------------
def test_warmup_is_linear_and_peaks_at_base_lr():
    warmup, total = 10, 100
    lrs = [lr_at(s, BASE_LR, "cosine", warmup, total) for s in range(warmup + 1)]
    steps = np.diff(lrs[:warmup])
    assert np.allclose(steps, BASE_LR / warmup)  # equal increments: a straight line
    assert lrs[0] == pytest.approx(BASE_LR / warmup)
    assert lrs[warmup - 1] == pytest.approx(BASE_LR)  # the last warm-up step reaches the peak
    assert lrs[warmup] == pytest.approx(BASE_LR)  # and decay starts from it at step ``warmup``
    assert max(lr_at(s, BASE_LR, "cosine", warmup, total) for s in range(total + 5)) == pytest.approx(BASE_LR)


def test_cosine_decays_to_the_floor_and_stays_there():
    warmup, total, ratio = 10, 100, 0.1
    lrs = [lr_at(s, BASE_LR, "cosine", warmup, total, ratio) for s in range(warmup, total + 20)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # never rises after warm-up
    middle = lr_at((warmup + total) // 2, BASE_LR, "cosine", warmup, total, ratio)
    assert middle == pytest.approx(BASE_LR * (ratio + 1) / 2)  # cos(pi/2) = 0: half way down
    for step in (total, total + 1, total + 19, 10 * total):
        assert lr_at(step, BASE_LR, "cosine", warmup, total, ratio) == pytest.approx(ratio * BASE_LR)
    assert lr_at(total - 1, BASE_LR, "cosine", warmup, total, ratio) > ratio * BASE_LR


def test_constant_stays_constant():
    assert {lr_at(s, BASE_LR, "constant", 0, 50) for s in range(200)} == {BASE_LR}
    after_warmup = {lr_at(s, BASE_LR, "constant", 5, 50) for s in range(5, 200)}
    assert after_warmup == {BASE_LR}
    assert lr_at(0, BASE_LR, "constant", 5, 50) == pytest.approx(BASE_LR / 5)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, BASE_LR, "linear")


# ---- 20 steps against torch --------------------------------------------------------
STEPS, CLIP, WEIGHT_DECAY, BETAS, EPS = 20, 1.0, 0.1, (0.9, 0.95), 1e-8
TOL = 1e-5


@pytest.fixture(scope="module")
def ref():
    pytest.importorskip("torch")
    import torch_reference

    return torch_reference


def schedule(kind: str):
    if kind == "cosine":
        return lambda step: lr_at(step, BASE_LR, "cosine", warmup_steps=5, total_steps=STEPS, min_lr_ratio=0.1)
    return lambda step: lr_at(step, BASE_LR, "constant")


def torch_adamw(ref, model_t):
    """torch AdamW with weight decay on the matrices (ndim >= 2) only, as scratchlm decides."""
    params = list(model_t.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return ref.torch.optim.AdamW(groups, lr=BASE_LR, betas=BETAS, eps=EPS)


@pytest.mark.usefixtures("kernel_mode")
@pytest.mark.parametrize("kind", ["cosine", "constant"])
def test_adamw_clipping_and_schedule_track_torch(ref, kind):
    torch = ref.torch
    rng = np.random.default_rng(7)
    config = GPTConfig(vocab_size=65, d_model=32, n_heads=4, n_layers=2, max_seq_len=16, dropout=0.0, tie_weights=False)
    model = GPT(config, seed=11, dtype=np.float64)
    ref.perturb(model, rng, 0.05)
    model_t = ref.reference_like(model, ref.GPT(config))
    initial = {name: p.data.copy() for name, p in model.named_parameters()}
    opt = AdamW(model.parameters(), lr=BASE_LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    opt_t = torch_adamw(ref, model_t)
    lr_for = schedule(kind)

    norms = []
    for step in range(STEPS):
        ids = rng.integers(0, config.vocab_size, size=(4, 16))       # (B, T)
        targets = rng.integers(0, config.vocab_size, size=(4, 16))   # (B, T)
        lr = lr_for(step)

        opt.zero_grad()
        _, loss = model(ids, targets)
        loss.backward()
        norm = opt.clip_grad_norm(CLIP)
        opt.step(lr)

        opt_t.zero_grad()
        _, loss_t = model_t(ref.to_torch(ids), ref.to_torch(targets))
        loss_t.backward()
        norm_t = torch.nn.utils.clip_grad_norm_(model_t.parameters(), CLIP)
        for group in opt_t.param_groups:
            group["lr"] = lr
        opt_t.step()

        assert math.isfinite(norm)
        assert norm == pytest.approx(norm_t.item(), rel=TOL), f"grad norm at step {step}"
        assert loss.item() == pytest.approx(loss_t.item(), rel=TOL), f"loss at step {step}"
        norms.append(norm)

    # the clip must bite in some steps and not in others, so both branches are compared
    assert any(n > CLIP for n in norms) and any(n < CLIP for n in norms), f"grad norms {norms}"
    weights_t = dict(model_t.named_parameters())
    for name, p in model.named_parameters():
        ref.assert_close(p.data, weights_t[name], TOL, f"final {name}")
    # the run really moved the weights (so agreeing on them means something)
    moved = [ref.relative_error(p.data, initial[name]) for name, p in model.named_parameters()]
    assert min(moved) > 1e-3
