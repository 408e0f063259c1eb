"""The token cache: the same ids as in-memory tokenizing, reused only when it is sound, never half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from scratchlm.data import corpus, token_cache, training_data
from scratchlm.data.batches import gather_windows
from scratchlm.data.corpus import read_corpus
from scratchlm.data.token_cache import (
    DESCRIPTION,
    TOKENS,
    CacheUnwritable,
    build_dataset,
    cached_corpus,
    open_prepared,
)
from scratchlm.data.token_file import narrowest_dtype, open_tokens
from scratchlm.data.tokenizer import CharTokenizer
from scratchlm.errors import DataError, TokenizerError

ALPHABET = list("abc xyz\n\té€日本🎉ÿ")      # 1- to 4-byte characters


def write_texts(tmp_path, *sizes, seed=0):
    """Files of random multi-byte text; returns their paths as DATA arguments."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"part{i}.txt"
        path.write_text("".join(rng.choice(ALPHABET, size)), encoding="utf-8")
        paths.append(str(path))
    return paths


@pytest.fixture
def always_cache(monkeypatch):
    """Any DATA, however small, goes through the cache."""
    monkeypatch.setattr(token_cache, "CACHE_FROM_BYTES", 0)


def only_folder(root):
    entries = list(root.iterdir())
    assert len(entries) == 1, entries
    return entries[0]


@pytest.mark.parametrize("kind", ["char", "byte"])
@pytest.mark.parametrize("sizes", [(500,), (300, 1, 700)])
def test_cached_ids_are_the_in_memory_ids(tmp_path, always_cache, kind, sizes):
    data = write_texts(tmp_path, *sizes)
    expected = read_corpus(data, kind)
    for reused in (False, True):
        got, use = cached_corpus(data, kind, None, tmp_path / "cache")
        assert use.reused is reused
        assert not got.ids.flags.writeable and got.ids.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(got.ids), expected.ids)
        assert got.tokenizer.to_dict() == expected.tokenizer.to_dict()
        assert (got.characters, got.crc32, got.info()) == (expected.characters, expected.crc32, expected.info())


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_a_vocabulary_past_256_characters_is_cached_as_uint16(tmp_path, always_cache, monkeypatch, kind):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 256)              # ASCII-only chunks and mixed ones, in turn
    monkeypatch.setattr(corpus._utf8_chunks, "__defaults__", (256,))
    wide = "".join(chr(0x4E00 + i) for i in range(300))
    path = tmp_path / "wide.txt"
    path.write_text(("plain ascii text, a line of it\n" * 20 + wide + "\n") * 3, encoding="utf-8")
    got, _ = cached_corpus([str(path)], kind, None, tmp_path / "cache")
    assert got.ids.dtype == (np.uint16 if kind == "char" else np.uint8)
    np.testing.assert_array_equal(np.asarray(got.ids), read_corpus([str(path)], kind).ids)


