"""A checkpoint is checked against what it really holds before anything is built (issue 15, items 9,
11, 12 and 15): its header's tensors, shapes and dtypes, the JSON type of its metadata, its format
version, its tokenizer, the memory it needs, and finite weights. Each problem is one bounded line."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from tiny_models import checkpoint_contents, rewrite_checkpoint, run_cli, sample_text

from scratchlm import limits
from scratchlm.checkpoint import load_checkpoint, save_checkpoint
from scratchlm.data.tokenizer import CharTokenizer
from scratchlm.errors import CheckpointError, InsufficientMemory
from scratchlm.model import GPT, GPTConfig, parameter_count, parameter_shapes
from scratchlm.optim import AdamW

MAX_LINE = 400      # no error line may grow with the input (the issue saw 4 MB and 35 MB lines)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A tiny training checkpoint (weights, AdamW moments) on the sample text's vocabulary."""
    tokenizer = CharTokenizer.from_text(sample_text())
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2, n_layers=2, max_seq_len=16))
    optimizer = AdamW(model.parameters(), lr=1e-3)
    path = tmp_path_factory.mktemp("good") / "good.pt"
    return save_checkpoint(path, model, tokenizer, optimizer, {"step": 0})


def contents(path):
    return checkpoint_contents(path)


def variant(good, tmp_path, tensors=None, **meta_changes):
    return rewrite_checkpoint(good, tmp_path / "variant.pt", tensors, **meta_changes)


def refused(path, *fragments) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and len(message) < MAX_LINE, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def config_of(good) -> dict:
    return json.loads(contents(good)[1]["config"])


def test_the_good_checkpoint_loads(good):
    assert load_checkpoint(good).optimizer_state["m"].shape == (parameter_count(load_checkpoint(good).config),)


@pytest.mark.parametrize("config", [dict(), dict(norm="rmsnorm"), dict(bias=False, tie_weights=False),
                                    dict(pos_encoding="rope"), dict(norm="rmsnorm", bias=False, pos_encoding="sinusoidal")])
def test_the_shapes_from_a_config_are_the_model_s(config):
    cfg = GPTConfig(vocab_size=11, d_model=16, n_heads=2, n_layers=3, max_seq_len=8, **config)
    model = GPT(cfg)
    assert dict(parameter_shapes(cfg)) == {name: tuple(a.shape) for name, a in model.state_dict().items()}
    assert parameter_count(cfg) == model.num_parameters()


# ---- 9. a config that claims more than the file holds: refused from the header, at once ------------
@pytest.mark.parametrize("change, fragment", [
    ({"n_layers": 100_000}, "lacks the tensor blocks.2."),
    ({"d_model": 10**9, "n_heads": 1}, "has shape"),
    ({"max_seq_len": 10**12}, "wpe.weight has shape"),
    ({"vocab_size": 10**10}, "its tokenizer has"),
])
def test_a_config_bigger_than_the_tensors_is_refused_before_allocating(good, tmp_path, change, fragment):
    path = variant(good, tmp_path, config={**config_of(good), **change})
    started = time.perf_counter()
    refused(path, fragment)
    assert time.perf_counter() - started < 2


def test_a_model_that_does_not_fit_in_memory_is_refused(good, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 1000)
    with pytest.raises(InsufficientMemory, match="needs about .* this machine has 1 KB available"):
        load_checkpoint(good)


# ---- 11. missing, extra, wrong-shaped tensors; metadata of the wrong type; dtypes; tokenizers -------
@pytest.mark.parametrize("tensors, fragment", [
    ({"blocks.1.mlp.fc.weight": None}, "lacks the tensor blocks.1.mlp.fc.weight"),
    ({"blocks.7.attn.qkv.weight": np.zeros((48, 16), np.float32)}, "blocks.7.attn.qkv.weight"),
    ({"norm_f.weight": np.ones(15, np.float32)}, "norm_f.weight has shape (15,) but its config needs (16,)"),
    ({"optimizer.v": None}, "without its partner"),
    ({"optimizer.m": np.zeros(3, np.float32)}, "optimizer.m has shape (3,)"),
])
def test_missing_extra_or_misshapen_tensors(good, tmp_path, tensors, fragment):
    refused(variant(good, tmp_path, tensors), fragment)


