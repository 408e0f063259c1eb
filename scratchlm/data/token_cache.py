"""Dataset folders: DATA tokenized once into token files that later runs memory-map instead of re-reading.

A dataset folder holds ``tokens.bin`` (``token_file.py``'s format), ``val.bin`` when a
held-out validation file was prepared with it, and ``dataset.json``, which says what they
are: the format and its version, the tokenizer, each token file's dtype, count and CRC-32,
the text's characters and CRC-32, each source file's absolute path, size, modification time
and CRC-32, and how the run validates. Two kinds of folder share the format:

- a *prepared* folder, written by ``scratchlm prepare DATA... --output DIR``; ``train DIR``
  trains on it and takes its tokenizer and validation split from it;
- the *implicit cache*: ``train`` on DATA of ``CACHE_FROM_BYTES`` or more keeps one folder
  per DATA (its files' paths and the tokenizer kind) under ``cache_root()``, and a later run
  on the same, unchanged files maps it instead of tokenizing again.

Nothing is trusted blindly. A folder is used only when its description is this format and
version and its token files have the recorded size and CRC-32; the implicit cache also
needs every source to have its recorded size and modification time, or failing that its
recorded CRC-32 (a file touched but not changed). A folder is written under a temporary
name and renamed into place only when complete, so Ctrl-C or a full disk never leaves
one that a later run would take for finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scratchlm.checkpoint import sync_folder, write_atomically
from scratchlm.data.corpus import Corpus, checked_sources, tokenize_to_file
from scratchlm.data.sources import data_specs
from scratchlm.data.token_file import TokenWriter, file_crc32, narrowest_dtype, open_tokens
from scratchlm.data.tokenizer import KINDS, tokenizer_from_dict
from scratchlm.data.validation import validation_ids
from scratchlm.errors import DataError, TokenizerError
from scratchlm.kernels.numba_tools import user_cache_home
from scratchlm.limits import excerpt

FORMAT, VERSION = "scratchlm-dataset", 1
DESCRIPTION, TOKENS, VAL_TOKENS = "dataset.json", "tokens.bin", "val.bin"
CACHE_FROM_BYTES = 32 << 20       # smaller DATA tokenizes in well under a second: kept in memory
CACHE_DIR_ENV = "SCRATCHLM_CACHE_DIR"
TOKEN_DTYPES = ("uint8", "uint16", "uint32")


class Unusable(Exception):
    """Why a dataset folder cannot be used as it is (a cache is rebuilt, a prepared folder refused)."""


class CacheUnwritable(Exception):
    """The implicit cache's folder cannot be written (read-only, full): the run tokenizes in memory."""


def cache_root(option: str | None = None) -> Path:
    """Where implicit caches live: --cache-dir, else $SCRATCHLM_CACHE_DIR, else ~/.cache/scratchlm/tokens."""
    return Path(option or os.environ.get(CACHE_DIR_ENV) or Path(user_cache_home()) / "scratchlm" / "tokens")


def prepared_folder(specs) -> Path | None:
    """DATA's one argument when it is a dataset folder (one that has a dataset.json), else None."""
    specs = data_specs(specs)
    if len(specs) == 1 and (Path(specs[0]) / DESCRIPTION).is_file():
        return Path(specs[0])
    return None


@dataclass
class Dataset:
    """A checked dataset folder: its description, and the token files as read-only memory maps."""

    folder: Path
    description: dict

    @property
    def tokenizer(self):
        return tokenizer_from_dict(self.description["tokenizer"])

    def ids(self, name: str = "tokens") -> np.ndarray:
        record = self.description[name]
        return open_tokens(self.folder / record["file"], record["dtype"], record["count"])   # (N,) memmap

    def corpus(self, tokenizer=None) -> Corpus:
        d = self.description
        paths = [Path(s["path"]) for s in d["sources"]]
        return Corpus(self.ids(), tokenizer or self.tokenizer, paths, d["characters"], d["crc32"])

    @property
    def validation(self) -> dict | None:
        """The held-out file's record (as config.yaml keeps it), or None: the tail split validates."""
        return self.description["split"].get("validation")


