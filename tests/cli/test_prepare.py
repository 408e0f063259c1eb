"""scratchlm prepare DATA... --output DIR, then train DIR: the same run as on the text; bad input refused."""

from __future__ import annotations

import json

import pytest
import yaml
from train_helpers import TINY, assert_same_arrays, checkpoint_arrays, refused, small_text, train_in_process

from scratchlm.cli import main as cli
from scratchlm.data import token_cache

RUN = [*TINY, "--lr-schedule", "constant", "--warmup-steps", "2"]


def prepare(*argv) -> int:
    return cli.main(["prepare", *map(str, argv)])


def test_training_on_a_prepared_folder_is_the_run_on_the_text(tmp_path, capsys):
    data = small_text(tmp_path, 3000)
    assert prepare(data, "--output", tmp_path / "ds", "--val-split", "0.2") == 0
    said = capsys.readouterr().out
    assert "3,000 characters, 3,000 char tokens (uint8)" in said and f"scratchlm train {tmp_path / 'ds'}" in said
    for name, source in (("text", data), ("prepared", tmp_path / "ds")):
        train_in_process(["train", source, *RUN, "--val-split", "0.2", "--max-steps", "3", "--output-dir",
                          tmp_path / name] if name == "text" else
                         ["train", source, *RUN, "--max-steps", "3", "--output-dir", tmp_path / name])
    assert_same_arrays(checkpoint_arrays(tmp_path / "text" / "final_model.pt"),
                       checkpoint_arrays(tmp_path / "prepared" / "final_model.pt"))
    run = yaml.safe_load((tmp_path / "prepared" / "config.yaml").read_text())
    assert run["data"] == str(tmp_path / "ds") and run["run"]["data_characters"] == 3000
    log = (tmp_path / "prepared" / "training_log.txt").read_text()
    assert f"tokens: {tmp_path / 'ds'} (prepared by scratchlm prepare)" in log


def test_a_prepared_validation_file_is_the_run_with_validation_data(tmp_path, capsys):
    data, held_out = small_text(tmp_path, 3000), small_text(tmp_path, 500, "held_out.txt")   # its characters are DATA's
    assert prepare(data, "--output", tmp_path / "ds", "--validation-data", held_out) == 0
    assert (tmp_path / "ds" / "val.bin").stat().st_size == 500
    train_in_process(["train", data, *RUN, "--validation-data", held_out, "--max-steps", "2",
                      "--output-dir", tmp_path / "text"])
    train_in_process(["train", tmp_path / "ds", *RUN, "--max-steps", "2", "--output-dir", tmp_path / "prepared"])
    losses = [json.loads((tmp_path / n / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]
              for n in ("text", "prepared")]
    assert losses[0] == losses[1]
    assert yaml.safe_load((tmp_path / "prepared" / "config.yaml").read_text())["run"]["validation"]["tokens"] == 500


def test_a_prepared_run_resumes_from_its_folder(tmp_path):
    data = small_text(tmp_path, 2000)
    assert prepare(data, "--output", tmp_path / "ds") == 0
    train_in_process(["train", tmp_path / "ds", *RUN, "--epochs", "2", "--output-dir", tmp_path / "full"])
    train_in_process(["train", tmp_path / "ds", *RUN, "--epochs", "1", "--output-dir", tmp_path / "half"])
    train_in_process(["train", "--resume-from", tmp_path / "half" / "checkpoint_epoch_1.pt", "--epochs", "2"])
    assert_same_arrays(checkpoint_arrays(tmp_path / "full" / "checkpoint_epoch_2.pt"),
                       checkpoint_arrays(tmp_path / "half" / "checkpoint_epoch_2.pt"))


def test_prepare_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys):
    data = small_text(tmp_path, 1000)
    out = tmp_path / "ds"
    refused(["prepare", data], capsys, "prepare needs --output DIR")
    refused(["prepare", data, "--output", out, "--tokenizer", "bpe"], capsys, "--tokenizer for prepare is char or byte")
    refused(["prepare", data, "--output", out, "--val-split", "0.2", "--validation-data", data], capsys,
            "give one of them")
    refused(["prepare", data, "--output", out, "--val-split", "2"], capsys, "--val-split")
    refused(["prepare", tmp_path / "missing.txt", "--output", out], capsys, "missing.txt")
    unknown = tmp_path / "odd.txt"
    unknown.write_text("Ωmega and ≈", encoding="utf-8")
    refused(["prepare", data, "--output", out, "--validation-data", unknown], capsys, "'Ω'", "'≈'",
            "--tokenizer byte")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused(["prepare", data, "--output", busy], capsys, "already holds files that are not a scratchlm dataset")
    refused(["prepare", data, "--output", data], capsys, "is a file")
    assert (busy / "notes.txt").read_text() == "mine"


