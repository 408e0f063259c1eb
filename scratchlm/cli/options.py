"""Turning docopt's strings into checked values, and writing result files safely.

Every check raises ``OptionError`` with a message that names the option, so
``cli/main.py`` can print it as one line and exit with code 2.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from scratchlm.errors import OptionError
from scratchlm.limits import excerpt


def int_option(args: dict, name: str, minimum: int | None = None, meaning: str = "") -> int:
    """``args[name]`` as a whole number, at least ``minimum``."""
    text = str(args[name]).strip()
    try:
        value = int(text)
    except ValueError:
        raise OptionError(f"{name} needs a whole number, got {excerpt(text)}") from None
    if minimum is not None and value < minimum:
        raise OptionError(f"{name} must be {minimum} or more{meaning}, got {value}")
    return value


def float_option(args: dict, name: str) -> float:
    """``args[name]`` as a finite number (the range is checked by the settings it goes into)."""
    text = str(args[name]).strip()
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"{name} needs a number, got {excerpt(text)}") from None
    if not math.isfinite(value):
        raise OptionError(f"{name} needs a finite number, got {excerpt(text)}")
    return value


def output_file_option(args: dict, name: str, inputs: tuple[str, ...] = ()) -> Path | None:
    """``args[name]`` as a file we will be able to write, checked before any work starts; it must not
    be any of the files named by ``inputs`` (argument names such as "CKPT") that the command reads."""
    if not args.get(name):
        return None
    path = Path(args[name]).expanduser()
    _check_not_an_input(args, name, path, inputs)
    if path.is_dir():
        raise OptionError(f"{name} {path} is a directory: give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise OptionError(f"{name} {path}: the folder {parent} does not exist")
    try:  # the only honest writability test (access() says yes to root even where writes fail)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OptionError(f"{name} {path} is not writable: {exc.strerror or exc}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise OptionError(f"{name} {path} is not writable: permission denied")
    return path


def _check_not_an_input(args: dict, name: str, path: Path, inputs: tuple[str, ...]) -> None:
    """Writing the output would replace a file the command reads (the same inode, through a symlink
    or a hard link too): a checkpoint overwritten by its own evaluation is lost."""
    named = [(argument, value) for argument in inputs
             for value in (args[argument] if isinstance(args[argument], list) else [args[argument]])]
    for argument, value in named:        # DATA... may name several files
        source = Path(value).expanduser()
        try:
            same = os.path.samefile(path, source)
        except OSError:                  # one of them does not exist (yet): they cannot be one file
            continue
        if same:
            raise OptionError(f"{name} {path} is the file {argument} {source} that this command reads: writing "
                              f"it would destroy {source}; give {name} another file name")


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``checkpoint.write_atomically``); a failure is an
    OptionError naming the file."""
    from scratchlm.checkpoint import write_atomically

    try:
        write_atomically(path, text)
    except OSError as exc:
        raise OptionError(f"cannot write {path}: {exc.strerror or exc}") from exc
