"""pytest set-up shared by every benchmark suite in this folder.

- ``bench_*.py`` files are collected as test modules (so ``pytest benchmarks/`` finds
  them; pytest's default pattern is ``test_*.py``).
- This folder is put on ``sys.path`` so suites can ``import configs`` and friends.
- pytest-benchmark's saved machine info also records the load average and the git
  commit, because on a shared machine a number means little without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import scratchlm  # noqa: F401  before any suite imports NumPy: it sets OpenBLAS's thread timeout

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def pytest_collect_file(file_path, parent):
    is_suite = file_path.suffix == ".py" and file_path.name.startswith("bench_")
    if is_suite and not parent.session.isinitpath(file_path):  # named on the command line: pytest collects it
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["load_average"] = os.getloadavg()
    commit = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    machine_info["git_commit"] = commit.stdout.strip()
