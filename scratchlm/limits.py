"""Bounds on what scratchlm reads, echoes and allocates, so that no input hangs it or floods a terminal.

- ``excerpt``: the one way an error shows a value the user gave: a short, bounded repr (a 4 MB
  string, a number with 10^5 digits or a YAML alias bomb all come out as a few dozen characters);
- ``regular_file_problem``: why a path cannot be read as a file (a device such as /dev/zero is read
  forever, a FIFO blocks the open); found with ``stat``, which never blocks; ``check_regular_file``
  turns it into one error line;
- ``check_memory``: refuse a job that needs more memory than the machine has available, before
  anything is allocated (Linux's MemAvailable; the check is skipped where it cannot be read).
"""

from __future__ import annotations

import os
import reprlib
import stat

from scratchlm.errors import InsufficientMemory

EXCERPT_CHARS = 60
_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxtuple, _short.maxdict = 2, 4, 4, 4
_short.maxstring = _short.maxother = _short.maxlong = EXCERPT_CHARS


def excerpt(value, limit: int = EXCERPT_CHARS, quoted: bool = True) -> str:
    """A repr of ``value`` of at most about ``limit`` characters (long values end in '...'); with
    ``quoted=False`` a string comes as it is (an option name), only cut short."""
    if isinstance(value, str) and not quoted:
        return value if len(value) <= limit else value[: limit - 3] + "..."
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = _short.repr(value)
    except Exception:            # a repr that fails (an int past Python's digit limit) or recurses
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def regular_file_problem(path) -> str | None:
    """None for a regular file (or a link to one); otherwise what ``path`` is, for an error line."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except PermissionError:
        return None              # let the open report it: it names the permission problem
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file (copy what it holds into a file first)"


def check_regular_file(path, error: type, label: str, on_directory: str) -> None:
    """Raise ``error`` with one line unless ``path`` is a regular file: "<label> not found: <path>",
    "<path> is a directory<on_directory>", or "<label> <path> <what it is>"."""
    problem = regular_file_problem(path)
    if problem == "not found":
        raise error(f"{label} not found: {path}")
    if problem == "is a directory":
        raise error(f"{path} is a directory{on_directory}")
    if problem:
        raise error(f"{label} {path} {problem}")


def available_memory() -> int | None:
    """Bytes the machine can give a new allocation without swapping (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def human_number(count: int) -> str:
    """``count`` with thousands separators, or its order of magnitude once it is past any real size."""
    if count < 10**15:
        return f"{count:,}"
    return f"10^{int((count.bit_length() - 1) * 0.30103)}"


def human_bytes(count: int) -> str:
    if count >= 10**18:
        return f"{human_number(count)} bytes"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} PB"


def check_memory(needed: int, what: str, fix: str) -> None:
    """Raise InsufficientMemory if ``needed`` bytes for ``what`` exceed the memory available."""
    available = available_memory()
    if available is not None and needed > available:
        raise InsufficientMemory(f"{what} needs about {human_bytes(needed)} of memory, but this machine has "
                                 f"{human_bytes(available)} available: {fix}")
