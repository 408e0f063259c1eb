"""Tokenizing speed of ``read_corpus`` (DATA -> int32 ids) on corpora of the shipped Shakespeare.

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 pytest benchmarks/bench_tokenize.py
    pytest benchmarks/bench_tokenize.py -m "not slow"     (without the 100 MB corpus)

The corpus (shakespeare100k.txt repeated to 10 or 100 MB, plain ASCII; or a mixed
Greek/Japanese text, every chunk multi-byte) is built in pytest's tmp folder, never in
the repository. ``extra_info`` holds MB/s from the median round; the timing is never
asserted, only that the ids match the corpus.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchlm.data.corpus import read_corpus

SHAKESPEARE = Path(__file__).resolve().parents[1] / "data" / "raw" / "shakespeare" / "shakespeare100k.txt"
WIDE = "Ἐν ἀρχῇ ἦν ὁ λόγος 日本語のテキスト\n"


def build(folder: Path, name: str, megabytes: int) -> Path:
    unit = SHAKESPEARE.read_bytes() if name == "ascii" else WIDE.encode("utf-8")
    size = megabytes * 1_000_000
    path = folder / f"{name}{megabytes}.txt"
    data = (unit * (size // len(unit) + 1))[:size]
    path.write_bytes(data[: len(data.decode("utf-8", errors="ignore").encode("utf-8"))])  # whole characters
    return path


@pytest.mark.parametrize("name, megabytes, kind", [
    ("ascii", 10, "char"), ("ascii", 10, "byte"), ("wide", 10, "char"),
    pytest.param("ascii", 100, "char", marks=pytest.mark.slow),
])
def test_tokenize(benchmark, tmp_path, name, megabytes, kind):
    path = build(tmp_path, name, megabytes)
    corpus = benchmark.pedantic(read_corpus, args=([path], kind), rounds=3, iterations=1)
    assert corpus.characters > 0 and len(corpus.ids) > 0
    stats = getattr(benchmark.stats, "stats", None)      # None under --benchmark-disable
    if stats is not None and stats.median > 0:
        benchmark.extra_info["MB_per_s"] = round(path.stat().st_size / 1e6 / stats.median, 1)
