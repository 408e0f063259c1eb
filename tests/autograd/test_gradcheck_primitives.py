"""Finite-difference checks (float64) of every primitive op in scratchlm/autograd/ops/elementwise.py and shape.py."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_gradients_match, gradient_errors

from scratchlm.autograd import ops
from scratchlm.autograd.function import Function
from scratchlm.autograd.tensor import Tensor


def normal(shape, seed=0):
    return np.array(np.random.default_rng(seed).standard_normal(shape))


def away_from_zero(shape, seed=0):
    """Values in +-[0.5, 2] (safe divisors), random signs."""
    rng = np.random.default_rng(seed)
    return np.array(rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape))


def positive(shape, seed=0):
    return np.array(np.random.default_rng(seed).uniform(0.5, 2.0, shape))


# ---- the checker itself must be able to fail ---------------------------------------
class WrongSquare(Function):
    """x**2 with a deliberately wrong backward (x instead of 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved
        return grad * x


def test_checker_catches_a_wrong_backward():
    errors = gradient_errors(WrongSquare.apply, normal((3, 4)))
    assert errors[0] > 0.1


def test_checker_rejects_float32():
    with pytest.raises(TypeError):
        gradient_errors(ops.exp, normal((3,)).astype(np.float32))


# ---- binary element-wise ops, with broadcasting ------------------------------------
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}
BROADCAST_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 1, 4), (2, 4)),
    ((4,), (2, 3, 4)),
    ((2, 3, 1), (1, 3, 5)),
    ((), (2, 3)),
    ((2, 1), ()),
]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shape_a, shape_b", BROADCAST_SHAPES)
def test_binary_ops_broadcast(name, shape_a, shape_b):
    assert_gradients_match(BINARY[name], normal(shape_a, 1), away_from_zero(shape_b, 2))


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x + 2.5,
        lambda x: 2.5 + x,
        lambda x: x - 1.5,
        lambda x: 1.5 - x,
        lambda x: x * -0.75,
        lambda x: 3.0 * x,
        lambda x: x / 2.0,
        lambda x: 3.0 / x,
    ],
    ids=["add", "radd", "sub", "rsub", "mul", "rmul", "div", "rdiv"],
)
def test_binary_ops_with_python_scalars(fn):
    assert_gradients_match(fn, away_from_zero((2, 3)))


def test_binary_ops_named_functions():
    fn = lambda a, b: ops.div(ops.mul(ops.sub(ops.add(a, b), b), a), b)
    assert_gradients_match(fn, normal((3, 1)), away_from_zero((4,)))


# ---- unary element-wise ops --------------------------------------------------------
@pytest.mark.parametrize(
    "fn, make",
    [
        (ops.neg, normal),
        (lambda x: -x, normal),
        (ops.exp, normal),
        (ops.log, positive),
        (ops.tanh, normal),
        (ops.sqrt, positive),
        (lambda x: x.exp().log().tanh().sqrt(), positive),
    ],
    ids=["neg", "neg-operator", "exp", "log", "tanh", "sqrt", "methods"],
)
def test_unary_ops(fn, make):
    assert_gradients_match(fn, make((2, 3, 4)))


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1.5, 1.0 / 3.0])
def test_pow_of_positive_base(exponent):
    assert_gradients_match(lambda x: x**exponent, positive((3, 4)))


@pytest.mark.parametrize("exponent", [2, 3, -2])
def test_pow_integer_exponent_of_any_sign(exponent):
    assert_gradients_match(lambda x: ops.pow(x, exponent), away_from_zero((3, 4)))


# ---- reductions --------------------------------------------------------------------
AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [True, False])
def test_reductions(reduction, axis, keepdims):
    x = normal((2, 3, 4))  # distinct values, so max has a single winner
    assert_gradients_match(lambda t: getattr(t, reduction)(axis=axis, keepdims=keepdims), x)
    assert_gradients_match(lambda t: getattr(ops, reduction)(t, axis=axis, keepdims=keepdims), x)


