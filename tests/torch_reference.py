"""A PyTorch eager twin of scratchlm's GPT, used only by the parity tests.

It is written independently of scratchlm (torch's own layers and functions
wherever torch has them) and takes its weights from a scratchlm
``GPT.state_dict()`` BY NAME: the torch module tree below mirrors scratchlm's
attribute names (``blocks.0.attn.qkv.weight`` ...), and Linear weights are
(out, in) on both sides, so a state dict copies across unchanged.

Import it only after ``pytest.importorskip("torch")``. It also holds the small
helpers the parity tests share: array conversion and a norm-based relative error.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)  # gentle on a shared machine; these tests compare numbers, never times

# norm-based relative tolerances: ||actual - expected|| / ||expected||
TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-6}


# ---- comparing ---------------------------------------------------------------------
def to_torch(array, requires_grad: bool = False) -> torch.Tensor:
    """A torch copy of a NumPy array (integers stay integers, as int64 for indexing)."""
    array = np.asarray(array)
    if array.dtype.kind in "iu":
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(array.copy()).requires_grad_(requires_grad)


def to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    return np.asarray(value)


def relative_error(actual, expected) -> float:
    actual, expected = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def assert_close(actual, expected, tol: float, what: str = "value") -> None:
    err = relative_error(actual, expected)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e}"


# ---- the math torch has no single call for -----------------------------------------
def sinusoidal_positions(num_positions: int, dim: int, dtype) -> torch.Tensor:
    """(T, dim): sin(pos * w_i) on even features 2i, cos(pos * w_i) on odd ones, w_i = 10000^(-2i/dim)."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]              # (T, 1)
    w = torch.pow(10000.0, -torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = pos * w                                                             # (T, dim/2)
    table = torch.stack([angles.sin(), angles.cos()], dim=-1)                    # (T, dim/2, 2)
    return table.reshape(num_positions, dim).to(dtype)                           # (T, dim) interleaved


def rope_angles(num_positions: int, head_dim: int) -> torch.Tensor:
    """(T, D/2) rotation angles pos * 10000^(-2i/D), in float64."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    return pos * torch.pow(10000.0, -torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on x (B, H, T, D): features i and i + D/2 form one rotated pair."""
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1).to(x.dtype)  # (T, D)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1).to(x.dtype)  # (T, D)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin                # (B, H, T, D)


def causal_attention(q, k, v):
    """q (B, H, Tq, D), k/v (B, H, Tk, D): query i sits at position Tk - Tq + i."""
    tq, tk = q.shape[-2], k.shape[-2]
    if tq == tk:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # torch's is_causal aligns the mask top-left; queries at the END of the keys need it bottom-right
    allowed = torch.ones(tq, tk, dtype=torch.bool).tril(diagonal=tk - tq)  # (Tq, Tk) True = may attend
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


# ---- the model ---------------------------------------------------------------------
def make_norm(config) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=1e-5)
    return nn.LayerNorm(config.d_model, eps=1e-5, bias=config.bias)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)

    def forward(self, x, rope_angles=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)                          # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if rope_angles is not None:
            q, k = apply_rope(q, rope_angles), apply_rope(k, rope_angles)
        y = causal_attention(q, k, v)                                    # (B, H, T, D)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))             # (B, T, C)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden = config.ffn_mult * config.d_model
        self.fc = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.d_model, bias=config.bias)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = Attention(config)
        self.norm2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, rope_angles=None):
        x = x + self.attn(self.norm1(x), rope_angles)                    # (B, T, C)
        return x + self.mlp(self.norm2(x))                               # (B, T, C)


class GPT(nn.Module):
    """The same architecture as scratchlm.model.GPT (no dropout: parity runs use p = 0)."""

    def __init__(self, config):
        super().__init__()
        assert config.dropout == 0.0, "the torch reference has no dropout"
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        if config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.max_seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm_f = make_norm(config)
        if not config.tie_weights:
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, ids, targets=None):
        cfg = self.config
        B, T = ids.shape
        x = self.wte(ids)                                                # (B, T, C)
        angles = None
        if cfg.pos_encoding == "learned":
            x = x + self.wpe(torch.arange(T))                            # (B, T, C)
        elif cfg.pos_encoding == "sinusoidal":
            x = x + sinusoidal_positions(T, cfg.d_model, x.dtype)        # (B, T, C)
        else:
            angles = rope_angles(T, cfg.d_model // cfg.n_heads)          # (T, D/2)
        for block in self.blocks:
            x = block(x, angles)                                         # (B, T, C)
        x = self.norm_f(x)                                               # (B, T, C)
        head = self.wte.weight if cfg.tie_weights else self.lm_head.weight
        logits = F.linear(x, head)                                       # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-1)
        return logits, loss


# ---- weights in, gradients out -----------------------------------------------------
def load_scratchlm_state(module: nn.Module, state: dict) -> nn.Module:
    """Copy a scratchlm state dict into ``module`` by name (same names, same shapes, same dtype)."""
    params = dict(module.named_parameters())
    assert set(params) == set(state), f"names differ: {sorted(set(params) ^ set(state))}"
    dtype = torch.from_numpy(np.asarray(next(iter(state.values())))).dtype
    module.to(dtype)
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(torch.from_numpy(np.ascontiguousarray(state[name])))
    return module


def reference_like(scratch_module, torch_module: nn.Module) -> nn.Module:
    """``torch_module`` carrying a scratchlm module's weights."""
    return load_scratchlm_state(torch_module, scratch_module.state_dict())


def gradients(module: nn.Module) -> dict:
    """name -> gradient as a NumPy array (None where no gradient arrived)."""
    return {name: None if p.grad is None else p.grad.numpy() for name, p in module.named_parameters()}


def perturb(scratch_module, rng: np.random.Generator, std: float) -> None:
    """Add N(0, std) noise to every parameter of a scratchlm module, so that biases and
    norm weights are not their trivial 0 / 1 and every gradient path carries signal."""
    for _, p in scratch_module.named_parameters():
        p.data[...] += rng.normal(0.0, std, p.shape).astype(p.dtype)
