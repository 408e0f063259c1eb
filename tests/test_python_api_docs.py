"""docs/python-api.md's examples, run as they are: every ```python block, in order, in one namespace.

They run in a temporary folder that holds the repository's ``data/`` (as a link), as they would
from the repository's root, so the files they write stay out of the checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "python-api.md"


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 2, m[1]) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


def test_the_page_has_examples():
    blocks = python_blocks(PAGE)
    assert len(blocks) >= 6
    code = "\n".join(code for _, code in blocks)
    for call in ("scratchlm.train(", "scratchlm.load(", ".generate(", ".stream(", ".evaluate(", ".export(",
                 "scratchlm.prepare("):
        assert call in code, f"docs/python-api.md shows no example of {call}"


def test_every_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tokenizers")             # the export example writes a tokenizer.json
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "python_api_docs"}
    for line, code in python_blocks(PAGE):
        try:
            exec(compile(code, f"{PAGE}:{line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the example at docs/python-api.md line {line} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
    out = capsys.readouterr().out
    assert "loss " in out and "perplexity " in out           # the evaluate example printed its figures
    assert "did you mean temperature?" in out                # and the errors example its messages
