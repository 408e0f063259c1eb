"""Time and peak RSS at the end of the first training step of ``scratchlm train ARGS...``.

    python benchmarks/first_step.py SRC train BIG.txt --model-dim 64 --num-layers 2 --max-steps 1

SRC is the checkout whose ``scratchlm`` runs (put first on sys.path, so two checkouts can be
compared); the process exits at the first step, before any evaluation or checkpoint.
"""

import os
import resource
import sys
import time

t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from scratchlm.cli import main as cli  # noqa: E402
from scratchlm.training import progress  # noqa: E402


class FirstStep(progress.Reporter):
    def step(self, *args):
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # kB on Linux
        print(f"first step done after {time.perf_counter() - t0:.1f} s; peak RSS {rss_mb:.0f} MB", flush=True)
        os._exit(0)


progress.make_reporter = lambda *args, **kwargs: FirstStep()
sys.exit(cli.main(sys.argv[2:]))
