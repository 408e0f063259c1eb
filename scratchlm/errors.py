"""Typed errors the library raises for problems a user can fix.

``cli.py`` turns every ``UserError`` into one line on stderr and exit code 2; the
library itself never prints or exits.
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
