"""Fused transformer ops: each is ONE tape node whose arithmetic lives in ``kernels/``.

A transformer built from primitives alone would put dozens of small nodes per
layer on the tape; these coarse ops keep the tape short (so Python overhead stays
small) and let each kernel be written, tested and optimised on its own.

Each ``Function`` here is named ``<Thing>Op`` so that it never shares a name with the
``nn`` layer that calls it (``nn.LayerNorm`` calls ``layer_norm``, which applies
``LayerNormOp``). ``attention`` is the one entry the attention layer calls.
"""

from __future__ import annotations

from scratchlm.autograd.function import Function, is_grad_enabled
from scratchlm.autograd.ops.shape import split
from scratchlm.autograd.precision import products
from scratchlm.autograd.tensor import Tensor
from scratchlm.kernels import attention as attention_kernels
from scratchlm.kernels import attention_packed as packed_attention_kernels
from scratchlm.kernels import bias as bias_kernels
from scratchlm.kernels import cross_entropy as ce_kernels
from scratchlm.kernels import dropout as dropout_kernels
from scratchlm.kernels import embedding as embedding_kernels
from scratchlm.kernels import gelu as gelu_kernels
from scratchlm.kernels import layernorm as layernorm_kernels
from scratchlm.kernels import rmsnorm as rmsnorm_kernels
from scratchlm.kernels.attention_route import attention_route
from scratchlm.kernels.rope import rotate_reference


class LinearOp(Function):
    """y = x W^T + b, with W stored (out, in) as in PyTorch; x (..., in) -> y (..., out).

    The leading axes are folded into one, so forward and backward are single matrix
    products: float32 BLAS on Numba's threads (``kernels/blas.py``), or bf16 operands on the
    CPU's bf16 units inside ``bf16_products()`` (``autograd/precision.py``).
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        lead = x.shape[:-1]
        mm = products()
        x2 = mm.operand(x.reshape(-1, x.shape[-1]))            # (N, in)
        w = mm.operand(weight)                                 # (out, in)
        y = mm.matmul(x2, w.T)                                 # (N, out) float32
        if bias is not None:
            bias_kernels.add_bias(y, bias)
        ctx.save(x2, w)
        ctx.lead, ctx.products = lead, mm
        return y.reshape(*lead, weight.shape[0])               # (..., out)

    @staticmethod
    def backward(ctx, grad):
        x2, w = ctx.saved
        mm = ctx.products
        need_x, need_w, need_b = ctx.needs_input_grad          # a None bias: a constant
        g2 = grad.reshape(-1, w.shape[0])                      # (N, out)
        g = mm.operand(g2)
        gx = mm.matmul(g, w).reshape(*ctx.lead, w.shape[1]) if need_x else None
        gw = mm.matmul(g.T, x2) if need_w else None            # (out, in)
        gb = bias_kernels.bias_grad(g2) if need_b else None    # (out,)
        return gx, gw, gb


class FeedForwardOp(Function):
    """proj(gelu(fc(x))) as ONE node: x (..., C) -> (..., C) through a hidden (..., H).

    It keeps x and the hidden pre-activation h = fc(x), but not gelu(h): backward
    recomputes gelu(h) (a cheap element-wise pass, fused with GELU's backward and fc's
    bias gradient) instead of holding a second (N, H) array per layer for the whole
    backward pass, which cuts peak memory by about a fifth at config-c shapes. Its four
    products follow ``products()`` as LinearOp's do; h, GELU and the biases stay float32,
    and in bf16 the GELU kernels write gelu(h) and dh already rounded.
    """

    @staticmethod
    def forward(ctx, x, w_fc, b_fc, w_proj, b_proj):
        lead = x.shape[:-1]
        mm = products()
        x2 = mm.operand(x.reshape(-1, x.shape[-1]))            # (N, C)
        w_fc, w_proj = mm.operand(w_fc), mm.operand(w_proj)    # (H, C), (C, H)
        h = mm.matmul(x2, w_fc.T)                              # (N, H)
        a = gelu_kernels.bias_gelu_forward(h, b_fc, to_bf16=mm.rounds)  # h += b_fc; a = gelu(h) (N, H)
        y = mm.matmul(a, w_proj.T)                             # (N, C)
        if b_proj is not None:
            bias_kernels.add_bias(y, b_proj)
        ctx.save(x2, h, w_fc, w_proj)
        ctx.lead, ctx.products = lead, mm
        return y.reshape(*lead, w_proj.shape[0])               # (..., C)

    @staticmethod
    def backward(ctx, grad):
        x2, h, w_fc, w_proj = ctx.saved
        mm = ctx.products
        need_x, need_wfc, need_bfc, need_wproj, need_bproj = ctx.needs_input_grad
        g2 = grad.reshape(-1, w_proj.shape[0])                 # (N, C)
        g = mm.operand(g2)
        da = mm.matmul(g, w_proj)                              # (N, H) d loss / d gelu(h)
        # gelu(h), dh (N, H) as the products read them (float32 dh over da); (H,) from float32 dh
        a, dh, g_bfc = gelu_kernels.gelu_backward_recompute(da, h, to_bf16=mm.rounds)
        g_wproj = mm.matmul(g.T, a) if need_wproj else None    # (C, H)
        g_bproj = bias_kernels.bias_grad(g2) if need_bproj else None   # (C,)
        del a
        g_wfc = mm.matmul(dh.T, x2) if need_wfc else None      # (H, C)
        g_bfc = g_bfc if need_bfc else None                    # (H,)
        gx = mm.matmul(dh, w_fc).reshape(*ctx.lead, w_fc.shape[1]) if need_x else None
        return gx, g_wfc, g_bfc, g_wproj, g_bproj


class EmbeddingOp(Function):
    """weight (V, C), ids (B, T) ints -> (B, T, C); repeated ids accumulate in backward."""

    @staticmethod
    def forward(ctx, weight, ids):
        ctx.save(ids)
        ctx.vocab_size = weight.shape[0]
        return embedding_kernels.embedding_forward(weight, ids)

    @staticmethod
    def backward(ctx, grad):
        (ids,) = ctx.saved
        return embedding_kernels.embedding_backward(grad, ids, ctx.vocab_size), None


class LayerNormOp(Function):
    """Normalise the last axis: x (..., C), weight (C,), bias (C,) -> (..., C)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])                          # (N, C)
        y, mean, rstd = layernorm_kernels.layernorm_forward(x2, weight, bias, eps)
        ctx.save(x2, weight, mean, rstd)
        return y.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        x2, weight, mean, rstd = ctx.saved
        dx, dw, db = layernorm_kernels.layernorm_backward(grad.reshape(x2.shape), x2, weight, mean, rstd)
        return dx.reshape(grad.shape), dw, db


