"""Checkpoints: exact round trips, the non-contiguous safetensors pitfall, atomic writes, bad files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from scratchlm.checkpoint import load_checkpoint, save_checkpoint
from scratchlm.data.tokenizer import CharTokenizer
from scratchlm.errors import CheckpointError
from scratchlm.model import GPT, GPTConfig
from scratchlm.optim import AdamW

CONFIG = GPTConfig(vocab_size=11, d_model=16, n_heads=2, n_layers=2, max_seq_len=8, dropout=0.1)
TOKENS = CharTokenizer("abcdefghijk")   # the vocabulary of CONFIG


def trained_model():
    """A tiny model and optimizer after two real steps, so weights and moments are all non-trivial."""
    model = GPT(CONFIG, seed=3)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ids = np.random.default_rng(0).integers(0, CONFIG.vocab_size, size=(2, 9))
    for _ in range(2):
        optimizer.zero_grad()
        _, loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
        optimizer.step()
    return model, optimizer


def test_round_trip_is_exact(tmp_path):
    model, optimizer = trained_model()
    rng = np.random.default_rng(5)
    rng.random(3)
    state = {"step": 2, "epoch_rng_state": rng.bit_generator.state, "history": [{"val_loss": 1.5}]}
    path = save_checkpoint(tmp_path / "c.pt", model, CharTokenizer("abcdefghijk"), optimizer, state)

    ckpt = load_checkpoint(path)
    assert ckpt.config == CONFIG
    assert ckpt.tokenizer.chars == list("abcdefghijk")
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(ckpt.weights[name], array, err_msg=name)
    np.testing.assert_array_equal(ckpt.optimizer_state["m"], optimizer.m)
    np.testing.assert_array_equal(ckpt.optimizer_state["v"], optimizer.v)
    assert ckpt.optimizer_state["step"] == 2
    rebuilt = ckpt.build_model()
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(rebuilt.state_dict()[name], array, err_msg=name)
    # The RNG state survives JSON: a generator restored from it draws the same numbers.
    restored = np.random.default_rng()
    restored.bit_generator.state = ckpt.train_state["epoch_rng_state"]
    np.testing.assert_array_equal(restored.random(4), rng.random(4))
    assert ckpt.train_state["history"] == [{"val_loss": 1.5}]


def test_non_contiguous_weights_survive(tmp_path):
    """safetensors 0.8 writes a non-C-contiguous array's memory in the wrong order; ours must not."""
    model = GPT(CONFIG, seed=1)
    weight = model.blocks[0].mlp.fc.weight
    expected = weight.data.copy()
    weight.data = np.asfortranarray(weight.data)          # same values, column-major memory
    sliced = model.blocks[1].attn.qkv.weight
    backing = np.zeros((sliced.shape[0], 2 * sliced.shape[1]), dtype=sliced.dtype)
    backing[:, ::2] = sliced.data
    expected_sliced = sliced.data.copy()
    sliced.data = backing[:, ::2]                         # a strided view
    assert not weight.data.flags.c_contiguous and not sliced.data.flags.c_contiguous

    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c.pt", model, TOKENS))
    np.testing.assert_array_equal(ckpt.weights["blocks.0.mlp.fc.weight"], expected)
    np.testing.assert_array_equal(ckpt.weights["blocks.1.attn.qkv.weight"], expected_sliced)


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    model, optimizer = trained_model()
    path = save_checkpoint(tmp_path / "c.pt", model, TOKENS, optimizer, {"step": 1})
    before = path.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    model.wte.weight.data[...] += 1.0
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, TOKENS, optimizer, {"step": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]   # no temporary file left behind
    assert load_checkpoint(path).train_state == {"step": 1}


def test_saved_files_get_normal_permissions(tmp_path):
    from scratchlm.cli.options import write_text_atomically

    model, _ = trained_model()
    path = save_checkpoint(tmp_path / "c.pt", model, TOKENS)
    text_path = tmp_path / "samples.txt"                 # generate --output-file, evaluate --output
    write_text_atomically(text_path, "text\n")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert text_path.stat().st_mode & 0o777 == 0o666 & ~umask   # not mkstemp's 0600
    assert text_path.read_text() == "text\n"


@pytest.fixture
def good_file(tmp_path) -> Path:
    model, optimizer = trained_model()
    return save_checkpoint(tmp_path / "good.pt", model, TOKENS, optimizer, {"step": 2})


def test_truncated_file_is_rejected(good_file, tmp_path):
    data = good_file.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable scratchlm checkpoint"):
            load_checkpoint(bad)


def test_corrupted_header_is_rejected(good_file, tmp_path):
    data = bytearray(good_file.read_bytes())
    data[8:40] = b"#" * 32                      # garbage where the JSON header starts
    bad = tmp_path / "garbled.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_damaged_metadata_is_rejected(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "meta.pt"
    save_file({"wte.weight": np.zeros((2, 2), np.float32)},
              str(path), metadata={"format": "scratchlm-checkpoint", "config": "{not json"})
    with pytest.raises(CheckpointError, match="damaged scratchlm metadata"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this would create a file: proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_foreign_safetensors_is_rejected(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "other.safetensors"
    save_file({"weight": np.ones((2, 3), np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a scratchlm checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("make", ["missing", "directory", "empty", "text"])
def test_other_non_checkpoints_are_rejected(tmp_path, make):
    path = tmp_path / "x.pt"
    if make == "directory":
        path.mkdir()
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "text":
        path.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
