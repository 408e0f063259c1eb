"""--validation-data (a held-out file) and --eval-tokens (a fixed sample of a large split)."""

from __future__ import annotations

import json

import pytest
import yaml
from train_helpers import TINY, parse, refused, small_text, train_in_process

from scratchlm.errors import DataError
from scratchlm.training.job import prepare
from scratchlm.training.loop import validation_loss


def held_out(tmp_path, data, name="val.txt"):
    """A validation file made of characters the training text holds (a slice of it, lines reversed)."""
    path = tmp_path / name
    path.write_text("\n".join(reversed(data.read_text(encoding="utf-8")[200:900].splitlines())), encoding="utf-8")
    return path


def val_losses(out) -> list[float]:
    return [json.loads(line)["val_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_validation_file_validates_and_all_of_data_trains(tmp_path):
    data = small_text(tmp_path, 1500)
    val = held_out(tmp_path, data)
    job = prepare(parse(["train", data, "--output-dir", tmp_path / "out", *TINY, "--validation-data", val])[0])
    assert len(job.train_ids) == 1500 and len(job.val_ids) == len(val.read_text(encoding="utf-8"))
    assert job.data_info["validation"]["path"] == str(val)
    train_in_process(["train", data, "--output-dir", tmp_path / "out", *TINY, "--epochs", "1", "--validation-data", val])
    config = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert config["validation_data"] == str(val) and config["eval_tokens"] == 262144


def test_unknown_characters_in_the_validation_file_are_named(tmp_path, capsys):
    data = small_text(tmp_path, 1500)
    val = tmp_path / "val.txt"
    val.write_text("the quick ✓ brown ☃ fox", encoding="utf-8")
    refused(["train", data, "--output-dir", tmp_path / "out", *TINY, "--validation-data", val], capsys,
            "3 character(s)", "'x'", "'✓'", "'☃'", "--tokenizer byte")
    assert not (tmp_path / "out").exists()
    train_in_process(["train", data, "--output-dir", tmp_path / "b", *TINY, "--epochs", "1", "--tokenizer", "byte",
                      "--validation-data", val])                                 # bytes encode anything


@pytest.mark.parametrize("content, fragment", [(None, "not found"), ("   \n", "is empty"), ("a", "too short"),
                                               (b"\xff\xfe\x00abc", "not UTF-8")])
def test_bad_validation_files(tmp_path, capsys, content, fragment):
    data, val = small_text(tmp_path, 1500), tmp_path / "val.txt"
    if isinstance(content, bytes):
        val.write_bytes(content)
    elif content is not None:
        val.write_text(content, encoding="utf-8")
    refused(["train", data, "--output-dir", tmp_path / "out", *TINY, "--validation-data", val], capsys, fragment,
            "--validation-data")


def test_val_split_and_a_validation_file_are_refused_together(tmp_path, capsys):
    data = small_text(tmp_path, 1500)
    refused(["train", data, *TINY, "--validation-data", held_out(tmp_path, data), "--val-split", "0.2"], capsys,
            "--val-split", "--validation-data", "give one of them")


def test_a_small_split_is_scored_whole(tmp_path):
    data = small_text(tmp_path, 3000)
    job = prepare(parse(["train", data, "--output-dir", tmp_path / "out", *TINY])[0])
    whole = validation_loss(job.model, job.val_ids, job.window, 8, eval_tokens=0)
    assert validation_loss(job.model, job.val_ids, job.window, 8, eval_tokens=job.settings.eval_tokens) == whole
    assert validation_loss(job.model, job.val_ids, job.window, 8, eval_tokens=40) != whole   # a sample of 2 windows


def test_the_eval_sample_is_the_same_across_resume(tmp_path):
    data = small_text(tmp_path, 1500)
    val = held_out(tmp_path, data)
    common = [*TINY, "--epochs", "2", "--eval-interval", "3", "--eval-tokens", "40", "--validation-data", val,
              "--warmup-steps", "3"]                          # fixed: auto's would count the --max-steps run
    train_in_process(["train", data, "--output-dir", tmp_path / "full", *common])
    spe = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[-1])["step"] // 2
    train_in_process(["train", data, "--output-dir", tmp_path / "part", *common, "--max-steps", spe])
    train_in_process(["train", data, "--resume-from", tmp_path / "part" / "checkpoint_epoch_1.pt", "--max-steps", "0"])
    assert val_losses(tmp_path / "part") == val_losses(tmp_path / "full")
    assert len(set(val_losses(tmp_path / "full"))) > 2


@pytest.mark.parametrize("change, fragment", [
    (["--eval-tokens", "80"], "eval_tokens"),
    (["--validation-data", "other"], "keeps its validation text"),
])
def test_resume_keeps_the_validation_source(tmp_path, capsys, change, fragment):
    data = small_text(tmp_path, 1500)
    val = held_out(tmp_path, data)
    train_in_process(["train", data, "--output-dir", tmp_path / "out", *TINY, "--epochs", "1", "--eval-tokens", "40",
                      "--validation-data", val])
    change = list(change)
    if change[-1] == "other":                                  # the same characters in another order
        change[-1] = tmp_path / "other.txt"
        change[-1].write_text(val.read_text(encoding="utf-8")[::-1], encoding="utf-8")
    refused(["train", data, "--resume-from", tmp_path / "out" / "checkpoint_epoch_1.pt", "--epochs", "2", *change],
            capsys, fragment)


def test_a_resumed_run_validated_on_the_split_refuses_a_file(tmp_path):
    data = small_text(tmp_path, 1500)
    train_in_process(["train", data, "--output-dir", tmp_path / "out", *TINY, "--epochs", "1"])
    settings, ckpt, _ = parse(["train", data, "--resume-from", tmp_path / "out" / "checkpoint_epoch_1.pt", "--epochs", "2",
                            "--validation-data", held_out(tmp_path, data)])
    with pytest.raises(DataError, match="tail of DATA"):
        prepare(settings, ckpt)
