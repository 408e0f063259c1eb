"""A corpus: DATA as files, folders and glob patterns, tokenized in one streaming, vectorised pass.

Sources: each DATA argument, in the order given, is a file, a folder (its text files,
recursively, sorted by path; a text file is one whose name ends in ``TEXT_SUFFIXES``,
hidden files and folders left out) or a glob pattern (``*``, ``?``, ``[...]``, ``**``; the
matching files, sorted). A file named twice is read once. The files are joined in that
order, with a newline added after a file that does not end in one (never after the
last), so a single file's tokens are exactly those of the file alone.

Tokenizing reads ``CHUNK_BYTES`` at a time, cut at UTF-8 character boundaries. Python's
decoder checks each chunk (its error gives the byte offset of the first bad byte); the
code points come from the bytes themselves for ASCII chunks and from UTF-32 otherwise,
and the vocabulary (the sorted distinct characters) is gathered in the same pass. Ids
come from one lookup table, so they are exactly ``CharTokenizer.encode``'s (``ByteTokenizer``:
the raw UTF-8 bytes). Nothing here loops over characters in Python.
"""

from __future__ import annotations

import glob
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchlm.data.encoding import not_utf8_hint
from scratchlm.data.tokenizer import KINDS, ByteTokenizer, CharTokenizer, build_tokenizer, unknown_characters_error
from scratchlm.errors import DataError
from scratchlm.limits import check_regular_file, excerpt

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
CHUNK_BYTES = 1 << 20             # 1 MB: stays in cache; its temporaries stay small (see docs/performance.md)
MAP_SLICE = 1 << 20              # ids mapped per np.take: 4 MB, in cache, a small constant temporary
MAX_CODE_POINT = 0x10FFFF
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


@dataclass
class Corpus:
    """The token ids of the joined sources and what a run records about them."""

    ids: np.ndarray               # (N,) int32
    tokenizer: object
    paths: list
    characters: int
    crc32: int                    # of the joined UTF-8 bytes, separators included

    def info(self) -> dict:
        return {"path": describe_sources(self.paths), "files": len(self.paths), "characters": self.characters,
                "tokens": int(len(self.ids)), "crc32": self.crc32}


def read_corpus(specs, kind: str = "char", tokenizer=None, progress=None) -> Corpus:
    """Tokenize the sources of DATA. ``tokenizer`` (a resumed run's) fixes the vocabulary;
    otherwise one of ``kind`` is built from the text. ``progress(done_bytes, total_bytes)``."""
    paths = resolve_sources(specs)
    for path in paths:
        check_readable(path)
    kind = tokenizer.kind if tokenizer is not None else kind
    if kind not in KINDS:                # a BPE tokenizer (or the path of its files)
        return _bpe_corpus(paths, tokenizer or build_tokenizer(kind, ""), progress)
    scan = _Scan(kind, sum(p.stat().st_size for p in paths), len(paths) - 1, progress)
    for i, path in enumerate(paths):
        scan.read_file(path, last=i == len(paths) - 1)
    if scan.characters == 0 or not scan.visible:
        raise _empty(paths)
    if tokenizer is None:
        tokenizer = ByteTokenizer() if kind == "byte" else CharTokenizer("".join(map(chr, scan.vocabulary())))
    return Corpus(scan.ids(tokenizer), tokenizer, paths, scan.characters, scan.crc)


def _bpe_corpus(paths: list[Path], tokenizer, progress) -> Corpus:
    """BPE merges span chunk boundaries, so the joined text is encoded in one call."""
    total = sum(p.stat().st_size for p in paths)
    if progress:
        progress(0, total)
    text, paths = read_joined_text(paths)
    data = text.encode("utf-8")
    ids = tokenizer.encode(text)                                                    # (N,) int32
    if progress:
        progress(total, total)
    return Corpus(ids, tokenizer, paths, len(text), zlib.crc32(data))


def read_joined_text(specs) -> tuple[str, list[Path]]:
    """DATA's files joined as one string, as ``read_corpus`` joins them (``evaluate`` scores a string)."""
    paths = resolve_sources(specs)
    parts = []
    for i, path in enumerate(paths):
        check_readable(path)
        parts.append("".join(decode_checked(path, data, offset) for offset, data in _utf8_chunks(path)))
        if i < len(paths) - 1 and not parts[-1].endswith("\n"):
            parts.append("\n")
    text = "".join(parts)
    if not text.strip():
        raise _empty(paths)
    return text, paths


def _empty(paths: list[Path]) -> DataError:
    what = paths[0] if len(paths) == 1 else f"all {len(paths)} files of DATA"
    return DataError(f"{what} is empty (or only whitespace): a model needs text to learn from")


def check_readable(path: Path) -> None:
    """By stat, before any open: a FIFO would block the open, /dev/zero never end."""
    check_regular_file(path, DataError, "data file", ": give a text file")


