"""Bad input to ``generate`` and ``evaluate``: one clear line on stderr, exit code 2, nothing written.

Every case runs the installed console script in a fresh folder and checks that the
folder holds exactly what it held before (no output file, no temporary file left).
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from tiny_models import checkpoint_file, run_cli, sample_text


class RunsCode:
    """Unpickling this would create the folder ``marker``: proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def make_files(folder, good_checkpoint):
    """The files the cases refer to, by name."""
    blob = good_checkpoint.read_bytes()
    (folder / "text.txt").write_text(sample_text()[:500], encoding="utf-8")
    (folder / "empty.txt").write_text("")
    (folder / "blank.txt").write_text("  \n\t \n")
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (folder / "omega.txt").write_text("the Ω and the ∑", encoding="utf-8")
    (folder / "one.txt").write_text("a")
    (folder / "folder").mkdir()
    (folder / "good.pt").write_bytes(blob)
    (folder / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    header = int.from_bytes(blob[:8], "little")
    (folder / "corrupted.pt").write_bytes(blob[:8] + b"\x00\xff" * (header // 2) + blob[8 + header:])
    (folder / "garbage.pt").write_bytes(bytes(range(256)) * 4)
    (folder / "pickle.pt").write_bytes(pickle.dumps({"model": RunsCode(str(folder / "UNPICKLED"))}))
    from safetensors.numpy import save_file

    save_file({"weight": np.zeros((2, 2), dtype=np.float32)}, str(folder / "foreign.pt"))


CHECKPOINT_CASES = {
    "missing checkpoint": ("nothere.pt", "checkpoint not found"),
    "directory checkpoint": ("folder", "is a directory"),
    "truncated checkpoint": ("truncated.pt", "not a readable scratchlm checkpoint"),
    "corrupted checkpoint": ("corrupted.pt", "not a readable scratchlm checkpoint"),
    "garbage checkpoint": ("garbage.pt", "not a readable scratchlm checkpoint"),
    "pickle checkpoint": ("pickle.pt", "never unpickles"),
    "foreign safetensors": ("foreign.pt", "not a scratchlm checkpoint"),
}

GENERATE_CASES = {
    "negative temperature": (["--temperature", "-0.5"], "temperature must be 0"),
    "nan temperature": (["--temperature", "nan"], "--temperature needs a finite number"),
    "word temperature": (["--temperature=warm"], "--temperature needs a number, got 'warm'"),
    "top-p zero": (["--top-p", "0"], "top-p must be in (0, 1]"),
    "top-p above one": (["--top-p", "1.5"], "top-p must be in (0, 1]"),
    "negative top-k": (["--top-k", "-1"], "--top-k must be 0 or more (0 turns top-k off)"),
    "fractional top-k": (["--top-k", "2.5"], "--top-k needs a whole number"),
    "negative max-tokens": (["--max-tokens=-5"], "--max-tokens must be 0 or more"),
    "word max-tokens": (["--max-tokens", "ten"], "--max-tokens needs a whole number, got 'ten'"),
    "zero samples": (["--num-samples", "0"], "--num-samples must be 1 or more"),
    "negative samples": (["--num-samples", "-2"], "--num-samples must be 1 or more"),
    "negative seed": (["--seed", "-1"], "--seed must be 0 or more"),
    "unseen prompt characters": (["--prompt", "Ωmega"], "never saw in training: 'Ω'"),
    "output-file is a directory": (["--output-file", "folder"], "is a directory"),
    "output-file folder missing": (["--output-file", "nowhere/out.txt"], "does not exist"),
    "output-file under a file": (["--output-file", "text.txt/out.txt"], "does not exist"),
    "output-file not writable": (["--output-file", "/proc/scratchlm-out.txt"], "is not writable"),
    "cuda without a GPU": (["--device", "cuda"], "no usable CUDA GPU"),
    "unknown device": (["--device", "tpu"], "unknown device 'tpu'"),
}

EVALUATE_CASES = {
    "missing data": (["nothere.txt"], "data file not found"),
    "directory data": (["folder"], "holds no text files"),
    "empty data": (["empty.txt"], "is empty"),
    "whitespace data": (["blank.txt"], "is empty (or only whitespace)"),
    "not utf-8": (["latin1.txt"], "is not UTF-8 text (byte 3 is 0xe9)"),
    "unseen characters": (["omega.txt"], "never saw in training: 'Ω', '∑'"),
    "one character": (["one.txt"], "at least two characters"),
    "zero stride": (["text.txt", "--stride", "0"], "--stride must be 1 or more"),
    "negative stride": (["text.txt", "--stride=-4"], "--stride must be 1 or more"),
    "word stride": (["text.txt", "--stride", "some"], "--stride needs a whole number"),
    "stride past the context": (["text.txt", "--stride", "17"], "larger than the model's context of 16"),
    "zero batch": (["text.txt", "--batch-size", "0"], "--batch-size must be 1 or more"),
    "negative batch": (["text.txt", "--batch-size", "-3"], "--batch-size must be 1 or more"),
    "word batch": (["text.txt", "--batch-size", "x"], "--batch-size needs a whole number"),
    "output is a directory": (["text.txt", "--output", "folder"], "is a directory"),
    "output not writable": (["text.txt", "--output", "/proc/scratchlm-eval.json"], "is not writable"),
    "output folder missing": (["text.txt", "--output", "no/such/eval.json"], "does not exist"),
    "cuda without a GPU": (["text.txt", "--device", "cuda"], "no usable CUDA GPU"),
}


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    return checkpoint_file(tmp_path_factory.getbasetemp(), max_seq_len=16)


def assert_refused(folder, args, fragment):
    before = sorted(p.name for p in folder.iterdir())
    run = run_cli(*args, cwd=folder, env={"SCRATCHLM_DISABLE_CUDA": "1"})
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert fragment in lines[0]
    assert run.stdout == ""
    assert sorted(p.name for p in folder.iterdir()) == before      # nothing (half-)written
    assert not (folder / "UNPICKLED").exists()


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_bad_checkpoints(tmp_path, good_checkpoint, command, case):
    make_files(tmp_path, good_checkpoint)
    name, fragment = CHECKPOINT_CASES[case]
    args = ["generate", name, "--max-tokens", "5"] if command == "generate" else ["evaluate", name, "text.txt"]
    assert_refused(tmp_path, args, fragment)


@pytest.mark.parametrize("case", GENERATE_CASES)
def test_bad_generate_options(tmp_path, good_checkpoint, case):
    make_files(tmp_path, good_checkpoint)
    extra, fragment = GENERATE_CASES[case]
    short = [] if any(a.startswith("--max-tokens") for a in extra) else ["--max-tokens", "5"]
    assert_refused(tmp_path, ["generate", "good.pt", *short, *extra], fragment)


@pytest.mark.parametrize("case", EVALUATE_CASES)
def test_bad_evaluate_input(tmp_path, good_checkpoint, case):
    make_files(tmp_path, good_checkpoint)
    extra, fragment = EVALUATE_CASES[case]
    assert_refused(tmp_path, ["evaluate", "good.pt", *extra], fragment)


def test_the_good_files_work(tmp_path, good_checkpoint):
    """The control: the same folder and options with good values succeed."""
    make_files(tmp_path, good_checkpoint)
    run = run_cli("generate", "good.pt", "--max-tokens", "5", "--output-file", "out.txt", cwd=tmp_path)
    assert run.returncode == 0 and (tmp_path / "out.txt").exists(), run.stderr
    run = run_cli("evaluate", "good.pt", "text.txt", "--output", "eval.json", cwd=tmp_path)
    assert run.returncode == 0 and (tmp_path / "eval.json").exists(), run.stderr
