"""Every error a user can fix, the two ways a training run ends early, and API misuse.

``scratchlm.cli`` turns every ``UserError`` into one line on stderr and exit code 2; the
library itself never prints or exits. Each error says what is wrong and how to fix it.
``ParameterOwnershipError`` is not a ``UserError``: it reports calling code that misuses
the Python API (a bug in that code, not bad input), so it stays a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (bad input, bad option, bad file). The message says how."""


class DataError(UserError):
    """The training or evaluation text cannot be used."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, corrupted or not a scratchlm checkpoint."""


class TokenizerError(UserError):
    """Text holds characters the model's vocabulary lacks."""


class MissingExtra(UserError):
    """A feature needs an optional extra that is not installed (``pip install 'scratchlm[hf]'``)."""


class OptionError(UserError):
    """A command-line option or config value is out of range."""


class OutputDirBusy(OptionError):
    """Another training holds the lock on the --output-dir this run wants."""


class ConfigError(UserError, ValueError):
    """A model configuration that cannot be built; the message says how to fix it."""


class DeviceError(UserError, RuntimeError):
    """A device was asked for that this machine cannot provide."""


class MPIUnavailable(UserError):
    """Started by an MPI launcher, but mpi4py or the MPI library cannot be loaded."""


class InsufficientMemory(UserError):
    """A model (or a training run of it) needs more memory than the machine has available."""


class OutputWriteError(UserError):
    """A file of a run could not be written (a full disk, a lost mount); the message says what was kept."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the last good checkpoints are kept."""


class TrainingInterrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: the run stopped at a step boundary and saved a resumable checkpoint."""

    def __init__(self, checkpoint, step: int, signum: int = 2):
        super().__init__(f"training interrupted at step {step}: {checkpoint} continues it "
                         "(--resume-from, or resume_from= in Python)")
        self.checkpoint, self.step, self.signum = checkpoint, step, signum


class TrainingAborted(KeyboardInterrupt):
    """A second stop signal: the run ends at once, without a checkpoint (a KeyboardInterrupt, as a
    second Ctrl-C always was, so nothing on the way out mistakes it for an error)."""

    def __init__(self, signum: int):
        super().__init__(f"aborted by signal {signum}")
        self.signum = signum


class ParameterOwnershipError(RuntimeError):
    """A parameter's data or grad was rebound away from the optimizer's flat buffers that own it."""
