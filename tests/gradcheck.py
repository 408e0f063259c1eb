"""Finite-difference gradient checking in float64, shared by the gradient tests.

The analytic gradient (the tape's backward) is compared with central differences

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h),      h = 1e-6,

element by element, and the relative error of each input,

    ||analytic - numeric|| / max(||analytic||, ||numeric||, 1e-12),

must stay below a tolerance (1e-6 by default). Only float64 makes this meaningful:
in float32 the rounding error of f divided by h swamps the derivative.

Non-scalar outputs are reduced to a scalar with fixed random weights R,
``f = sum(out * R)``, so every output element's gradient path is exercised, and the
analytic side runs ``out.backward(R)``. Usage from any test (pytest puts ``tests/``
on ``sys.path`` because it holds the rootdir conftest)::

    from gradcheck import assert_gradients_match
    assert_gradients_match(lambda x, w: ops.linear(x, w), x, w)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scratchlm.autograd.function import no_grad
from scratchlm.autograd.tensor import Tensor
from scratchlm.backend import to_numpy

STEP = 1e-6
TOLERANCE = 1e-6


def relative_error(analytic, numeric) -> float:
    """||analytic - numeric|| / max(||analytic||, ||numeric||, 1e-12)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric), 1e-12)
    return float(np.linalg.norm(analytic - numeric) / scale)


def numerical_gradient(evaluate: Callable[[], float], array: np.ndarray, step: float = STEP) -> np.ndarray:
    """Central differences of the scalar ``evaluate()`` w.r.t. every element of ``array``.

    ``array`` is perturbed in place (one element at a time) and restored exactly.
    """
    grad = np.zeros(array.shape, dtype=np.float64)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + step
        plus = evaluate()
        array[index] = original - step
        minus = evaluate()
        array[index] = original
        grad[index] = (plus - minus) / (2.0 * step)
    return grad


def gradient_errors(fn: Callable[..., Tensor], *arrays: np.ndarray, step: float = STEP, seed: int = 0,
                    xp=np) -> list[float]:
    """Relative error of the analytic gradient of ``fn`` for each input array, in order.

    ``fn`` takes one Tensor per array (constants such as ids or masks are closed over)
    and returns one Tensor. The arrays must be float64 NumPy arrays; ``fn`` runs on
    ``xp``'s arrays (NumPy: wrapped without copying; CuPy: copied to the GPU for every
    evaluation), so the finite differences see every perturbation.
    """
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype != np.float64:
            raise TypeError(f"gradient checks need float64 NumPy arrays, got {type(a).__name__} {getattr(a, 'dtype', '')}")
    inputs = [Tensor(xp.asarray(a), requires_grad=True) for a in arrays]
    out = fn(*inputs)
    if out.dtype != np.float64:
        raise TypeError(f"the checked function returned {out.dtype}, not float64")
    weights = np.random.default_rng(seed).standard_normal(out.shape)          # same shape as out
    on_device = xp.asarray(weights)
    out.backward(on_device)
    analytic = [np.zeros(a.shape) if t.grad is None else to_numpy(t.grad) for a, t in zip(arrays, inputs)]

    def evaluate() -> float:
        with no_grad():
            return float((fn(*(Tensor(xp.asarray(a)) for a in arrays)).data * on_device).sum())

    return [relative_error(g, numerical_gradient(evaluate, a, step)) for a, g in zip(arrays, analytic)]


def assert_gradients_match(fn: Callable[..., Tensor], *arrays: np.ndarray, tol: float = TOLERANCE, **kwargs) -> None:
    """Fail with every input's relative error when any exceeds ``tol``."""
    errors = gradient_errors(fn, *arrays, **kwargs)
    bad = {i: e for i, e in enumerate(errors) if not e <= tol}
    assert not bad, f"relative gradient errors above {tol:g} (input index: error): {bad}; all: {errors}"
