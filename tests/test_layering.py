"""The layering rule as a test: every import in scratchlm/ and kernels/ points down, never up.

    cli -> training | inference -> model, nn, optim, data, checkpoint -> autograd -> kernels
        -> backend, errors

Imports are read from the source (``ast``), so function-level imports and ``__main__``
blocks count too. Modules on one floor may import each other, except that training and
inference stay independent of each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FLOORS = {   # module prefix -> floor (higher may import lower)
    "scratchlm.cli": 5, "scratchlm.api": 5,
    "scratchlm.training": 4, "scratchlm.inference": 4,
    "scratchlm.model": 3, "scratchlm.nn": 3, "scratchlm.optim": 3, "scratchlm.data": 3, "scratchlm.checkpoint": 3,
    "scratchlm.checkpoint_header": 3, "scratchlm.huggingface": 3,
    "scratchlm.autograd": 2,
    "scratchlm.kernels": 1,
    "scratchlm.backend": 0, "scratchlm.errors": 0, "scratchlm.limits": 0, "scratchlm._allocator": 0,
    "scratchlm.cpu_load": 0,
}
ENTRY_POINTS = {"scratchlm", "scratchlm.__main__"}        # the package itself and python -m: above everything
PEERS_KEPT_APART = {frozenset({"scratchlm.training", "scratchlm.inference"})}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for the package (scratchlm/) and its kernels (kernels/)."""
    found = {}
    for top, package in ((ROOT / "scratchlm", "scratchlm"), (ROOT / "kernels", "scratchlm.kernels")):
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = module_files()


def imported_modules(name: str, path: Path) -> set[str]:
    """Every scratchlm module that ``name`` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:      # `from pkg import module` imports that module
                child = f"{base}.{alias.name}"
                targets.add(child if child in MODULES else base)
    return {t for t in targets if t == "scratchlm" or t.startswith("scratchlm.")}


def floor_of(module: str) -> tuple[str, int]:
    if module in ENTRY_POINTS:
        return module, 6
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, FLOORS[prefix]
    raise AssertionError(f"{module} is on no floor: add it to FLOORS in {Path(__file__).name}")


def violations(name: str, path: Path) -> list[str]:
    room, floor = floor_of(name)
    found = []
    for target in sorted(imported_modules(name, path)):
        if target == "scratchlm":          # `from scratchlm import __version__`: the package's own metadata
            continue
        target_room, target_floor = floor_of(target)
        if target_floor > floor:
            found.append(f"{name} (floor {floor}) imports {target} (floor {target_floor}): upward")
        elif frozenset({room, target_room}) in PEERS_KEPT_APART:
            found.append(f"{name} imports {target}: {room} and {target_room} stay independent")
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    assert violations(name, MODULES[name]) == []


def test_every_module_has_a_floor():
    for name in MODULES:
        floor_of(name)


def test_an_upward_import_is_caught(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from scratchlm.training.loop import train\n")
    assert violations("scratchlm.kernels.planted", planted) == [
        "scratchlm.kernels.planted (floor 1) imports scratchlm.training.loop (floor 4): upward"]
    planted.write_text("if __name__ == '__main__':\n    from scratchlm import model\n")
    assert violations("scratchlm.kernels.planted", planted) != []


def test_relative_and_peer_imports_are_resolved(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from ..inference import sampling\nfrom . import outputs\n")
    assert violations("scratchlm.training.planted", planted) == [
        "scratchlm.training.planted imports scratchlm.inference.sampling: "
        "scratchlm.training and scratchlm.inference stay independent"]
