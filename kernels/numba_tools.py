"""How the Numba kernels are compiled, and what the lessons share: read this before a kernel file.

- ``lazy_njit``: a kernel that compiles on its first call (importing scratchlm never imports
  Numba), may call other kernels, and caches its machine code in a folder keyed by every
  kernel's source.
- ``prange``: the parallel loop (plain ``range`` when read as Python).
- The fastmath flag sets, one meaning per name: ``REORDER_SUMS`` lets LLVM split a sum into
  SIMD lanes; ``REORDER_SUMS_AND_FUSE`` also fuses multiply-adds. Neither assumes anything
  about inf or NaN. ``NUMPY_ERRORS`` makes 1 / 0 an inf, as in NumPy, instead of a
  ZeroDivisionError: a NaN in the scores of a diverged run must come out as a NaN loss.
- How parallel loops share out rows: ``chunk_bounds``, ``row_chunks``, ``SERIAL_BELOW``.
- How idle threads wait between parallel loops: ``choose_wait_policy`` (spin on a quiet
  machine, sleep on a busy one).
"""

from __future__ import annotations

import os

from scratchlm.cpu_load import CpuReading

_STARTED = CpuReading()         # the machine's load since this module was imported

REORDER_SUMS = {"reassoc"}
REORDER_SUMS_AND_FUSE = {"reassoc", "contract"}
NUMPY_ERRORS = "numpy"


def row_chunks(n_rows):
    """How many row chunks a backward cuts N rows into: enough to share out among cores."""
    return max(1, min(n_rows, 64))


# Kernels write their parallel loops as ``for i in prange(n):`` with ``from .numba_tools import
# prange``. Read as Python (``kernel.py_func(...)``, a debugger) it is the plain ``range``;
# ``lazy_njit`` hands Numba the real ``numba.prange`` when it compiles, so the loop runs on
# every core. (Numba recognises ``numba.prange`` by identity, which is why a module-level
# ``prange = range`` alone would compile to a serial loop.)
prange = range


def lazy_njit(**options):
    """Decorator: a Numba kernel that compiles (``numba.njit(cache=True, ...)``) on its first call.

    The decorated function is plain Python loops, readable as such; ``import numba``
    happens only when it first runs, so importing scratchlm stays fast. At compile time
    the global name ``prange`` becomes ``numba.prange``, and other ``lazy_njit`` kernels
    the function calls become their compiled versions (so kernels may call helper kernels).
    ``.py_func`` is the undecorated function (handy for stepping through in a debugger);
    ``.dispatcher()`` compiles if needed and returns the Numba dispatcher (for
    ``parallel_diagnostics`` or ``inspect_types``).
    """
    import functools

    def wrap(py_func):
        compiled = None

        def dispatcher():
            nonlocal compiled
            if compiled is None:
                compiled = _numba_compile(py_func, options)
            return compiled

        parallel = bool(options.get("parallel"))

        @functools.wraps(py_func)
        def call(*args):
            kernel = compiled if compiled is not None else dispatcher()
            if parallel and _is_small(args):
                return _on_one_thread(kernel, args)
            return kernel(*args)

        call.py_func = py_func
        call.dispatcher = dispatcher
        return call

    return wrap


@lazy_njit(inline="always")
def chunk_bounds(k, n, chunks):
    """Items [start, end) of chunk k when n items are cut into ``chunks`` contiguous chunks of
    ceil(n / chunks) each (the last ones may be short or empty): how the parallel loops
    share rows out, one chunk per ``prange`` step."""
    size = (n + chunks - 1) // chunks
    return min(n, k * size), min(n, (k + 1) * size)


# Below this many elements in a kernel's first array, a parallel kernel runs on one thread:
# waking the thread pool costs more than the work, and far more when another process holds
# a core (a busy core makes every parallel region wait for its time slice).
SERIAL_BELOW = 1 << 15


def _is_small(args) -> bool:
    first = args[0] if args else None
    return getattr(first, "size", SERIAL_BELOW) < SERIAL_BELOW


def _on_one_thread(kernel, args):
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(previous)


def sources_digest(paths) -> str:
    """A short hash of the bytes of these files, in the order given."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as source:
            digest.update(source.read())
    return digest.hexdigest()[:16]


def user_cache_home() -> str:
    """``$XDG_CACHE_HOME``, else ~/.cache, else the temporary folder (no home directory to be found):
    scratchlm's caches (kernels, token files) live in ``scratchlm/`` inside it."""
    home_cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    if home_cache.startswith("~"):
        import tempfile

        home_cache = tempfile.gettempdir()
    return home_cache


def keyed_cache_dir(user_dir: str | None, digest: str) -> str:
    """Where compiled kernels are cached: ``kernels-<digest>`` inside the user's
    ``NUMBA_CACHE_DIR``, or inside ``$XDG_CACHE_HOME/scratchlm/numba`` (~/.cache/...)."""
    root = user_dir or os.path.join(user_cache_home(), "scratchlm", "numba")
    name = f"kernels-{digest}"
    return root if os.path.basename(os.path.normpath(root)) == name else os.path.join(root, name)