def test_small_data_is_not_cached(tmp_path):
    assert cached_corpus(write_texts(tmp_path, 100), "char", None, tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()


def test_a_changed_source_is_tokenized_again(tmp_path, always_cache):
    data = write_texts(tmp_path, 400)
    cached_corpus(data, "char", None, tmp_path / "cache")
    text = open(data[0], encoding="utf-8").read()
    with open(data[0], "w", encoding="utf-8") as f:
        f.write(text[::-1])                                   # same size, other content
    os.utime(data[0], ns=(1, 1))
    got, use = cached_corpus(data, "char", None, tmp_path / "cache")
    assert not use.reused
    np.testing.assert_array_equal(np.asarray(got.ids), read_corpus(data, "char").ids)


def test_a_touched_but_unchanged_source_keeps_its_cache(tmp_path, always_cache):
    data = write_texts(tmp_path, 400)
    _, first = cached_corpus(data, "char", None, tmp_path / "cache")
    os.utime(data[0], ns=(10**18, 10**18))
    _, second = cached_corpus(data, "char", None, tmp_path / "cache")
    assert second.reused and second.folder == first.folder
    recorded = json.loads((first.folder / DESCRIPTION).read_text())["sources"][0]["mtime_ns"]
    assert recorded == 10**18                                 # the next run is back to the quick check


def test_a_cache_that_cannot_be_written_is_still_reused(tmp_path, always_cache, monkeypatch):
    data = write_texts(tmp_path, 400)
    _, first = cached_corpus(data, "char", None, tmp_path / "cache")
    description = first.folder / DESCRIPTION
    written = description.stat().st_mtime_ns
    assert cached_corpus(data, "char", None, tmp_path / "cache")[1].reused
    assert description.stat().st_mtime_ns == written                 # nothing to remember: not rewritten

    def read_only(path, values):
        raise PermissionError(13, "Read-only file system")
    monkeypatch.setattr(token_cache, "_write_json", read_only)
    os.utime(data[0], ns=(10**18, 10**18))
    got, use = cached_corpus(data, "char", None, tmp_path / "cache")
    assert use.reused
    np.testing.assert_array_equal(np.asarray(got.ids), read_corpus(data, "char").ids)


def truncate(folder):
    with open(folder / TOKENS, "r+b") as f:
        f.truncate(10)


def flip_a_byte(folder):
    with open(folder / TOKENS, "r+b") as f:
        f.seek(20)
        byte = f.read(1)
        f.seek(20)
        f.write(bytes([byte[0] ^ 1]))


def older_version(folder):
    description = json.loads((folder / DESCRIPTION).read_text())
    description["version"] = 0
    (folder / DESCRIPTION).write_text(json.dumps(description))


def half_written_description(folder):
    (folder / DESCRIPTION).write_text('{"format": "scratchlm-dataset", "vers')


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, older_version, half_written_description,
                                    lambda folder: (folder / TOKENS).unlink()])
def test_a_damaged_cache_is_rebuilt_not_trusted(tmp_path, always_cache, damage):
    data = write_texts(tmp_path, 400, 300)
    _, use = cached_corpus(data, "byte", None, tmp_path / "cache")
    damage(use.folder)
    got, again = cached_corpus(data, "byte", None, tmp_path / "cache")
    assert not again.reused and again.folder == use.folder
    np.testing.assert_array_equal(np.asarray(got.ids), read_corpus(data, "byte").ids)


def test_ctrl_c_while_tokenizing_leaves_nothing_behind(tmp_path, always_cache, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 64)
    monkeypatch.setattr(corpus._utf8_chunks, "__defaults__", (64,))
    calls = []

    def interrupted(self, path, data, points):
        calls.append(len(data))
        if len(calls) == 3:
            raise KeyboardInterrupt
    monkeypatch.setattr(corpus._FileSink, "__call__", interrupted)
    root = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        cached_corpus(write_texts(tmp_path, 2000), "char", None, root)
    assert len(calls) == 3 and list(root.iterdir()) == []


def test_an_unwritable_cache_falls_back_to_memory(tmp_path, always_cache):
    data = write_texts(tmp_path, 400)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(CacheUnwritable, match="cannot write the token cache"):
        cached_corpus(data, "char", None, blocked / "cache")
    run = training_data.training_data(data, "char", cache_dir=blocked / "cache")
    assert run.cache_note.startswith("none: cannot write the token cache") and "--cache-dir" in run.cache_note
    train_part = np.concatenate([run.train_ids, run.val_ids])
    np.testing.assert_array_equal(train_part, read_corpus(data, "char").ids)


def test_a_full_disk_while_caching_falls_back_and_leaves_nothing(tmp_path, always_cache, monkeypatch):
    import errno

    from scratchlm.data import token_file

    def full(self, ids):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(token_file.TokenWriter, "write", full)
    data, root = write_texts(tmp_path, 400), tmp_path / "cache"
    run = training_data.training_data(data, "char", cache_dir=root)
    assert "No space left on device" in run.cache_note and list(root.iterdir()) == []
    assert len(run.train_ids) + len(run.val_ids) == 400


def test_a_fixed_vocabulary_refuses_unknown_characters_and_writes_nothing(tmp_path, always_cache):
    data = write_texts(tmp_path, 400)
    root = tmp_path / "cache"
    with pytest.raises(TokenizerError, match="日"):
        cached_corpus(data, "char", CharTokenizer("abc xyz\n"), root)
    assert list(root.iterdir()) == []


