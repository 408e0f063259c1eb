"""Text with characters a character model never saw in training: refuse, leave them out, or replace them.

A character tokenizer can only encode its vocabulary, so a Shakespeare model cannot score
the King James Bible (or continue the prompt "Zoë") as it is. By default the command stops
and names the two options that make the text usable: ``--skip-unknown`` scores (or
continues) the rest, ``--replace-unknown CHAR`` puts a known character in each one's place.
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchlm.errors import OptionError, TokenizerError

SHOWN = 10   # distinct characters named in the error


@dataclass(frozen=True)
class UnseenPolicy:
    skip: bool = False
    replacement: str | None = None

    @classmethod
    def from_args(cls, args: dict) -> UnseenPolicy:
        replacement = args.get("--replace-unknown")
        if replacement is not None and len(replacement) != 1:
            raise OptionError(f"--replace-unknown needs one character, got {replacement!r}")
        if replacement is not None and args.get("--skip-unknown"):
            raise OptionError("--skip-unknown and --replace-unknown exclude each other: give one")
        return cls(bool(args.get("--skip-unknown")), replacement)

    def describe(self, count: int) -> str:
        """What was done, for the results: "12 skipped" or "12 replaced by '?'"."""
        return f"{count:,} skipped" if self.skip else f"{count:,} replaced by {self.replacement!r}"


def fit_to_vocabulary(tokenizer, text: str, policy: UnseenPolicy, what: str) -> tuple[str, int]:
    """(``text`` as the model can read it, how many characters were skipped or replaced); with
    neither option a TokenizerError that counts and names the unseen characters of ``what``."""
    missing = tokenizer.unknown(text)
    if not missing:
        return text, 0
    dropped = text.translate({ord(c): None for c in missing})
    count = len(text) - len(dropped)
    if policy.skip:
        return dropped, count
    if policy.replacement is not None:
        if tokenizer.unknown(policy.replacement):
            known = " " if not tokenizer.unknown(" ") else tokenizer.decode([0])
            raise OptionError(f"--replace-unknown {policy.replacement!r} is itself a character the model never saw: "
                              f"give one it knows, such as {known!r}")
        return text.translate({ord(c): policy.replacement for c in missing}), count
    shown = ", ".join(repr(c) for c in missing[:SHOWN]) + (" ..." if len(missing) > SHOWN else "")
    raise TokenizerError(f"{what} has {count:,} character(s) the model never saw in training: {shown} (pass "
                         "--skip-unknown to leave them out or --replace-unknown CHAR to replace them, or train "
                         "with --tokenizer byte)")
