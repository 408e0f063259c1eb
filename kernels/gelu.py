"""GELU, the tanh approximation (GPT-2's), forward and backward.

Math, element-wise on x of any shape (in the MLP: (B, T, 4C)):

    u  = sqrt(2/pi) * (x + 0.044715 x^3)
    y  = 0.5 x (1 + tanh(u))

Backward, with t = tanh(u):

    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    dx    = dy * dy/dx

Nothing is cached but the input x (the op keeps it); t is recomputed in backward.
"""

from __future__ import annotations

import math

from .dispatch import use_numba  # noqa: F401  (used once the Numba versions land)

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEFF = 0.044715


# ---- version 0: the NumPy reference ------------------------------------------------
def gelu_forward_reference(x):
    """x: any shape -> y, same shape."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(x)
    u = SQRT_2_OVER_PI * (x + GELU_COEFF * x * x * x)
    return 0.5 * x * (1.0 + xp.tanh(u))


def gelu_backward_reference(dy, x):
    """dy, x: same shape -> dx."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(x)
    t = xp.tanh(SQRT_2_OVER_PI * (x + GELU_COEFF * x * x * x))
    du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEFF * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


# ---- dispatch ----------------------------------------------------------------------
def gelu_forward(x):
    return gelu_forward_reference(x)


def gelu_backward(dy, x):
    return gelu_backward_reference(dy, x)
