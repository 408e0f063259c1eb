"""Checkpoints: one self-contained safetensors file per save, written atomically.

Layout of a file:

- tensors ``<param name>`` (e.g. ``wte.weight``, ``blocks.0.attn.qkv.weight``): the model,
  with Linear weights stored (out, in) as in PyTorch, so ``safetensors.torch.load_file``
  gives a state dict that a PyTorch port of the model loads unchanged;
- tensors ``optimizer.m``, ``optimizer.v``: AdamW's moments over the flat parameter buffer
  (only in training checkpoints);
- metadata (strings): ``format`` = ``scratchlm-checkpoint``, ``format_version``, and JSON
  for ``config`` (GPTConfig), ``tokenizer``, ``train_state`` (step, epoch, RNG states,
  metrics, settings...) and ``optimizer`` (step count, hyperparameters).

safetensors never unpickles, so opening a checkpoint never runs code. Writes go to a
temporary file in the same folder that is then renamed over the target: a crash leaves
the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchlm import backend
from scratchlm.checkpoint_header import FORMAT, FORMAT_VERSION, OPTIMIZER_PREFIX, read_header
from scratchlm.errors import CheckpointError, UserError
from scratchlm.limits import check_regular_file
from scratchlm.model import GPT, GPTConfig


@dataclass
class Checkpoint:
    config: GPTConfig
    tokenizer: object
    weights: dict                      # param name -> np.ndarray
    optimizer_state: dict | None = None  # {"m", "v", "step", ...} or None
    train_state: dict = field(default_factory=dict)
    dtype: str = "float32"

    def build_model(self, device: str = "cpu", dtype=None) -> GPT:
        """A GPT with these weights, on ``device`` ("cpu" or "cuda")."""
        model = GPT(self.config, dtype=dtype or self.dtype)
        model.load_state_dict(self.weights)
        return model.to(device)


def save_checkpoint(path, model: GPT, tokenizer, optimizer=None, train_state: dict | None = None) -> Path:
    """Write ``model`` (+ optimizer state and training state) to ``path`` atomically."""
    path = Path(path)
    tensors = {name: np.ascontiguousarray(backend.to_numpy(a)) for name, a in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "tokenizer": json.dumps(tokenizer.to_dict()),
        "dtype": str(model.dtype),
        "train_state": json.dumps(train_state or {}),
    }
    if optimizer is not None:
        state = optimizer.state_dict()
        tensors[OPTIMIZER_PREFIX + "m"] = np.ascontiguousarray(backend.to_numpy(state["m"]))
        tensors[OPTIMIZER_PREFIX + "v"] = np.ascontiguousarray(backend.to_numpy(state["v"]))
        meta["optimizer"] = json.dumps({"step": int(state["step"])})
    from safetensors.numpy import save

    write_atomically(path, save(tensors, metadata=meta))
    return path


def new_file_mode() -> int:
    """The permissions open() would give a new file (mkstemp's temporary files are 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _mode_for(path: Path) -> int:
    """An existing file keeps its permission bits (a 0600 file stays private); a new one gets open()'s."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return new_file_mode()


def sync_folder(folder: Path) -> None:
    """fsync a folder, so that a rename into it survives a power cut (the new name lives in the folder)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):   # some file systems cannot sync a folder
            raise
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text is written as UTF-8) to ``path`` so that a reader sees the old file or the
    whole new one, never a half-written one: a temporary file beside it, flushed to disk, renamed
    over it, then the folder synced. An existing file keeps its permissions, a new one gets those
    open() would give it; the temporary file goes on any error, and an OSError names ``path``."""
    path = Path(path)
    data = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            exc.filename = str(path)     # name the file being written, not the temporary one (or none)
        raise
    sync_folder(path.parent)


def is_temporary_file(path: Path, names) -> bool:
    """Whether ``path`` is a temporary file that a write of one of ``names`` (fnmatch patterns) left
    behind when killed: ``.<name>.<anything>.tmp``."""
    name = path.name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    target = name[1:-len(".tmp")].rsplit(".", 1)[0]
    return any(fnmatch.fnmatchcase(target, pattern) for pattern in names)


def saved_step(path) -> int | None:
    """The optimizer step a training checkpoint was saved at, read from its header alone (no tensor
    is loaded); None for a file that is not a readable scratchlm training checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
        step = json.loads(meta["train_state"])["state"]["step"] if meta.get("format") == FORMAT else None
    except Exception:  # a probe: any damaged or foreign file simply has no step
        return None
    return step if isinstance(step, int) else None


WEIGHTS_ONLY = "weights_only"        # train_state key of a checkpoint whose AdamW moments were dropped


def drop_optimizer_state(path) -> bool:
    """Rewrite the training checkpoint ``path`` without AdamW's moments (two thirds of its bytes),
    atomically. Its weights, tokenizer and training record stay, so it still generates, evaluates
    and says what it is; resuming from it is refused by name. False when it holds no moments."""
    from safetensors import safe_open
    from safetensors.numpy import save

    with safe_open(str(path), framework="np") as f:
        meta = dict(f.metadata() or {})
        if "optimizer" not in meta:
            return False
        tensors = {name: f.get_tensor(name) for name in f.keys() if not name.startswith(OPTIMIZER_PREFIX)}
    del meta["optimizer"]
    meta["train_state"] = json.dumps({**json.loads(meta.get("train_state") or "{}"), WEIGHTS_ONLY: True})
    write_atomically(Path(path), save(tensors, metadata=meta))
    return True


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint, or raise CheckpointError saying what is wrong with the file. The header is
    checked (``checkpoint_header``) before any tensor is read; the weights must all be finite. A
    folder with a config.json is read as a Hugging Face GPT-2 model (``huggingface/load.py``)."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        from scratchlm.huggingface.load import load_gpt2_folder

        return load_gpt2_folder(path)
    check_regular_file(path, CheckpointError, "checkpoint",
                       f", not a checkpoint file (did you mean {path / 'final_model.pt'}?) nor a Hugging Face "
                       "model folder (it has no config.json)")
    try:
        from safetensors import safe_open

        with open(path, "rb"):           # safetensors reports an unreadable file as "not found"
            pass
        with safe_open(str(path), framework="np") as f:
            header = read_header(path, f)
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except UserError:
        raise
    except PermissionError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: permission denied") from exc
    except Exception as exc:  # SafetensorError, truncated headers, pickles, random bytes...
        raise CheckpointError(
            f"{path} is not a readable scratchlm checkpoint (truncated, corrupted, or another format; "
            "scratchlm never unpickles files)"
        ) from exc
    check_finite(path, arrays)
    optimizer_state = None
    if header.optimizer is not None:
        optimizer_state = dict(header.optimizer, m=arrays.pop(OPTIMIZER_PREFIX + "m"),
                               v=arrays.pop(OPTIMIZER_PREFIX + "v"))
    return Checkpoint(header.config, header.tokenizer, arrays, optimizer_state, header.train_state, header.dtype)


def check_finite(path: Path, arrays: dict) -> None:
    """NaN or infinite weights would load and generate nonsense (or score 'nan'): refuse them."""
    for name, array in arrays.items():
        if not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise CheckpointError(f"{path} holds {bad:,} NaN or infinite value(s) in {name}: the model in it cannot "
                                  "be used (the training diverged or the file was damaged); use an earlier checkpoint")
