"""What every kernel file declares (``KERNELS``, ``kernels/_lesson.py``), held to the code: every
version agrees with its reference on the declared example inputs, the dispatcher reaches only
the reference in reference mode, and every lesson file has its declaration and its ``__main__``.

Tolerances (``kernels/_lesson.py``): 1e-5 in float32 and 1e-12 in float64, relative to
each element plus the array's largest value.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchlm.kernels import _lesson, dispatch

KERNEL_DIR = Path(_lesson.__file__).parent
LESSONS = _lesson.lesson_names()
MODULES = {name: importlib.import_module(f"scratchlm.kernels.{name}") for name in LESSONS}
DECLARED = _lesson.declared_kernels()
VERSION_CASES = [pytest.param(kernel, version, dtype, id=f"{kernel.name}-{version}-{np.dtype(dtype).name}")
                 for _, kernel in DECLARED for dtype in (np.float32, np.float64)
                 for version in kernel.compiled_versions(dtype)]
DISPATCHED = [pytest.param(name, kernel, id=kernel.name) for name, kernel in DECLARED
              if kernel.dispatcher not in kernel.versions.values()]


@pytest.mark.parametrize("name", LESSONS)
def test_every_lesson_declares_its_kernels_and_runs_them_from_main(name):
    module = MODULES[name]
    assert getattr(module, "KERNELS", ()), f"kernels/{name}.py declares no KERNELS"
    for kernel in module.KERNELS:
        assert next(iter(kernel.versions)) == "reference", f"{kernel.name}: version 0 comes first"
        for version, fn in kernel.versions.items():       # the dispatcher and the tests find it by name
            assert getattr(module, fn.__name__, None) is fn, f"{kernel.name} {version}: not a module-level name"
    tree = ast.parse((KERNEL_DIR / f"{name}.py").read_text())
    mains = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert mains and "run_lesson(KERNELS)" in ast.unparse(mains[0]), f"kernels/{name}.py: __main__ must run_lesson"


@pytest.mark.parametrize("kernel, version, dtype", VERSION_CASES)
def test_every_version_matches_its_reference(compiled_kernels, kernel, version, dtype):
    _lesson.check_version(kernel, version, dtype, _lesson.SIZES["a"], seed=1)


@pytest.mark.parametrize("name, kernel", DISPATCHED)
def test_reference_mode_reaches_only_the_reference(monkeypatch, name, kernel):
    module, calls = MODULES[name], []
    for version, fn in kernel.versions.items():
        if version != "reference":
            monkeypatch.setattr(module, fn.__name__, lambda *a, version=version, **k: calls.append(version))
    args, _ = kernel.example(np.float32, np.random.default_rng(0), _lesson.SIZES["a"])
    previous = dispatch.set_mode("reference")
    try:
        kernel.dispatcher(*_lesson.fresh(args))
    finally:
        dispatch.set_mode(previous)
    assert calls == []


def test_the_lesson_sizes_are_the_benchmark_configurations(monkeypatch):
    path = KERNEL_DIR.parents[0] / "benchmarks" / "configs.py"
    if not path.exists():                                # an installed wheel: no benchmarks folder
        pytest.skip("benchmarks/ is not beside the kernels")
    spec = importlib.util.spec_from_file_location("bench_configs", path)
    configs = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, configs)   # dataclasses look their module up
    spec.loader.exec_module(configs)
    for key, shape in _lesson.SIZES.items():
        config = configs.CONFIGS[key]
        assert (shape.batch, shape.seq_len, shape.d_model, shape.heads, shape.layers, shape.vocab) == \
            (config.batch, config.seq_len, config.d_model, config.n_heads, config.n_layers, configs.VOCAB_SIZE)
