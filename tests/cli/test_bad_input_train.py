"""Bad input to `train`: one clear line on stderr, exit code 2, and nothing written."""

from __future__ import annotations

import os

import pytest
from train_helpers import TINY, refused, run_console, small_text

from scratchlm import backend
from scratchlm.checkpoint import save_checkpoint
from scratchlm.data.tokenizer import ByteTokenizer
from scratchlm.model import GPT, GPTConfig

NUMERIC = {  # option -> bad values (zero is fine where 0 means "off")
    "--model-dim": ["0", "-64", "abc", "6.5"], "--num-heads": ["0", "-2", "two"], "--num-layers": ["0", "-1", "x"],
    "--max-seq-len": ["0", "-8", "1e"], "--epochs": ["0", "-5", "five"], "--batch-size": ["0", "-16", "?"],
    "--grad-accum": ["0", "-1", "a"], "--max-steps": ["-1", "many"], "--warmup-steps": ["-1", "x"],
    "--eval-interval": ["-3", "often"], "--patience": ["-1", "p"], "--seed": ["-1", "s"],
    "--keep-checkpoints": ["-2", "all"], "--learning-rate": ["0", "-0.1", "fast", "nan", "inf"],
    "--weight-decay": ["-0.1", "w"], "--gradient-clip": ["-1", "c"], "--dropout": ["1", "1.5", "-0.1", "d"],
    "--val-split": ["0", "1", "1.5", "-0.2", "half"],
}


@pytest.fixture
def data(tmp_path):
    return small_text(tmp_path, 1000)


@pytest.mark.parametrize("option, value", [(o, v) for o, values in NUMERIC.items() for v in values])
def test_bad_numbers(tmp_path, data, capsys, option, value):
    out = tmp_path / "out"
    refused(["train", data, "--output-dir", out, f"{option}={value}"], capsys, option, repr(value))
    assert not out.exists()


@pytest.mark.parametrize("option", ["--lr-schedule", "--tokenizer", "--pos-encoding", "--norm", "--device"])
def test_bad_choices(tmp_path, data, capsys, option):
    refused(["train", data, "--output-dir", tmp_path / "out", option, "bogus"], capsys, option, "must be one of")
    assert not (tmp_path / "out").exists()


def test_grad_accum_larger_than_the_batch(tmp_path, data, capsys):
    refused(["train", data, "--output-dir", tmp_path / "o", "--batch-size", "4", "--grad-accum", "8"], capsys,
          "--grad-accum 8", "--batch-size 4")


def test_heads_must_divide_the_model_dim(tmp_path, data, capsys):
    refused(["train", data, "--output-dir", tmp_path / "o", "--model-dim", "64", "--num-heads", "3"], capsys,
          "not divisible by 3 heads", "--num-heads 2")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind, message", [
    ("missing", "data file not found"), ("directory", "holds no text files"), ("empty", "is empty"),
    ("whitespace", "is empty"), ("latin1", "is not UTF-8"),
])
def test_unusable_data_files(tmp_path, capsys, kind, message):
    path = tmp_path / "data.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "whitespace":
        path.write_text(" \n\t \n")
    elif kind == "latin1":
        path.write_bytes("caf\u00e9 au lait, s'il vous pla\u00eet".encode("latin-1") * 20)
    refused(["train", path, "--output-dir", tmp_path / "o"], capsys, message)
    assert not (tmp_path / "o").exists()


def test_text_too_short_says_how_much_is_needed(tmp_path, capsys):
    path = tmp_path / "short.txt"
    path.write_text("a" * 100)                     # 90 to train: room for --max-seq-len 89, not 128
    line = refused(["train", path, "--output-dir", tmp_path / "o"], capsys, "has 100 characters", "needs at least 143",
                 "lower --max-seq-len to 89")
    assert "129 to train on" in line
    path.write_text("abc")
    refused(["train", path, "--output-dir", tmp_path / "o", "--max-seq-len", "8"], capsys, "has 3 characters",
          "use a longer file")
    assert not (tmp_path / "o").exists()


