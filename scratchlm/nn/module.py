"""Module and Parameter: the containers that hold a model's weights.

A Module finds its parameters by walking its attributes (Parameters, sub-Modules,
and lists of Modules) in the order they were assigned, so names are stable:
``blocks.0.attn.qkv.weight``. A parameter shared by two modules (the tied
embedding / output head) is listed once, under the first name found.
"""

from __future__ import annotations

from collections.abc import Iterator

from scratchlm import backend
from scratchlm.autograd.tensor import Tensor
from scratchlm.errors import ParameterOwnershipError


class Parameter(Tensor):
    """A Tensor that is a trainable weight (requires_grad is always on)."""

    __slots__ = ("_owner",)

    def __init__(self, data):
        super().__init__(data, requires_grad=True)
        self._owner = None          # set by AdamW: a weak reference, so a dropped optimizer frees its buffers

    @property
    def owner(self):
        """The optimizer whose flat buffers hold this parameter's data and grad, or None."""
        return None if self._owner is None else self._owner()


class Module:
    training: bool = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- walking the tree ---------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def modules(self) -> Iterator[Module]:
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "", _seen: set | None = None) -> Iterator[tuple[str, Parameter]]:
        seen = set() if _seen is None else _seen
        for name, value in vars(self).items():
            if isinstance(value, Parameter) and id(value) not in seen:
                seen.add(id(value))
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child.named_parameters(f"{prefix}{name}.", seen)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ---- modes ------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        """Drop every gradient; one an optimizer owns is zeroed in place instead, and kept.

        An owned gradient is a view into the optimizer's flat buffer: setting it to None
        would make backward write a fresh array that the optimizer never reads.
        """
        for p in self.parameters():
            if p.owner is not None and p.grad is not None:
                p.grad[...] = 0
            else:
                p.grad = None

    # ---- weights in and out -----------------------------------------------------
    def state_dict(self) -> dict:
        """name -> array (the live arrays, not copies)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the existing parameters, in place (views stay valid)."""
        params = dict(self.named_parameters())
        if strict:
            missing = sorted(set(params) - set(state))
            unexpected = sorted(set(state) - set(params))
            if missing or unexpected:
                raise KeyError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            if name not in state:
                continue
            value = state[name]
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"{name}: checkpoint shape {tuple(value.shape)} != model shape {tuple(p.shape)}")
            xp = backend.get_array_module(p.data)
            p.data[...] = xp.asarray(value, dtype=p.data.dtype) if xp is not backend.np else backend.to_numpy(value)

    def to(self, device: str) -> Module:
        """Move every parameter (and registered buffer) to ``device``.

        Parameters an optimizer owns are moved by it: it moves its flat buffers (weights,
        gradients, moments) and views its parameters into them again. It must own no
        parameter outside this module, since one buffer cannot be split over two devices.
        """
        params = self.parameters()
        optimizers = list({id(o): o for p in params if (o := p.owner) is not None}.values())
        mine = {id(p) for p in params}
        for opt in optimizers:
            opt.check_parameters()                    # refuse before anything moves, not half way
            if any(id(p) not in mine for p in opt.params):
                raise ParameterOwnershipError(
                    f"{type(self).__name__}.to({device!r}): the optimizer that owns these parameters also owns "
                    "parameters outside this module, and its one flat buffer moves as a whole: call .to() on the "
                    "whole model the optimizer was built over (or build the optimizer after .to())")
        for opt in optimizers:
            opt.to(device)
        for m in self.modules():
            for name, value in list(vars(m).items()):
                if isinstance(value, Parameter):
                    if value.owner is None:               # an owned one was moved with its optimizer
                        value.data = backend.to_device(value.data, device)
                elif name in getattr(m, "_buffers", ()) and value is not None:   # None: no such buffer
                    setattr(m, name, backend.to_device(value, device))
        return self
