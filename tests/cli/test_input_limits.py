"""Inputs that used to hang, grow without bound or flood the terminal (issue 15, items 7, 8, 10 and
part of 11): each now ends within a second or two with one short line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from tiny_models import checkpoint_contents, checkpoint_file, rewrite_checkpoint, run_cli
from train_helpers import TINY, refused, small_text

from scratchlm import limits


@pytest.fixture
def data(tmp_path):
    return small_text(tmp_path, 1000)


def quickly(argv, capsys, *fragments, seconds: float = 2.0) -> str:
    started = time.perf_counter()
    line = refused(argv, capsys, *fragments)
    assert time.perf_counter() - started < seconds, line
    return line


# ---- 7. sizes whose checks used to loop for ever -------------------------------------------------
def test_a_model_dim_with_no_fitting_head_count(tmp_path, data, capsys):
    quickly(["train", data, "--output-dir", tmp_path / "o", "--model-dim", "100000000007"], capsys,
            "not divisible by 4 heads", "--num-heads 1")


def test_a_huge_context_length(tmp_path, data, capsys):
    quickly(["train", data, "--output-dir", tmp_path / "o", "--max-seq-len", "100000000000000"], capsys,
            "is too short", "lower --max-seq-len")


@pytest.mark.parametrize("option, value", [("--num-layers", "100000"), ("--model-dim", "100000000000"),
                                           ("--model-dim", "9" * 4000)])
def test_a_model_too_big_for_the_memory(tmp_path, data, capsys, monkeypatch, option, value):
    monkeypatch.setattr(limits, "available_memory", lambda: 8 * 10**9)
    quickly(["train", data, "--output-dir", tmp_path / "o", option, value, "--num-heads", "1"], capsys,
            "of memory, but this machine has 8 GB available", "lower --model-dim")
    assert not (tmp_path / "o").exists()


def test_the_same_sizes_through_a_config_file(tmp_path, data, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model_dim: 100000000007\n")
    quickly(["train", data, "--output-dir", tmp_path / "o", "--config", config], capsys, "not divisible by 4 heads")
    config.write_text("max_seq_len: 100000000000000\n")
    quickly(["train", data, "--output-dir", tmp_path / "o", "--config", config], capsys, "is too short")


def test_the_same_sizes_through_a_checkpoint(tmp_path):
    good = checkpoint_file(tmp_path, max_seq_len=16)
    config = json.loads(checkpoint_contents(good)[1]["config"])
    rewrite_checkpoint(good, tmp_path / "huge.pt", config={**config, "d_model": 100000000007, "n_heads": 4})
    run = run_cli("generate", tmp_path / "huge.pt", "--max-tokens", "3", timeout=20)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "not divisible by 4 heads" in run.stderr


def test_a_huge_context_in_a_rope_checkpoint(tmp_path):
    """With rope no tensor depends on the context length, so only the memory check can catch it."""
    good = checkpoint_file(tmp_path, max_seq_len=16, pos_encoding="rope")
    config = json.loads(checkpoint_contents(good)[1]["config"])
    rewrite_checkpoint(good, tmp_path / "long.pt", config={**config, "max_seq_len": 10**15})
    run = run_cli("generate", tmp_path / "long.pt", "--max-tokens", "3", timeout=20)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "key/value cache" in run.stderr and "available" in run.stderr


# ---- 8. YAML that expands without bound; values echoed in full -------------------------------------
def laughs(levels: int, key: str = "model_dim") -> str:
    """A 'billion laughs' YAML: each level holds nine aliases of the one before."""
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\n{key}: *l{levels}\n"


@pytest.mark.parametrize("text, fragment", [
    (laughs(6), "more than 20 aliases"),
    (laughs(9), "more than 20 aliases"),
    ("model_dim: " + "[" * 100_000 + "]" * 100_000 + "\n", "more than 8 levels deep"),
    ("model_dim: &a [1, 2, 3]\n", "must be a single value"),
    ("model_dim: " + "x" * 1_000_000 + "\n", "model_dim in"),
    ("model_dim: " + "9" * 5000 + "\n", "cannot be read"),
    ("model_dim: 5\n" * 200_000, "bytes"),
    ("x" * 1000 + ": 1\n", "unknown setting"),
])
def test_yaml_that_grows_or_nests_is_refused_in_one_short_line(tmp_path, data, capsys, text, fragment):
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    quickly(["train", data, "--output-dir", tmp_path / "o", "--config", config], capsys, fragment)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option", ["--model-dim", "--dropout", "--tokenizer", "--epochs"])
def test_a_huge_option_value_is_echoed_as_an_excerpt(tmp_path, data, capsys, option):
    quickly(["train", data, "--output-dir", tmp_path / "o", option, "7" * 100 + "x" * 1_000_000], capsys, option, "...")


HUGE = "9" * 5000 + "x" * 100_000


@pytest.mark.parametrize("argv", [
    [HUGE], ["train", "d.txt", "--" + HUGE], ["generate", "m.pt", "--max-tokens", HUGE],
    ["generate", "m.pt", "--temperature", HUGE], ["generate", "m.pt", "--device", HUGE],
    ["evaluate", "m.pt", "d.txt", "--stride", HUGE],
])
def test_every_command_echoes_a_huge_value_as_an_excerpt(capsys, argv):
    quickly(argv, capsys, "...")


@pytest.mark.parametrize("value, longest", [("y" * 10**6, 60), (10**4000, 60),
                                            (list(range(10**5)), 60), ({"k": "v" * 10**5}, 60)])
def test_the_excerpt_is_bounded(value, longest):
    assert len(limits.excerpt(value)) <= longest


def test_the_excerpt_of_a_shared_structure_is_cheap():
    bomb = "lol"
    for _ in range(30):                       # 9^30 leaves once expanded
        bomb = [bomb] * 9
    started = time.perf_counter()
    assert len(limits.excerpt(bomb)) <= 60 and time.perf_counter() - started < 0.5


# ---- 10. DATA, CKPT or --config that is not a regular file ----------------------------------------
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("which", ["/dev/zero", "fifo"])
@pytest.mark.parametrize("command", ["train", "generate", "evaluate", "config"])
def test_special_files_are_refused_without_reading_them(tmp_path, fifo, which, command):
    special = fifo if which == "fifo" else which
    good = checkpoint_file(tmp_path, max_seq_len=16)
    text = small_text(tmp_path, 500)
    args = {"train": ["train", special, "--output-dir", tmp_path / "o", *TINY],
            "generate": ["generate", special],
            "evaluate": ["evaluate", good, special],
            "config": ["train", text, "--config", special, "--output-dir", tmp_path / "o"]}[command]
    run = run_cli(*args, timeout=20)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "not a regular file" in run.stderr


# ---- 11. Ctrl-C in the first tenth of a second ----------------------------------------------------
def test_the_entry_point_loads_nothing_heavy():
    """The console script imports scratchlm.cli.main before main() can catch anything: that import must
    be over in a blink, so it must not load NumPy (the handler is in place before any heavy import)."""
    probe = "import sys, scratchlm.cli.main; print(sorted({'numpy', 'yaml', 'docopt'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=20)
    assert run.stdout.strip() == "[]", run.stdout + run.stderr


@pytest.mark.parametrize("module", ["docopt", "scratchlm.cli.generate"])
def test_a_ctrl_c_while_modules_load_prints_one_line(monkeypatch, capsys, module):
    """A Ctrl-C that lands while main() is still importing (docopt, a command's modules) ends with
    'interrupted' and 130, not a traceback."""
    class InterruptingFinder:
        def find_spec(self, name, path=None, target=None):
            if name == module:
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptingFinder(), *sys.meta_path])
    from scratchlm.cli import main as cli

    try:
        code = cli.main(["generate", "none.pt"])
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped main(): the user sees a traceback")
    assert code == 130
    assert capsys.readouterr().err == "interrupted\n"
