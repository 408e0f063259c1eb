"""Messages that used to mislead: permission denied, UTF-16 text, mpirun's ranks, a closed pipe,
and a learning rate that a resume with more --epochs raises."""

from __future__ import annotations

import builtins
import io
import os
import subprocess

import pytest
from tiny_models import SCRATCHLM, checkpoint_file
from train_helpers import TINY, small_text, train_in_process

from scratchlm.cli import main as cli
from scratchlm.training.progress import Reporter


def one_error_line(argv, capsys) -> str:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def unreadable(path, monkeypatch):
    """Make ``path`` unreadable to this process (root reads anything: then refuse its open())."""
    path.chmod(0)
    if os.geteuid() == 0:
        real_open = builtins.open

        def refuse(file, *args, **kwargs):
            if os.fspath(file) == os.fspath(path):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refuse)
        monkeypatch.setattr(io, "open", refuse)           # what pathlib calls


def test_an_unreadable_checkpoint_is_permission_denied(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(checkpoint_file(tmp_path).read_bytes())
    unreadable(ckpt, monkeypatch)
    line = one_error_line(["generate", ckpt], capsys)
    assert "permission denied" in line and str(ckpt) in line and "corrupted" not in line


def test_an_unreadable_config_is_permission_denied(tmp_path, capsys, monkeypatch):
    config = tmp_path / "config.yaml"
    config.write_text("epochs: 1\n")
    unreadable(config, monkeypatch)
    line = one_error_line(["train", small_text(tmp_path), "--config", config, "--output-dir", tmp_path / "o"], capsys)
    assert "permission denied" in line and str(config) in line


@pytest.mark.parametrize("encoding, named", [("utf-16", "UTF-16LE"), ("utf-16-be", "UTF-16BE"),
                                             ("utf-32", "UTF-32LE"), ("utf-16-le", "UTF-16LE")])
def test_utf16_and_utf32_text_is_named(tmp_path, capsys, encoding, named):
    path = tmp_path / "windows.txt"
    path.write_bytes(("To be, or not to be: that is the question.\n" * 30).encode(encoding))
    line = one_error_line(["train", path, "--output-dir", tmp_path / "o"], capsys)
    assert f"looks like {named} text" in line and f"iconv -f {named} -t UTF-8" in line and "latin1" not in line


MPI_RANK_1 = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}


def test_under_mpirun_only_rank_0_reports_a_usage_error(capsys, monkeypatch):
    for name, value in MPI_RANK_1.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["train", "d.txt", "--lr", "0.1"]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    assert cli.main(["train", "d.txt", "--lr", "0.1"]) == 2
    assert capsys.readouterr().err.count("error: unknown option --lr") == 1


def test_under_mpirun_another_rank_speaks_only_if_rank_0_did_not(capsys, monkeypatch):
    from scratchlm.errors import DataError

    for name, value in MPI_RANK_1.items():
        monkeypatch.setenv(name, value)
    slept = []
    monkeypatch.setattr("time.sleep", slept.append)       # rank 0's abort would end this rank meanwhile
    assert cli.report_error(DataError("data file not found: d.txt"), debug=False) == 2
    assert slept == [cli.RANK_ZERO_GRACE_S]
    assert capsys.readouterr().err == "rank 1: error: data file not found: d.txt\n"


def test_help_into_a_closed_pipe_is_quiet():
    read_end, write_end = os.pipe()
    os.close(read_end)                                 # the reader (`| head`) is gone before we write
    try:
        result = subprocess.run([str(SCRATCHLM), "train", "--help"], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 0


class FactsRecorder(Reporter):
    def start(self, facts, resumed_from, step):
        self.panel = facts["panel"]


def test_resuming_with_more_epochs_says_the_learning_rate_rises(tmp_path):
    data, out = small_text(tmp_path, 1500), tmp_path / "run"
    train_in_process(["train", data, "--output-dir", out, *TINY, "--epochs", "1", "--warmup-steps", "0"])
    more, same = FactsRecorder(), FactsRecorder()
    train_in_process(["train", data, "--resume-from", out / "checkpoint_epoch_1.pt", "--output-dir", tmp_path / "more",
                      "--epochs", "3"], more)
    row = more.panel["Learning rate"]
    assert row.startswith("raised at step") and "spans 3 epochs, not 1" in row
    train_in_process(["train", data, "--output-dir", tmp_path / "new", *TINY, "--epochs", "1"], same)
    assert "Learning rate" not in same.panel
