"""Tensor: an array plus what autograd needs (grad, requires_grad, the op that made it).

The backward pass walks the tape iteratively (no recursion, so a graph of any
depth works): it orders the nodes so each comes after every node that consumes
its outputs, then pushes gradients from the loss back to the leaves. A tensor
used twice receives the sum of both gradients. Leaf gradients accumulate in
place into ``.grad``, which lets the optimizer hand out views into one flat
gradient buffer (zeroed in one pass) and makes gradient accumulation free.
"""

from __future__ import annotations

import numpy as np

from scratchlm import backend
from scratchlm.autograd.function import Node

_ops = None


def _o():
    """The ops package, imported on first use (it imports this module)."""
    global _ops
    if _ops is None:
        from scratchlm.autograd import ops

        _ops = ops
    return _ops


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_node", "_index", "__weakref__")

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.generic):  # a NumPy scalar, e.g. from a full reduction
            data = np.asarray(data)
        elif not isinstance(data, np.ndarray) and not backend.is_cuda_array(data):
            data = np.asarray(data)  # Python numbers and lists: floats become float32
            if data.dtype.kind == "f" and dtype is None:
                dtype = backend.DEFAULT_DTYPE
        if dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad
        self._node: Node | None = None
        self._index = 0

    # ---- array facts -------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data))

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{flag})"

    def numpy(self) -> np.ndarray:
        return backend.to_numpy(self.data)

    def item(self) -> float:
        return float(self.data.item() if hasattr(self.data, "item") else self.data)

    def detach(self) -> Tensor:
        """The same data, cut from the tape."""
        return Tensor(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._node is None

    # ---- autograd --------------------------------------------------------------
    def _accumulate(self, g) -> None:
        if g.shape != self.data.shape:
            raise RuntimeError(f"gradient of shape {g.shape} for a tensor of shape {self.data.shape}")
        if self.grad is None:
            xp = backend.get_array_module(g)
            self.grad = xp.array(g, dtype=self.data.dtype, copy=True)
        else:
            from scratchlm.kernels import buffers  # here: importing scratchlm loads no kernels

            buffers.accumulate(self.grad, g)             # self.grad += g, on both cores

    def backward(self, grad=None) -> None:
        """Back-propagate from this tensor (a scalar loss unless ``grad`` is given)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        from scratchlm.kernels import buffers  # the gradients' sums (on first use)

        xp = backend.get_array_module(self.data)
        if grad is None:
            grad = xp.ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else grad
        if self._node is None:
            self._accumulate(grad)
            return
        order = _topological_order(self._node)
        pending = {id(self._node): [None] * self._node.num_outputs}
        pending[id(self._node)][self._index] = grad
        for node in reversed(order):
            out_grads = pending.pop(id(node), None)
            if out_grads is None:
                continue
            for i, g in enumerate(out_grads):
                if g is None:
                    shape, dtype = node.output_meta[i]
                    out_grads[i] = xp.zeros(shape, dtype=dtype)
            in_grads = node.function.backward(node.ctx, *out_grads)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for parent, g in zip(node.inputs, in_grads):
                if parent is None or g is None:
                    continue
                if isinstance(parent, Tensor):  # a leaf
                    parent._accumulate(g)
                else:  # (node, output index) of an intermediate tensor
                    parent_node, index = parent
                    slots = pending.setdefault(id(parent_node), [None] * parent_node.num_outputs)
                    old = slots[index]
                    # old + g into a new array, never in place: a backward may hand one array
                    # to two inputs (Add's), so old may be g, or another slot's gradient
                    slots[index] = g if old is None else buffers.add(old, g)
            node.ctx = None  # free what forward saved; a graph is walked once

    # ---- operators (the ops live in scratchlm.autograd.ops) ------------------------------
    def __add__(self, other):
        return _o().add(self, other)

    def __radd__(self, other):
        return _o().add(other, self)

    def __sub__(self, other):
        return _o().sub(self, other)

    def __rsub__(self, other):
        return _o().sub(other, self)

    def __mul__(self, other):
        return _o().mul(self, other)

    def __rmul__(self, other):
        return _o().mul(other, self)

    def __truediv__(self, other):
        return _o().div(self, other)

    def __rtruediv__(self, other):
        return _o().div(other, self)

    def __neg__(self):
        return _o().neg(self)

    def __pow__(self, exponent):
        return _o().pow(self, exponent)

    def __matmul__(self, other):
        return _o().matmul(self, other)

    def __getitem__(self, index):
        return _o().getitem(self, index)

    def exp(self):
        return _o().exp(self)

    def log(self):
        return _o().log(self)

    def tanh(self):
        return _o().tanh(self)

    def sqrt(self):
        return _o().sqrt(self)

    def sum(self, axis=None, keepdims=False):
        return _o().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _o().mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return _o().max(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return _o().reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)

    def permute(self, *axes):
        return _o().permute(self, axes[0] if len(axes) == 1 and isinstance(axes[0], tuple) else axes)

    def transpose(self, dim0=-2, dim1=-1):
        return _o().transpose(self, dim0, dim1)


def _topological_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, each after all the nodes that feed it (iterative DFS)."""
    order: list[Node] = []
    visited: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node.inputs:
            if isinstance(parent, tuple) and id(parent[0]) not in visited:
                stack.append((parent[0], False))
    return order
