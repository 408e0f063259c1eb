"""Reading the raw command line before docopt does: what each option is, and what a user got wrong.

docopt alone reports a repeated option or a missing argument as an "unknown option", ignores
the options of another command, and takes a prefix (``--lr``) for the one option it starts
(``--lr-schedule``). So the option table is read from the usage string's sections ("Train
options:", "Common options:"...), and ``check_command_line`` walks argv with it: exact names
only, each given once, each used by the command, with its value if it takes one.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from scratchlm.errors import OptionError
from scratchlm.limits import excerpt

COMMANDS = ("train", "generate", "interactive", "evaluate", "export", "prepare")
HINT = "(scratchlm {command} --help lists its options)"
# What a tutorial line ending in '\ \' passes: an escaped space, then the line continuation.
LINE_ENDING_ARGUMENT = " "
ARGUMENT_MEANINGS = {"CKPT": "the checkpoint file of a trained model (.pt)", "DATA": "a UTF-8 text file"}
_OPTION_LINE = re.compile(r"^  (?:-\w )?(--[\w-]+)(?:[ =]([A-Z][A-Z_]*))?(?:\s{2,}|$)")


@dataclass(frozen=True)
class OptionSpec:
    name: str
    takes_value: bool
    commands: tuple[str, ...]


def section_commands(section: str) -> tuple[str, ...]:
    """The commands an options section of the usage string is for ("Generate, interactive and
    evaluate options:" -> generate, interactive, evaluate; "Common options:" -> all); () for any
    other section."""
    title = section.strip("\n").partition("\n")[0]
    if not title.endswith("options:"):
        return ()
    words = re.findall(r"\w+", title.lower())
    return COMMANDS if "common" in words else tuple(c for c in COMMANDS if c in words)


def option_table(usage: str) -> dict[str, OptionSpec]:
    """Every long option of the usage string: whether it takes a value, and which commands use it."""
    table = {}
    for section in usage.split("\n\n"):
        commands = section_commands(section)
        for line in section.strip("\n").splitlines()[1:] if commands else ():
            match = _OPTION_LINE.match(line)
            if match:
                table[match[1]] = OptionSpec(match[1], match[2] is not None, commands)
    return table


def drop_line_ending_spaces(argv, table: dict[str, OptionSpec]) -> list[str]:
    """argv without the lone spaces that '\\ \\' line endings leave; a space that is the value of an
    option (``--stop " "``) stays, as does every other whitespace value (``--prompt ""``)."""
    kept = []
    for i, arg in enumerate(argv):
        previous = argv[i - 1] if i else ""
        is_value = previous in table and table[previous].takes_value
        if arg == LINE_ENDING_ARGUMENT and not is_value:
            continue
        kept.append(arg)
    return kept


def check_command_line(argv, table: dict[str, OptionSpec], arguments: dict[str, tuple[str, ...]]) -> None:
    """An OptionError for the first thing wrong with ``argv`` (command first) that docopt would
    misreport: an unknown, inexact, repeated, misplaced or value-less option, or a missing argument.
    ``arguments``: each command's positional arguments in order, an optional one in brackets."""
    command, seen, positionals = argv[0], {}, []
    hint = HINT.format(command=command)
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            if arg.startswith("-") and len(arg) > 1 and arg not in ("-h", "--"):
                raise OptionError(f"unknown option {excerpt(arg, quoted=False)} {hint}")
            positionals.append(arg)
            i += 1
            continue
        name, has_inline, _ = arg.partition("=")
        spec = table.get(name)
        if spec is None:
            raise OptionError(f"unknown option {excerpt(name, quoted=False)}{did_you_mean(name, table, command)} {hint}")
        if command not in spec.commands:
            users = " and ".join(spec.commands)
            raise OptionError(f"{name} is an option of {users}, not of {command} {hint}")
        shown = arg
        if spec.takes_value and not has_inline:
            if i + 1 >= len(argv):
                raise OptionError(f"{name} needs a value {hint}")
            i += 1
            shown = f"{arg} {argv[i]}"
        elif has_inline and not spec.takes_value:
            raise OptionError(f"{name} takes no value, got {excerpt(arg)} {hint}")
        if name in seen:
            raise OptionError(f"{name} is given twice ({excerpt(seen[name])} and {excerpt(shown)}): give it once")
        seen[name] = shown
        i += 1
    _check_arguments(command, positionals, arguments[command])


def _check_arguments(command: str, given: list[str], wanted: tuple[str, ...]) -> None:
    """``wanted``: the command's arguments in order, an optional one in brackets ("[DATA]"),
    any number of them with dots ("[DATA...]")."""
    required = [name.rstrip(".") for name in wanted if not name.startswith("[")]
    usage = f"scratchlm {' '.join((command, *wanted))} [options]"
    if len(given) < len(required):
        missing = required[len(given)]
        raise OptionError(f"{command} needs {missing}, {ARGUMENT_MEANINGS[missing]}: {usage} "
                          f"{HINT.format(command=command)}")
    if len(given) > len(wanted) and not wanted[-1].rstrip("]").endswith("..."):   # "DATA..." takes any number
        raise OptionError(f"unexpected argument {excerpt(given[len(wanted)])}: {usage} (quote a value that holds spaces)")


def did_you_mean(name: str, table: dict[str, OptionSpec], command: str) -> str:
    """' (did you mean --x?)': options this command uses that ``name`` abbreviates (--lr:
    --learning-rate), starts, or resembles; '' when none comes close."""
    mine = [option for option, spec in table.items() if command in spec.commands]
    name = name[:100]                                  # difflib on a huge argument would take minutes
    stem = name.lstrip("-")
    initials = [o for o in mine if "".join(word[0] for word in o.lstrip("-").split("-")) == stem]
    prefixed = [o for o in mine if o.startswith(name)]
    similar = difflib.get_close_matches(name, mine, n=2, cutoff=0.6)
    close = list(dict.fromkeys(initials + prefixed or similar))[:3]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def given_options(argv, usage: str) -> set[str]:
    """The long options that ``argv`` really names (not docopt's filled-in defaults): ``argv``
    parsed again against ``usage`` with its defaults removed."""
    from docopt import docopt

    bare = re.sub(r"\s*\[default:[^\]]*\]", "", usage)
    parsed = docopt(bare, argv=list(argv), default_help=False)
    return {key for key, value in parsed.items() if key.startswith("--") and value not in (None, False)}
