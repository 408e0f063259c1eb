"""Reductions, shape ops and matmul: sum, mean, max, reshape, permute, getitem,
concat, split and batched matmul. Each backward undoes its forward's bookkeeping."""

from __future__ import annotations

from itertools import accumulate

from scratchlm.autograd.function import Function
from scratchlm.autograd.ops.elementwise import unbroadcast
from scratchlm.backend import get_array_module


def _axes(axis, ndim):
    """Normalise an axis argument to a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _regrow(grad, shape, axis, keepdims):
    """Give a reduced gradient back the reduced axes (size 1), ready to broadcast."""
    if not keepdims:
        for a in _axes(axis, len(shape)):
            grad = get_array_module(grad).expand_dims(grad, a)
    return grad


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        xp = get_array_module(grad)
        return xp.broadcast_to(_regrow(grad, ctx.shape, ctx.axis, ctx.keepdims), ctx.shape)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = a.shape, axis, keepdims
        ctx.count = 1
        for ax in _axes(axis, a.ndim):
            ctx.count *= a.shape[ax]
        return a.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        xp = get_array_module(grad)
        return xp.broadcast_to(_regrow(grad, ctx.shape, ctx.axis, ctx.keepdims) / ctx.count, ctx.shape)


class Max(Function):
    """max over axes; ties share the gradient equally."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        out = a.max(axis=axis, keepdims=True)
        ctx.save(a, out)
        ctx.axis, ctx.keepdims = axis, keepdims
        return out if keepdims else out.reshape(a.max(axis=axis).shape)

    @staticmethod
    def backward(ctx, grad):
        a, out = ctx.saved
        winners = (a == out).astype(a.dtype)
        winners /= winners.sum(axis=ctx.axis, keepdims=True)
        return winners * _regrow(grad, a.shape, ctx.axis, ctx.keepdims)


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        inverse = [0] * len(ctx.axes)
        for i, ax in enumerate(ctx.axes):
            inverse[ax] = i
        return grad.transpose(inverse)


def _has_array_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "shape") or isinstance(p, list) for p in parts)


class GetItem(Function):
    """a[index] for slices, integers and integer arrays (repeated indices accumulate)."""

    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index = a.shape, index
        return a[index]

    @staticmethod
    def backward(ctx, grad):
        xp = get_array_module(grad)
        out = xp.zeros(ctx.shape, dtype=grad.dtype)
        if _has_array_index(ctx.index):
            xp.add.at(out, ctx.index, grad)
        else:
            out[ctx.index] = grad
        return out


class MatMul(Function):
    """a @ b with NumPy's batching and broadcasting over leading axes (both at least 2-D)."""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul needs arrays of at least 2 dimensions, got {a.shape} @ {b.shape}")
        ctx.save(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        need_a, need_b = ctx.needs_input_grad
        ga = unbroadcast(grad @ b.swapaxes(-1, -2), a.shape) if need_a else None
        gb = unbroadcast(a.swapaxes(-1, -2) @ grad, b.shape) if need_b else None
        return ga, gb


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        xp = get_array_module(*arrays)
        ctx.axis = axis
        ctx.bounds = list(accumulate(a.shape[axis] for a in arrays))[:-1]
        return xp.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(get_array_module(grad).split(grad, ctx.bounds, axis=ctx.axis))


class Split(Function):
    """Split along ``axis`` into pieces of the given sizes (one output per piece)."""

    @staticmethod
    def forward(ctx, a, sizes, axis=0):
        bounds = list(accumulate(sizes))
        if bounds[-1] != a.shape[axis]:
            raise ValueError(f"split sizes {sizes} do not add up to {a.shape[axis]}")
        ctx.axis = axis
        return tuple(get_array_module(a).split(a, bounds[:-1], axis=axis))

    @staticmethod
    def backward(ctx, *grads):
        return get_array_module(grads[0]).concatenate(grads, axis=ctx.axis), None


def sum(a, axis=None, keepdims=False):
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def max(a, axis=None, keepdims=False):
    return Max.apply(a, axis=axis, keepdims=keepdims)


def reshape(a, shape):
    return Reshape.apply(a, shape=tuple(shape))


def permute(a, axes):
    return Permute.apply(a, axes=tuple(axes))


def transpose(a, dim0=-2, dim1=-1):
    axes = list(range(a.ndim))
    axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
    return Permute.apply(a, axes=tuple(axes))


def getitem(a, index):
    from scratchlm.autograd.tensor import Tensor

    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(a, index=index)


def matmul(a, b):
    return MatMul.apply(a, b)


def concat(tensors, axis=0):
    return Concat.apply(*tensors, axis=axis)


def split(a, sizes, axis=0):
    """Split ``a`` along ``axis``: ``sizes`` is a list of piece sizes or a number of equal pieces."""
    if isinstance(sizes, int):
        n = a.shape[axis]
        if n % sizes:
            raise ValueError(f"cannot split an axis of {n} into {sizes} equal pieces")
        sizes = [n // sizes] * sizes
    return Split.apply(a, sizes=list(sizes), axis=axis)
