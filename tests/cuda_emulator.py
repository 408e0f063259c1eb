"""A stand-in for CuPy on the CPU, so the CUDA versions in kernels/ can be tested without a GPU.

``emulated_cuda()`` points every kernel file's ``cupy_module`` at a module that is NumPy plus
a ``RawModule`` which compiles the CUDA source with g++ over ``cuda_emulator.h`` (CUDA threads
as OS threads) and loads it with ctypes. Each launch checks what CuPy would silently get
wrong: array dtypes against the pointer types, scalar types against the C parameters (CuPy
passes a scalar's bytes as they are), C-contiguity, and block sizes (whole warps, <= 1024).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import types
from pathlib import Path

import numpy as np

HEADER = Path(__file__).with_name("cuda_emulator.h")
BUILD = Path(tempfile.gettempdir()) / "scratchlm-cuda-emulator"
KERNEL = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)')
C_TYPES = {"int": (ctypes.c_int, np.int32), "long long": (ctypes.c_longlong, np.int64),
           "float": (ctypes.c_float, np.float32), "double": (ctypes.c_double, np.float64)}


def available() -> bool:
    """True when g++ is here and compiles C++20 threads and barriers."""
    if shutil.which("g++") is None:
        return False
    try:
        compile_once(f'#include "{HEADER}"\nint main() {{ run_grid(1, 32, [] {{ __syncthreads(); }}); }}\n', "")
    except subprocess.CalledProcessError:
        return False
    return True


def compile_once(source: str, suffix: str = ".so") -> Path:
    """g++ ``source`` (a shared library, or a program when ``suffix`` is empty) once per text."""
    key = hashlib.sha1((HEADER.read_text() + source + suffix).encode()).hexdigest()[:20]   # header edits count
    output = BUILD / f"{key}{suffix}"
    if not output.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        unique = f"{os.getpid()}-{threading.get_ident()}"
        cpp, built = BUILD / f"{unique}.cpp", BUILD / f"{unique}.out"
        cpp.write_text(source)
        shared = ["-O1", "-shared", "-fPIC"] if suffix else []
        try:
            subprocess.run(["g++", "-std=c++20", "-pthread", *shared, "-o", str(built), str(cpp)],
                           check=True, capture_output=True)
            os.replace(built, output)                     # whole, even with another process compiling
        finally:
            cpp.unlink(missing_ok=True)
    return output


class RawModule:
    """cupy.RawModule's part that the kernels use: compile ``code``, ``get_function(name)``."""

    def __init__(self, code: str, **options):
        self.real = re.match(r"typedef (\w+) real;", code).group(1)
        self.signatures, launchers = {}, []
        for name, params in KERNEL.findall(code):
            params = [" ".join(p.split()) for p in params.split(",")]
            names = [re.findall(r"\w+", p)[-1] for p in params]
            self.signatures[name] = [p[: p.rfind(n)].strip() for p, n in zip(params, names)]
            launchers.append(f'extern "C" void launch_{name}(unsigned grid, unsigned block, {", ".join(params)}) '
                             f'{{ run_grid(grid, block, [=] {{ {name}({", ".join(names)}); }}); }}')
        source = f'#include "{HEADER}"\n{code}\n' + "\n".join(launchers) + "\n"
        self.library = ctypes.CDLL(str(compile_once(source)))

    def get_function(self, name: str):
        return lambda grid, block, args: self._launch(name, grid, block, args)

    def _launch(self, name, grid, block, args):
        signature = self.signatures[name]
        assert len(grid) == len(block) == 1 and grid[0] >= 1, (name, grid)
        assert block[0] % 32 == 0 and 32 <= block[0] <= 1024, (name, block)
        assert len(args) == len(signature), (name, len(args), signature)
        c_args, alive = [], []
        for c_type, arg in zip(signature, args):
            c_type = c_type.replace("real", self.real).replace("const ", "")
            if c_type.endswith("*"):
                arg = np.asarray(arg) if isinstance(arg, np.generic) else arg    # a 0-d GPU scalar on CuPy
                assert isinstance(arg, np.ndarray) and arg.flags.c_contiguous, (name, c_type)
                assert arg.dtype == C_TYPES[c_type[:-1].strip()][1], (name, c_type, arg.dtype)
                alive.append(arg)
                c_args.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                ctype, dtype = C_TYPES[c_type]
                assert isinstance(arg, np.generic) and arg.dtype == dtype, (name, c_type, type(arg))
                c_args.append(ctype(arg.item()))
        getattr(self.library, f"launch_{name}")(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *c_args)


FAKE_CUPY = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")},
                                  RawModule=RawModule)


@contextlib.contextmanager
def emulated_cuda():
    """Within: the ``*_cuda`` functions of kernels/ take NumPy arrays and run on the emulator."""
    from scratchlm.kernels import _cuda, adamw, attention, cross_entropy, dropout, embedding, gelu, layernorm, rmsnorm

    modules = (_cuda, adamw, attention, cross_entropy, dropout, embedding, gelu, layernorm, rmsnorm)
    saved = [m.cupy_module for m in modules]
    for m in modules:
        m.cupy_module = lambda: FAKE_CUPY
    _cuda._kernels.clear()
    try:
        yield
    finally:
        for m, original in zip(modules, saved):
            m.cupy_module = original
        _cuda._kernels.clear()
