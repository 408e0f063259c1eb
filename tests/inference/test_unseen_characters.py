"""Characters the model never saw: the error names --skip-unknown and --replace-unknown, which work."""

from __future__ import annotations

import json

import pytest
from tiny_models import checkpoint_file, sample_text

from scratchlm.cli import main as cli

FOREIGN = "And Zoë said unto them, ‘Let there be light’: and there was light."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return checkpoint_file(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def foreign_text(tmp_path):
    path = tmp_path / "kjv.txt"
    path.write_text(FOREIGN * 3, encoding="utf-8")
    return path


def unseen_count(text: str) -> int:
    known = set(sample_text())
    return sum(c not in known for c in text)


def test_the_error_names_both_options(checkpoint, foreign_text, capsys):
    assert cli.main(["evaluate", str(checkpoint), str(foreign_text)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "never saw in training" in err[0]
    assert "--skip-unknown" in err[0] and "--replace-unknown CHAR" in err[0]
    assert f"has {unseen_count(FOREIGN * 3)} character(s)" in err[0]


def test_skip_scores_the_rest_and_says_how_many(checkpoint, foreign_text, tmp_path, capsys):
    report = tmp_path / "figures.json"
    code = cli.main(["evaluate", str(checkpoint), str(foreign_text), "--skip-unknown", "--output", str(report)])
    out = capsys.readouterr().out
    skipped = unseen_count(FOREIGN * 3)
    assert code == 0 and f"{skipped} skipped" in out
    figures = json.loads(report.read_text())
    assert figures["unseen_characters"] == skipped and figures["unseen_characters_were"] == "skipped"
    assert figures["characters_scored"] == len(FOREIGN * 3) - skipped - 1


def test_replace_scores_every_position(checkpoint, foreign_text, tmp_path, capsys):
    report = tmp_path / "figures.json"
    code = cli.main(["evaluate", str(checkpoint), str(foreign_text), "--replace-unknown", " ", "--output", str(report)])
    assert code == 0 and "replaced by ' '" in capsys.readouterr().out
    assert json.loads(report.read_text())["characters_scored"] == len(FOREIGN * 3) - 1


@pytest.mark.parametrize("argv, expected", [
    (["--replace-unknown", "ë"], "is itself a character the model never saw"),
    (["--replace-unknown", "ab"], "needs one character"),
    (["--replace-unknown", "x", "--skip-unknown"], "exclude each other"),
])
def test_bad_choices_are_one_line(checkpoint, foreign_text, capsys, argv, expected):
    assert cli.main(["evaluate", str(checkpoint), str(foreign_text), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


@pytest.mark.parametrize("option, replacement", [("--skip-unknown", ""), ("--replace-unknown=e", "e")])
def test_a_prompt_with_unseen_characters(checkpoint, capsys, option, replacement):
    known = set(sample_text())
    expected = "".join(c if c in known else replacement for c in "Zoë")
    assert cli.main(["generate", str(checkpoint), "--prompt", "Zoë", "--max-tokens", "3"]) == 2
    assert "--skip-unknown" in capsys.readouterr().err
    assert cli.main(["generate", str(checkpoint), "--prompt", "Zoë", "--max-tokens", "3", option]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(expected) and "characters the model never saw" in err


def test_interactive_prompts_follow_the_same_options(checkpoint):
    from tiny_models import run_cli

    refused = run_cli("generate", checkpoint, "--interactive", "--max-tokens", "3", input="Zoë\n/quit\n")
    assert refused.returncode == 0 and "--skip-unknown" in refused.stderr
    skipped = run_cli("generate", checkpoint, "--interactive", "--max-tokens", "3", "--skip-unknown",
                      input="Zoë\n/quit\n")
    assert skipped.returncode == 0 and "never saw" not in skipped.stderr and "o" in skipped.stdout
