"""DATA as files, folders and globs, and the vectorised tokenizer against the per-character one."""

from __future__ import annotations

import numpy as np
import pytest
from text_cases import per_character_ids

from scratchlm.data import corpus
from scratchlm.data.corpus import read_corpus
from scratchlm.data.sources import describe_sources, resolve_sources
from scratchlm.data.tokenizer import ByteTokenizer, CharTokenizer
from scratchlm.errors import DataError, TokenizerError

ALPHABET = "abc xyz\n\té€日本🎉ÿ"      # 1- to 4-byte characters


def random_text(seed: int, n: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(ALPHABET), n))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_ids_match_the_per_character_encode_across_chunk_boundaries(tmp_path, monkeypatch, seed, chunk):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", chunk)   # every small chunk size splits some character
    monkeypatch.setattr(corpus._utf8_chunks, "__defaults__", (chunk,))
    text = random_text(seed, 300)
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    got = read_corpus([path])
    old = CharTokenizer.from_text(text)
    assert got.tokenizer.chars == old.chars
    np.testing.assert_array_equal(got.ids, per_character_ids(old.chars, text))
    assert got.ids.dtype == np.int32 and got.characters == len(text)
    np.testing.assert_array_equal(read_corpus([path], "byte").ids, ByteTokenizer().encode(text))


def test_ascii_and_wide_chunks_mix(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus._utf8_chunks, "__defaults__", (8,))
    text = "plain ascii here " * 3 + "naïve ☃ " + "more ascii " * 3
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    np.testing.assert_array_equal(read_corpus([path]).ids, per_character_ids(sorted(set(text)), text))


def test_a_fixed_vocabulary_maps_and_names_unknown_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcab", encoding="utf-8")
    vocab = CharTokenizer("abcd")
    np.testing.assert_array_equal(read_corpus([path], tokenizer=vocab).ids, [0, 1, 2, 0, 1])
    path.write_text("abz☃", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"2 character\(s\).*'z'"):
        read_corpus([path], tokenizer=vocab)


def test_files_join_in_order_with_a_newline_only_where_one_is_missing(tmp_path):
    (tmp_path / "a.txt").write_text("one\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("two", encoding="utf-8")
    (tmp_path / "c.txt").write_text("three", encoding="utf-8")
    got = read_corpus([tmp_path / "b.txt", tmp_path / "a.txt", tmp_path / "c.txt"])
    assert got.tokenizer.decode(got.ids) == "two\none\nthree"
    assert got.info()["files"] == 3 and got.info()["path"].endswith("c.txt")


def test_a_folder_gives_its_text_files_recursively_sorted(tmp_path):
    for name in ["b.txt", "a/z.md", "a/y.rst", "img.png", ".hidden/x.txt", "a/.notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name + "\n", encoding="utf-8")
    names = [p.relative_to(tmp_path).as_posix() for p in resolve_sources([tmp_path])]
    assert names == ["a/y.rst", "a/z.md", "b.txt"]


def test_a_glob_gives_the_matching_files_sorted_and_each_file_once(tmp_path):
    for name in ["b.txt", "a.txt", "c.md"]:
        (tmp_path / name).write_text(name, encoding="utf-8")
    found = resolve_sources([str(tmp_path / "*.txt"), tmp_path / "a.txt", str(tmp_path / "**" / "*.md")])
    assert [p.name for p in found] == ["a.txt", "b.txt", "c.md"]


def test_describe_sources_lists_a_few():
    paths = [f"f{i}.txt" for i in range(5)]
    assert describe_sources(paths) == "f0.txt, f1.txt, f2.txt and 2 more"


def test_a_folder_without_text_or_a_pattern_without_match_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="empty holds no text files"):
        resolve_sources([tmp_path / "empty"])
    with pytest.raises(DataError, match=r"no file matches the pattern .*\*\.nothing"):
        resolve_sources([str(tmp_path / "*.nothing")])


def test_a_bad_byte_is_named_with_its_offset_in_a_later_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus._utf8_chunks, "__defaults__", (16,))
    path = tmp_path / "bad.txt"
    path.write_bytes(b"x" * 40 + b"\xff" + b"y" * 10)
    with pytest.raises(DataError, match=r"bad.txt is not UTF-8 text \(byte 40 is 0xff\)"):
        read_corpus([path])
    path.write_bytes(b"x" * 10 + "é".encode()[:1])          # cut off in the middle of a character
    with pytest.raises(DataError, match=r"byte 10 is 0xc3"):
        read_corpus([path])


def test_utf16_and_blank_corpora_are_refused(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_bytes("hello world".encode("utf-16"))
    with pytest.raises(DataError, match="looks like UTF-16LE"):
        read_corpus([path])
    (tmp_path / "a.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="all 2 files of DATA is empty"):
        read_corpus([tmp_path / "a.txt", tmp_path / "b.txt"])


def test_progress_goes_from_zero_to_every_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus._utf8_chunks, "__defaults__", (10,))
    (tmp_path / "a.txt").write_text("x" * 25, encoding="utf-8")
    (tmp_path / "b.txt").write_text("y" * 5, encoding="utf-8")
    calls = []
    read_corpus([tmp_path], progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 30) and calls[-1] == (30, 30)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