def source_record(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def build_dataset(folder: Path, paths: list[Path], kind: str, tokenizer=None, progress=None,
                  val_split: float | None = None, validation_path=None) -> Dataset:
    """Tokenize ``paths`` into a new dataset folder at ``folder`` (replacing one already there).
    ``val_split`` or ``validation_path`` (a prepared folder's split) is recorded with it."""
    before = [source_record(p) for p in paths]
    building = folder.with_name(f".{folder.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        made = tokenize_to_file(paths, building / TOKENS, kind, tokenizer, progress)
        if [source_record(p) for p in paths] != before:
            raise DataError(f"{paths[0] if len(paths) == 1 else 'a file of DATA'} changed while it was being read: "
                            "train on a copy that nothing writes to")
        split: dict = {"val_split": val_split} if val_split is not None else {}
        description = {
            "format": FORMAT, "version": VERSION, "tokenizer": made.tokenizer.to_dict(),
            "characters": made.characters, "crc32": made.crc32,
            "tokens": {"file": TOKENS, "dtype": made.dtype.name, "count": made.tokens, "crc32": made.tokens_crc32},
            "sources": [dict(record, crc32=crc) for record, crc in zip(before, made.file_crc32)],
            "split": split,
        }
        if validation_path is not None:
            ids, split["validation"] = validation_ids(validation_path, made.tokenizer)           # (M,)
            description["val"] = _write_tokens(building / VAL_TOKENS, ids, narrowest_dtype(made.tokenizer.vocab_size))
        _write_json(building / DESCRIPTION, description)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(building, folder)
        sync_folder(folder.parent)                   # the new name survives a power cut
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return Dataset(folder, description)


def _write_tokens(path: Path, ids: np.ndarray, dtype) -> dict:
    with TokenWriter(path, dtype) as writer:
        writer.write(ids)
        writer.finish()
    return {"file": path.name, "dtype": np.dtype(dtype).name, "count": writer.count, "crc32": writer.crc}


def _write_json(path: Path, values: dict) -> None:
    """A reader sees the old description or the new one, never part of one."""
    write_atomically(path, json.dumps(values, indent=1))


def open_dataset(folder: Path) -> Dataset:
    """The dataset in ``folder``, checked (format, version, token files' sizes and CRC-32s), or
    ``Unusable`` saying why not."""
    description = read_description(folder)
    check_token_files(folder, description)
    return Dataset(folder, description)


def read_description(folder: Path) -> dict:
    """``folder``'s dataset.json, checked to be this format and version and complete (its token
    files are not read: ``check_token_files`` does that), or ``Unusable`` saying why not."""
    try:
        description = json.loads((folder / DESCRIPTION).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Unusable(f"its {DESCRIPTION} cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise Unusable(f"its {DESCRIPTION} is not a scratchlm dataset description")
    if description.get("version") != VERSION:
        raise Unusable(f"it was written by another version of scratchlm (dataset format "
                       f"{excerpt(description.get('version'))}, this one reads {VERSION})")
    try:
        tokenizer_from_dict(description["tokenizer"])
        for record in _token_records(description):
            if record["dtype"] not in TOKEN_DTYPES:
                raise Unusable(f"its {record['file']} has an unknown token type {excerpt(record['dtype'])}")
            _ = record["count"] * np.dtype(record["dtype"]).itemsize, record["crc32"]
        for source in description["sources"]:
            _ = source["path"], source["size"], source["mtime_ns"], source["crc32"]
        description["split"].get("validation")
    except (KeyError, TypeError, AttributeError, TokenizerError) as exc:
        raise Unusable(f"its {DESCRIPTION} is incomplete ({exc.__class__.__name__}: {excerpt(str(exc))})") from None
    return description


def _token_records(description: dict) -> list[dict]:
    return [description[name] for name in (("tokens", "val") if "val" in description else ("tokens",))]


def check_token_files(folder: Path, description: dict) -> None:
    """Each token file has the size and CRC-32 that ``description`` records (a whole read), or ``Unusable``."""
    for record in _token_records(description):
        _check_token_file(folder, record)


def _check_token_file(folder: Path, record: dict) -> None:
    path, expected = folder / record["file"], record["count"] * np.dtype(record["dtype"]).itemsize
    try:
        size = path.stat().st_size
    except OSError:
        raise Unusable(f"its {record['file']} is missing") from None
    if size != expected:
        raise Unusable(f"its {record['file']} has {size:,} bytes, not the {expected:,} it was written with (truncated?)")
    if file_crc32(path) != record["crc32"]:
        raise Unusable(f"its {record['file']} does not have the content it was written with (damaged)")


def _sources_unchanged(description: dict, paths: list[Path]) -> tuple[bool, bool]:
    """(each source has its recorded size and modification time, or else its recorded CRC-32;
    whether a touched source's new modification time was recorded in ``description``)."""
    recorded, touched = description["sources"], False
    if [r["path"] for r in recorded] != [str(p.resolve()) for p in paths]:
        return False, False
    for record, path in zip(recorded, paths):
        now = source_record(path)
        if (now["size"], now["mtime_ns"]) == (record["size"], record["mtime_ns"]):
            continue
        if now["size"] != record["size"] or file_crc32(path) != record["crc32"]:
            return False, False
        record["mtime_ns"], touched = now["mtime_ns"], True   # touched, not changed: remember the new time
    return True, touched


def _remember(folder: Path, description: dict) -> None:
    """Keep a touched source's new time, so the next run is back to the quick check; a cache
    that cannot be written (a read-only disk) is still used, and checks by CRC-32 again."""
    try:
        _write_json(folder / DESCRIPTION, description)
    except OSError:
        pass


def cache_key(paths: list[Path], kind: str) -> str:
    """The implicit cache's folder name for these files, in this order, tokenized as ``kind``."""
    named = json.dumps({"sources": [str(p.resolve()) for p in paths], "kind": kind, "version": VERSION})
    return hashlib.sha256(named.encode("utf-8")).hexdigest()[:20]


@dataclass
class CacheUse:
    """What the implicit cache did for a run: the folder, and whether it was reused or written."""

    folder: Path
    reused: bool


def cached_corpus(specs, kind: str, tokenizer, root: Path, progress=None) -> tuple[Corpus, CacheUse] | None:
    """DATA's corpus memory-mapped from the implicit cache under ``root``, built there first when
    missing, stale or damaged; None when DATA is small or BPE (the caller tokenizes in memory).
    ``CacheUnwritable`` when the cache cannot be written."""
    kind = tokenizer.kind if tokenizer is not None else kind
    paths = checked_sources(specs)
    if kind not in KINDS or sum(p.stat().st_size for p in paths) < CACHE_FROM_BYTES:
        return None
    folder = root / cache_key(paths, kind)
    try:
        description = read_description(folder)
        fits = tokenizer is None or description["tokenizer"] == tokenizer.to_dict()
        unchanged, touched = _sources_unchanged(description, paths) if fits else (False, False)
        if unchanged:
            check_token_files(folder, description)          # the costly check last: a whole read
            if touched:
                _remember(folder, description)
            return Dataset(folder, description).corpus(tokenizer), CacheUse(folder, reused=True)
    except (Unusable, OSError):
        pass                                   # missing, stale, damaged or unreadable: build it again
    try:
        dataset = build_dataset(folder, paths, kind, tokenizer, progress)
    except OSError as exc:
        raise CacheUnwritable(f"cannot write the token cache in {root} ({exc.strerror or exc})") from None
    return dataset.corpus(tokenizer), CacheUse(folder, reused=False)


def check_prepared_output(folder: Path) -> None:
    """prepare may write a new folder, an empty one, or replace a dataset folder; nothing else."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--output {folder} is a file: give a folder for the dataset")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / DESCRIPTION).exists():
        raise DataError(f"--output {folder} already holds files that are not a scratchlm dataset: "
                        "give a new or empty folder")


def open_prepared(folder: Path) -> Dataset:
    """A prepared folder for ``train DIR``, or one DataError saying what is wrong with it."""
    try:
        return open_dataset(folder)
    except Unusable as why:
        raise DataError(f"{folder} is not a usable prepared dataset: {why}: write it again with "
                        f"scratchlm prepare DATA... --output {folder}") from None