@pytest.mark.parametrize("field, value", [
    ("config", [1, 2]), ("config", "x" * 10**6), ("tokenizer", 5), ("train_state", [0]), ("optimizer", None),
])
def test_metadata_of_the_wrong_json_type(good, tmp_path, field, value):
    refused(variant(good, tmp_path, **{field: value}), "damaged scratchlm metadata", repr(field))


@pytest.mark.parametrize("change, fragment", [
    ({"n_heads": 3}, "not divisible by 3 heads"),
    ({"n_layers": "many"}, "n_layers must be a positive whole number"),
    ({"d_model": 100000000007, "n_heads": 4}, "not divisible by 4 heads"),
    ({"norm": "x" * 10**6}, "norm must be one of"),
])
def test_a_config_that_cannot_be_built(good, tmp_path, change, fragment):
    started = time.perf_counter()
    refused(variant(good, tmp_path, config={**config_of(good), **change}), "cannot be built", fragment)
    assert time.perf_counter() - started < 2


def test_an_unknown_dtype_is_refused(good, tmp_path):
    refused(variant(good, tmp_path, dtype="float16"), "unknown dtype 'float16'")


@pytest.mark.parametrize("tokenizer, fragment", [
    ({"kind": "char", "chars": "abc"}, "its tokenizer has 3 symbols"),         # too small: failed mid-generation
    ({"kind": "byte"}, "its tokenizer has 256 symbols"),                       # too large: accepted silently
    ({"kind": "char", "chars": ["a"]}, "needs its characters as a string"),
    ({"kind": "char", "chars": "aab"}, "lists a character twice"),
    ({"kind": "klingon"}, "unknown tokenizer"),
])
def test_a_tokenizer_that_does_not_match_the_model(good, tmp_path, tokenizer, fragment):
    refused(variant(good, tmp_path, tokenizer=tokenizer), fragment)


# ---- 12. NaN or infinite weights ----------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(good, tmp_path, bad):
    weight = contents(good)[0]["blocks.0.attn.proj.weight"].copy()
    weight[0, 0] = bad
    refused(variant(good, tmp_path, {"blocks.0.attn.proj.weight": weight}), "NaN or infinite",
            "blocks.0.attn.proj.weight")


@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_non_finite_weights_stop_generate_and_evaluate(good, tmp_path, command):
    weights = contents(good)[0]["wte.weight"].copy()
    weights[:] = np.nan
    path = variant(good, tmp_path, {"wte.weight": weights})
    (tmp_path / "text.txt").write_text(sample_text()[:200], encoding="utf-8")
    args = ["generate", path, "--max-tokens", "5"] if command == "generate" else ["evaluate", path, "text.txt"]
    run = run_cli(*args, cwd=tmp_path, timeout=60)
    assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout, run.stderr)
    assert run.stderr.startswith("error: ") and len(run.stderr.splitlines()) == 1
    assert "NaN or infinite" in run.stderr


# ---- 15. the format version; integer weights ---------------------------------------------------
def test_a_newer_format_version_asks_for_an_upgrade(good, tmp_path):
    refused(variant(good, tmp_path, format_version="2"), "newer scratchlm", "version 2", "upgrade scratchlm")


@pytest.mark.parametrize("version", ["0", "one", "1.5", "9" * 100])
def test_an_unknown_format_version_is_refused(good, tmp_path, version):
    refused(variant(good, tmp_path, format_version=version), "format version")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.uint8])
def test_weights_of_another_dtype_are_refused_not_cast(good, tmp_path, dtype):
    weight = contents(good)[0]["norm_f.weight"].astype(dtype)
    refused(variant(good, tmp_path, {"norm_f.weight": weight}), "tensor norm_f.weight is stored as", "float32")