class _Scan:
    """One pass over the sources: the code points (or bytes) of every chunk, written into the
    array that becomes the ids (so no chunk is kept), and the characters seen."""

    def __init__(self, kind: str, total_bytes: int, separators: int, progress):
        self.kind, self.total, self.progress = kind, total_bytes, progress
        # A character takes at least one byte, so the bytes bound the length; np.empty commits
        # no memory, so the part that multi-byte characters leave unused never costs any.
        self.out = np.empty(total_bytes + separators, dtype=np.int32)               # (bytes,)
        self.seen = np.zeros(MAX_CODE_POINT + 1, dtype=bool)  # (0x110000,) characters met so far
        self.length = self.characters = self.done = self.crc = 0
        self.visible = False                   # met a character that is not whitespace
        if progress:
            progress(0, total_bytes)           # the clock for MB/s starts here

    def read_file(self, path: Path, last: bool) -> None:
        ends_in_newline = True
        for offset, data in _utf8_chunks(path):
            self._add(path, data, decode_checked(path, data, offset))
            ends_in_newline = data.endswith(b"\n")
            self.done += len(data)
            if self.progress:
                self.progress(self.done, self.total)
        if not last and not ends_in_newline:
            self._add(path, b"\n", "\n")

    def _add(self, path: Path, data: bytes, text: str) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.characters += len(text)
        self.visible = self.visible or not text.isspace()
        if self.kind == "byte" or text.isascii():   # an ASCII byte is its own code point
            points = np.frombuffer(data, dtype=np.uint8)                             # (n,)
            if self.kind == "char":
                self._mark_ascii(data)
        else:
            points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")            # (n,)
            self.seen[points] = True
        end = self.length + len(points)
        if end > len(self.out):
            raise DataError(f"{path} grew while it was being read: train on a copy that nothing writes to")
        self.out[self.length : end] = points
        self.length = end

    def _mark_ascii(self, data: bytes) -> None:
        """Mark the distinct bytes of ``data`` seen: delete the known ones (C speed, no index
        arrays), learn those in a sample of what is left, repeat until nothing is left."""
        known = bytes(np.flatnonzero(self.seen[:128]).astype(np.uint8))
        rest = data.translate(None, known)
        while rest:
            new = bytes(sorted(set(rest[:4096])))
            self.seen[list(new)] = True
            rest = rest.translate(None, new)

    def vocabulary(self) -> np.ndarray:
        return np.flatnonzero(self.seen)                                             # (V,) sorted code points

    def ids(self, tokenizer) -> np.ndarray:
        """The ids, mapped from the code points in place, a slice at a time."""
        ids = self.out
        self.out = None
        ids.resize(self.length, refcheck=False)                                     # (N,) gives back the rest
        if tokenizer.kind == "char":
            table = _lookup_table(tokenizer, self)                                  # (0x110000,)
            buffer = np.empty(min(MAP_SLICE, len(ids)), dtype=np.int32)             # (S,)
            for start in range(0, len(ids), MAP_SLICE):  # take() into ids itself would copy all of ids
                piece = ids[start : start + MAP_SLICE]
                np.take(table, piece, out=buffer[: len(piece)], mode="clip")       # "clip": no bounds pass
                piece[:] = buffer[: len(piece)]
        return ids


def _lookup_table(tokenizer, scan: _Scan) -> np.ndarray:
    """code point -> id (-1: not in the vocabulary); a TokenizerError when the text has characters
    outside it (a resumed run's fixed vocabulary)."""
    table = np.full(MAX_CODE_POINT + 1, -1, dtype=np.int32)                         # (0x110000,)
    known = np.array([ord(c) for c in tokenizer.chars], dtype=np.int64)             # (V,)
    table[known] = np.arange(len(known), dtype=np.int32)
    missing = np.flatnonzero(scan.seen & (table < 0))
    if len(missing):
        raise unknown_characters_error([chr(c) for c in missing])
    return table


def _utf8_chunks(path: Path, size: int = CHUNK_BYTES):
    """(byte offset, bytes) pieces of ``path`` that never split a UTF-8 character."""
    try:
        with open(path, "rb") as f:
            offset, carry = 0, b""
            while True:
                block = f.read(size)
                data = carry + block if carry else block
                if not block:
                    if data:
                        yield offset, data        # an unfinished character: the decoder says where
                    return
                cut = _last_boundary(data)
                if cut:
                    yield offset, data[:cut]
                offset, carry = offset + cut, data[cut:]
    except PermissionError as exc:
        raise DataError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _last_boundary(data: bytes) -> int:
    """The length of ``data`` less a character its last bytes begin but do not finish."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:          # a lead byte: 110xxxxx needs 2 bytes, 1110xxxx 3, 11110xxx 4
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= needed else len(data) - back
    return len(data)              # only continuation bytes: invalid, the decoder reports it


def decode_checked(path: Path, data: bytes, offset: int) -> str:
    """``data`` (bytes ``offset``... of ``path``) as text; a DataError naming the first bad byte."""
    if offset == 0:
        wide = not_utf8_hint(path, data)
        if wide:
            raise DataError(wide)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {offset + exc.start} is 0x{data[exc.start]:02x}): "
            "convert it to UTF-8 first, e.g. iconv -f latin1 -t utf-8"
        ) from exc

