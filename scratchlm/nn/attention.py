"""Causal self-attention (fused qkv projection), its KV cache, and the pre-norm Block.

The attention layer takes an optional ``KVCache``: during generation each call
brings only the new positions, appends their keys and values to the cache, and
attends over everything cached, so a new token costs one position, not a window.
"""

from __future__ import annotations

from scratchlm.autograd import ops
from scratchlm.backend import get_array_module
from scratchlm.nn.layers import MLP, Dropout, LayerNorm, Linear, RMSNorm
from scratchlm.nn.module import Module


class KVCache:
    """Keys and values of one layer for the positions seen so far: (B, H, capacity, D) buffers."""

    def __init__(self, batch, heads, capacity, head_dim, dtype, xp):
        self.k = xp.zeros((batch, heads, capacity, head_dim), dtype=dtype)
        self.v = xp.zeros((batch, heads, capacity, head_dim), dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def append(self, k, v):
        """Add new keys/values (B, H, T, D); return all cached ones (B, H, length, D)."""
        t = k.shape[2]
        if self.length + t > self.capacity:
            raise ValueError(f"KV cache full: {self.length} + {t} positions > capacity {self.capacity}")
        self.k[:, :, self.length : self.length + t] = k
        self.v[:, :, self.length : self.length + t] = v
        self.length += t
        return self.k[:, :, : self.length], self.v[:, :, : self.length]


class CausalSelfAttention(Module):
    def __init__(self, dim, heads, bias, dropout, *, rng, proj_std, dtype=None):
        self.heads = heads
        self.qkv = Linear(dim, 3 * dim, bias, rng=rng, dtype=dtype)
        self.proj = Linear(dim, dim, bias, rng=rng, std=proj_std, dtype=dtype)
        self.dropout = dropout

    def forward(self, x, rope=None, cache: KVCache | None = None):
        """x (B, T, C) -> (B, T, C). ``rope``: (cos, sin) tables (T, D/2) for these positions."""
        qkv = self.qkv(x)                                       # (B, T, 3C)
        return self.dropout(self.proj(ops.attention(qkv, self.heads, rope, cache)))   # (B, T, C)


class Block(Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config, *, rng, dropout: Dropout, dtype=None):
        C = config.d_model
        proj_std = 0.02 / (2 * config.n_layers) ** 0.5
        self.norm1 = make_norm(config, dtype)
        self.attn = CausalSelfAttention(C, config.n_heads, config.bias, dropout, rng=rng, proj_std=proj_std, dtype=dtype)
        self.norm2 = make_norm(config, dtype)
        self.mlp = MLP(C, config.ffn_mult, config.bias, dropout, rng=rng, proj_std=proj_std, dtype=dtype)

    def forward(self, x, rope=None, cache=None):
        x = x + self.attn(self.norm1(x), rope, cache)           # (B, T, C)
        return x + self.mlp(self.norm2(x))                      # (B, T, C)


def make_norm(config, dtype=None) -> Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, dtype=dtype)
    return LayerNorm(config.d_model, bias=config.bias, dtype=dtype)


def new_caches(model, batch: int, capacity: int, xp=None):
    """One empty KVCache per layer of ``model`` (a GPT)."""
    cfg = model.config
    dtype = model.wte.weight.dtype
    xp = xp or get_array_module(model.wte.weight.data)
    D = cfg.d_model // cfg.n_heads
    return [KVCache(batch, cfg.n_heads, capacity, D, dtype, xp) for _ in range(cfg.n_layers)]
