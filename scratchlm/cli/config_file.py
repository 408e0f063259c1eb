"""Reading a ``--config`` YAML file with bounds, so that no file can hang or flood the command.

YAML lets a small file stand for a huge value: anchors and aliases nest ("billion laughs": nine
levels of ten aliases each are 10^9 strings once expanded or printed), and deep nesting
exhausts Python's recursion. A config is a flat list of ``setting: value`` lines, so the file
is capped in size, aliases and nesting depth are capped while the YAML is composed (before
anything is expanded), and every value must be a single scalar.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from scratchlm.errors import OptionError
from scratchlm.limits import excerpt, regular_file_problem

MAX_CONFIG_BYTES = 1 << 20      # a run's config.yaml is about 1 KB
MAX_ALIASES = 20             # a run's config.yaml has none
MAX_DEPTH = 8                   # config.yaml nests its 'run' record three levels deep


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses too many aliases or too deep a nesting while composing the YAML."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases, self.depth = 0, 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Bound(f"it uses more than {MAX_ALIASES} aliases (*name)")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Bound(f"it nests values more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Bound(Exception):
    """A YAML file past one of the bounds above (the message says which)."""


def read_yaml_settings(path) -> dict:
    """The top-level ``key: value`` pairs of a YAML file (nested records such as 'run' come back as
    they are); an OptionError, naming --config and the file, for anything else."""
    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise OptionError(f"--config {path}: {'file not found' if problem == 'not found' else problem}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise OptionError(f"--config {path} is {path.stat().st_size:,} bytes: a config holds a few 'setting: value' "
                          f"lines (at most {MAX_CONFIG_BYTES:,} bytes)")
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedLoader)
    except _Bound as exc:
        raise OptionError(f"--config {path} is not a plain settings file: {exc}; write each "
                          "'setting: value' out in full") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise OptionError(f"--config {path} is not valid YAML{where}: {excerpt(str(problem), 120)}") from None
    except PermissionError:
        raise OptionError(f"cannot read --config {path}: permission denied") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise OptionError(f"--config {path} cannot be read as UTF-8 text: {excerpt(str(exc), 120)}") from None
    except ValueError as exc:          # a number past Python's digit limit, a bad date...
        raise OptionError(f"--config {path} holds a value that cannot be read: {excerpt(str(exc), 120)}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise OptionError(f"--config {path} must hold 'setting: value' lines like a run's config.yaml, "
                          f"not a {type(values).__name__}")
    return values


def check_scalar(path, key, value) -> None:
    """A setting's value is one number, word or flag, never a list or a mapping."""
    if isinstance(value, (list, dict, set, tuple)):
        raise OptionError(f"--config {path}: {excerpt(key)} must be a single value, not a "
                          f"{type(value).__name__} ({excerpt(value)})")
