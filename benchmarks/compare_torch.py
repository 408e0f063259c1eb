"""scratchlm against PyTorch eager, side by side, every measurement in a fresh process.

    python benchmarks/compare_torch.py --configs a,b,c --repeats 3
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
processes, the ratio scratchlm/torch, and each process's peak RSS. Children get
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

SIDES = ("scratchlm", "torch")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ---- the child: one side, one configuration, one process ------------------------------------
def measure(side: str, mode: str, key: str, steps: int, warmup: int, device: str, threads: int) -> dict:
    """Run in a worker process: time ``steps`` training steps (or generations) of one side."""
    start = time.perf_counter()
    if side == "torch":
        import torch

        torch.set_num_threads(threads)
        import torch_gpt as impl
    else:
        import scratch_gpt as impl
    import_s = time.perf_counter() - start
    config = CONFIGS[key]

    if mode == "train":
        runner = impl.Trainer(config, device=device)
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
        cache = cold_dir if (args.cold_numba_cache and side == "scratchlm") else None
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


def summarise(records: list[dict], keys: list[str], sides: list[str]) -> list[dict]:
    """Medians over processes, per configuration and side, and the ratio scratchlm/torch."""
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
        if "torch" in row:
            row["ratio"] = row["scratchlm"]["tokens_per_s"] / row["torch"]["tokens_per_s"]
        rows.append(row)
    return rows


def print_table(rows: list[dict], sides: list[str], mode: str) -> None:
    unit = "ms/200 tok" if mode == "generate" else "ms/step"
    head = ["config"]
    for side in sides:
        head += [f"{side} tok/s", f"{side} {unit}", f"{side} first s", f"{side} RSS MiB"]
    if "torch" in sides:
        head.append("ratio")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        cells = [CONFIGS[row["config"]].describe()]
        for side in sides:
            s = row[side]
            cells += [f"{s['tokens_per_s']:,.0f}", f"{1000 * s['median_s']:.1f}",
                      f"{s['first_s']:.2f}", f"{s['peak_rss_mib']:.0f}"]
        if "ratio" in row:
            cells.append(f"{row['ratio']:.2f}")
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
    parser.add_argument("--scratchlm-only", action="store_true", help="skip torch even if installed")
    parser.add_argument("--cold-numba-cache", action="store_true",
                        help="give each scratchlm process an empty Numba cache (first step = full compile)")
    parser.add_argument("--max-busy", type=float, default=0.10,
                        help="the share of the CPUs other work may use before and while a process is timed")
    parser.add_argument("--patience", type=float, default=120.0, help="the longest such wait, in seconds")
    parser.add_argument("--retries", type=int, default=2,
                        help="measure again when other processes used more than --max-busy while timing")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement to OUT")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
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
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        record = measure(args.worker, args.mode_worker, args.keys[0], args.steps, args.warmup,
                         args.device, args.threads)
        print(json.dumps(record))
        return
    sides = ["scratchlm"]
    if not args.scratchlm_only and importlib.util.find_spec("torch") is not None:
        sides.append("torch")
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
                print(f"  {key} {side:9s} #{repeat + 1}: {describe(record)}", flush=True)
    rows = summarise(records, args.keys, sides)
    print_table(rows, sides, mode)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "mode": mode, "args": vars(args),
                                               "rows": rows, "records": records}, indent=1))


if __name__ == "__main__":
    main()
