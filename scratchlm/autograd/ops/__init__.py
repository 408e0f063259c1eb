"""Differentiable ops: a small set of primitives plus fused transformer ops.

Every op is a ``Function`` (forward beside backward) with a lower-case helper to
call it on Tensors: ``ops.add(a, b)``, ``ops.layer_norm(x, w, b)``...
"""

from scratchlm.autograd.ops.elementwise import (
    add,
    div,
    exp,
    log,
    masked_fill,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    tanh,
    unbroadcast,
    where,
)
from scratchlm.autograd.ops.shape import concat, getitem, matmul, max, mean, permute, reshape, split, sum, transpose
from scratchlm.autograd.ops.transformer import (
    attention,
    causal_attention,
    causal_self_attention,
    cross_entropy,
    dropout,
    embedding,
    feed_forward,
    gelu,
    layer_norm,
    linear,
    rms_norm,
    rope,
)

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "tanh", "sqrt", "where", "masked_fill",
    "unbroadcast", "sum", "mean", "max", "reshape", "permute", "transpose", "getitem", "matmul",
    "concat", "split", "linear", "embedding", "layer_norm", "rms_norm", "gelu", "attention", "causal_attention",
    "causal_self_attention",
    "cross_entropy", "dropout", "rope", "feed_forward",
]
