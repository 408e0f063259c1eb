"""The command line of issue 19: --repetition-penalty, --beam-width, --show-probs, interactive, evaluate --data."""

from __future__ import annotations

import json

import pytest
from tiny_models import SAMPLE, checkpoint_file, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return checkpoint_file(tmp_path_factory.getbasetemp(), steps=30, max_seq_len=16)


def test_beam_search_is_deterministic_and_honours_max_tokens_and_stop(trained):
    args = ("generate", trained, "--prompt", "The", "--max-tokens", "25", "--beam-width", "3", "--quiet")
    first, second = run_cli(*args, "--seed", "1"), run_cli(*args, "--seed", "2")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout) == len("The") + 25 + 1
    stopped = run_cli(*args, "--stop", " ")
    assert stopped.returncode == 0 and " " not in stopped.stdout.removeprefix("The").rstrip("\n")


def test_show_probs_prints_a_row_per_token_and_writes_json(trained, tmp_path):
    out = tmp_path / "probs.json"
    run = run_cli("generate", trained, "--prompt", "The", "--max-tokens", "6", "--temperature", "0", "--show-probs",
                  "--top-probs", "2", "--output-file", out, "--quiet")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    text = lines[0].removeprefix("The")
    assert lines[1].split() == ["token", "prob", "likeliest", "next", "tokens"] and len(lines) == 2 + 6
    document = json.loads(out.read_text())
    tokens = document["samples"][0]["tokens"]
    assert document["samples"][0]["text"] == "The" + text and "".join(t["token"] for t in tokens) == text
    for token, line in zip(tokens, lines[2:]):
        assert len(token["alternatives"]) == 2 and token["alternatives"][0]["token"] == token["token"]
        assert line.startswith(json.dumps(token["token"])) and f"{100 * token['probability']:.1f}%" in line


def test_repetition_penalty_changes_the_greedy_text(trained):
    args = ("generate", trained, "--prompt", "The", "--max-tokens", "40", "--temperature", "0", "--quiet")
    plain, penalized = run_cli(*args), run_cli(*args, "--repetition-penalty", "3")
    assert plain.returncode == penalized.returncode == 0
    assert plain.stdout != penalized.stdout


def test_interactive_command_runs_the_loop_with_the_new_settings(trained):
    run = run_cli("interactive", trained, "--max-tokens", "5", "--quiet",
                  input="/help\n/set beam_width=2 repetition_penalty=1.5 show_probs=1\nThe\n/quit\n")
    assert run.returncode == 0, run.stderr
    assert "repetition_penalty" in run.stdout and "beam_width" in run.stdout and "show_probs" in run.stdout
    assert "Updated: beam_width=2, repetition_penalty=1.5, show_probs=1" in run.stdout
    assert "likeliest next tokens" in run.stdout


def test_evaluate_takes_data_as_an_option_too(trained):
    positional = run_cli("evaluate", trained, SAMPLE, "--quiet")
    option = run_cli("evaluate", trained, "--data", SAMPLE, "--quiet")
    assert positional.returncode == option.returncode == 0, option.stderr
    assert positional.stdout == option.stdout and "Perplexity" in option.stdout
    both = run_cli("evaluate", trained, SAMPLE, "--data", SAMPLE)
    assert both.returncode == 2 and "not both" in both.stderr
    assert "--data FILE" in run_cli("evaluate", "--help").stdout


@pytest.mark.parametrize("extra, expected", [
    (("--repetition-penalty", "0"), "repetition penalty must be more than 0"),
    (("--repetition-penalty", "-1"), "repetition penalty must be more than 0"),
    (("--beam-width", "0"), "--beam-width must be 1 or more"),
    (("--show-probs", "--top-probs", "0"), "--top-probs must be 1 or more"),
    (("--top-probs", "3"), "add --show-probs"),
    (("--length-penalty", "0.5"), "add --beam-width"),
    (("--beam-width", "2", "--temperature", "0.5"), "drop --temperature"),
    (("--beam-width", "2", "--top-k", "5", "--top-p", "0.9"), "drop --top-k and --top-p"),
    (("--beam-width", "2", "--num-samples", "3"), "drop --num-samples 3"),
])
def test_bad_values_are_one_line_and_exit_2(trained, extra, expected):
    run = run_cli("generate", trained, "--prompt", "The", *extra)
    assert run.returncode == 2
    assert run.stdout == "" and len(run.stderr.splitlines()) == 1 and expected in run.stderr
    assert "Traceback" not in run.stderr