def test_prepare_replaces_a_dataset_folder(tmp_path, capsys):
    data = small_text(tmp_path, 1000)
    assert prepare(data, "--output", tmp_path / "ds", "--quiet") == 0
    assert prepare(data, "--output", tmp_path / "ds", "--quiet", "--tokenizer", "byte") == 0
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["tokenizer"]["kind"] == "byte"
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("damage", "says"), [
    (lambda ds: (ds / "tokens.bin").write_bytes(b"short"), "has 5 bytes, not the 1,000"),
    (lambda ds: (ds / "dataset.json").write_text('{"format": "scratchlm-dataset", "version": 99}'),
     "another version of scratchlm"),
    (lambda ds: (ds / "dataset.json").write_text("{"), "cannot be read"),
])
def test_a_damaged_prepared_folder_is_refused(tmp_path, capsys, damage, says):
    assert prepare(small_text(tmp_path, 1000), "--output", tmp_path / "ds", "--quiet") == 0
    damage(tmp_path / "ds")
    refused(["train", tmp_path / "ds", *TINY, "--output-dir", tmp_path / "o"], capsys,
            "not a usable prepared dataset", says, "write it again with scratchlm prepare")
    assert not (tmp_path / "o").exists()


def test_options_that_contradict_the_prepared_folder_are_refused(tmp_path, capsys):
    data = small_text(tmp_path, 1000)
    assert prepare(data, "--output", tmp_path / "ds", "--quiet", "--val-split", "0.2") == 0
    refused(["train", tmp_path / "ds", *TINY, "--val-split", "0.3"], capsys, "--val-split 0.3 differs", "drop --val-split")
    refused(["train", tmp_path / "ds", *TINY, "--tokenizer", "byte"], capsys, "--tokenizer", "differs")
    refused(["train", tmp_path / "ds", *TINY, "--validation-data", data], capsys, "--validation-data", "differs")


def test_the_implicit_cache_gives_the_same_run_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "CACHE_FROM_BYTES", 0)
    data = small_text(tmp_path, 2000)
    common = [data, *RUN, "--max-steps", "3", "--cache-dir", tmp_path / "cache"]
    for name in ("written", "reused"):
        train_in_process(["train", *common, "--output-dir", tmp_path / name])
        log = (tmp_path / name / "training_log.txt").read_text()
        assert f"tokens: {name}: {tmp_path / 'cache'}" in log
    monkeypatch.setattr(token_cache, "CACHE_FROM_BYTES", 1 << 40)
    train_in_process(["train", *common, "--output-dir", tmp_path / "memory"])
    assert "tokens:" not in (tmp_path / "memory" / "training_log.txt").read_text()
    for name in ("written", "reused"):
        assert_same_arrays(checkpoint_arrays(tmp_path / "memory" / "final_model.pt"),
                           checkpoint_arrays(tmp_path / name / "final_model.pt"))


def test_resume_through_the_implicit_cache_is_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "CACHE_FROM_BYTES", 0)
    data = small_text(tmp_path, 1500)
    common = [data, *RUN, "--dropout", "0.1", "--cache-dir", tmp_path / "cache"]
    train_in_process(["train", *common, "--epochs", "2", "--output-dir", tmp_path / "full"])
    train_in_process(["train", *common, "--epochs", "1", "--output-dir", tmp_path / "half"])
    train_in_process(["train", "--resume-from", tmp_path / "half" / "checkpoint_epoch_1.pt", "--epochs", "2",
                      "--cache-dir", tmp_path / "cache"])
    assert_same_arrays(checkpoint_arrays(tmp_path / "full" / "checkpoint_epoch_2.pt"),
                       checkpoint_arrays(tmp_path / "half" / "checkpoint_epoch_2.pt"))


def test_a_full_disk_while_preparing_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import errno

    from scratchlm.data import token_file

    def full(self, ids):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(token_file.TokenWriter, "write", full)
    data = small_text(tmp_path, 1000)
    refused(["prepare", data, "--output", tmp_path / "ds"], capsys, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.txt"]
