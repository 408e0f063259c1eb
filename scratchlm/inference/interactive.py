"""The prompt loop of ``scratchlm interactive`` (also ``scratchlm generate --interactive``).

Each line typed at ``> `` is continued by the model and printed as it is produced;
a line starting with ``/`` is a command (``/help`` lists them). Ctrl-C stops the
current generation and returns to the prompt; Ctrl-D (end of input) or ``/quit``
leaves. It works the same with a terminal or with lines piped into stdin.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import numpy as np

from scratchlm.errors import UserError
from scratchlm.inference.probs import ProbabilityRecorder
from scratchlm.inference.sampling import SamplingSettings, generate_text, prompt_ids

PROMPT = "> "
HELP = """Type text and press Enter: the model continues it. Commands:
  /set NAME=VALUE ...  change settings: temperature, max_tokens, top_k, top_p, seed,
                       repetition_penalty (1.0: off), beam_width (0: sample; N: beam search),
                       length_penalty (ranks the beams), show_probs (K alternatives; 0: off)
  /status              show the model and the current settings
  /history             list this session's prompts
  /clear               forget the history
  /help                show this help
  /quit or /exit       leave (Ctrl-D too); Ctrl-C stops a generation"""
SETTINGS_SHOWN = ("max_tokens", "temperature", "top_k", "top_p", "seed", "repetition_penalty", "beam_width",
                  "length_penalty", "show_probs")


class InteractiveSession:
    """One session: its settings, its random generator and its history of prompts."""

    def __init__(self, decoder, tokenizer, settings: SamplingSettings, model_summary: str,
                 out=None, err=None, on_sample: Callable[[str, str], None] | None = None,
                 fit_prompt: Callable[[str], str] | None = None, show_probabilities: Callable | None = None):
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.settings = settings
        self.model_summary = model_summary
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.on_sample = on_sample
        self.fit_prompt = fit_prompt            # what becomes of characters the model never saw
        self.show_probabilities = show_probabilities   # (records, out): how show_probs is printed
        self.rng = np.random.default_rng(settings.seed)
        self.history: list[str] = []

    # ---- the loop -------------------------------------------------------------------
    def run(self, read_line: Callable[[str], str] = input) -> int:
        """Read lines until /quit or end of input; returns the exit code (0)."""
        self._say("Interactive mode: type a prompt, or /help for commands.")
        while True:
            try:
                line = read_line(PROMPT)
            except EOFError:
                self._write("\n")
                return 0
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh prompt, like Python's REPL
                self._write("\n")
                continue
            try:
                if not self.handle(line):
                    return 0
            except KeyboardInterrupt:  # Ctrl-C while a command ran: back to the prompt
                self._write("\n")

    def handle(self, line: str) -> bool:
        """Act on one input line; False when the session should end."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return True
        if text.lstrip().startswith("/"):
            return self._command(text.strip())
        self.history.append(text)
        self._continue(text)
        return True

    def _continue(self, prompt: str) -> None:
        try:
            prompt = self.fit_prompt(prompt) if self.fit_prompt else prompt
            prompt_ids(self.tokenizer, prompt)  # characters the model never saw: say so, print nothing
        except UserError as exc:
            self._error(str(exc))
            return
        self._write(prompt)
        pieces: list[str] = []
        k = self.settings.show_probs
        recorder = ProbabilityRecorder(self.tokenizer, k) if k else None
        try:
            for piece in generate_text(self.decoder, self.tokenizer, prompt, self.settings, self.rng, recorder):
                pieces.append(piece)
                self._write(piece)
        except KeyboardInterrupt:
            self._write("\n")
            self._say("(stopped)")
            return
        self._write("\n")
        if recorder is not None and self.show_probabilities is not None:
            self.show_probabilities(recorder.take(), self.out)
        if self.on_sample is not None:
            self.on_sample(prompt, "".join(pieces))

    # ---- commands -------------------------------------------------------------------
    def _command(self, text: str) -> bool:
        name, _, rest = text.partition(" ")
        name = name.lower()
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self._say(HELP)
        elif name == "/set":
            self._set(rest)
        elif name == "/status":
            self._say(self.model_summary)
            self._say("Settings: " + self._describe(SETTINGS_SHOWN))
        elif name == "/history":
            lines = [f"{i:3d}  {prompt}" for i, prompt in enumerate(self.history, 1)]
            self._say("\n".join(lines) if lines else "(no prompts yet)")
        elif name == "/clear":
            self.history.clear()
            self._say("History cleared.")
        else:
            self._error(f"unknown command {name}: type /help for the commands")
        return True

    def _set(self, rest: str) -> None:
        """``/set temperature=0.5 top_k=10`` (or ``/set temperature 0.5``): all or nothing."""
        words = re.sub(r"\s*=\s*", "=", rest).split()
        if len(words) == 2 and "=" not in rest:
            words = [f"{words[0]}={words[1]}"]
        if not words or any("=" not in w for w in words):
            self._error("usage: /set NAME=VALUE, e.g. /set temperature=0.5")
            return
        settings, names = self.settings, []
        try:
            for word in words:
                name, _, value = word.partition("=")
                settings = settings.updated(name, value)
                names.append(name.strip().lower().replace("-", "_"))
        except UserError as exc:
            self._error(str(exc))
            return
        if "seed" in names:  # a seed set again restarts its sequence
            self.rng = np.random.default_rng(settings.seed)
        self.settings = settings
        self._say("Updated: " + self._describe(names, ", "))

    def _describe(self, names, separator: str = " ") -> str:
        return separator.join(f"{n}={getattr(self.settings, n)}" for n in dict.fromkeys(names))

    # ---- output -----------------------------------------------------------------------
    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _say(self, text: str) -> None:
        self._write(text + "\n")

    def _error(self, message: str) -> None:
        self.out.flush()
        self.err.write(f"error: {message}\n")
        self.err.flush()


def read_line_with_editing() -> Callable[[str], str]:
    """``input``, with line editing and history when both ends are a terminal."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        try:
            import readline  # noqa: F401  (importing it is what turns editing on)
        except ImportError:
            pass
    return input
