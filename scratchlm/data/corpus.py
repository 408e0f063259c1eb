"""A corpus: DATA's files tokenized in streaming, vectorised passes, into memory or into a token file.

The files (``sources.py`` finds them) are joined in order, with a newline added after a
file that does not end in one (never after the last), so a single file's tokens are
exactly those of the file alone.

Tokenizing reads ``CHUNK_BYTES`` at a time, cut at UTF-8 character boundaries. Python's
decoder checks each chunk (its error gives the byte offset of the first bad byte); the
code points come from the bytes themselves for ASCII chunks and from UTF-32 otherwise,
and the vocabulary (the sorted distinct characters) is gathered on the way. Ids come
from one lookup table, so they are exactly ``CharTokenizer.encode``'s (``ByteTokenizer``:
the raw UTF-8 bytes). Nothing here loops over characters in Python.

``read_corpus`` keeps the ids in memory (one pass: code points first, mapped to ids in
place once the vocabulary is known). ``tokenize_to_file`` streams them into a token file
instead, so memory stays flat whatever the corpus size; a new character vocabulary then
costs a first pass that only gathers it (the bytes come from the page cache the second time).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchlm.data.encoding import not_utf8_hint
from scratchlm.data.sources import check_readable, describe_sources, resolve_sources
from scratchlm.data.token_file import TokenWriter, narrowest_dtype
from scratchlm.data.tokenizer import KINDS, ByteTokenizer, CharTokenizer, build_tokenizer, unknown_characters_error
from scratchlm.errors import DataError, TokenizerError
from scratchlm.limits import excerpt

CHUNK_BYTES = 1 << 20             # 1 MB: stays in cache; its temporaries stay small (see docs/performance.md)
MAP_SLICE = 1 << 20              # ids mapped per np.take: 4 MB, in cache, a small constant temporary
MAX_CODE_POINT = 0x10FFFF


@dataclass
class Corpus:
    """The token ids of the joined sources and what a run records about them."""

    ids: np.ndarray               # (N,) int32 in memory, or a read-only memory map of a token file
    tokenizer: object
    paths: list
    characters: int
    crc32: int                    # of the joined UTF-8 bytes, separators included

    def info(self) -> dict:
        return {"path": describe_sources(self.paths), "files": len(self.paths), "characters": self.characters,
                "tokens": int(len(self.ids)), "crc32": self.crc32}


@dataclass
class TokenizedFile:
    """What ``tokenize_to_file`` wrote: the token file's facts and the text's."""

    tokenizer: object
    dtype: np.dtype
    tokens: int
    tokens_crc32: int             # of the token file's bytes
    characters: int
    crc32: int                    # of the joined UTF-8 bytes, as Corpus.crc32
    file_crc32: list              # of each source file's bytes, in order


def checked_sources(specs) -> list[Path]:
    """The files of DATA, each checked to be a readable regular file."""
    paths = resolve_sources(specs)
    for path in paths:
        check_readable(path)
    return paths


def read_corpus(specs, kind: str = "char", tokenizer=None, progress=None) -> Corpus:
    """Tokenize the sources of DATA in memory. ``tokenizer`` (a resumed run's) fixes the vocabulary;
    otherwise one of ``kind`` is built from the text. ``progress(done_bytes, total_bytes)``."""
    paths = checked_sources(specs)
    kind = tokenizer.kind if tokenizer is not None else kind
    if kind not in KINDS:                # a BPE tokenizer (or the path of its files)
        return _bpe_corpus(paths, tokenizer or build_tokenizer(kind, ""), progress)
    sink = _ArraySink(sum(p.stat().st_size for p in paths) + len(paths) - 1)
    scan = _Scan(kind, _Progress(paths, 1, progress), sink, gather=True).read(paths)
    tokenizer = tokenizer or scan.new_tokenizer()
    return Corpus(sink.ids(tokenizer, scan), tokenizer, paths, scan.characters, scan.crc)


def tokenize_to_file(paths: list[Path], target: Path, kind: str = "char", tokenizer=None,
                     progress=None) -> TokenizedFile:
    """Tokenize ``paths`` (checked sources) into the token file ``target``, streaming: nothing the
    size of the corpus is held in memory. A half-written file never takes ``target``'s name."""
    kind = tokenizer.kind if tokenizer is not None else kind
    if kind not in KINDS:
        raise TokenizerError(f"a token file holds char or byte tokens, not {excerpt(kind)}")
    passes = 2 if tokenizer is None and kind == "char" else 1
    tracker = _Progress(paths, passes, progress)
    first = _Scan(kind, tracker, gather=True, checksum=False).read(paths) if passes == 2 else None
    tokenizer = tokenizer or (first.new_tokenizer() if first else ByteTokenizer())
    dtype = narrowest_dtype(tokenizer.vocab_size)
    table = _lookup_table(tokenizer) if tokenizer.kind == "char" else None
    with TokenWriter(target, dtype) as writer:
        # The vocabulary from the first pass holds every character, unless the files change under us.
        scan = _Scan(kind, tracker, _FileSink(writer, table), gather=first is None).read(paths)
        if first is not None and scan.characters != first.characters:
            raise DataError(f"{describe_sources(paths)} changed while it was being read: train on a copy that "
                            "nothing writes to")
        if table is not None and first is None:
            _check_known(table, scan)
        writer.finish()
    return TokenizedFile(tokenizer, dtype, writer.count, writer.crc, scan.characters, scan.crc, scan.file_crc32)


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
    paths = checked_sources(specs)
    parts = []
    for i, path in enumerate(paths):
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


class _Progress:
    """``progress(done, total)`` over one or more passes, as the share of the work done, in bytes
    of the corpus: the MB/s it implies is the speed of the whole job."""

    def __init__(self, paths: list[Path], passes: int, callback):
        self.total, self.passes, self.callback = sum(p.stat().st_size for p in paths), passes, callback
        self.done = 0                          # bytes read, over all passes
        if callback:
            callback(0, self.total)            # the clock for MB/s starts here

    def advance(self, n: int) -> None:
        self.done += n
        if self.callback:
            self.callback(min(self.done // self.passes, self.total), self.total)


class _Scan:
    """One pass over the sources: each chunk's bytes and (for non-ASCII char text) code points
    handed to ``sink``; with ``gather``, the characters seen; with ``checksum``, the CRC-32s of
    the text and of each file. A pass that only gathers the vocabulary has neither sink nor sums."""

    def __init__(self, kind: str, progress: _Progress, sink=None, gather: bool = True, checksum: bool = True):
        self.kind, self.progress, self.sink, self.gather, self.checksum = kind, progress, sink, gather, checksum
        self.seen = np.zeros(MAX_CODE_POINT + 1, dtype=bool)  # (0x110000,) characters met so far
        self.characters = self.crc = 0
        self.file_crc32: list[int] = []        # of each file's own bytes, no separator
        self.visible = False                   # met a character that is not whitespace

    def read(self, paths: list[Path]) -> _Scan:
        for i, path in enumerate(paths):
            self._read_file(path, last=i == len(paths) - 1, alone=len(paths) == 1)
        if self.characters == 0 or not self.visible:
            raise _empty(paths)
        return self

    def _read_file(self, path: Path, last: bool, alone: bool) -> None:
        ends_in_newline, crc = True, 0
        for offset, data in _utf8_chunks(path):
            self._add(path, data, decode_checked(path, data, offset))
            if self.checksum and not alone:     # a file alone is the joined text: its CRC is self.crc
                crc = zlib.crc32(data, crc)
            ends_in_newline = data.endswith(b"\n")
            self.progress.advance(len(data))
        self.file_crc32.append(self.crc if alone else crc)
        if not last and not ends_in_newline:
            self._add(path, b"\n", "\n")

    def _add(self, path: Path, data: bytes, text: str) -> None:
        if self.checksum:
            self.crc = zlib.crc32(data, self.crc)
        self.characters += len(text)
        self.visible = self.visible or not text.isspace()
        points = None                  # bytes, and for ASCII text also code points, need no decoding
        if self.kind == "char" and not text.isascii():
            points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")            # (n,)
            if self.gather:
                self.seen[points] = True
        elif self.kind == "char" and self.gather:
            self._mark_ascii(data)
        if self.sink is not None:
            self.sink(path, data, points)

    def _mark_ascii(self, data: bytes) -> None:
        """Mark the distinct bytes of ``data`` seen: delete the known ones (C speed, no index
        arrays), learn those in a sample of what is left, repeat until nothing is left."""
        known = bytes(np.flatnonzero(self.seen[:128]).astype(np.uint8))
        rest = data.translate(None, known)
        while rest:
            new = bytes(sorted(set(rest[:4096])))
            self.seen[list(new)] = True
            rest = rest.translate(None, new)

    def new_tokenizer(self):
        """The tokenizer this text defines: its sorted characters, or all bytes."""
        if self.kind == "byte":
            return ByteTokenizer()
        return CharTokenizer("".join(map(chr, np.flatnonzero(self.seen))))


class _ArraySink:
    """Code points written into one array that then becomes the ids, so no chunk is kept."""

    def __init__(self, capacity: int):
        # A character takes at least one byte, so the bytes bound the length; np.empty commits
        # no memory, so the part that multi-byte characters leave unused never costs any.
        self.out = np.empty(capacity, dtype=np.int32)                                # (bytes,)
        self.length = 0

    def __call__(self, path: Path, data: bytes, points: np.ndarray | None) -> None:
        if points is None:
            points = np.frombuffer(data, dtype=np.uint8)                             # (n,)
        end = self.length + len(points)
        if end > len(self.out):
            raise _grew(path)
        self.out[self.length : end] = points
        self.length = end

    def ids(self, tokenizer, scan: _Scan) -> np.ndarray:
        """The ids, mapped from the code points in place, a slice at a time."""
        ids, self.out = self.out, None
        ids.resize(self.length, refcheck=False)                                     # (N,) gives back the rest
        if tokenizer.kind == "char":
            table = _lookup_table(tokenizer)                                        # (0x110000,)
            _check_known(table, scan)
            buffer = np.empty(min(MAP_SLICE, len(ids)), dtype=np.int32)             # (S,)
            for start in range(0, len(ids), MAP_SLICE):  # take() into ids itself would copy all of ids
                piece = ids[start : start + MAP_SLICE]
                np.take(table, piece, out=buffer[: len(piece)], mode="clip")       # "clip": no bounds pass
                piece[:] = buffer[: len(piece)]
        return ids


class _FileSink:
    """Each chunk's ids (code points through ``table``; bytes as they are) appended to a token file.

    The table is cast to the file's type once, so each chunk's ids come out narrow; ASCII
    text into a uint8 file maps through its first 256 entries with ``bytes.translate``.
    """

    def __init__(self, writer: TokenWriter, table: np.ndarray | None):
        self.writer = writer
        self.table = None if table is None else table.astype(writer.dtype)          # (0x110000,) unknown: wrapped
        self.ascii = self.table[:256].tobytes() if table is not None and writer.dtype.itemsize == 1 else None

    def __call__(self, path: Path, data: bytes, points: np.ndarray | None) -> None:
        if self.table is None:                                                        # byte tokens
            ids = np.frombuffer(data, dtype=np.uint8)                                 # (n,)
        elif points is None and self.ascii is not None:
            ids = np.frombuffer(data.translate(self.ascii), dtype=np.uint8)           # (n,)
        else:
            source = points if points is not None else np.frombuffer(data, dtype=np.uint8)
            ids = np.take(self.table, source, mode="clip")                            # (n,) file dtype
        self.writer.write(ids)


def _grew(path: Path) -> DataError:
    return DataError(f"{path} grew while it was being read: train on a copy that nothing writes to")


def _lookup_table(tokenizer) -> np.ndarray:
    """code point -> id (-1: not in the vocabulary), for any code point (0x110000,)."""
    table = np.full(MAX_CODE_POINT + 1, -1, dtype=np.int32)                         # (0x110000,)
    known = np.array([ord(c) for c in tokenizer.chars], dtype=np.int64)             # (V,)
    table[known] = np.arange(len(known), dtype=np.int32)
    return table


def _check_known(table: np.ndarray, scan: _Scan) -> None:
    """A TokenizerError when the text has characters outside the vocabulary (a resumed run's, fixed)."""
    missing = np.flatnonzero(scan.seen & (table < 0))
    if len(missing):
        raise unknown_characters_error([chr(c) for c in missing])


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

