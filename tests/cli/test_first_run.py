"""The first run on a machine: a line says the kernels are being compiled, and the ETA waits for it."""

from __future__ import annotations

import math
import os

import pytest
from tiny_models import checkpoint_file
from train_helpers import TINY, small_text, train_in_process

import scratchlm.cli.kernel_cache as kernel_cache
from scratchlm.cli import main as cli
from scratchlm.training.progress import Reporter


def test_an_empty_cache_is_cold_and_a_filled_one_warm(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not kernel_cache.kernels_cached(kernel_cache.TRAIN_KERNELS)
    assert "Compiling the training kernels" in kernel_cache.compile_notice(kernel_cache.TRAIN_KERNELS, "cpu", "training")
    assert kernel_cache.compile_notice(kernel_cache.TRAIN_KERNELS, "cuda", "training") is None
    index = os.path.join(kernel_cache.kernel_cache_folder(), "kernels_x", "adamw._adamw_kernel-40.py311.nbi")
    os.makedirs(os.path.dirname(index))
    open(index, "w").close()
    assert kernel_cache.kernels_cached(kernel_cache.TRAIN_KERNELS)
    assert not kernel_cache.kernels_cached(kernel_cache.GENERATE_KERNELS)


@pytest.fixture
def cold_cache(monkeypatch):
    monkeypatch.setattr(kernel_cache, "kernels_cached", lambda module: False)


def test_train_says_once_that_it_compiles(tmp_path, capsys, cold_cache):
    data = small_text(tmp_path, 1500)
    assert cli.main(["train", str(data), "--output-dir", str(tmp_path / "o"), *TINY, "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("Compiling the training kernels for this machine (once") == 1
    assert out.index("Epoch 1/2") < out.index("Compiling") < out.index("Epoch 2/2")


def test_generate_says_it_compiles_on_stderr(tmp_path, capsys, cold_cache):
    ckpt = checkpoint_file(tmp_path)
    assert cli.main(["generate", str(ckpt), "--max-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert "Compiling the generation kernels" in err and "Compiling" not in out
    assert cli.main(["generate", str(ckpt), "--max-tokens", "3", "--quiet"]) == 0
    assert "Compiling" not in capsys.readouterr().err


class EtaRecorder(Reporter):
    def __init__(self):
        self.etas = []

    def step(self, done, loss, val_loss, tokens_per_s, eta_s):
        self.etas.append(eta_s)


def test_the_first_step_which_compiles_gives_no_eta(tmp_path):
    recorder = EtaRecorder()
    data = small_text(tmp_path, 1500)
    train_in_process(["train", data, "--output-dir", tmp_path / "o", *TINY, "--epochs", "1"], recorder)
    assert math.isnan(recorder.etas[0])
    assert all(math.isfinite(eta) for eta in recorder.etas[1:]) and len(recorder.etas) > 2