def test_a_cache_with_another_vocabulary_is_not_used_for_a_fixed_one(tmp_path, always_cache):
    data = write_texts(tmp_path, 400)
    cached_corpus(data, "char", None, tmp_path / "cache")
    wider = CharTokenizer(ALPHABET + ["Q"])
    got, use = cached_corpus(data, "char", wider, tmp_path / "cache")
    assert not use.reused and got.tokenizer is wider
    np.testing.assert_array_equal(np.asarray(got.ids), wider.encode(open(data[0], encoding="utf-8").read()))


def test_the_training_split_from_the_cache_matches_memory(tmp_path, always_cache, monkeypatch):
    data = write_texts(tmp_path, 3000)
    cached = training_data.training_data(data, "byte", val_split=0.2, cache_dir=tmp_path / "cache")
    assert cached.cache_note.startswith("written: ")
    assert cached.info["token_cache"] == str(only_folder(tmp_path / "cache"))
    monkeypatch.setattr(token_cache, "CACHE_FROM_BYTES", 1 << 40)
    memory = training_data.training_data(data, "byte", val_split=0.2)
    assert memory.cache_note is None
    np.testing.assert_array_equal(np.asarray(cached.train_ids), memory.train_ids)
    np.testing.assert_array_equal(np.asarray(cached.val_ids), memory.val_ids)


def test_a_damaged_prepared_folder_is_one_clear_error(tmp_path):
    (data,) = write_texts(tmp_path, 400)
    folder = tmp_path / "ds"
    build_dataset(folder, [Path(data)], "char", val_split=0.1)
    assert open_prepared(folder).description["tokens"]["count"] == 400
    flip_a_byte(folder)
    with pytest.raises(DataError, match=r"not a usable prepared dataset: its tokens.bin does not have the content"):
        open_prepared(folder)


def test_token_offsets_past_2_to_the_31_work(tmp_path):
    """A sparse file of 2^31 + 64 uint8 tokens: only its last page is real."""
    path, count = tmp_path / "big.bin", (1 << 31) + 64
    tail = np.arange(64, dtype=np.uint8) + 100
    with open(path, "wb") as f:
        f.truncate(count)
        f.seek(count - 64)
        f.write(tail.tobytes())
    ids = open_tokens(path, "uint8", count)                                     # (2^31 + 64,)
    rows = gather_windows(ids, [count - 64, count - 17, 5], 16)                 # (3, 16)
    np.testing.assert_array_equal(rows[0], tail[:16])
    np.testing.assert_array_equal(rows[1], tail[47:63])
    np.testing.assert_array_equal(rows[2], np.zeros(16))


@pytest.mark.parametrize(("vocab", "dtype"), [(2, "uint8"), (256, "uint8"), (257, "uint16"), (65536, "uint16"),
                                              (65537, "uint32")])
def test_the_narrowest_token_type_holds_the_vocabulary(vocab, dtype):
    assert narrowest_dtype(vocab) == np.dtype(dtype)


def test_too_large_a_vocabulary_is_refused():
    with pytest.raises(DataError, match="does not fit"):
        narrowest_dtype(1 << 33)


def mapped_kb(path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split()[0] and len(line.split()) >= 5:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_batches_from_a_token_file_do_not_stay_mapped(tmp_path):
    path, count = tmp_path / "tokens.bin", 16 << 20
    np.arange(count, dtype=np.uint32).astype(np.uint8).tofile(path)
    ids = open_tokens(path, "uint8", count)                                     # (16M,)
    starts = np.arange(0, count - 64, 1 << 16)                                 # (256,) one row per 64 kB
    _ = np.asarray(ids[starts[:, None] + np.arange(64)])                       # a plain read leaves pages mapped
    assert mapped_kb(path) > 0
    rows = gather_windows(ids, starts, 64)                                     # (256, 64)
    assert mapped_kb(path) == 0
    np.testing.assert_array_equal(rows[:, 0], (starts % 256))
    np.testing.assert_array_equal(gather_windows(ids[100:], [5], 3)[0], [105, 106, 107])   # a slice maps again


def test_the_cache_lives_where_the_option_then_the_variable_then_xdg_say(tmp_path, monkeypatch):
    from scratchlm.data.token_cache import CACHE_DIR_ENV, cache_root

    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "scratchlm" / "tokens"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(str(tmp_path / "option")) == tmp_path / "option"
