"""A run's output folder: what it holds, who may write into it, and what --overwrite replaces.

A training run never writes over something it was not asked to replace:

- a new run refuses a folder that holds a run, unless ``--overwrite``;
- a resumed run refuses a folder that holds *another* run (one its checkpoint does not come
  from), unless ``--overwrite``, which then replaces that run whole;
- a resumed run in its own folder refuses checkpoints saved *after* the one it resumes from
  (a better ``final_model.pt``, later epochs), unless ``--overwrite``, which deletes just those,
  so the folder keeps one history;
- one training at a time: the run holds an exclusive ``flock`` on ``LOCK_FILE`` in the folder
  from before it deletes or writes anything until it ends. The kernel drops the lock when the
  process ends, however it ends, so a killed run never leaves the folder locked.

The checks run twice: in ``prepare`` (``job.check_output_dir``, before anything is built, so a
mistake costs nothing) and again once the lock is held (another run may have written in between).
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from scratchlm.checkpoint import is_temporary_file, saved_step
from scratchlm.errors import OptionError, OutputDirBusy

RUN_FILES = ("final_model.pt", "interrupted.pt", "config.yaml", "training_log.txt", "metrics.jsonl", "loss_curve.svg")
RUN_PATTERNS = ("checkpoint_epoch_*.pt", "checkpoint_step_*.pt")
CHECKPOINT_FILES = ("final_model.pt", "interrupted.pt")
LOCK_FILE = ".scratchlm-train.lock"
MAX_NAMED = 4                  # files named in one error line


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run resumes from and the optimizer step it was saved at."""

    path: Path
    step: int

    def in_folder(self, folder: Path) -> bool:
        """Whether ``folder`` is the one this checkpoint lives in (the run's own folder)."""
        try:
            return os.path.samefile(self.path.parent, folder)
        except OSError:
            return False


def run_files(path: Path) -> list[Path]:
    """The files of an earlier run in ``path`` (what --overwrite replaces)."""
    found = [path / name for name in RUN_FILES if (path / name).exists()]
    for pattern in RUN_PATTERNS:
        found += sorted(path.glob(pattern))
    return found


def temporary_files(path: Path) -> list[Path]:
    """Temporary files that a killed write of a run file left behind (never a run of their own)."""
    names = (*RUN_FILES, *RUN_PATTERNS)
    return sorted(p for p in path.glob(".*.tmp") if is_temporary_file(p, names))


def newer_checkpoints(path: Path, resume: ResumePoint) -> list[tuple[int, Path]]:
    """(step, file) for each checkpoint in ``path`` saved after the step ``resume`` starts from."""
    candidates = [path / name for name in CHECKPOINT_FILES if (path / name).exists()]
    for pattern in RUN_PATTERNS:
        candidates += path.glob(pattern)
    found = []
    for candidate in candidates:
        try:
            if os.path.samefile(candidate, resume.path):
                continue
        except OSError:                          # gone since the listing: nothing to replace
            continue
        step = saved_step(candidate)
        if step is not None and step > resume.step:
            found.append((step, candidate))
    # final_model.pt is a link to the best epoch's checkpoint: at one step, name the checkpoint last (newest)
    return sorted(found, key=lambda item: (item[0], item[1].name != "final_model.pt", item[1].name))


def _names(paths) -> str:
    names = sorted(p.name for p in paths)
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    return ", ".join(names[:MAX_NAMED]) + more


def check_existing_run(path: Path, resume: ResumePoint | None, overwrite: bool) -> None:
    """What ``path`` already holds may be replaced only with --overwrite (see the module docstring)."""
    if overwrite or not path.is_dir():
        return
    if resume is not None and resume.in_folder(path):
        newer = newer_checkpoints(path, resume)
        if newer:
            last_step, last = newer[-1]
            raise OptionError(
                f"resuming from {resume.path} (step {resume.step}) would replace the later checkpoints in {path} "
                f"({_names(p for _, p in newer)}; up to step {last_step}) and their history: resume from {last} "
                "to go on, pass --overwrite to discard them, or choose another --output-dir")
        return
    old = run_files(path)
    if not old:
        return
    if resume is None:
        raise OptionError(f"{path} already holds a training run ({old[0].name}): pass --overwrite to replace it, "
                          "--resume-from to continue it, or choose another --output-dir")
    raise OptionError(f"--output-dir {path} already holds another training run ({old[0].name}), not the one "
                      f"{resume.path} comes from: pass --overwrite to replace it, or choose another --output-dir "
                      f"(without one, a resumed run stays in {resume.path.parent})")


def files_to_replace(path: Path, resume: ResumePoint | None, overwrite: bool) -> list[Path]:
    """What to delete before the run writes: a killed write's temporary files always (the lock says no
    training is writing here), and with --overwrite the run files it replaces."""
    doomed = temporary_files(path)
    if not overwrite:
        return doomed
    if resume is not None and resume.in_folder(path):
        return [p for _, p in newer_checkpoints(path, resume)] + doomed
    return run_files(path) + doomed


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``LOCK_FILE`` in a run's folder, held for the whole run."""

    def __init__(self, folder: Path):
        self.path, self.file = folder / LOCK_FILE, None
        while self.file is None:
            handle = open(self.path, "a+")      # held open for the whole run
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle)
                handle.close()
                raise OutputDirBusy(f"--output-dir {folder} is in use: another training{holder} holds it; wait "
                                    "for it to end, or choose another --output-dir") from None
            except OSError as exc:
                handle.close()
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    return                       # a file system without locks: train unlocked rather than not at all
                raise
            if _same_file(handle, self.path):
                self.file = handle
            else:                                # the holder removed the file as we opened it: lock the new one
                handle.close()
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order, see ``_same_file``)."""
        if self.file is not None:
            self.path.unlink(missing_ok=True)
            self.file.close()
            self.file = None


def _read_holder(handle) -> str:
    handle.seek(0)
    pid = handle.read(32).strip()
    return f" (process {pid})" if pid.isdigit() else ""


def _same_file(handle, path: Path) -> bool:
    """Whether the locked file is still the one at ``path`` (a releasing run unlinks it first)."""
    try:
        here, there = os.fstat(handle.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def claim_output_dir(path: Path, resume: ResumePoint | None, overwrite: bool) -> OutputLock:
    """Make the folder, lock it, check again what it holds, and delete what this run replaces.
    Returns the lock, to release when the run ends."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(path)
    except OSError as exc:
        raise OptionError(f"cannot write to --output-dir {path}: {exc.strerror or exc}") from exc
    try:
        check_existing_run(path, resume, overwrite)
        for old in files_to_replace(path, resume, overwrite):
            old.unlink(missing_ok=True)
    except OSError as exc:
        lock.release()
        raise OptionError(f"cannot write to --output-dir {path}: {exc.strerror or exc}") from exc
    except BaseException:
        lock.release()
        raise
    return lock
