"""A token file on disk: the ids, raw, in the narrowest unsigned type that holds the vocabulary.

The format is the simplest one a memory map can read: ``count`` little-endian integers
of ``dtype`` (uint8 for up to 256 tokens, uint16 up to 65,536, uint32 beyond), no
header. What it holds is said by the description written beside it (``token_cache.py``),
which also records the file's CRC-32, so a truncated or damaged file is found before it
is used. ``TokenWriter`` writes one under a temporary name and renames it into place only
when it is complete and on disk, so an interrupted write never leaves a file that looks
finished. Reading for training is ``open_tokens`` (a read-only array over a memory map:
a step touches only its rows' pages, and ``release_pages`` unmaps them after); whole-file
checks read through the file in chunks, so they never map the file and add nothing to the
process's memory.
"""

from __future__ import annotations

import mmap
import os
import zlib
from pathlib import Path

import numpy as np

from scratchlm.errors import DataError

UNSIGNED = (np.uint8, np.uint16, np.uint32)
READ_CHUNK = 16 << 20            # bytes per read when checking a whole file


def narrowest_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type whose values cover ids 0 .. vocab_size - 1."""
    for dtype in UNSIGNED:
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype).newbyteorder("<")
    raise DataError(f"a vocabulary of {vocab_size} tokens does not fit a 32-bit token file")


class TokenWriter:
    """Append ids to ``path`` (as ``dtype``), counting them and taking their CRC-32 on the way.

    Use as a context manager: leaving it by an exception (Ctrl-C, a full disk) removes the
    partial file; ``finish`` makes it durable and gives it its real name.
    """

    def __init__(self, path: Path, dtype):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.count = self.crc = 0
        self.file = None

    def __enter__(self) -> TokenWriter:
        self.file = open(self.partial, "wb")
        return self

    def write(self, ids: np.ndarray) -> None:
        data = np.ascontiguousarray(ids, dtype=self.dtype)                           # (n,) as stored
        self.file.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.count += len(ids)

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.path)

    def __exit__(self, kind, value, trace) -> None:
        if not self.file.closed:
            self.file.close()
        if kind is not None:
            self.partial.unlink(missing_ok=True)


def open_tokens(path: Path, dtype, count: int) -> np.ndarray:
    """The ids of a token file as a read-only array over a memory map (N,); an empty file as an
    empty array. ``release_pages`` gives back what reads of it have mapped."""
    if count == 0:
        return np.zeros(0, dtype=dtype)
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)       # keeps its own handle
    return np.frombuffer(mapping, dtype=np.dtype(dtype), count=count)     # (N,) read-only


def release_pages(ids) -> None:
    """Unmap the pages that reads of ``open_tokens``'s array (or a slice of it) have mapped.

    The kernel maps a whole large page-cache folio around each read, so random windows
    would, over a run, map the whole file into the process; dropping the mappings after
    each batch keeps the process's memory flat (the pages stay in the page cache, and a
    later read maps them again). Anything that is not such a map is left alone.
    """
    base = ids
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)


def file_crc32(path: Path) -> int:
    """The CRC-32 of a whole file, read in chunks (never mapped, so it costs no memory)."""
    crc = 0
    buffer = bytearray(READ_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buffer)
            if not n:
                return crc
            crc = zlib.crc32(view[:n], crc)
