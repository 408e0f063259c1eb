"""AdamW over one flat parameter buffer, gradient clipping, and learning-rate schedules.

On construction the optimizer moves every parameter into ONE flat buffer and makes
each ``p.data`` a view into it; each ``p.grad`` becomes a view into ONE flat
gradient buffer. Backward accumulates into those views in place, so zeroing the
gradients, the global norm, clipping and the update are each a single pass over
one array (see ``kernels/adamw.py``). The matrices, which get weight decay, come
first in the buffer; norms, biases and other 1-D parameters come after and do not.

The optimizer then owns those parameters (``Parameter.owner``): ``Module.zero_grad``
zeroes their gradients in place and ``Module.to`` moves the flat buffers with them.
Anything else that rebinds a ``p.data`` or ``p.grad`` makes the next ``step`` raise
``ParameterOwnershipError`` rather than update arrays the model no longer uses.
"""

from __future__ import annotations

import math
import weakref

from scratchlm import backend
from scratchlm.errors import ParameterOwnershipError
from scratchlm.kernels import adamw as adamw_kernels
from scratchlm.kernels import buffers
from scratchlm.nn.module import Parameter

SCHEDULES = ("cosine", "constant")
_REBOUND_HARM = {"data": "a step would update an array the model no longer computes with",
                 "grad": "a step would read a gradient buffer that backward no longer fills"}


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
            self.flat_params[offset : offset + p.size] = p.data.reshape(-1)
            offset += p.size
        self._view_parameters()

    def _view_parameters(self) -> None:
        """Make each parameter's data and grad views into the flat buffers, and mark it as owned."""
        self._views = []                         # (data, grad) per parameter: what step checks by identity
        offset = 0
        for p in self.params:
            n = p.size
            p.data = self.flat_params[offset : offset + n].reshape(p.shape)
            p.grad = self.flat_grads[offset : offset + n].reshape(p.shape)
            self._views.append((p.data, p.grad))
            if isinstance(p, Parameter):         # a plain Tensor can be optimized too, but has no owner slot
                p._owner = weakref.ref(self)
            offset += n

    def check_parameters(self) -> None:
        """Raise ParameterOwnershipError unless every p.data and p.grad is still its view into the flat buffers.

        Two identity checks per parameter, so it is cheap enough for every step.
        """
        for i, (p, (data, grad)) in enumerate(zip(self.params, self._views)):
            if p.data is not data or p.grad is not grad:
                attr, now = ("data", p.data) if p.data is not data else ("grad", p.grad)
                raise ParameterOwnershipError(
                    f"AdamW's parameter {i} of {len(self.params)} (shape {tuple(data.shape)}) has a new .{attr} "
                    f"({'None' if now is None else 'another array'}) instead of its view into the optimizer's flat "
                    f"buffer: {_REBOUND_HARM[attr]}. Change values in place (p.data[...] = x, "
                    "model.load_state_dict), zero gradients with optimizer.zero_grad() or model.zero_grad() and "
                    "move with model.to(device); after any other rebinding, or after building another optimizer "
                    "over the same parameters (which takes them over), build this one again")

    def to(self, device: str) -> AdamW:
        """Move the flat buffers (weights, gradients, moments) to ``device`` and view the parameters into them."""
        self.check_parameters()
        self.flat_params = backend.to_device(self.flat_params, device)
        self.flat_grads = backend.to_device(self.flat_grads, device)
        self.m = backend.to_device(self.m, device)
        self.v = backend.to_device(self.v, device)
        self._view_parameters()
        return self

    def zero_grad(self) -> None:
        buffers.zero(self.flat_grads)

    def clip_grad_norm(self, max_norm: float):
        """Scale all gradients so their global L2 norm is at most ``max_norm``; return the norm before.

        A float on the CPU; on a GPU a 0-d device array (``float(norm)`` reads it), so that
        clipping does not make the step wait for the GPU.
        """
        return adamw_kernels.clip_grad_norm(self.flat_grads, max_norm)

    def step(self, lr: float | None = None) -> None:
        self.check_parameters()                  # never update buffers the model has stopped using
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
