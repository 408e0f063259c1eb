"""The command line as a new user meets it: line-ending spaces, missing arguments, exact option names."""

from __future__ import annotations

import pytest
from tiny_models import checkpoint_file
from train_helpers import TINY, small_text

from scratchlm.cli import main as cli
from scratchlm.cli.argv import drop_line_ending_spaces, option_table


def one_error_line(argv, capsys) -> str:
    """Run in process: exit 2 and exactly one 'error:' line, which is returned."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return checkpoint_file(tmp_path_factory.mktemp("ckpt"))


# ---- 16: only what a '\ \' line ending leaves is dropped -------------------------------------------
def test_only_lone_spaces_outside_values_are_dropped():
    table = option_table(cli.__doc__)
    argv = ["generate", " ", "m.pt", " ", "--stop", " ", "--prompt", "", " ", "--interactive", " "]
    assert drop_line_ending_spaces(argv, table) == ["generate", "m.pt", "--stop", " ", "--prompt", "", "--interactive"]
    assert drop_line_ending_spaces(["generate", "m.pt", "--prompt", "\t"], table)[-1] == "\t"


@pytest.mark.parametrize("option, value", [("--stop", "\n"), ("--stop", " "), ("--prompt", ""), ("--prompt", " ")])
def test_whitespace_values_reach_generate(checkpoint, capsys, option, value):
    code = cli.main(["generate", str(checkpoint), " ", option, value, " ", "--max-tokens", "5", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    if option == "--prompt":
        assert out.startswith(value)


# ---- 17: a missing argument is named; config.yaml alone repeats a run ------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["train"], "train needs DATA"), (["train", "--epochs", "2"], "train needs DATA"),
    (["generate", "--prompt", "x"], "generate needs CKPT"), (["evaluate", "m.pt"], "evaluate needs DATA"),
    (["evaluate"], "evaluate needs CKPT"), (["generate", "a.pt", "b.txt"], "unexpected argument 'b.txt'"),
])
def test_missing_arguments_are_named(argv, expected, capsys):
    assert expected in one_error_line(argv, capsys)


def test_a_runs_config_yaml_alone_repeats_the_run(tmp_path, capsys):
    first = tmp_path / "first"
    data = small_text(tmp_path, 1500)
    assert cli.main(["train", str(data), "--output-dir", str(first), *TINY, "--epochs", "1", "--quiet"]) == 0
    again = tmp_path / "again"
    code = cli.main(["train", "--config", str(first / "config.yaml"), "--output-dir", str(again), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (again / "final_model.pt").is_file()
    assert f"data: {data}" in (again / "config.yaml").read_text()


def test_resuming_needs_no_data_argument(tmp_path, capsys):
    run, data = tmp_path / "run", small_text(tmp_path, 1500)
    assert cli.main(["train", str(data), "--output-dir", str(run), *TINY, "--epochs", "1", "--quiet"]) == 0
    code = cli.main(["train", "--resume-from", str(run / "checkpoint_epoch_1.pt"), "--epochs", "2", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (run / "checkpoint_epoch_2.pt").is_file()


def test_config_yaml_whose_data_is_gone_says_so(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"data: {tmp_path / 'gone.txt'}\nepochs: 1\n")
    line = one_error_line(["train", "--config", config, "--output-dir", tmp_path / "o"], capsys)
    assert "gone.txt, which is not a file here" in line and "give DATA" in line


# ---- 18: exact option names, each once, each of its own command --------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["train", "d.txt", "--lr", "0.01"], "unknown option --lr (did you mean --learning-rate"),
    (["train", "d.txt", "--lr-sched", "cosine"], "unknown option --lr-sched (did you mean --lr-schedule?)"),
    (["train", "d.txt", "--epoch", "3"], "did you mean --epochs"),
    (["train", "d.txt", "--epochs", "3", "--epochs=4"], "--epochs is given twice ('--epochs 3' and '--epochs=4')"),
    (["generate", "m.pt", "--epochs", "3"], "--epochs is an option of train, not of generate"),
    (["train", "d.txt", "--stride", "3"], "--stride is an option of evaluate, not of train"),
    (["generate", "m.pt", "--quiet=yes"], "--quiet takes no value"),
])
def test_option_mistakes_are_named(argv, expected, capsys):
    assert expected in one_error_line(argv, capsys)


def test_a_value_that_looks_like_an_option_is_a_value(checkpoint, capsys):
    assert cli.main(["generate", str(checkpoint), "--stop", "--epochs", "--max-tokens", "3", "--quiet"]) == 0


def test_the_settings_defaults_are_the_usage_strings_defaults(tmp_path):
    """TrainSettings' own defaults (the library's) must be what the command line gives by default."""
    import dataclasses

    from train_helpers import parse

    from scratchlm.training.job import TrainSettings

    settings, _, _ = parse(["train", tmp_path / "d.txt"])
    for field in dataclasses.fields(TrainSettings):
        if field.default is not dataclasses.MISSING and field.name not in ("resume_from", "validation_data"):
            assert getattr(settings, field.name) == field.default, field.name
