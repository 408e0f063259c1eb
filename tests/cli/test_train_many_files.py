"""train DATA... on several files, a folder or a pattern; what the run records; bad DATA."""

from __future__ import annotations

import yaml
from train_helpers import TINY, refused, small_text, train_in_process


def two_files(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    small_text(folder, 1500, "b.txt")
    first = folder / "a.txt"
    first.write_text(small_text(tmp_path, 3000).read_text(encoding="utf-8")[1500:], encoding="utf-8")
    return folder


def test_two_files_a_folder_and_a_pattern_give_the_same_run(tmp_path):
    folder = two_files(tmp_path)
    runs = {"files": [folder / "a.txt", folder / "b.txt"], "folder": [folder], "glob": [str(folder / "*.txt")]}
    losses = {}
    for name, data in runs.items():
        out = tmp_path / name
        summary = train_in_process(["train", *data, *TINY, "--max-steps", "2", "--output-dir", out])
        losses[name] = summary["val_loss"]
        config = yaml.safe_load((out / "config.yaml").read_text())
        # a.txt does not end in a newline, so one joins it to b.txt
        assert config["run"]["data_files"] == 2 and config["run"]["data_characters"] == 3001
        assert "a.txt, " in config["run"]["data_sources"] and "2 files" in (out / "training_log.txt").read_text()
    assert len(set(losses.values())) == 1


def test_a_run_on_many_files_resumes_from_its_recorded_data(tmp_path):
    folder = two_files(tmp_path)
    out = tmp_path / "run"
    train_in_process(["train", folder / "a.txt", folder / "b.txt", *TINY, "--max-steps", "1", "--output-dir", out])
    assert yaml.safe_load((out / "config.yaml").read_text())["data"] == [str(folder / "a.txt"), str(folder / "b.txt")]
    summary = train_in_process(["train", *TINY, "--max-steps", "2", "--resume-from", out / "final_model.pt"])
    assert summary["val_loss"] is not None


def test_resuming_on_other_files_is_refused(tmp_path, capsys):
    folder = two_files(tmp_path)
    out = tmp_path / "run"
    train_in_process(["train", folder, *TINY, "--max-steps", "1", "--output-dir", out])
    refused(["train", folder / "b.txt", folder / "a.txt", *TINY, "--max-steps", "2", "--resume-from",
             out / "final_model.pt"], capsys, "is not the text this run was trained on", "resume with the same DATA")


def test_bad_data_arguments_are_one_line(tmp_path, capsys):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.png").write_bytes(b"\x89PNG")
    good = small_text(tmp_path)
    bad = tmp_path / "latin.txt"
    bad.write_bytes(b"ok " * 10 + "caf\u00e9".encode("latin-1"))
    refused(["train", good, tmp_path / "pictures", "--output-dir", tmp_path / "o"], capsys, "holds no text files")
    refused(["train", good, str(tmp_path / "*.none"), "--output-dir", tmp_path / "o"], capsys, "no file matches")
    refused(["train", good, bad, "--output-dir", tmp_path / "o"], capsys, "latin.txt is not UTF-8", "byte 33 is 0xe9")
    assert not (tmp_path / "o").exists()


def test_evaluate_scores_files_and_a_folder_alike(tmp_path, capsys):
    import json

    from scratchlm.cli import main as cli

    folder = two_files(tmp_path)
    out = tmp_path / "run"
    train_in_process(["train", folder, *TINY, "--max-steps", "1", "--output-dir", out])
    figures = []
    for data in ([folder / "a.txt", folder / "b.txt"], [folder]):
        report = tmp_path / "eval.json"
        argv = ["evaluate", out / "final_model.pt", *data, "--output", report, "--quiet"]
        assert cli.main([str(a) for a in argv]) == 0
        figures.append(json.loads(report.read_text()))
    assert figures[0]["characters_scored"] == figures[1]["characters_scored"] == 3001 - 1
    assert figures[0]["data"] == [str(folder / "a.txt"), str(folder / "b.txt")]
    capsys.readouterr()
    refused(["evaluate", out / "final_model.pt", folder, "--output", folder / "b.txt"], capsys, "that this command reads")
