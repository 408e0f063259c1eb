"""Every kernel dispatcher: reference mode never calls the fast version, auto mode does."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kernel_cases import DISPATCHERS

from scratchlm.kernels import dispatch, numba_tools


@pytest.mark.parametrize("module, name, fast_name, make_args", DISPATCHERS, ids=[d[1] for d in DISPATCHERS])
def test_dispatch_reference_mode_and_auto_mode(monkeypatch, module, name, fast_name, make_args):
    calls = []
    fast = getattr(module, fast_name)
    monkeypatch.setattr(module, fast_name, lambda *a, **k: calls.append(1) or fast(*a, **k))
    previous = dispatch.set_mode("reference")
    try:
        getattr(module, name)(*make_args())
        assert calls == []
        dispatch.set_mode("auto")
        getattr(module, name)(*make_args())
        assert calls == [1]
    finally:
        dispatch.set_mode(previous)


def test_the_compile_cache_is_keyed_by_every_kernel_source(tmp_path):
    """An edit to any kernel file (a helper another kernel inlines) moves the cache folder."""
    files = [tmp_path / name for name in ("vector_exp.py", "attention_packed.py")]
    for f in files:
        f.write_text("x = 1\n")
    before = numba_tools.sources_digest(files)
    files[0].write_text("x = 2\n")                                    # only the inlined helper
    after = numba_tools.sources_digest(files)
    assert before != after and len(after) == 16
    home = numba_tools.keyed_cache_dir(None, after)
    assert home.endswith(f"scratchlm/numba/kernels-{after}")
    mine = numba_tools.keyed_cache_dir(str(tmp_path), after)             # a user's NUMBA_CACHE_DIR
    assert mine == str(tmp_path / f"kernels-{after}")
    assert numba_tools.keyed_cache_dir(mine, after) == mine              # a child process: no nesting


def test_the_compile_cache_needs_no_home_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(numba_tools.os.path, "expanduser", lambda path: path)     # as with no HOME
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    assert numba_tools.keyed_cache_dir(None, "abc") == str(tmp_path / "scratchlm" / "numba" / "kernels-abc")


def test_compiled_kernels_are_cached_under_the_keyed_folder(compiled_kernels):
    import numba
    import numpy as np

    from scratchlm.kernels import buffers

    buffers.zero_v1(np.ones(10, np.float32))                          # compiles (or loads) one kernel
    assert "kernels-" in numba.config.CACHE_DIR


def test_importing_scratchlm_does_not_import_numba():
    code = "import sys, scratchlm.model, scratchlm.autograd.ops; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
