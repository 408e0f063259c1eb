"""Which attention kernels run, decided in one place for the layer, the tape and the decoder.

Attention has three kernel families, each with its own versions:

- ``attention_packed.py`` reads the heads in place from the fused qkv projection's output
  and keeps no attention weights for backward (they are recomputed): CPU training and
  scoring, when there is no rotary embedding and no KV cache.
- ``attention.py`` takes split heads q, k, v (B, H, T, D): RoPE models (the rotation is
  applied to split heads), prefill over a KV cache, and every CuPy array (its CUDA version).
- ``token_step.py`` is one new token through the whole model, no Tensors: the decoder's
  step, version 2 on the CPU, the per-op path on CuPy and in reference mode.

``attention_route(x, ...)`` names the family and the version that will run; the dispatchers
(``attention.attention_forward``, ``attention_packed.packed_forward``, the decoder's step)
follow it, and ``kernels/README.md``'s "what runs where" table is this function written out.
``SCRATCHLM_KERNELS=reference`` sends every family to its NumPy reference;
``SCRATCHLM_BLAS_KERNELS=0`` keeps the packed family on its loop version (version 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import blas
from .dispatch import use_cuda, use_numba


class Route(NamedTuple):
    family: str      # "packed", "split heads" or "token step"
    version: str     # "reference", "numba v1", "numba v2", "cuda" or "per op"


def attention_route(x, *, rotary: bool = False, cached: bool = False, one_token: bool = False) -> Route:
    """The attention kernels for activations like ``x`` (a NumPy or CuPy array).

    ``rotary``: the model uses RoPE (the packed kernels do not rotate). ``cached``: the keys
    and values come from a KV cache (generation). ``one_token``: the decoder's step of one
    new position.
    """
    if one_token:
        return Route("token step", token_step_version(x))
    if rotary or cached or not isinstance(x, np.ndarray):
        return Route("split heads", split_heads_version(x))
    return Route("packed", packed_version(x))


def packed_version(*arrays) -> str:
    """attention_packed.py's version for these arrays."""
    if not use_numba(*arrays):
        return "reference"
    return "numba v2" if blas.available() else "numba v1"


def split_heads_version(*arrays) -> str:
    """attention.py's version for these arrays."""
    if use_cuda(*arrays):
        return "cuda"
    return "numba v2" if use_numba(*arrays) else "reference"


def token_step_version(x) -> str:
    """token_step.py's: version 2 on NumPy arrays with compiled kernels, else the per-op path."""
    return "numba v2" if use_numba(x) else "per op"
