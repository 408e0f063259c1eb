"""The basic layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout, MLP.

Weights are created on the host with a NumPy generator (so a seed means the same
model on every machine) and moved with ``Module.to(device)``.
"""

from __future__ import annotations

import numpy as np

from scratchlm.autograd import ops
from scratchlm.backend import resolve_dtype
from scratchlm.nn.module import Module, Parameter


def normal(rng: np.random.Generator, shape, std: float, dtype) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(resolve_dtype(dtype))


class Linear(Module):
    """y = x W^T + b; W is (out, in), as in PyTorch, so checkpoints load there unchanged."""

    def __init__(self, in_features, out_features, bias=True, *, rng, std=0.02, dtype=None):
        dtype = resolve_dtype(dtype)
        self.weight = Parameter(normal(rng, (out_features, in_features), std, dtype))
        self.bias = Parameter(np.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)


class Embedding(Module):
    def __init__(self, num_embeddings, dim, *, rng, std=0.02, dtype=None):
        self.weight = Parameter(normal(rng, (num_embeddings, dim), std, dtype))

    def forward(self, ids):
        return ops.embedding(self.weight, ids)


class LayerNorm(Module):
    """Normalise the last axis, then scale (and shift, unless bias=False)."""

    _buffers = ("zero_bias",)

    def __init__(self, dim, bias=True, eps=1e-5, dtype=None):
        dtype = resolve_dtype(dtype)
        self.eps = eps
        self.weight = Parameter(np.ones(dim, dtype=dtype))
        self.bias = Parameter(np.zeros(dim, dtype=dtype)) if bias else None
        self.zero_bias = None if bias else np.zeros(dim, dtype=dtype)  # a constant, not trained

    def forward(self, x):
        bias = self.bias if self.bias is not None else self.zero_bias
        return ops.layer_norm(x, self.weight, bias, self.eps)


class RMSNorm(Module):
    def __init__(self, dim, eps=1e-5, dtype=None):
        self.eps = eps
        self.weight = Parameter(np.ones(dim, dtype=resolve_dtype(dtype)))

    def forward(self, x):
        return ops.rms_norm(x, self.weight, self.eps)


class Dropout(Module):
    """Dropout in training mode; the identity in eval mode or when p == 0."""

    def __init__(self, p: float, rng):
        self.p = p
        self.rng = rng  # a numpy (or cupy) Generator shared by the whole model

    def forward(self, x):
        return ops.dropout(x, self.p, self.rng, self.training)


class MLP(Module):
    """x -> Linear(C, mult*C) -> GELU -> Linear(mult*C, C) -> dropout."""

    def __init__(self, dim, multiplier, bias, dropout, *, rng, proj_std, dtype=None):
        self.fc = Linear(dim, multiplier * dim, bias, rng=rng, dtype=dtype)
        self.proj = Linear(multiplier * dim, dim, bias, rng=rng, std=proj_std, dtype=dtype)
        self.dropout = dropout

    def forward(self, x):
        fc, proj = self.fc, self.proj
        return self.dropout(ops.feed_forward(x, fc.weight, fc.bias, proj.weight, proj.bias))  # (B, T, C)