class RMSNormOp(Function):
    """Scale the last axis by its root-mean-square: x (..., C), weight (C,) -> (..., C)."""

    @staticmethod
    def forward(ctx, x, weight, eps=1e-5):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])                          # (N, C)
        y, rstd = rmsnorm_kernels.rmsnorm_forward(x2, weight, eps)
        ctx.save(x2, weight, rstd)
        return y.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        x2, weight, rstd = ctx.saved
        dx, dw = rmsnorm_kernels.rmsnorm_backward(grad.reshape(x2.shape), x2, weight, rstd)
        return dx.reshape(grad.shape), dw


class GELUOp(Function):
    """The tanh-approximation GELU, element-wise."""

    @staticmethod
    def forward(ctx, x):
        ctx.save(x)
        return gelu_kernels.gelu_forward(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return gelu_kernels.gelu_backward(grad, x)


class SplitHeadsAttentionOp(Function):
    """softmax(q k^T / sqrt(D) + causal mask) v for q (B,H,Tq,D), k and v (B,H,Tk,D)."""

    @staticmethod
    def forward(ctx, q, k, v):
        out, probs = attention_kernels.attention_forward(q, k, v)
        ctx.save(q, k, v, probs)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, probs = ctx.saved
        return attention_kernels.attention_backward(grad, q, k, v, probs)


class PackedAttentionOp(Function):
    """The same attention over the packed output of the fused qkv projection, in place:
    qkv (B, T, 3C) -> (B, T, C), no head copies and no (B, H, T, T) weights kept for
    backward (they are recomputed from q, k and one log-denominator per row)."""

    @staticmethod
    def forward(ctx, qkv, heads):
        out, lse = packed_attention_kernels.packed_forward(qkv, heads)
        ctx.save(qkv, out, lse)                             # out is kept anyway, by the projection
        ctx.heads = heads
        return out

    @staticmethod
    def backward(ctx, grad):
        qkv, out, lse = ctx.saved
        return packed_attention_kernels.packed_backward(grad, qkv, out, lse, ctx.heads)


class CrossEntropyOp(Function):
    """Mean cross-entropy of logits (N, V) against integer targets (N,), skipping ignore_index."""

    @staticmethod
    def forward(ctx, logits, targets, ignore_index=-1):
        # the gradient is computed now, in the same pass, unless no tape is being recorded
        loss, dlogits = ce_kernels.cross_entropy_forward(logits, targets, ignore_index, is_grad_enabled())
        ctx.save(dlogits)
        return loss

    @staticmethod
    def backward(ctx, grad):
        (dlogits,) = ctx.saved
        return dlogits * grad, None


class DropoutOp(Function):
    """Zero each element with probability p and scale the survivors by 1 / (1 - p).

    The mask is a function of one key (kernels/dropout.py), drawn here from the host
    Generator, whose state the checkpoints keep; backward recomputes it from the key.
    """

    @staticmethod
    def forward(ctx, x, p, rng):
        ctx.p, ctx.key = p, int(rng.integers(0, 2**63))
        return dropout_kernels.dropout(x, p, ctx.key)

    @staticmethod
    def backward(ctx, grad):
        return dropout_kernels.dropout(grad, ctx.p, ctx.key)


class RopeOp(Function):
    """Rotary position embedding on the last axis of x (B, H, T, D), rotate-half form.

    With x = [x1, x2] (halves of D) and angles theta (T, D/2) for positions
    offset .. offset+T-1:  out = [x1 cos - x2 sin, x2 cos + x1 sin]. The map is a
    rotation, so its backward rotates the gradient by -theta.
    """

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save(cos, sin)
        return rotate_reference(x, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved
        return rotate_reference(grad, cos, -sin), None, None


def linear(x, weight, bias=None):
    return LinearOp.apply(x, weight, bias)


def feed_forward(x, w_fc, b_fc, w_proj, b_proj):
    """proj(gelu(fc(x))); the biases may be None."""
    return FeedForwardOp.apply(x, w_fc, b_fc, w_proj, b_proj)


def embedding(weight, ids):
    return EmbeddingOp.apply(weight, ids)


def layer_norm(x, weight, bias, eps=1e-5):
    return LayerNormOp.apply(x, weight, bias, eps=eps)


def rms_norm(x, weight, eps=1e-5):
    return RMSNormOp.apply(x, weight, eps=eps)


def gelu(x):
    return GELUOp.apply(x)


def attention(qkv, heads, rope=None, cache=None):
    """The attention layer's one entry: qkv (B, T, 3C), the fused projection's output -> (B, T, C).

    ``kernels.attention_route`` picks the kernels: the packed ones read the heads in place
    (CPU, no RoPE, no cache); otherwise the heads are split, rotated by ``rope`` ((cos, sin)
    tables (T, D/2)), appended to ``cache`` (a KV cache: ``append(k, v)`` returns every
    cached key and value) and attended by the split-heads kernels.
    """
    route = attention_route(qkv.data, rotary=rope is not None, cached=cache is not None)
    if route.family == "packed":
        return causal_self_attention(qkv, heads)
    B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, v = (part.reshape(B, T, heads, C // heads).permute(0, 2, 1, 3)        # 3 x (B, H, T, D)
               for part in split(qkv, 3, axis=-1))
    if rope is not None:
        q, k = RopeOp.apply(q, *rope), RopeOp.apply(k, *rope)
    if cache is not None:                     # generation: no tape, attend over every cached position
        k_all, v_all = cache.append(k.data, v.data)                              # (B, H, Tk, D)
        k, v = Tensor(k_all), Tensor(v_all)
    y = causal_attention(q, k, v)                                                # (B, H, T, D)
    return y.permute(0, 2, 1, 3).reshape(B, T, C)                                # (B, T, C)


def causal_attention(q, k, v):
    return SplitHeadsAttentionOp.apply(q, k, v)


def causal_self_attention(qkv, heads):
    """qkv (B, T, 3C) Tensor, the fused projection's output -> (B, T, C); Tq == Tk == T."""
    return PackedAttentionOp.apply(qkv, heads=heads)


def cross_entropy(logits, targets, ignore_index=-1):
    """logits (N, V) Tensor, targets (N,) int array -> scalar mean loss."""
    return CrossEntropyOp.apply(logits, targets, ignore_index=ignore_index)


def dropout(x, p, rng, training=True):
    if not training or p == 0.0:
        return x
    return DropoutOp.apply(x, p=p, rng=rng)


def rope(x, cos, sin):
    return RopeOp.apply(x, cos, sin)
