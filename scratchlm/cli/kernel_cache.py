"""Whether the Numba kernels a command needs are compiled already, so a cold start can say so.

The first run on a machine (or after any edit to kernels/) compiles the kernels it calls,
20-60 s at "0%" with nothing to show for it; later runs load them from Numba's cache in a
fraction of a second. The cache folder is the one ``kernels/numba_tools.py`` keys by a hash
of every kernel source, and each compiled kernel leaves a ``<module>.<function>-<line>.*.nbi``
index there, so a module's kernels are cached when one of its index files is.
"""

from __future__ import annotations

import glob
import os

TRAIN_KERNELS = "adamw"           # only training calls these: cached once a run has finished a step
GENERATE_KERNELS = "token_step"   # the one-call-per-token decoder step


def kernel_cache_folder() -> str:
    """Numba's cache folder for the current kernel sources (as ``numba_tools`` names it)."""
    from scratchlm.kernels import numba_tools

    return numba_tools.kernel_cache_dir(os.environ.get("NUMBA_CACHE_DIR") or None)


def kernels_cached(module: str) -> bool:
    """True when compiled code from kernels/``module``.py is in the cache (or nothing will compile)."""
    from scratchlm.kernels import dispatch

    if dispatch.mode() == "reference" or not dispatch.numba_available():
        return True
    pattern = os.path.join(glob.escape(kernel_cache_folder()), "**", f"{module}.*.nbi")
    return bool(glob.glob(pattern, recursive=True))


def compile_notice(module: str, device: str, what: str) -> str | None:
    """One line announcing the first compile of ``module``'s kernels on the CPU, or None when cached."""
    if device != "cpu" or kernels_cached(module):
        return None
    return (f"Compiling the {what} kernels for this machine (once, up to a minute; "
            "later runs load them from the cache)...")
