"""train DATA --init-from MODEL_DIR: fine-tuning a Hugging Face GPT-2 lowers its loss, writes
ordinary checkpoints that carry the BPE tokenizer, and resumes exactly."""

from __future__ import annotations

import pytest
from hf_models import gpt2_folder
from train_helpers import SAMPLE, assert_same_arrays, checkpoint_arrays, parse, refused, train_in_process

from scratchlm.checkpoint import load_checkpoint
from scratchlm.inference.scoring import evaluate_text

pytest.importorskip("torch")
pytest.importorskip("transformers")

FINE_TUNE = ["--max-seq-len", "16", "--batch-size", "8", "--epochs", "2", "--learning-rate", "0.003",
             "--warmup-steps", "2", "--eval-tokens", "2000", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return gpt2_folder(tmp_path_factory.mktemp("gpt2") / "tiny")


def val_loss(checkpoint) -> float:
    text = SAMPLE.read_text(encoding="utf-8")[-2000:]
    return evaluate_text(checkpoint.build_model(), checkpoint.tokenizer, text).loss


def test_fine_tuning_lowers_the_loss_and_keeps_the_tokenizer(folder, tmp_path):
    out = tmp_path / "tuned"
    train_in_process(["train", SAMPLE, "--init-from", folder, "--output-dir", out, *FINE_TUNE])
    tuned, start = load_checkpoint(out / "final_model.pt"), load_checkpoint(folder)
    assert tuned.tokenizer.kind == "bpe" and tuned.config.max_seq_len == start.config.max_seq_len
    assert tuned.train_state["settings"]["init_from"] == str(folder)
    assert val_loss(tuned) < val_loss(start) - 0.5


def test_a_fine_tuning_run_resumes_exactly(folder, tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    train_in_process(["train", SAMPLE, "--init-from", folder, "--output-dir", whole, *FINE_TUNE])
    steps = load_checkpoint(whole / "checkpoint_epoch_1.pt").train_state["state"]["step"]
    train_in_process(["train", SAMPLE, "--init-from", folder, "--output-dir", halves, *FINE_TUNE,
                      "--max-steps", str(steps)])
    train_in_process(["train", SAMPLE, "--output-dir", halves, "--resume-from", halves / "checkpoint_epoch_1.pt",
                      "--max-steps", "0", "--quiet"])
    assert_same_arrays(checkpoint_arrays(whole / "checkpoint_epoch_2.pt"), checkpoint_arrays(halves / "checkpoint_epoch_2.pt"))


def test_the_shape_comes_from_the_model(folder, tmp_path, capsys):
    settings, _, _ = parse(["train", SAMPLE, "--init-from", folder, "--output-dir", tmp_path / "o"])
    assert (settings.model_dim, settings.num_layers, settings.max_seq_len, settings.tokenizer) == (32, 2, 32, "bpe")
    refused(["train", SAMPLE, "--init-from", folder, "--model-dim", "64"], capsys, "--model-dim 64 differs")
    refused(["train", SAMPLE, "--init-from", folder, "--max-seq-len", "64"], capsys, "longer than the context of 32")
    refused(["train", SAMPLE, "--init-from", folder, "--tokenizer", "byte"], capsys, "drop --tokenizer")


def test_the_model_to_fine_tune_is_read_once(folder, tmp_path, monkeypatch):
    import scratchlm.checkpoint as checkpoint_module
    import scratchlm.cli.train as train_command
    import scratchlm.training.loop as loop

    reads = []

    def counted(path):
        reads.append(str(path))
        return load_checkpoint(path)

    for module in (checkpoint_module, train_command, loop):
        monkeypatch.setattr(module, "load_checkpoint", counted)
    train_in_process(["train", SAMPLE, "--init-from", folder, "--output-dir", tmp_path / "o", *FINE_TUNE,
                      "--max-steps", "1"])
    assert reads == [str(folder)]
