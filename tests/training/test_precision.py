"""scratchlm train --precision bf16 (and --mixed-precision): what it records, that it falls back to
fp32 with one line where it cannot run, that its checkpoints stay fp32 and that it resumes exactly.
The runs in bf16 skip where this CPU or this install has no bf16 product."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from kernel_cases import needs_bf16_product
from train_helpers import TINY, assert_same_arrays, checkpoint_arrays, parse, refused, small_text, train_in_process

from scratchlm.kernels import vendor_gemm

# products big enough to go through the bf16 gemm on every thread
MODEL = ["--model-dim", "64", "--num-heads", "2", "--num-layers", "1", "--max-seq-len", "32", "--batch-size", "8"]


def recorded(out) -> dict:
    return yaml.safe_load((out / "config.yaml").read_text())


def test_precision_defaults_to_fp32_and_mixed_precision_means_bf16(tmp_path):
    data = small_text(tmp_path)
    assert parse(["train", data]).__getitem__(0).precision == "fp32"
    assert parse(["train", data, "--mixed-precision"])[0].precision == "bf16"
    assert parse(["train", data, "--precision", "BF16"])[0].precision == "bf16"
    assert parse(["train", data, "--precision", "bf16", "--mixed-precision"])[0].precision == "bf16"


@pytest.mark.parametrize("argv, fragments", [
    (["--precision", "fp16"], ["--precision must be one of fp32, bf16", "fp16"]),
    (["--precision", "fp32", "--mixed-precision"], ["--mixed-precision is --precision bf16", "fp32"]),
    (["--precision", "bf16", "--dtype", "float64"], ["--precision bf16 keeps its weights in float32", "float64"]),
])
def test_contradictions_are_refused_in_one_line(tmp_path, capsys, argv, fragments):
    refused(["train", small_text(tmp_path), "--output-dir", tmp_path / "out", *argv], capsys, *fragments)


def test_without_a_bf16_product_the_run_says_so_and_trains_in_fp32(tmp_path, monkeypatch):
    from scratchlm.training import job

    monkeypatch.setattr(job, "bf16_unavailable_reason", lambda device: "this CPU has no bf16 matrix units (test)")
    out = tmp_path / "out"
    train_in_process(["train", small_text(tmp_path), "--output-dir", out, *TINY, "--epochs", "1",
                      "--precision", "bf16"])
    assert recorded(out)["precision"] == "fp32"                # what ran
    log = (out / "training_log.txt").read_text()
    assert "precision: fp32: --precision bf16 asked for, but this CPU has no bf16 matrix units (test)" in log


@needs_bf16_product
def test_a_bf16_run_records_bf16_keeps_fp32_checkpoints_and_learns_like_fp32(tmp_path):
    data = small_text(tmp_path, 6000)
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        summary = train_in_process(["train", data, "--output-dir", out, *MODEL, "--epochs", "2",
                                    "--precision", precision])
        runs[precision] = summary["val_loss"]
        assert recorded(out)["precision"] == precision
    arrays = checkpoint_arrays(tmp_path / "bf16" / "final_model.pt")
    assert {a.dtype for a in arrays.values()} == {np.dtype(np.float32)}
    library = vendor_gemm.describe(vendor_gemm.bf16_product())
    assert f"bf16 products ({library}, " in (tmp_path / "bf16" / "training_log.txt").read_text()
    assert runs["bf16"] != runs["fp32"]
    assert abs(runs["bf16"] - runs["fp32"]) < 0.02 * runs["fp32"]


@needs_bf16_product
def test_a_bf16_run_resumes_exactly_and_keeps_its_precision(tmp_path):
    data = small_text(tmp_path, 3000)
    common = [*MODEL, "--lr-schedule", "constant", "--warmup-steps", "2", "--mixed-precision"]
    full, half = tmp_path / "full", tmp_path / "half"
    train_in_process(["train", data, "--output-dir", full, *common, "--epochs", "2"])
    train_in_process(["train", data, "--output-dir", half, *common, "--epochs", "1"])
    settings = parse(["train", data, "--resume-from", half / "checkpoint_epoch_1.pt", "--epochs", "2"])[0]
    assert settings.precision == "bf16"                         # from the checkpoint's settings
    train_in_process(["train", data, "--resume-from", half / "checkpoint_epoch_1.pt", "--epochs", "2"])
    assert_same_arrays(checkpoint_arrays(full / "checkpoint_epoch_2.pt"), checkpoint_arrays(half / "checkpoint_epoch_2.pt"))