# ---- shape ops ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.reshape(6, 4),
        lambda x: x.reshape((4, -1)),
        lambda x: ops.reshape(x, (24,)),
        lambda x: x.transpose(),
        lambda x: x.transpose(0, 2),
        lambda x: ops.transpose(x, -3, -2),
        lambda x: x.permute(2, 0, 1),
        lambda x: ops.permute(x, (1, 2, 0)),
        lambda x: x.permute(2, 0, 1).reshape(4, 6).transpose(),
    ],
)
def test_reshape_transpose_permute(fn):
    assert_gradients_match(fn, normal((2, 3, 4)))


GETITEM_INDICES = {
    "int": 1,
    "negative-int": -1,
    "slice": (slice(None), slice(1, 3)),
    "ellipsis-step": (Ellipsis, slice(None, None, 2)),
    "ints-and-slice": (-1, slice(None), 2),
    "array-repeats": np.array([0, 2, 0, 0]),
    "list-repeats": [1, 1, 0],
    "array-axis1-repeats": (slice(None), np.array([2, 2, 1])),
    "two-arrays-repeats": (np.array([0, 2, 2]), slice(None), np.array([3, 3, 0])),
    "int-array-slice": (1, np.array([0, 0, 2]), slice(1, 3)),
    "2d-array-repeats": np.array([[0, 1], [1, 1]]),
}


@pytest.mark.parametrize("index", GETITEM_INDICES.values(), ids=GETITEM_INDICES.keys())
def test_getitem(index):
    assert_gradients_match(lambda x: x[index], normal((3, 3, 4)))


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [
        ((3, 4), (4, 5)),
        ((2, 3, 4), (2, 4, 5)),
        ((3, 4), (2, 4, 5)),
        ((2, 3, 4), (4, 5)),
        ((2, 2, 3, 4), (4, 5)),
        ((3, 4), (2, 2, 4, 5)),
        ((2, 1, 3, 4), (3, 4, 2)),
    ],
)
def test_matmul(shape_a, shape_b):
    assert_gradients_match(lambda a, b: a @ b, normal(shape_a, 1), normal(shape_b, 2))
    assert_gradients_match(ops.matmul, normal(shape_a, 3), normal(shape_b, 4))


def test_matmul_rejects_vectors():
    with pytest.raises(ValueError, match="at least 2"):
        ops.matmul(Tensor(np.ones(3)), Tensor(np.ones((3, 2))))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    sizes = [1, 3, 2]
    arrays = []
    for i, (shape, size) in enumerate(zip(shapes, sizes)):
        shape = list(shape)
        shape[axis] = size
        arrays.append(normal(tuple(shape), i))
    assert_gradients_match(lambda *ts: ops.concat(list(ts), axis=axis), *arrays)


@pytest.mark.parametrize("sizes, axis", [(3, 1), ([1, 3, 2], -1), (2, 0)])
def test_split_then_recombine(sizes, axis):
    x = normal((4, 6, 6))

    def pieces_reversed(t):
        pieces = ops.split(t, sizes, axis=axis)
        return ops.concat([p * (i + 1.0) for i, p in enumerate(reversed(pieces))], axis=axis)

    assert_gradients_match(pieces_reversed, x)


def test_split_rejects_bad_sizes():
    x = Tensor(np.ones((4, 6)))
    with pytest.raises(ValueError):
        ops.split(x, 4, axis=1)
    with pytest.raises(ValueError):
        ops.split(x, [2, 2], axis=1)


def test_where_and_masked_fill():
    condition = np.random.default_rng(5).random((3, 4)) > 0.5
    assert_gradients_match(lambda a, b: ops.where(condition, a, b), normal((3, 4), 1), normal((4,), 2))
    assert_gradients_match(lambda a, b: ops.where(condition, a, b), normal((3, 1), 1), normal((3, 4), 2))
    assert_gradients_match(lambda x: ops.masked_fill(x, condition, -3.0), normal((2, 3, 4)))
    assert_gradients_match(lambda x: ops.where(condition, x, 0.5), normal((3, 4)))
