"""The engine's end-to-end promises: a small GPT memorises a batch; importing stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from scratchlm.data.tokenizer import CharTokenizer
from scratchlm.model import GPT, GPTConfig
from scratchlm.optim import AdamW

SHAKESPEARE = Path(__file__).resolve().parents[2] / "data" / "raw" / "shakespeare" / "shakespeare100k.txt"


def test_small_gpt_overfits_one_shakespeare_batch_within_300_steps():
    text = SHAKESPEARE.read_text(encoding="utf-8")
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text[:20_000])
    starts = np.random.default_rng(0).integers(0, len(ids) - 65, size=8)
    batch = np.stack([ids[s : s + 65] for s in starts])                       # (B, T + 1) one fixed batch
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, d_model=64, n_heads=4, n_layers=2, max_seq_len=64), seed=0)
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        optimizer.clip_grad_norm(1.0)
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 3.5                       # it starts near ln(vocab): nothing learned yet
    assert min(losses[-10:]) < 0.05, losses[-10:]


def _modules_after(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_importing_scratchlm_loads_neither_numba_nor_cupy():
    out = _modules_after("import sys, scratchlm, scratchlm.model, scratchlm.optim, scratchlm.cli.main; "
                         "print('numba' in sys.modules, 'cupy' in sys.modules)")
    assert out.split() == ["False", "False"]


def test_help_compiles_nothing():
    out = _modules_after("import sys, contextlib, io\nfrom scratchlm.cli.main import main\n"
                         "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                         "    main(['--help'])\n"
                         "print('numba' in sys.modules, 'cupy' in sys.modules)")
    assert out.split() == ["False", "False"]
