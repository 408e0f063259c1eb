"""AdamW over one flat parameter buffer, plus the global gradient norm and clipping.

All parameters live in ONE flat buffer ``params`` (P,), their gradients in ONE flat
buffer ``grads`` (P,), and Adam's moments in ``m`` and ``v`` (P,). The parameters
that get weight decay (the matrices) come first: ``params[:num_decayed]``.

Global gradient norm and clipping (as torch.nn.utils.clip_grad_norm_):

    norm = sqrt(sum_i g_i^2);   if norm > max_norm: g *= max_norm / (norm + 1e-6)

AdamW step t (1-based), for every i:

    m_i = b1 m_i + (1 - b1) g_i
    v_i = b2 v_i + (1 - b2) g_i^2
    p_i = p_i - lr * wd * p_i                (decoupled weight decay, i < num_decayed only)
    p_i = p_i - lr * (m_i / (1 - b1^t)) / (sqrt(v_i / (1 - b2^t)) + eps)

Everything is in place; nothing is cached.
"""

from __future__ import annotations

from .dispatch import use_numba  # noqa: F401  (used once the Numba versions land)


# ---- version 0: the NumPy reference ------------------------------------------------
def grad_norm_reference(grads):
    """grads (P,) -> the L2 norm as a Python float."""
    return float((grads * grads).sum() ** 0.5)


def adamw_step_reference(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed):
    """Update params, m and v (all (P,)) in place for step number ``step`` (1-based)."""
    from scratchlm.backend import get_array_module

    xp = get_array_module(params)
    m *= beta1
    m += (1.0 - beta1) * grads
    v *= beta2
    v += (1.0 - beta2) * grads * grads
    if weight_decay and num_decayed:
        params[:num_decayed] *= 1.0 - lr * weight_decay
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    params -= (lr / bias1) * m / (xp.sqrt(v / bias2) + eps)


# ---- dispatch ----------------------------------------------------------------------
def grad_norm(grads):
    return grad_norm_reference(grads)


def adamw_step(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed):
    adamw_step_reference(params, grads, m, v, step, lr, beta1, beta2, eps, weight_decay, num_decayed)