def test_output_path_that_is_a_file(tmp_path, data, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    refused(["train", data, "--output-dir", target], capsys, "is a file, not a directory")
    refused(["train", data, "--output-dir", target / "sub"], capsys, "cannot be created", "is a file")
    assert target.read_text() == "x"


def test_output_path_not_writable(tmp_path, data, capsys, monkeypatch):
    import scratchlm.training.job

    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:                    # root may write anywhere: pretend the folder is read-only
        monkeypatch.setattr(scratchlm.training.job.os, "access", lambda path, mode: False)
    locked.chmod(0o500)
    try:
        refused(["train", data, "--output-dir", locked / "run"], capsys, "is not writable", "permission denied")
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def _not_a_training_checkpoint(tmp_path):
    model = GPT(GPTConfig(vocab_size=256, d_model=16, n_heads=2, n_layers=1, max_seq_len=16))
    return save_checkpoint(tmp_path / "weights_only.pt", model, ByteTokenizer())


@pytest.mark.parametrize("kind, message", [
    ("missing", "checkpoint not found"), ("truncated", "not a readable scratchlm checkpoint"),
    ("garbage", "not a readable scratchlm checkpoint"), ("foreign", "not a scratchlm checkpoint"),
    ("weights_only", "no training state"),
])
def test_bad_resume_checkpoints(tmp_path, data, capsys, kind, message):
    from safetensors.numpy import save_file

    path = tmp_path / "ckpt.pt"
    if kind == "truncated":
        path.write_bytes(_not_a_training_checkpoint(tmp_path).read_bytes()[:300])
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "foreign":
        import numpy as np

        save_file({"w": np.zeros(3, np.float32)}, str(path))
    elif kind == "weights_only":
        path = _not_a_training_checkpoint(tmp_path)
    refused(["train", data, "--resume-from", path, "--output-dir", tmp_path / "o"], capsys, message)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(backend.cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(tmp_path, data, capsys):
    refused(["train", data, "--output-dir", tmp_path / "o", "--device", "cuda"], capsys, "no usable CUDA GPU",
          "--device cpu")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, message", [
    ("model_dim: [1, 2\n", "is not valid YAML at line"), ("- 1\n- 2\n", "must hold 'setting: value' lines"),
    ("learning_rate: fast\n", "learning_rate in"), ("colour: blue\n", "unknown setting 'colour'"),
    ("epochs: true\n", "epochs in"),
])
def test_bad_config_files(tmp_path, data, capsys, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    refused(["train", data, "--output-dir", tmp_path / "o", "--config", config], capsys, message)
    refused(["train", data, "--output-dir", tmp_path / "o", "--config", tmp_path / "none.yaml"], capsys, "file not found")
    assert not (tmp_path / "o").exists()


def test_bad_input_through_the_console_script_has_no_traceback(tmp_path):
    result = run_console("train", tmp_path / "missing.txt", " ", "--output-dir", tmp_path / "o", *TINY)
    assert result.returncode == 2
    assert result.stderr.startswith("error: data file not found") and result.stderr.count("\n") == 1
    assert result.stdout == "" and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "no command given"),
        (["bogus"], "unknown command 'bogus'"),
        (["train"], "train needs DATA"),
        (["train", "x.txt", "--nope"], "unknown option --nope"),
        (["generate", "m.pt", "--stop"], "--stop needs a value"),
    ],
)
def test_usage_errors_are_one_line(argv, expected, capsys):
    from scratchlm.cli.main import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


@pytest.mark.parametrize("command, option", [("train", "--epochs"), ("generate", "--top-p"), ("evaluate", "--stride")])
def test_command_help_lists_its_options_and_the_common_ones(command, option, capsys):
    from scratchlm.cli.main import main

    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert option in out and "--device" in out and "--seed" in out
