"""The Python API (``scratchlm/api.py``) does what the command line does, with the same checks.

Each call is compared with the command it stands for, run in process through ``cli.main``:
the same weights after training, the same text after generating, the same loss after
evaluating, and for bad input the same message as a typed exception instead of exit code 2.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from tiny_models import SAMPLE, checkpoint_file
from train_helpers import assert_same_arrays, checkpoint_arrays, small_text, train_in_process

import scratchlm
from scratchlm.api import UnknownSetting
from scratchlm.cli import main as cli
from scratchlm.errors import CheckpointError, DataError, OptionError, TokenizerError, TrainingInterrupted, UserError

TINY = dict(model_dim=16, num_heads=2, num_layers=1, max_seq_len=16, batch_size=8)
TINY_ARGS = ["--model-dim", "16", "--num-heads", "2", "--num-layers", "1", "--max-seq-len", "16", "--batch-size", "8"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return checkpoint_file(tmp_path_factory.mktemp("api"), steps=30)


def cli_error(capsys, *argv) -> str:
    """The message of the one 'error:' line that ``scratchlm ARGV`` prints (exit code 2)."""
    assert cli.main([str(a) for a in argv]) == 2
    return capsys.readouterr().err.strip().removeprefix("error: ")


def test_train_gives_the_weights_the_command_line_gives(tmp_path, capsys):
    data = small_text(tmp_path)
    run = scratchlm.train(data, output_dir=tmp_path / "api", epochs=2, seed=3, learning_rate=0.01, quiet=True, **TINY)
    assert capsys.readouterr() == ("", "")                       # quiet: nothing at all
    assert run == tmp_path / "api" and (run / "final_model.pt").is_file()
    assert cli.main(["train", str(data), "--output-dir", str(tmp_path / "cli"), *TINY_ARGS, "--epochs", "2",
                     "--seed", "3", "--learning-rate", "0.01", "--quiet"]) == 0
    assert_same_arrays(checkpoint_arrays(run / "final_model.pt"), checkpoint_arrays(tmp_path / "cli" / "final_model.pt"))


def test_train_without_quiet_shows_the_run(tmp_path, capsys):
    scratchlm.train([small_text(tmp_path)], output_dir=tmp_path / "o", epochs=1, **TINY)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "Training Complete" in out, out


def test_generate_gives_the_text_the_command_line_prints(model_path, capsys):
    model = scratchlm.load(model_path)
    for settings, options in [(dict(max_tokens=40, seed=5), ["--max-tokens", "40", "--seed", "5"]),
                              (dict(max_tokens=30, temperature=0), ["--max-tokens", "30", "--temperature", "0"]),
                              (dict(max_tokens=30, top_k=5, top_p=0.9, repetition_penalty=1.3, stop="e"),
                               ["--max-tokens", "30", "--top-k", "5", "--top-p", "0.9", "--repetition-penalty", "1.3",
                                "--stop", "e"]),
                              (dict(max_tokens=20, beam_width=3), ["--max-tokens", "20", "--beam-width", "3"])]:
        text = model.generate("The ", **settings)
        assert cli.main(["generate", str(model_path), "--prompt", "The ", *options]) == 0
        assert capsys.readouterr().out == text + "\n", settings
        assert model.generate("The ", **settings) == text                    # the same seed, the same text
    assert model.generate("The ", max_tokens=40, seed=5) != model.generate("The ", max_tokens=40, seed=6)


def test_stream_yields_the_continuation_piece_by_piece(model_path):
    model = scratchlm.load(model_path)
    pieces = list(model.stream("The ", max_tokens=25, seed=1))
    assert len(pieces) > 1
    assert "The " + "".join(pieces) == model.generate("The ", max_tokens=25, seed=1)
    with pytest.raises(OptionError, match="top-p"):
        model.stream("The ", top_p=0)                 # checked at the call, before the first piece


def test_evaluate_gives_the_loss_the_command_line_reports(model_path, tmp_path, capsys):
    model = scratchlm.load(model_path)
    text = SAMPLE.read_text(encoding="utf-8")[:1000]
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    assert cli.main(["evaluate", str(model_path), str(tmp_path / "t.txt"), "--stride", "8", "--output",
                     str(tmp_path / "e.json")]) == 0
    expected = json.loads((tmp_path / "e.json").read_text())
    from_text = model.evaluate(text, stride=8)
    from_file = model.evaluate(tmp_path / "t.txt", stride=8)
    for result in (from_text, from_file):
        assert result.loss == pytest.approx(expected["loss"], rel=1e-12)
        assert result.characters_scored == expected["characters_scored"] == len(text) - 1
    assert model.evaluate(text).loss != from_text.loss           # the default stride is the context


def test_bad_values_raise_the_command_lines_message(model_path, tmp_path, capsys):
    model = scratchlm.load(model_path)
    cases = [(lambda: model.generate("The", temperature=-1), ["generate", model_path, "--temperature", "-1"]),
             (lambda: model.generate("The", beam_width=2, temperature=0.5),
              ["generate", model_path, "--beam-width", "2", "--temperature", "0.5"]),
             (lambda: model.evaluate("The cat", stride=0), ["evaluate", model_path, SAMPLE, "--stride", "0"]),
             (lambda: scratchlm.train(SAMPLE, model_dim=30, num_heads=4, output_dir=tmp_path / "x"),
              ["train", SAMPLE, "--model-dim", "30", "--num-heads", "4", "--output-dir", tmp_path / "x"]),
             (lambda: scratchlm.train(SAMPLE, epochs="many"), ["train", SAMPLE, "--epochs", "many"]),
             (lambda: scratchlm.train(tmp_path / "missing.txt"), ["train", tmp_path / "missing.txt"])]
    for call, argv in cases:
        with pytest.raises(UserError) as caught:
            call()
        assert str(caught.value) == cli_error(capsys, *argv), argv
    assert not (tmp_path / "x").exists()                       # refused before anything was written


def test_typed_errors(model_path, tmp_path):
    model = scratchlm.load(model_path)
    with pytest.raises(TokenizerError, match="never saw"):
        model.generate("Ωmega")
    assert model.generate("Ωmega", skip_unknown=True, max_tokens=3).startswith("mega")
    assert model.generate("Ωmega", replace_unknown=" ", max_tokens=3).startswith(" mega")
    with pytest.raises(CheckpointError, match="not found"):
        scratchlm.load(tmp_path / "none.pt")
    with pytest.raises(DataError, match="not found"):
        scratchlm.prepare(tmp_path / "none.txt", tmp_path / "ds")
    with pytest.raises(OptionError, match="True or False"):
        model.generate("The", skip_unknown="yes")
    with pytest.raises(TypeError, match="str"):
        model.generate(42)
    with pytest.raises(TypeError, match="str or a pathlib.Path"):
        model.evaluate(b"bytes")


@pytest.mark.parametrize("call, keyword, hint", [
    ("generate", "temprature", "did you mean temperature?"),
    ("generate", "batch_size", "it takes"),                   # an option of evaluate, not of generate
    ("generate", "max-tokens", "did you mean max_tokens?"),
    ("evaluate", "strde", "did you mean stride?"),
    ("train", "lerning_rate", "did you mean learning_rate?"),
    ("train", "debug", "it takes"),
])
def test_an_unknown_keyword_is_a_type_error_too(model_path, call, keyword, hint):
    model = scratchlm.load(model_path)
    function = {"generate": model.generate, "evaluate": lambda **k: model.evaluate("The", **k),
                "train": lambda **k: scratchlm.train(SAMPLE, **k)}[call]
    with pytest.raises(UnknownSetting, match=f"unknown keyword '{keyword}'") as caught:
        function(**{keyword: 1})
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, OptionError)
    assert hint in str(caught.value)


def test_every_keyword_set_names_options_of_its_command():
    from scratchlm.api import EVALUATE_OPTIONS, GENERATE_OPTIONS, PREPARE_OPTIONS, train_options
    from scratchlm.cli.argv import option_table

    table = option_table(cli.__doc__)
    for command, names in [("generate", GENERATE_OPTIONS), ("evaluate", EVALUATE_OPTIONS),
                           ("prepare", PREPARE_OPTIONS), ("train", train_options())]:
        assert names and all(command in table[name].commands for name in names), command
    assert {"--learning-rate", "--init-from", "--resume-from", "--config", "--overwrite"} <= train_options()


def test_an_interrupted_run_raises_and_resumes(tmp_path, monkeypatch):
    from scratchlm.training import progress

    data = small_text(tmp_path)
    monkeypatch.setattr(progress.Reporter, "step", lambda self, *a: signal.raise_signal(signal.SIGINT))
    with pytest.raises(TrainingInterrupted) as caught:
        scratchlm.train(data, output_dir=tmp_path / "run", epochs=3, quiet=True, **TINY)
    stop = caught.value
    assert stop.checkpoint.name == "interrupted.pt" and stop.step == 1
    assert str(stop.checkpoint) in str(stop)
    monkeypatch.undo()
    run = scratchlm.train(resume_from=stop.checkpoint, quiet=True)
    assert run == tmp_path / "run" and (run / "final_model.pt").is_file()
    train_in_process(["train", data, "--output-dir", tmp_path / "whole", "--epochs", "3", *TINY_ARGS])
    assert_same_arrays(checkpoint_arrays(run / "final_model.pt"), checkpoint_arrays(tmp_path / "whole" / "final_model.pt"))


def test_prepare_then_train(tmp_path):
    folder = scratchlm.prepare(small_text(tmp_path), tmp_path / "ds", tokenizer="byte", val_split=0.2, quiet=True)
    assert (folder / "dataset.json").is_file()
    run = scratchlm.train(folder, output_dir=tmp_path / "o", max_steps=3, quiet=True, **TINY)
    assert scratchlm.load(run / "final_model.pt").tokenizer.kind == "byte"


def test_export_and_load_a_gpt2_folder(model_path, tmp_path):
    pytest.importorskip("tokenizers")
    model = scratchlm.load(model_path)
    folder = model.export(tmp_path / "hf")
    again = scratchlm.load(folder)
    assert again.generate("The ", max_tokens=20, temperature=0) == model.generate("The ", max_tokens=20, temperature=0)
    ids = model.tokenizer.encode("The king")
    np.testing.assert_allclose(again.network(ids[None])[0].data, model.network(ids[None])[0].data, rtol=1e-6, atol=1e-6)


def test_importing_the_api_loads_nothing_heavy():
    code = ("import sys, scratchlm; scratchlm.load, scratchlm.train, scratchlm.Model, scratchlm.errors.UserError; "
            "print(sorted(m for m in ('numpy', 'numba', 'docopt', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
