"""How a kernel file declares its kernels, and the check-and-time run of its ``__main__``.

Every kernel file ends with ``KERNELS``: one ``Kernel`` per kernel (its dispatcher, its
versions by name with version 0, the NumPy reference, first, and a maker of example inputs
at the shapes of benchmark configurations a and c). Three readers use that one declaration:

- the file's ``__main__`` (``python -m scratchlm.kernels.layernorm``): ``run_lesson`` checks
  every version against the reference in float32 and float64, then times it and prints
  milliseconds per call and the bandwidth (or flop rate) it reached, the way llm.c's
  ``dev/cuda`` files do; timings are for reading, never asserted;
- ``tests/kernels/test_declarations.py``: the same check for every version, at size a;
- ``benchmarks/bench_kernels.py``: every version timed by pytest-benchmark, in float32 at
  sizes a and c.

``lesson_names`` and ``declared_kernels`` find them all, so a new kernel file is checked and
benchmarked as soon as it declares its ``KERNELS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class Shape(NamedTuple):
    """A benchmark configuration's sizes (benchmarks/configs.py CONFIGS holds the same)."""
    batch: int
    seq_len: int
    d_model: int
    heads: int
    layers: int
    vocab: int = 65

    @property
    def rows(self) -> int:
        return self.batch * self.seq_len              # N = B * T

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def parameters(self) -> int:
        """The model's parameter count: per block qkv, proj, fc, fc2 (12 C^2 + 13 C with
        biases) and two norms (4 C); the token and position tables; the final norm."""
        C = self.d_model
        return self.layers * (12 * C * C + 17 * C) + (self.vocab + self.seq_len) * C + 2 * C


SIZES = {"a": Shape(16, 128, 64, 2, 2), "c": Shape(32, 128, 256, 8, 6)}


@dataclass(frozen=True)
class Kernel:
    """One kernel of a family, declared once; see the module doc.

    ``example(dtype, rng, shape)`` -> ``(args, work)``: arguments at ``shape`` (a ``Shape``)
    and the work of one call, in bytes that must move (``unit`` "GB/s") or flops ("GFLOP/s").
    ``results(args, returned)`` picks what to compare after a call (in-place kernels: the
    arguments they change); by default the returned value. ``float32_only``: versions that
    only take float32. ``requires``: version -> a test of whether this machine can run it.
    """
    name: str
    dispatcher: Callable
    versions: dict[str, Callable]
    example: Callable
    unit: str = "GB/s"
    results: Callable | None = None
    float32_only: frozenset = field(default_factory=frozenset)
    requires: dict = field(default_factory=dict)

    @property
    def reference(self) -> Callable:
        return self.versions["reference"]

    def compiled_versions(self, dtype) -> list[str]:
        """The CPU versions after the reference that take this dtype."""
        return [name for name in self.versions if name not in ("reference", "cuda")
                and (np.dtype(dtype) == np.float32 or name not in self.float32_only)
                and self.requires.get(name, lambda: True)()]

    def outputs(self, args, returned):
        return returned if self.results is None else self.results(args, returned)


# the files of kernels/ that are not lessons: the package, its shared tools, the attention route
NOT_LESSONS = frozenset({"__init__", "_lesson", "_cuda", "dispatch", "numba_tools", "attention_route", "vendor_gemm"})


def lesson_names() -> list[str]:
    """The kernel files that declare kernels (``layernorm``, ``gelu``, ...), sorted."""
    from pathlib import Path

    return sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem not in NOT_LESSONS)


def declared_kernels() -> list[tuple[str, Kernel]]:
    """(lesson name, kernel) for every kernel every lesson declares, in lesson order."""
    import importlib

    modules = {name: importlib.import_module(f"{__package__}.{name}") for name in lesson_names()}
    return [(name, kernel) for name, module in modules.items() for kernel in getattr(module, "KERNELS", ())]


def fresh(args, xp=np):
    """Copies of the array arguments, inside tuples too (in-place kernels change them), on
    ``xp``'s device."""
    def copy(a):
        if isinstance(a, np.ndarray):
            return xp.asarray(a.copy(order="K"))            # a transposed view stays one
        if isinstance(a, tuple):
            copies = [copy(item) for item in a]
            return type(a)(*copies) if hasattr(a, "_fields") else tuple(copies)
        return a

    return tuple(copy(a) for a in args)


