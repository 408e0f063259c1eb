"""scratchlm against PyTorch, side by side in every mode, every measurement in a fresh process.

    python benchmarks/compare_torch.py --configs a,b,c --repeats 3
    python benchmarks/compare_torch.py --configs c,d,e --sides all    # every torch mode, bf16 too
    python benchmarks/compare_torch.py --generate --configs a,c --repeats 3
    python benchmarks/compare_torch.py --configs c --device cuda --json results.json

Each measurement is one child process (``--worker``) that imports only one side
(scratchlm or torch: their thread pools must never share a process), builds the
configuration, times the first step (for scratchlm this includes Numba's compile or
cache load), warms up, then times ``--steps`` steps, synchronising the GPU around
each. The parent alternates the sides (scratchlm, torch, scratchlm, torch, ...),
waits before each process until the CPUs are quiet (``--max-busy``, ``--patience``),
measures again when other processes took more than ``--max-busy`` of the CPUs while
it was timing (``--retries``; see ``machine_load.py``), and reports medians over
processes, the ratio of each scratchlm side's speed to each torch side's, and each process's
peak RSS. The sides (``--sides``): scratchlm in fp32 and with bf16 products
(``scratchlm-bf16``), torch eager, ``torch-compile`` (inductor, default mode) and
``torch-bf16`` (bf16 autocast). Children get
``--threads`` in the OMP/OpenBLAS/MKL/Numba thread variables (and
``torch.set_num_threads``). ``--cold-numba-cache`` points each scratchlm child at an
empty Numba cache, so its first step shows the full compile cost.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from configs import CONFIGS, GENERATE_CONTEXT, GENERATE_TOKENS, GPU_CONFIGS, parse_keys  # noqa: E402
from machine_load import OthersMeter, machine_info, wait_until_quiet  # noqa: E402

# side -> (module, mode): scratchlm in fp32 and with bf16 products; torch in every mode a user would pick
SIDES = {"scratchlm": ("scratch_gpt", "fp32"), "scratchlm-bf16": ("scratch_gpt", "bf16"),
         "torch": ("torch_gpt", "eager"), "torch-compile": ("torch_gpt", "compile"), "torch-bf16": ("torch_gpt", "bf16")}
DEFAULT_SIDES = ("scratchlm", "torch")
GENERATE_SIDES = ("scratchlm", "torch")           # generation runs in fp32 eager on both sides
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ---- the child: one side, one configuration, one process ------------------------------------
def measure(side: str, mode: str, key: str, steps: int, warmup: int, device: str, threads: int) -> dict:
    """Run in a worker process: time ``steps`` training steps (or generations) of one side."""
    start = time.perf_counter()
    module, variant = SIDES[side]
    if module == "torch_gpt":
        import torch

        torch.set_num_threads(threads)
        import torch_gpt as impl
        options = {"mode": variant}
    else:
        import scratch_gpt as impl
        options = {"precision": variant}
    import_s = time.perf_counter() - start
    config = CONFIGS[key]

    if mode == "train":
        runner = impl.Trainer(config, device=device, **options)
        work, sync, tokens = runner.step, runner.synchronize, config.tokens_per_step
    else:
        model = impl.build_decoder(config, GENERATE_CONTEXT, device=device)
        work, sync, tokens = (lambda: impl.decode(model, [0], GENERATE_TOKENS)), (lambda: None), GENERATE_TOKENS

    def timed() -> float:
        t0 = time.perf_counter()
        work()
        sync()
        return time.perf_counter() - t0

    first_s = timed()
    for _ in range(warmup):
        timed()
    others, cpu_start = OthersMeter(), time.process_time()
    others.start()
    times = [timed() for _ in range(steps)]
    others_busy = others.stop()                                      # other processes' share of the CPUs
    cpu_per_wall = (time.process_time() - cpu_start) / sum(times)   # this process's threads at work
    median_s = statistics.median(times)
    return {
        "side": side, "mode": mode, "config": key, "device": device, "threads": threads,
        "import_s": import_s, "first_s": first_s, "median_s": median_s, "times_s": times,
        "tokens_per_s": tokens / median_s, "cpu_per_wall": cpu_per_wall,
        "others_busy": others_busy,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device_memory_mib": impl.device_memory_mib(device),
    }


# ---- the parent: alternate the sides, one process per measurement ----------------------------
def child_env(threads: int, numba_cache_dir: str | None) -> dict:
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    if numba_cache_dir:
        env["NUMBA_CACHE_DIR"] = numba_cache_dir
    return env


def run_worker(side: str, key: str, args) -> dict:
    """One measurement in a fresh process; run again (up to ``--retries`` times) if others were busy."""
    for attempt in range(args.retries + 1):
        record = run_worker_once(side, key, args)
        if record["others_busy"] <= args.max_busy:
            break
        print(f"  ({key} {side}: other processes used {100 * record['others_busy']:.0f}% of the CPUs "
              f"while timing; {'measuring again' if attempt < args.retries else 'kept, marked noisy'})",
              flush=True)
    record["noisy"] = record["others_busy"] > args.max_busy
    return record


def run_worker_once(side: str, key: str, args) -> dict:
    mode = "generate" if args.generate else "train"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--configs", key,
               "--mode-worker", mode, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--device", args.device, "--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as cold_dir:
        cache = cold_dir if (args.cold_numba_cache and is_scratchlm(side)) else None
        busy_before = wait_until_quiet(args.max_busy, args.patience)
        done = subprocess.run(command, env=child_env(args.threads, cache), capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{side} worker for config {key} failed (exit {done.returncode})")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["busy_before"] = busy_before
    return record


def describe(record: dict) -> str:
    """One process's figures on one line."""
    gpu = record["device_memory_mib"]
    return (f"{record['tokens_per_s']:>10,.0f} tok/s  first {record['first_s']:.2f}s  "
            f"RSS {record['peak_rss_mib']:.0f} MiB  CPU/wall {record['cpu_per_wall']:.2f}  "
            f"others {100 * record['others_busy']:.0f}%" + (f"  GPU memory {gpu:.0f} MiB" if gpu else ""))


