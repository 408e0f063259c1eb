"""DATA's sources: the files that its arguments (files, folders, glob patterns) name, in reading order.

Each DATA argument, in the order given, is a file, a folder (its text files, recursively,
sorted by path; a text file is one whose name ends in ``TEXT_SUFFIXES``, hidden files and
folders left out) or a glob pattern (``*``, ``?``, ``[...]``, ``**``; the matching files,
sorted). A file named twice is read once.
"""

from __future__ import annotations

import glob
from pathlib import Path

from scratchlm.errors import DataError
from scratchlm.limits import check_regular_file, excerpt

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
GLOB_CHARS = set("*?[")
SHOWN_SOURCES = 3                 # how many file names a panel lists before "and N more"


def data_specs(data) -> list[str]:
    """DATA as a list of arguments: a run records one as a string, several as a list."""
    return [str(d) for d in data] if isinstance(data, (list, tuple)) else [str(data)]


def resolve_sources(specs) -> list[Path]:
    """The files that DATA names, in reading order; a DataError for a spec that names none."""
    found: dict[Path, None] = {}
    for spec in data_specs(specs):
        for path in _expand(spec):
            found.setdefault(path, None)
    return list(found)


def _expand(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _is_text_file(p, path))
        if not files:
            raise DataError(f"folder {excerpt(spec, 300, quoted=False)} holds no text files "
                            f"({', '.join(TEXT_SUFFIXES)}): give files, or a folder that has some")
        return files
    if not path.exists() and GLOB_CHARS & set(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"no file matches the pattern {excerpt(spec, 300)}")
        return files
    return [path]                 # check_readable reports a missing or unreadable file by name


def _is_text_file(path: Path, top: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(top).parts)
    return not hidden and path.suffix.lower() in TEXT_SUFFIXES and path.is_file()


def describe_sources(paths: list[Path]) -> str:
    """'a.txt', or 'a.txt, b.txt, c.txt and 4 more' for a panel or a log line."""
    names = [str(p) for p in paths[:SHOWN_SOURCES]]
    more = len(paths) - len(names)
    return ", ".join(names) + (f" and {more} more" if more else "")


def check_readable(path: Path) -> None:
    """By stat, before any open: a FIFO would block the open, /dev/zero never end."""
    check_regular_file(path, DataError, "data file", ": give a text file")
