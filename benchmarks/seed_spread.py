"""How much a tutorial run's result depends on its seed: one ``scratchlm train`` per seed.

    python benchmarks/seed_spread.py --step 2 --seeds 42,1,2,3,4
    python benchmarks/seed_spread.py --step 7 --seeds 42,1,2,3,4 --json step7.json
    python benchmarks/seed_spread.py --step 7 --seeds 1,2 -- --warmup-steps 40   # a candidate default

Each seed is a separate process running the tutorial's command for that step (its data and
shape, every other setting at its default, ``--quiet``) plus the options after ``--``. The
final validation loss is the last evaluation's (``metrics.jsonl``); the table also shows the
validation loss after a few epochs, where a run that is slow to leave the unigram/bigram
plateau (about 2.45 on Shakespeare) shows. Prints the mean and the spread (max - min).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = {
    2: ["data/samples/sample_data.txt", "--model-dim", "64", "--num-heads", "2", "--num-layers", "2",
        "--epochs", "5", "--batch-size", "16"],
    7: ["data/raw/shakespeare/shakespeare100k.txt", "--model-dim", "256", "--num-heads", "8",
        "--num-layers", "6", "--epochs", "20", "--batch-size", "32"],
}
SHOWN_EPOCHS = {2: (1, 3), 7: (1, 5, 10)}


def run_seed(step: int, seed: int, extra: list[str], folder: Path) -> dict:
    """Train one seed; return its validation loss per epoch and its wall time."""
    output = folder / f"seed{seed}"
    command = [sys.executable, "-m", "scratchlm", "train", *STEPS[step], "--seed", str(seed),
               "--output-dir", str(output), "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    by_epoch = {r["epoch"]: r["val_loss"] for r in records if r.get("end_of_epoch")}
    return {"seed": seed, "final": records[-1]["val_loss"], "best": min(r["val_loss"] for r in records),
            "by_epoch": by_epoch, "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", type=int, choices=sorted(STEPS), default=2)
    parser.add_argument("--seeds", default="42,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--json", metavar="OUT", help="also write the results to OUT")
    parser.add_argument("extra", nargs="*", help="options for every run, after --")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    shown = SHOWN_EPOCHS[args.step]
    print(f"# tutorial step {args.step}, extra options: {' '.join(args.extra) or '(none)'}", flush=True)
    print("| seed | final val loss | best | " + " | ".join(f"epoch {e}" for e in shown) + " | wall s |")
    print("|---" * (len(shown) + 4) + "|", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="seed_spread_") as tmp:
        for seed in seeds:
            r = run_seed(args.step, seed, args.extra, Path(tmp))
            results.append(r)
            epochs = " | ".join(f"{r['by_epoch'].get(e, float('nan')):.4f}" for e in shown)
            print(f"| {seed} | {r['final']:.4f} | {r['best']:.4f} | {epochs} | {r['wall_s']} |", flush=True)
    finals = [r["final"] for r in results]
    mean = statistics.fmean(finals)
    print(f"mean {mean:.4f}, spread (max - min) {max(finals) - min(finals):.4f}, "
          f"min {min(finals):.4f}, max {max(finals):.4f} over {len(finals)} seeds")
    if args.json:
        Path(args.json).write_text(json.dumps({"step": args.step, "extra": args.extra, "results": results}, indent=1))


if __name__ == "__main__":
    main()
