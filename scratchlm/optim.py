"""AdamW over one flat parameter buffer, gradient clipping, and learning-rate schedules.

On construction the optimizer moves every parameter into ONE flat buffer and makes
each ``p.data`` a view into it; each ``p.grad`` becomes a view into ONE flat
gradient buffer. Backward accumulates into those views in place, so zeroing the
gradients, the global norm, clipping and the update are each a single pass over
one array (see ``kernels/adamw.py``). The matrices, which get weight decay, come
first in the buffer; norms, biases and other 1-D parameters come after and do not.
"""

from __future__ import annotations

import math

from scratchlm import backend
from scratchlm.kernels import adamw as adamw_kernels
from scratchlm.kernels import buffers

SCHEDULES = ("cosine", "constant")


class AdamW:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        params = list(params)
        if not params:
            raise ValueError("AdamW needs at least one parameter")
        decayed = [p for p in params if p.ndim >= 2]
        plain = [p for p in params if p.ndim < 2]
        self.params = decayed + plain
        self.num_decayed = sum(p.size for p in decayed)
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.step_count = 0

        xp = backend.get_array_module(self.params[0].data)
        dtype = self.params[0].dtype
        total = sum(p.size for p in self.params)
        self.flat_params = xp.empty(total, dtype=dtype)            # (P,)
        self.flat_grads = xp.zeros(total, dtype=dtype)             # (P,)
        self.m = xp.zeros(total, dtype=dtype)                      # (P,)
        self.v = xp.zeros(total, dtype=dtype)                      # (P,)
        offset = 0
        for p in self.params:
            n = p.size
            self.flat_params[offset : offset + n] = p.data.reshape(-1)
            p.data = self.flat_params[offset : offset + n].reshape(p.shape)
            p.grad = self.flat_grads[offset : offset + n].reshape(p.shape)
            offset += n

    def zero_grad(self) -> None:
        buffers.zero(self.flat_grads)

    def clip_grad_norm(self, max_norm: float):
        """Scale all gradients so their global L2 norm is at most ``max_norm``; return the norm before.

        A float on the CPU; on a GPU a 0-d device array (``float(norm)`` reads it), so that
        clipping does not make the step wait for the GPU.
        """
        return adamw_kernels.clip_grad_norm(self.flat_grads, max_norm)

    def step(self, lr: float | None = None) -> None:
        if lr is not None:
            self.lr = lr
        self.step_count += 1
        adamw_kernels.adamw_step(
            self.flat_params, self.flat_grads, self.m, self.v, self.step_count,
            self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.num_decayed,
        )

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        xp = backend.get_array_module(self.m)
        self.m[...] = xp.asarray(state["m"])
        self.v[...] = xp.asarray(state["v"])
        self.step_count = int(state["step"])


def lr_at(step: int, base_lr: float, schedule: str = "cosine", warmup_steps: int = 0,
          total_steps: int = 1, min_lr_ratio: float = 0.1) -> float:
    """The learning rate for 0-based ``step``.

    ``constant``: base_lr after a linear warm-up. ``cosine``: linear warm-up over
    ``warmup_steps``, then cosine decay from base_lr to min_lr_ratio * base_lr at
    ``total_steps`` (and the floor after that).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    floor = base_lr * min_lr_ratio
    span = max(total_steps - warmup_steps, 1)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - floor)