def is_scratchlm(side: str) -> bool:
    return SIDES[side][0] == "scratch_gpt"


def ratio_pairs(sides: list[str]) -> list[tuple[str, str]]:
    """(scratchlm side, torch side) for every pair measured: the speed ratios the tables show."""
    return [(ours, theirs) for ours in sides if is_scratchlm(ours) for theirs in sides if not is_scratchlm(theirs)]


def summarise(records: list[dict], keys: list[str], sides: list[str]) -> list[dict]:
    """Medians over processes, per configuration and side, and the speed ratio (tokens/s, above 1:
    scratchlm is faster) of every scratchlm side to every torch side."""
    rows = []
    for key in keys:
        row = {"config": key}
        for side in sides:
            mine = [r for r in records if r["config"] == key and r["side"] == side]
            row[side] = {
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in mine),
                "median_s": statistics.median(r["median_s"] for r in mine),
                "first_s": statistics.median(r["first_s"] for r in mine),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
                "device_memory_mib": max((r["device_memory_mib"] or 0.0) for r in mine) or None,
                "processes": len(mine),
                "spread": [f"{r['tokens_per_s']:.0f}{'*' if r.get('noisy') else ''}" for r in mine],
            }
        row["ratios"] = {f"{ours} / {theirs}": row[ours]["tokens_per_s"] / row[theirs]["tokens_per_s"]
                         for ours, theirs in ratio_pairs(sides)}
        if "scratchlm / torch" in row["ratios"]:
            row["ratio"] = row["ratios"]["scratchlm / torch"]
        rows.append(row)
    return rows


