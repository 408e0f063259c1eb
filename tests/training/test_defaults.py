"""The training defaults, pinned: they were chosen by measurement over seeds (docs/training.md), so a
change to any of them is a decision that re-measures, never an accident. Also what --warmup-steps
auto becomes, and that a run records the number so that a resumed run keeps it."""

from __future__ import annotations

import pytest
import yaml
from train_helpers import TINY, parse, refused, small_text, train_in_process

from scratchlm.model import GPT, GPTConfig
from scratchlm.training import job

CHOSEN = {  # TrainSettings field -> the default a user gets
    "learning_rate": 0.003,
    "warmup_steps": "auto",
    "lr_schedule": "cosine",
    "weight_decay": 0.1,
    "gradient_clip": 1.0,
    "dropout": 0.0,
    "batch_size": 32,
    "max_seq_len": 128,
}


def test_the_command_line_defaults_are_the_measured_ones(tmp_path):
    settings, _, _ = parse(["train", small_text(tmp_path)])
    assert {name: getattr(settings, name) for name in CHOSEN} == CHOSEN


def test_the_optimizer_and_initialisation_constants_are_the_measured_ones():
    assert job.ADAM_BETAS == (0.9, 0.99)
    assert job.ADAM_EPS == 1e-8
    assert job.MIN_LR_RATIO == 0.1
    assert job.WARMUP_FRACTION == 0.1
    model = GPT(GPTConfig(vocab_size=65, d_model=256, n_heads=8, n_layers=6, max_seq_len=128), seed=0)
    weights = model.state_dict()
    assert weights["wte.weight"].std() == pytest.approx(0.02, rel=0.01)
    assert weights["wpe.weight"].std() == pytest.approx(0.02, rel=0.01)
    projection = [name for name in weights if name.endswith("attn.proj.weight")][0]
    assert weights[projection].std() == pytest.approx(0.02 / 12 ** 0.5, rel=0.01)   # 0.02 / sqrt(2 * layers)


@pytest.mark.parametrize(("planned", "warmup"), [(440, 44), (50, 5), (5, 0), (1, 0), (1234, 123)])
def test_auto_warmup_is_a_tenth_of_the_run(planned, warmup):
    assert job.auto_warmup_steps(planned) == warmup


def test_a_run_records_its_warmup_and_a_resumed_longer_run_keeps_it(tmp_path):
    text = small_text(tmp_path)
    first = tmp_path / "run"
    train_in_process(["train", text, *TINY, "--epochs", "2", "--output-dir", first, "--quiet"])
    config = yaml.safe_load((first / "config.yaml").read_text())
    recorded = config["warmup_steps"]
    assert recorded == round(0.1 * config["run"]["schedule_steps"]) > 0
    limited = tmp_path / "limited"
    train_in_process(["train", text, *TINY, "--epochs", "50", "--max-steps", "20", "--output-dir", limited, "--quiet"])
    assert yaml.safe_load((limited / "config.yaml").read_text())["warmup_steps"] == 2   # of the 20 steps it takes
    settings, _, _ = parse(["train", "--resume-from", first / "final_model.pt", "--epochs", "4"])
    assert settings.warmup_steps == recorded


def test_warmup_steps_takes_auto_or_a_whole_number(tmp_path, capsys):
    text = small_text(tmp_path)
    assert parse(["train", text, "--warmup-steps", "AUTO"])[0].warmup_steps == "auto"
    assert parse(["train", text, "--warmup-steps", "7"])[0].warmup_steps == 7
    refused(["train", text, "--warmup-steps", "soon"], capsys, "--warmup-steps must be auto or a whole number")
