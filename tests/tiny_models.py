"""Tiny models and checkpoints for the generate / evaluate / interactive tests.

``tiny_model`` builds a small GPT and (optionally) gives it a few AdamW steps on the
shipped sample text, so its generations and losses are not pure noise; checkpoints
are cached per test session by their settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from scratchlm.checkpoint import save_checkpoint
from scratchlm.data.tokenizer import build_tokenizer
from scratchlm.model import GPT, GPTConfig
from scratchlm.optim import AdamW

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "sample_data.txt"
SCRATCHLM = Path(sys.executable).parent / "scratchlm"


def sample_text() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def tiny_model(text: str | None = None, tokenizer: str = "char", steps: int = 0, seed: int = 0,
               dtype=None, **config):
    """(model, tokenizer): a GPT sized by ``config`` (tiny defaults), trained ``steps`` AdamW steps."""
    text = sample_text() if text is None else text
    tok = build_tokenizer(tokenizer, text)
    settings = dict(d_model=32, n_heads=2, n_layers=2, max_seq_len=32, dropout=0.0)
    settings.update(config)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **settings), seed=seed, dtype=dtype)
    if steps:
        train_briefly(model, tok.encode(text), steps, seed)
    return model.eval(), tok


def train_briefly(model, ids: np.ndarray, steps: int, seed: int, batch: int = 16, lr: float = 1e-2) -> None:
    rng = np.random.default_rng(seed)
    window = model.config.max_seq_len
    optimizer = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        starts = rng.integers(0, len(ids) - window - 1, size=batch)[:, None]    # (B, 1)
        rows = starts + np.arange(window + 1)[None, :]                          # (B, T+1)
        optimizer.zero_grad()
        _, loss = model.forward(ids[rows[:, :-1]], targets=ids[rows[:, 1:]])
        loss.backward()
        optimizer.step()
    model.eval()


_made: dict = {}


def checkpoint_file(folder: Path, **settings) -> Path:
    """A checkpoint of ``tiny_model(**settings)`` in ``folder`` (made once per session)."""
    key = tuple(sorted(settings.items()))
    if key not in _made:
        name = "_".join(f"{k}-{v}" for k, v in key) or "default"
        model, tok = tiny_model(**settings)
        _made[key] = save_checkpoint(folder / f"{name}.pt", model, tok)
    return _made[key]


def checkpoint_contents(path) -> tuple[dict, dict]:
    """(tensors, metadata) of a checkpoint, read as plain safetensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return {name: f.get_tensor(name) for name in f.keys()}, dict(f.metadata())


def rewrite_checkpoint(source: Path, target: Path, tensors: dict | None = None, **meta_changes) -> Path:
    """A copy of ``source`` with some tensors replaced (None drops one) and metadata fields changed
    (a value that is not a string is stored as JSON): a damaged or crafted checkpoint."""
    from safetensors.numpy import save_file

    arrays, meta = checkpoint_contents(source)
    for name, value in (tensors or {}).items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    for key, value in meta_changes.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    save_file(arrays, str(target), metadata=meta)
    return target


def run_cli(*args, input: str | None = None, timeout: float = 120, cwd=None, env: dict | None = None):
    """Run the installed console script (text in, text out); ``env`` adds to the environment."""
    return subprocess.run([str(SCRATCHLM), *map(str, args)], input=input, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=None if env is None else {**os.environ, **env})
