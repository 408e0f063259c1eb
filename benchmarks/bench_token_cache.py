"""Your own text at size: tokenizing speed, time to the first step and peak RSS, cold and warm cache.

    python benchmarks/bench_token_cache.py                    # 10 MB, 100 MB and 1 GB corpora
    python benchmarks/bench_token_cache.py --sizes 10,100 --work /tmp/tc

Each corpus is ``data/raw/shakespeare/shakespeare100k.txt`` repeated to the size, written
under ``--work`` (about 2.2x the largest size on disk, with its token cache). Every figure
comes from a process of its own, on one core (``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1``):

- tokenizing: ``tokenize_to_file`` of the corpus into a token file (char tokens: the
  vocabulary pass and the ids pass), corpus MB per second of wall time;
- cold and warm: ``benchmarks/first_step.py`` (time since the process started, and peak
  RSS, at the end of the first training step) for ``train BIG --model-dim 64 --num-layers 2``
  with an empty ``--cache-dir``, then again with the cache that run left.

Corpora under ``CACHE_FROM_BYTES`` (32 MB) are tokenized in memory both times. The table
is printed as Markdown for ``docs/performance.md``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO / "data" / "raw" / "shakespeare" / "shakespeare100k.txt"
MODEL = ["--model-dim", "64", "--num-heads", "2", "--num-layers", "2", "--max-steps", "1"]
ONE_CORE = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
TOKENIZE = """
import sys, time
from pathlib import Path
from scratchlm.data.corpus import tokenize_to_file
source, target = Path(sys.argv[1]), Path(sys.argv[2])
start = time.perf_counter()
made = tokenize_to_file([source], target, "char")
print(f"{source.stat().st_size / 1e6 / (time.perf_counter() - start):.0f} {made.tokens}")
"""


def corpus(work: Path, megabytes: int) -> Path:
    """shakespeare100k.txt repeated to ``megabytes`` MB (whole copies, then a cut at a line end)."""
    path = work / f"shakespeare{megabytes}mb.txt"
    size = megabytes * 1_000_000
    if path.exists() and path.stat().st_size == size:
        return path
    unit = SHAKESPEARE.read_bytes()
    with open(path, "wb") as f:
        for _ in range(size // len(unit)):
            f.write(unit)
        f.write(unit[: size % len(unit)])
    return path


def run(args: list[str]) -> str:
    env = dict(os.environ, **ONE_CORE)
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stderr[-2000:]}")
    return done.stdout


def first_step(data: Path, cache: Path, out: Path) -> tuple[float, float]:
    """(seconds from process start to the end of the first step, peak RSS in MB)."""
    said = run([str(REPO / "benchmarks" / "first_step.py"), str(REPO), "train", str(data), *MODEL,
                "--cache-dir", str(cache), "--output-dir", str(out), "--quiet"])
    found = re.search(r"after ([\d.]+) s; peak RSS (\d+) MB", said)
    if not found:
        sys.exit(f"no first-step line in:\n{said[-2000:]}")
    return float(found.group(1)), float(found.group(2))


def measure(work: Path, megabytes: int) -> dict:
    data = corpus(work, megabytes)
    token_file = work / "tokens.bin"
    mb_per_s, tokens = run(["-c", TOKENIZE, str(data), str(token_file)]).split()
    token_file.unlink()
    cache = work / f"cache-{megabytes}"
    runs = [work / f"run-{megabytes}-cold", work / f"run-{megabytes}-warm"]
    for folder in (cache, *runs):
        shutil.rmtree(folder, ignore_errors=True)
    cold, warm = first_step(data, cache, runs[0]), first_step(data, cache, runs[1])
    for folder in (cache, *runs):
        shutil.rmtree(folder, ignore_errors=True)
    return {"MB": megabytes, "tokens": int(tokens), "MB/s": int(mb_per_s), "cold": cold, "warm": warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="corpus sizes in MB, comma-separated")
    parser.add_argument("--work", default="/tmp/scratchlm-bench-token-cache", help="folder for corpora and caches")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print("| corpus | tokens | tokenizing | first step, cold | peak RSS, cold | first step, warm | peak RSS, warm |")
    print("|---|---|---|---|---|---|---|")
    started = time.perf_counter()
    for megabytes in map(int, args.sizes.split(",")):
        r = measure(work, megabytes)
        print(f"| {r['MB']:,} MB | {r['tokens']:,} | {r['MB/s']} MB/s | {r['cold'][0]:.1f} s | {r['cold'][1]:,.0f} MB "
              f"| {r['warm'][0]:.1f} s | {r['warm'][1]:,.0f} MB |", flush=True)
    print(f"\n({time.perf_counter() - started:.0f} s in all; corpora kept in {work})")


if __name__ == "__main__":
    main()
