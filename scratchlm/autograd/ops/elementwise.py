"""Element-wise primitives: add, sub, mul, div, neg, pow, exp, log, tanh, sqrt, where.

Binary ops broadcast like NumPy; their backward sums the gradient back down to
each input's shape (``unbroadcast``). Python numbers and plain arrays are
constants and get no gradient.
"""

from __future__ import annotations

from scratchlm.autograd.function import Function
from scratchlm.backend import get_array_module
from scratchlm.kernels import buffers


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _shape(x):
    return getattr(x, "shape", ())


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return buffers.add(a, b)                           # a + b (on both cores when it can)

    @staticmethod
    def backward(ctx, grad):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad, sa) if need_a else None), (unbroadcast(grad, sb) if need_b else None)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return a - b

    @staticmethod
    def backward(ctx, grad):
        sa, sb = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        return (unbroadcast(grad, sa) if need_a else None), (unbroadcast(-grad, sb) if need_b else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = unbroadcast(grad * b, _shape(a)) if need_a else None
        gb = unbroadcast(grad * a, _shape(b)) if need_b else None
        return ga, gb


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save(a, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = unbroadcast(grad / b, _shape(a)) if need_a else None
        gb = unbroadcast(-grad * a / (b * b), _shape(b)) if need_b else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    """a ** p for a constant exponent p: d/da = p * a ** (p - 1)."""

    @staticmethod
    def forward(ctx, a, exponent):
        ctx.save(a)
        ctx.exponent = exponent
        return a**exponent

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved
        p = ctx.exponent
        return grad * p * a ** (p - 1), None


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = get_array_module(a).exp(a)
        ctx.save(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return grad * out


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save(a)
        return get_array_module(a).log(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved
        return grad / a


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = get_array_module(a).tanh(a)
        ctx.save(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return grad * (1 - out * out)


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = get_array_module(a).sqrt(a)
        ctx.save(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return grad / (2 * out)


class Where(Function):
    """where(condition, a, b): a where the (constant, boolean) condition holds, else b."""

    @staticmethod
    def forward(ctx, condition, a, b):
        xp = get_array_module(a, b)
        ctx.condition = condition
        ctx.shapes = (_shape(a), _shape(b))
        return xp.where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):
        xp = get_array_module(grad)
        _, need_a, need_b = ctx.needs_input_grad
        zero = xp.zeros((), dtype=grad.dtype)
        sa, sb = ctx.shapes
        ga = unbroadcast(xp.where(ctx.condition, grad, zero), sa) if need_a else None
        gb = unbroadcast(xp.where(ctx.condition, zero, grad), sb) if need_b else None
        return None, ga, gb


def add(a, b):
    return Add.apply(a, b)


def sub(a, b):
    return Sub.apply(a, b)


def mul(a, b):
    return Mul.apply(a, b)


def div(a, b):
    return Div.apply(a, b)


def neg(a):
    return Neg.apply(a)


def pow(a, exponent):
    return Pow.apply(a, exponent)


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def tanh(a):
    return Tanh.apply(a)


def sqrt(a):
    return Sqrt.apply(a)


def where(condition, a, b):
    """Element-wise choice; ``condition`` is a boolean array (never differentiated)."""
    return Where.apply(condition, a, b)


def masked_fill(x, mask, value: float):
    """``x`` with ``value`` wherever the boolean ``mask`` is true (gradient 0 there)."""
    return Where.apply(mask, value, x)
