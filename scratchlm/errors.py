"""Typed errors the library raises for problems a user can fix.

``cli.py`` turns every ``UserError`` into one line on stderr and exit code 2; the
library itself never prints or exits. ``ParameterOwnershipError`` is not a
``UserError``: it reports calling code that misuses the Python API (a bug in that
code, not bad input), so it stays a traceback.
"""


class UserError(Exception):
    """Something the user can fix (bad input, bad option, bad file). The message says how."""


class DataError(UserError):
    """The training or evaluation text cannot be used."""


class CheckpointError(UserError):
    """A checkpoint is missing, truncated, corrupted or not a scratchlm checkpoint."""


class TokenizerError(UserError):
    """Text holds characters the model's vocabulary lacks."""


class OptionError(UserError):
    """A command-line option or config value is out of range."""


class ParameterOwnershipError(RuntimeError):
    """A parameter's data or grad was rebound away from the optimizer's flat buffers that own it."""