_digest = None                # of all of kernels/*.py, read once per process


def kernel_cache_dir(user_dir: str | None = None) -> str:
    """The cache folder for the kernel sources as they are now (see the function below)."""
    global _digest
    if _digest is None:
        import glob

        here = os.path.dirname(os.path.abspath(__file__))
        from .blas import gemm_library_tag

        _digest = sources_digest(sorted(glob.glob(os.path.join(here, "*.py")))) + "-" + gemm_library_tag()
    return keyed_cache_dir(user_dir, _digest)


_cache_keyed = False


def _key_the_cache_by_every_kernel_source(numba) -> None:
    """Numba keys a cached kernel by its own source file alone. But kernels inline helpers
    from other files (attention_packed.py's softmax inlines vector_exp.py's exp): edit
    vector_exp.py, and attention_packed.py's cached code would go on running the old exp.
    So compiled kernels live in a folder named by a hash of all of kernels/*.py, and any
    edit to any of them starts from an empty cache (a first compile, ~20 s, once)."""
    global _cache_keyed
    if _cache_keyed:
        return
    numba.config.CACHE_DIR = kernel_cache_dir(numba.config.CACHE_DIR)
    _cache_keyed = True                   # only once the folder is known (its key may raise)


SPIN_COUNT = "300000"           # GNU OpenMP's own default for a machine to itself, made explicit
FREE_MARGIN = 0.5               # spin only while the CPUs others leave free cover our threads but this
CHOSEN_BY_ENGINE = "SCRATCHLM_CHOSE_WAIT_POLICY"   # names the variable the engine set (not the user)
_wait_policy = None             # what choose_wait_policy decided for this process


def choose_wait_policy() -> str:
    """How the kernels' idle OpenMP threads wait for the next parallel loop, chosen once per
    process before OpenMP starts (it reads the environment once); a user's OMP_WAIT_POLICY or
    GOMP_SPINCOUNT wins. Call it (or ``thread_count``) before anything starts Numba's threads.

    While the CPUs other processes leave free cover the kernels' threads, they spin for a while
    (waking a sleeping thread costs ~60 us per parallel loop, most of a kernel's time at
    configs a and b). When they do not (on 2 cores: others keep half a CPU busy), they sleep
    at once (PASSIVE): a thread spinning on a core that another process needs takes its time
    slices, and the loop then waits for whichever of its threads lost the core (measured,
    docs/performance.md: config a with two other busy processes 48-70 ms per step spinning,
    with spikes to 640, against 35 sleeping)."""
    global _wait_policy
    if _wait_policy is not None:
        return _wait_policy
    inherited = os.environ.pop(CHOSEN_BY_ENGINE, None)      # a parent scratchlm's choice, not the user's
    if inherited:
        os.environ.pop(inherited, None)
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        _wait_policy = "user"
        return _wait_policy
    from scratchlm.cpu_load import usable_cpus

    cpus = usable_cpus()
    threads = int(os.environ.get("NUMBA_NUM_THREADS") or len(cpus))
    others = _STARTED.others_busy()
    free = len(cpus) - (others or 0.0)
    variable, value, _wait_policy = (("OMP_WAIT_POLICY", "PASSIVE", "passive") if free <= threads - FREE_MARGIN
                                     else ("GOMP_SPINCOUNT", SPIN_COUNT, "spin"))
    os.environ[variable] = value
    os.environ[CHOSEN_BY_ENGINE] = variable
    return _wait_policy


def thread_count() -> int:
    """Numba's thread count (which starts its threads: the wait policy is chosen first)."""
    choose_wait_policy()
    import numba

    return numba.get_num_threads()


def _numba_compile(py_func, options):
    """``numba.njit`` over a copy of ``py_func`` whose globals see Numba's prange and kernels."""
    import types

    choose_wait_policy()
    import numba

    _key_the_cache_by_every_kernel_source(numba)
    names = py_func.__code__.co_names
    rebound = dict(py_func.__globals__)
    for name in names:
        value = rebound.get(name)
        if name == "prange" and value is range:
            rebound[name] = numba.prange
        elif callable(getattr(value, "dispatcher", None)) and hasattr(value, "py_func"):
            rebound[name] = value.dispatcher()          # another lazy_njit kernel
        elif callable(getattr(value, "numba_external", None)):
            rebound[name] = value.numba_external()      # a C function or its adapter (vendor_gemm.py)
    func = types.FunctionType(py_func.__code__, rebound, py_func.__name__,
                              py_func.__defaults__, py_func.__closure__)
    func.__qualname__ = py_func.__qualname__
    func.__module__ = py_func.__module__
    func.__kwdefaults__ = py_func.__kwdefaults__
    func.__doc__ = py_func.__doc__
    return numba.njit(cache=True, **options)(func)
