"""The Function base class: one differentiable operation, forward beside backward.

An op is written as a subclass with two static methods that work on plain
arrays (NumPy or CuPy), never on Tensors::

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):          # arrays in, array out
            ctx.save(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):          # d loss / d out  ->  d loss / d each input
            a, b = ctx.saved
            return grad * b, grad * a

``Mul.apply(x, y)`` unwraps the Tensors, runs ``forward`` and, when gradients
are wanted, records one tape ``Node`` that ``Tensor.backward`` later visits.
Positional inputs that are not Tensors (integer ids, masks, Python numbers) are
constants: they get no gradient. Keyword arguments are op parameters (axis,
shape, eps...). A forward may return a tuple of arrays (``split``); its
backward then receives one gradient per output.
"""

from __future__ import annotations

import contextlib
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Within this block, ops record nothing on the tape (inference, evaluation)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


class Context:
    """What forward leaves for backward: saved arrays and any plain attributes."""

    saved: tuple = ()
    needs_input_grad: tuple = ()

    def save(self, *arrays) -> None:
        self.saved = arrays


class Node:
    """One entry on the tape: the op, its context, its input Tensors, its output count."""

    __slots__ = ("function", "ctx", "inputs", "num_outputs", "output_meta")

    def __init__(self, function, ctx, inputs, num_outputs, output_meta):
        self.function = function
        self.ctx = ctx
        # one entry per positional input: None (a constant), the Tensor itself (a leaf, whose
        # .grad receives the gradient), or (node, output index) for a tensor made by an op --
        # not the tensor, so its array is freed as soon as no backward needs it
        self.inputs = inputs
        self.num_outputs = num_outputs
        self.output_meta = output_meta  # (shape, dtype) per output, to make zero grads


class Function:
    """Base class of every differentiable op; subclasses define forward and backward."""

    @staticmethod
    def forward(ctx: Context, *arrays, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        from scratchlm.autograd.tensor import Tensor

        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        ctx = Context()
        out = cls.forward(ctx, *arrays, **params)
        needs = tuple(isinstance(x, Tensor) and x.requires_grad for x in inputs)
        track = any(needs) and is_grad_enabled()
        multi = isinstance(out, tuple)
        outputs = tuple(Tensor(o, requires_grad=track) for o in out) if multi else (Tensor(out, requires_grad=track),)
        if track:
            ctx.needs_input_grad = needs
            parents = tuple(
                None if not n else (x if x._node is None else (x._node, x._index)) for x, n in zip(inputs, needs)
            )
            meta = tuple((o.shape, o.dtype) for o in outputs)
            node = Node(cls, ctx, parents, len(outputs), meta)
            for index, o in enumerate(outputs):
                o._node = node
                o._index = index
        return outputs if multi else outputs[0]
