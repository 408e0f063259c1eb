"""train --profile: the grouped table of a few warm steps, in profile.md and at the end of the output."""

from __future__ import annotations

import re

from tiny_models import SAMPLE, run_cli

from scratchlm.training.profile import GROUPS, REST, group_of_code


def test_every_group_names_code_the_engine_has():
    covered = set(group_of_code().values())
    assert covered == set(GROUPS)                                 # a renamed op would leave its group empty


def test_train_profile_writes_and_shows_the_table(tmp_path):
    out = tmp_path / "run"
    run = run_cli("train", SAMPLE, "--output-dir", out, "--model-dim", "16", "--num-heads", "2", "--num-layers", "1",
                  "--max-seq-len", "16", "--epochs", "1", "--max-steps", "6", "--batch-size", "4", "--profile")
    assert run.returncode == 0, run.stderr
    table = (out / "profile.md").read_text()
    assert "3 steps after 2 warm-up steps" in table and table.split("\n\n", 2)[2].strip() in run.stdout
    rows = re.findall(r"^\| (.+?) \| ([\d.]+) \| (\d+)% \|$", table, flags=re.M)
    assert {name for name, _, _ in rows} == set(GROUPS) | {REST}
    times = [float(ms) for _, ms, _ in rows]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert 95 <= sum(int(share) for _, _, share in rows) <= 105   # shares of one step, each rounded


def test_a_run_too_short_to_profile_says_so(tmp_path):
    out = tmp_path / "run"
    run = run_cli("train", SAMPLE, "--output-dir", out, "--model-dim", "16", "--num-heads", "2", "--num-layers", "1",
                  "--max-seq-len", "16", "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--profile")
    assert run.returncode == 0, run.stderr
    assert "No profile: the run made 2 step(s)" in (out / "profile.md").read_text()