def print_table(rows: list[dict], sides: list[str], mode: str) -> None:
    """Two markdown tables: time per step (or generation) and the speed ratios; then first step and memory."""
    unit = "ms/200 tok" if mode == "generate" else "ms/step"
    pairs = [f"{ours} / {theirs}" for ours, theirs in ratio_pairs(sides)]
    head = ["config", *(f"{side} {unit}" for side in sides), *pairs]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [CONFIGS[row["config"]].describe(), *(f"{1000 * row[side]['median_s']:.1f}" for side in sides),
                 *(f"{row['ratios'][pair]:.2f}" for pair in pairs)]
        print("| " + " | ".join(cells) + " |")
    print()
    head = ["config", *(f"{side} first s, RSS MiB" for side in sides)]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [row["config"], *(f"{row[side]['first_s']:.2f}, {row[side]['peak_rss_mib']:.0f}" for side in sides)]
        print("| " + " | ".join(cells) + " |")
    for row in rows:
        spreads = "; ".join(f"{side} " + ", ".join(row[side]["spread"]) for side in sides)
        print(f"  {row['config']}: tokens/s per process: {spreads}  (* = other work ran meanwhile)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", help="comma-separated keys among a,b,c,d,e (e: GPT-2 small's shape); "
                        "default a,b,c, or c,d,e with --device cuda")
    parser.add_argument("--repeats", type=int, default=3, help="processes per side and configuration")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (generations) per process")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--generate", action="store_true",
                        help=f"batch-1 greedy generation of {GENERATE_TOKENS} tokens with a KV cache")
    parser.add_argument("--sides", default=",".join(DEFAULT_SIDES),
                        help=f"comma-separated among {', '.join(SIDES)}, or all (every one this machine can "
                        "run: scratchlm-bf16 needs bf16 units and MKL or oneDNN)")
    parser.add_argument("--scratchlm-only", action="store_true", help="skip torch even if installed")
    parser.add_argument("--cold-numba-cache", action="store_true",
                        help="give each scratchlm process an empty Numba cache (first step = full compile)")
    parser.add_argument("--max-busy", type=float, default=0.10,
                        help="the share of the CPUs other work may use before and while a process is timed")
    parser.add_argument("--patience", type=float, default=120.0, help="the longest such wait, in seconds")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure again when other processes used more than --max-busy while timing")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement to OUT")
    parser.add_argument("--worker", choices=tuple(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--mode-worker", choices=("train", "generate"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.repeats, args.steps, args.threads) < 1 or min(args.warmup, args.retries) < 0:
        parser.error("--repeats, --steps and --threads must be at least 1, --warmup and --retries at least 0")
    if args.configs is None:
        args.configs = ",".join(GPU_CONFIGS if args.device == "cuda" else ("a", "b", "c"))
    try:
        args.keys = parse_keys(args.configs)
    except ValueError as error:
        parser.error(str(error))
    if not args.worker:
        args.sides = choose_sides(parser, args)
    return args


def choose_sides(parser, args) -> list[str]:
    """The sides to measure: --sides, less torch's where it is not installed (or --scratchlm-only)."""
    asked = [side.strip() for side in args.sides.split(",") if side.strip()]
    if asked == ["all"]:
        from scratchlm.kernels import bf16

        asked = [side for side in SIDES if side != "scratchlm-bf16" or (bf16.available() and args.device == "cpu")]
    unknown = [side for side in asked if side not in SIDES]
    if unknown or not asked:
        parser.error(f"--sides: unknown {unknown or args.sides!r}; choose among {', '.join(SIDES)}, or all")
    if args.generate and set(asked) - set(GENERATE_SIDES):
        parser.error(f"--generate measures {' and '.join(GENERATE_SIDES)} only")
    if "scratchlm-bf16" in asked and args.device != "cpu":
        parser.error("--sides scratchlm-bf16: bf16 products run on the CPU only (--device cpu)")
    if "scratchlm-bf16" in asked:
        from scratchlm.kernels import bf16

        if not bf16.available():
            parser.error(f"--sides scratchlm-bf16: {bf16.unavailable_reason()}")
    if args.scratchlm_only or importlib.util.find_spec("torch") is None:
        asked = [side for side in asked if is_scratchlm(side)]
    return asked


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        record = measure(args.worker, args.mode_worker, args.keys[0], args.steps, args.warmup,
                         args.device, args.threads)
        print(json.dumps(record))
        return
    sides = args.sides
    mode = "generate" if args.generate else "train"
    info = machine_info(HERE.parent)
    print(f"# {mode} on {args.device}: {info['cpu']} ({info['cpus']} cpus), threads {args.threads}, "
          f"commit {info['commit']}, {info['date']}, load {info['load'][0]:.2f}", flush=True)
    records = []
    for key in args.keys:
        for repeat in range(args.repeats):
            for side in sides:
                record = run_worker(side, key, args)
                records.append(record)
                print(f"  {key} {side:14s} #{repeat + 1}: {describe(record)}", flush=True)
    rows = summarise(records, args.keys, sides)
    print_table(rows, sides, mode)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "mode": mode, "args": vars(args),
                                               "rows": rows, "records": records}, indent=1))


if __name__ == "__main__":
    main()
