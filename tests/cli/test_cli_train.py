"""The train command end to end: the tutorial's steps through the installed console script, the
files a run writes, what the terminal shows, and the options that shape a run."""

from __future__ import annotations

import io
import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml
from train_helpers import (
    CONSOLE,
    REPO,
    SAMPLE,
    TINY,
    assert_same_arrays,
    checkpoint_arrays,
    parse,
    run_console,
    small_text,
    train_in_process,
)

from scratchlm import backend
from scratchlm.errors import OptionError
from scratchlm.training import progress

RUN_FILES = {"checkpoint_epoch_1.pt", "checkpoint_epoch_2.pt", "final_model.pt", "training_log.txt", "config.yaml",
             "metrics.jsonl", "loss_curve.svg"}


def tutorial_argv(data, out, epochs, *extra):
    """Step 2 of the tutorial as bash passes it: each line ends in '\\ \\', so a lone ' ' sits between options."""
    return ["train", str(data), " ", "--output-dir", str(out), " ", "--model-dim", "64", " ", "--num-heads", "2",
            " ", "--num-layers", "2", " ", "--epochs", str(epochs), " ", "--batch-size", "16", *extra]


def test_tutorial_step_2_on_a_small_file(tmp_path):
    data, out = small_text(tmp_path, 2000), tmp_path / "my_first_model"
    result = run_console(*tutorial_argv(data, out, 2, "--max-seq-len", "32"))
    assert result.returncode == 0, result.stderr
    for text in ("Training Configuration", "Parameters:", "Hidden dim:", "Layers:", "Attention heads:", "Vocabulary:",
                 "Steps per epoch:", "Device:", "Epoch 1/2", "Epoch 2/2", f"Checkpoint saved: {out}/checkpoint_epoch_2.pt",
                 "Training Complete", "Perplexity:", "Bits/char:"):
        assert text in result.stdout, text
    assert "\x1b[" not in result.stdout                        # no terminal codes in a pipe
    assert {p.name for p in out.iterdir()} == RUN_FILES

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    best = min(records, key=lambda r: r["val_loss"])
    assert_same_arrays(checkpoint_arrays(out / "final_model.pt"), checkpoint_arrays(out / f"checkpoint_epoch_{best['epoch']}.pt"))
    log = (out / "training_log.txt").read_text()
    assert "final perplexity:" in log and f"best epoch: {best['epoch']}" in log and "total time:" in log
    assert f"{math.exp(best['val_loss']):.2f}" in log
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["model_dim"], config["num_heads"], config["num_layers"], config["epochs"]) == (64, 2, 2, 2)
    assert config["data"] == str(data) and config["seed"] == 42
    assert set(config["run"]["versions"]) == {"scratchlm", "numpy", "python"}
    assert config["run"]["parameters"] > 0 and config["run"]["data_characters"] == 2000
    svg = ET.parse(out / "loss_curve.svg").getroot()
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 3       # axes, train, val


