"""``scratchlm`` as mpirun starts it, except that rank 1 fails at its 4th step (for tests/training/test_mpi.py).

    mpirun -n 2 python tests/mpi_rank_dies.py HOW train DATA [options]

HOW is ``exit`` (the process vanishes: ``os._exit(7)``, as after a crash or the OOM killer)
or ``raise`` (an exception inside the training step, as a bug or a bad read would raise).
"""

from __future__ import annotations

import os
import sys

from scratchlm.cli import main as cli
from scratchlm.training.loop import Trainer

FAILING_RANK, FAILING_STEP = 1, 3


def main() -> int:
    how, argv = sys.argv[1], sys.argv[2:]
    real_step = Trainer._step

    def step(self, *batch):
        if self.group.rank == FAILING_RANK and self.state.step == FAILING_STEP:
            if how == "exit":
                os._exit(7)
            raise RuntimeError(f"rank {FAILING_RANK} fails on purpose at step {FAILING_STEP}")
        return real_step(self, *batch)

    Trainer._step = step
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