def check_version(kernel: Kernel, version: str, dtype, shape: Shape, xp=np, seed=0):
    """Run ``version`` and the reference on the same example inputs; assert they agree."""
    args, _ = kernel.example(dtype, np.random.default_rng(seed), shape)
    reference_args, version_args = fresh(args), fresh(args, xp)
    want = kernel.outputs(reference_args, kernel.reference(*reference_args))
    got = kernel.outputs(version_args, kernel.versions[version](*version_args))
    return check(f"{version} {kernel.name}", got, want, dtype, quiet=True)


def run_lesson(kernels, size="c") -> None:
    """A kernel file's ``__main__``: every version of every kernel checked, then timed."""
    cp = cuda_module()                                  # None without a usable GPU
    shape = SIZES[size]
    for dtype in (np.float32, np.float64):
        for kernel in kernels:
            args, work = kernel.example(dtype, np.random.default_rng(0), shape)
            print(f"{kernel.name}, config {size}, {np.dtype(dtype).name}")
            names = ["reference", *kernel.compiled_versions(dtype)]
            if cp is not None and "cuda" in kernel.versions:
                names.append("cuda")
            for name in names:
                xp = cp if name == "cuda" else np
                worst = check_version(kernel, name, dtype, shape, xp)
                print(f"  {name:<28} ok   (max abs error {worst:.1e})")
                report(name, kernel.versions[name], fresh(args, xp), work, unit=kernel.unit)

# tolerance of a fast version against the reference, per dtype
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_close(got, want, dtype, label=""):
    """Element-wise ``|got - want| <= tol * (|want| + max|want|)``, tol set by the dtype.

    The absolute part scales with the array's largest value: a sum over many rows (dw of
    a norm, dweight of an embedding) carries rounding error in proportion to its terms,
    not to its result, so a small entry of a large sum is only as exact as the big ones.
    Returns the largest absolute difference.
    """
    from scratchlm.backend import to_numpy

    tol = TOLERANCE[np.dtype(dtype)]
    got, want = to_numpy(got), np.asarray(to_numpy(want), np.float64)     # GPU results come home
    scale = float(np.max(np.abs(want), initial=0.0))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=label)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want), initial=0.0))


def check(label, got, want, dtype, quiet=False):
    """Assert that two (tuples of) arrays agree to the dtype's tolerance; print (unless
    ``quiet``) and return the worst error."""
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        if g is None and w is None:
            continue
        worst = max(worst, assert_close(g, w, dtype, label))
    if not quiet:
        print(f"  {label:<28} ok   (max abs error {worst:.1e})")
    return worst


def best_ms(fn, *args, repeat=30, budget_s=2.0):
    """Milliseconds per call: the best of ``repeat`` calls after one warm-up call (compiles),
    or of as many as fit in ``budget_s`` seconds (a slow version is timed a few times only).

    On CuPy arrays each call is followed by a wait for the GPU: kernel launches return at
    once, so without it the time would be the launch's, not the kernel's.
    """
    from scratchlm.backend import get_array_module, synchronize

    xp = get_array_module(*args)
    fn(*args)
    synchronize(xp)
    times = []
    while len(times) < repeat and sum(times) < budget_s:
        start = time.perf_counter()
        fn(*args)
        synchronize(xp)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def cuda_module():
    """cupy when a CUDA GPU is usable (the ``__main__`` blocks then check and time the CUDA
    versions too), else None."""
    from scratchlm import backend

    return backend.array_module_for("cuda") if backend.cuda_available() else None


def report(label, fn, args, work, repeat=30, unit="GB/s"):
    """Time ``fn(*args)``; print ms per call and the rate over ``work`` (bytes moved for
    GB/s, flops for GFLOP/s)."""
    ms = best_ms(fn, *args, repeat=repeat)
    print(f"  {label:<28} {ms:8.3f} ms   {work / ms / 1e6:7.1f} {unit}")
    return ms
