"""Bad Hugging Face folders: each is refused with one line saying what is wrong (exit 2 on the
command line), before a tensor is read; a pytorch_model.bin is never opened."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hf_models import gpt2_folder
from tiny_models import run_cli

from scratchlm.checkpoint import load_checkpoint
from scratchlm.errors import CheckpointError

pytest.importorskip("torch")
pytest.importorskip("transformers")


class RunsCode:
    """Unpickling this would create the folder ``marker``: proof that the file was opened as a pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return gpt2_folder(tmp_path_factory.mktemp("gpt2") / "good")


@pytest.fixture
def copy(good, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(good, target)
    return target


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def edit_tensors(folder, change):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


CONFIG_CASES = {
    "another architecture": (dict(model_type="llama"), "holds a 'llama' model"),
    "another activation": (dict(activation_function="relu"), "activation_function 'relu' is not supported"),
    "another epsilon": (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon 1e-06 is not supported"),
    "scaled by layer": (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx True"),
    "heads do not divide": (dict(n_head=3), "not divisible by 3 heads"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_unsupported_configs_are_refused_by_name(copy, case):
    changes, message = CONFIG_CASES[case]
    edit_config(copy, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(copy)


def test_mismatched_tokenizer(copy):
    edit_config(copy, vocab_size=301)
    with pytest.raises(CheckpointError, match="tokenizer has 300 tokens but config.json's vocab_size is 301"):
        load_checkpoint(copy)


def test_missing_tokenizer(copy):
    (copy / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="has no tokenizer"):
        load_checkpoint(copy)


TENSOR_CASES = {
    "missing tensor": (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), "lacks the tensor transformer.h.1.mlp.c_fc.bias"),
    "extra tensor": (lambda t: t.update(extra=np.zeros(2, np.float32)), "holds a tensor 'extra'"),
    "wrong shape": (lambda t: t.update({"transformer.wpe.weight": np.zeros((16, 32), np.float32)}),
                    r"shape \(16, 32\) but config.json"),
    "not transposed": (lambda t: t.update({"transformer.h.0.mlp.c_fc.weight": t["transformer.h.0.mlp.c_fc.weight"].T.copy()}),
                       r"has shape \(128, 32\)"),
}


@pytest.mark.parametrize("case", TENSOR_CASES)
def test_bad_tensors_are_named(copy, case):
    change, message = TENSOR_CASES[case]
    edit_tensors(copy, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(copy)


def test_a_pickle_is_refused_unopened_with_a_hint(copy):
    (copy / "model.safetensors").unlink()
    marker = copy / "UNPICKLED"
    import pickle

    (copy / "pytorch_model.bin").write_bytes(pickle.dumps(RunsCode(str(marker))))
    done = run_cli("generate", copy, "--max-tokens", "3")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "pytorch_model.bin, a pickle" in done.stderr
    assert "save_pretrained" in done.stderr and not marker.exists()


def test_sharded_checkpoints_load(good, tmp_path):
    import transformers

    sharded = tmp_path / "sharded"
    transformers.AutoModelForCausalLM.from_pretrained(good).save_pretrained(sharded, max_shard_size="20KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(good / name, sharded / name)
    assert (sharded / "model.safetensors.index.json").is_file()
    whole, parts = load_checkpoint(good), load_checkpoint(sharded)
    for name, array in whole.weights.items():
        np.testing.assert_array_equal(parts.weights[name], array)


def test_a_folder_without_config_says_what_it_needs(tmp_path):
    (tmp_path / "x.txt").write_text("some text")
    done = run_cli("evaluate", tmp_path, tmp_path / "x.txt")
    assert done.returncode == 2 and "no config.json" in done.stderr