@pytest.mark.slow
def test_tutorial_step_2_verbatim(tmp_path):
    out = tmp_path / "my_first_model"
    result = run_console(*tutorial_argv(SAMPLE.relative_to(REPO), out, 5), timeout=900)
    assert result.returncode == 0, result.stderr
    assert RUN_FILES | {f"checkpoint_epoch_{i}.pt" for i in (3, 4, 5)} == {p.name for p in out.iterdir()}
    losses = [json.loads(line)["val_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 5 and losses[-1] < losses[0]


@pytest.mark.parametrize("program", [["scratchlm"], ["fundamentallm"], [sys.executable, "-m", "scratchlm"]])
def test_every_entry_point_trains(tmp_path, program):
    if program[0] != sys.executable:
        program = [str(CONSOLE.with_name(program[0]))]
    data = small_text(tmp_path, 1000)
    result = subprocess.run([*program, "train", str(data), "--output-dir", str(tmp_path / "o"), *TINY,
                             "--max-steps", "2", "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "final_model.pt: val loss" in result.stdout   # --quiet: one line
    assert (tmp_path / "o" / "checkpoint_step_2.pt").exists()


def test_help_states_the_train_defaults():
    result = run_console("--help")
    assert result.returncode == 0
    for text in ("--model-dim N", "[default: 128]", "--resume-from CKPT", "--overwrite", "--grad-accum N"):
        assert text in result.stdout


def test_terminal_output_has_bars_panels_and_eta(tmp_path):
    from rich.console import Console

    buffer = io.StringIO()
    reporter = progress.ConsoleReporter(Console(file=buffer, force_terminal=True, width=120))
    train_in_process(["train", small_text(tmp_path, 1500), "--output-dir", tmp_path / "o", *TINY, "--epochs", "2"],
                     reporter)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())     # drop colours and cursor moves
    assert shown != buffer.getvalue()
    for text in ("Training Configuration", "Epoch 1/2", "Epoch 2/2", "Loss:", "Val Loss:", "tok/s", "ETA:", "100%",
                 "Checkpoint saved:", "Training Complete", "Val loss curve:"):
        assert text in shown, text


def test_piped_output_prints_plain_progress_lines(tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    buffer = io.StringIO()
    reporter = progress.ConsoleReporter(Console(file=buffer, force_terminal=False, width=100))
    train_in_process(["train", small_text(tmp_path, 1500), "--output-dir", tmp_path / "o", *TINY, "--epochs", "1"],
                     reporter)
    lines = buffer.getvalue().splitlines()
    steps = [line for line in lines if line.startswith("  step ")]
    assert steps and "| Loss:" in steps[-1] and "tok/s" in steps[-1] and "ETA:" in steps[-1]
    assert "\x1b[" not in buffer.getvalue()


def test_config_file_and_explicit_options(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("max_seq_len: 16\nepochs: 3\nmodel-dim: 32\nrun: {parameters: 5}\ndata: ignored.txt\n")
    settings, _, _ = parse(["train", "d.txt", "--config", config, "--max-seq-len", "128", "--learning-rate=0.01"])
    assert settings.max_seq_len == 128           # given on the command line (even as the default): it wins
    assert settings.epochs == 3 and settings.model_dim == 32
    assert settings.learning_rate == 0.01 and settings.num_layers == 4 and settings.data == "d.txt"
    config.write_text("modle_dim: 32\n")
    with pytest.raises(OptionError, match="did you mean 'model_dim'"):
        parse(["train", "d.txt", "--config", config])


def test_written_config_yaml_reads_back_as_the_same_settings(tmp_path):
    data, out = small_text(tmp_path, 1000), tmp_path / "o"
    first, _, _ = parse(["train", data, "--output-dir", out, *TINY, "--max-steps", "1", "--tokenizer", "byte"])
    train_in_process(["train", data, "--output-dir", out, *TINY, "--max-steps", "1", "--tokenizer", "byte"])
    again, _, _ = parse(["train", data, "--config", out / "config.yaml"])
    assert first.warmup_steps == "auto" and isinstance(again.warmup_steps, int)   # recorded as what it became
    assert again.hyperparameters() == {**first.hyperparameters(), "warmup_steps": again.warmup_steps}


def test_output_dir_with_a_run_needs_overwrite(tmp_path):
    data, out = small_text(tmp_path, 1000), tmp_path / "o"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "2"])
    refused = run_console("train", data, "--output-dir", out, *TINY, "--epochs", "1")
    assert refused.returncode == 2 and "already holds a training run" in refused.stderr and "--overwrite" in refused.stderr
    assert refused.stderr.count("\n") == 1
    (out / "notes.txt").write_text("mine")
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "1", "--overwrite"])
    assert not (out / "checkpoint_epoch_2.pt").exists() and (out / "notes.txt").read_text() == "mine"


def test_keep_checkpoints_deletes_old_epochs_but_never_the_final_model(tmp_path):
    out = tmp_path / "o"
    train_in_process(["train", small_text(tmp_path, 1000), "--output-dir", out, *TINY, "--epochs", "3",
                      "--keep-checkpoints", "1", "--learning-rate", "0.0001"])
    assert sorted(p.name for p in out.glob("*.pt")) == ["checkpoint_epoch_3.pt", "final_model.pt"]
    checkpoint_arrays(out / "final_model.pt")


def test_max_steps_stops_mid_epoch_with_a_checkpoint(tmp_path):
    summary = train_in_process(["train", small_text(tmp_path, 3000), "--output-dir", tmp_path / "o", *TINY,
                                "--max-steps", "3"])
    assert summary["reason"] == "max-steps" and summary["steps"] == 3 and summary["epochs_done"] == 0
    assert (tmp_path / "o" / "checkpoint_step_3.pt").exists() and (tmp_path / "o" / "final_model.pt").exists()


def test_patience_stops_when_val_loss_stops_improving(tmp_path, monkeypatch):
    import scratchlm.training.loop as train_module

    values = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])
    monkeypatch.setattr(train_module, "validation_loss", lambda *args: next(values))
    summary = train_in_process(["train", small_text(tmp_path, 1000), "--output-dir", tmp_path / "o", *TINY,
                                "--epochs", "10", "--patience", "2"])
    assert summary["reason"] == "early-stop" and summary["epochs_done"] == 4
    assert summary["best_epoch"] == 2 and summary["val_loss"] == 2.0


def test_grad_accum_gives_the_full_batch_gradient(tmp_path):
    from scratchlm.data.batches import epoch_order
    from scratchlm.training.job import prepare
    from scratchlm.training.loop import Trainer

    data, grads, losses = small_text(tmp_path, 3000), [], []
    for accum in ("1", "3"):
        settings, _, _ = parse(["train", data, "--output-dir", tmp_path / accum, *TINY, "--dropout", "0",
                             "--gradient-clip", "0", "--grad-accum", accum])
        trainer = Trainer(prepare(settings), progress.Reporter())
        order = epoch_order(len(trainer.train_ids), trainer.job.window, trainer.data_rng)
        trainer._step(order, 0, 8)                               # 8 rows: micro-batches of 3, 2, 3
        grads.append(backend.to_numpy(trainer.job.optimizer.flat_grads).copy())   # (on a GPU, --device auto)
        losses.append(trainer.last_loss)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-7)
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert np.abs(grads[0]).max() > 0


def test_a_file_with_room_for_one_window_still_trains(tmp_path):
    data = tmp_path / "tiny.txt"
    data.write_text("the cat sat on a mat")                 # 20 characters: 18 train (one window of 17), 2 val
    summary = train_in_process(["train", data, "--output-dir", tmp_path / "o", *TINY, "--epochs", "2"])
    assert summary["steps"] == 2 and summary["epochs_done"] == 2


def test_byte_tokenizer_reports_bits_per_character(tmp_path):
    data = tmp_path / "utf8.txt"
    data.write_text("naïve café ✓ über " * 60, encoding="utf-8")
    out = tmp_path / "o"
    summary = train_in_process(["train", data, "--output-dir", out, *TINY, "--tokenizer", "byte", "--max-steps", "2"])
    ratio = yaml.safe_load((out / "config.yaml").read_text())["run"]["val_tokens_per_char"]
    assert ratio > 1.1                                        # several bytes per character here
    assert summary["bits_per_char"] == pytest.approx(summary["val_loss"] / math.log(2) * ratio, rel=1e-5)
