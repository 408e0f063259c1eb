"""The interactive prompt: commands, Ctrl-C and Ctrl-D, driven in-process, through a pipe and a terminal."""

from __future__ import annotations

import fcntl
import io
import os
import select
import signal
import subprocess
import termios
import time

import pytest
from tiny_models import SCRATCHLM, checkpoint_file, run_cli, tiny_model

from scratchlm.inference.decoder import Decoder
from scratchlm.inference.interactive import InteractiveSession
from scratchlm.inference.sampling import SamplingSettings


def lines_then_eof(lines):
    pending = list(lines)

    def read_line(prompt):
        if not pending:
            raise EOFError
        item = pending.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return read_line


@pytest.fixture(scope="module")
def session_parts():
    model, tok = tiny_model(max_seq_len=16)
    return Decoder(model), tok


def run_session(session_parts, lines, decoder=None, **settings):
    decoder = decoder or session_parts[0]
    out, err = io.StringIO(), io.StringIO()
    session = InteractiveSession(decoder, session_parts[1], SamplingSettings(**settings), "Model: tiny",
                                 out=out, err=err)
    code = session.run(lines_then_eof(lines))
    return code, out.getvalue(), err.getvalue(), session


def test_set_status_history_clear_and_quit(session_parts):
    code, out, err, session = run_session(session_parts, [
        "The cat", "/set temperature=0.5", "/set max_tokens 7", "/set top_k=3 top-p=0.9 seed=1", "The dog",
        "/status", "/history", "/clear", "/history", "/help", "/quit", "never read"])
    assert code == 0 and err == ""
    assert "Updated: temperature=0.5\n" in out and "Updated: max_tokens=7\n" in out
    assert "Updated: top_k=3, top_p=0.9, seed=1\n" in out
    assert "Settings: max_tokens=7 temperature=0.5 top_k=3 top_p=0.9 seed=1" in out and "Model: tiny" in out
    assert "  1  The cat\n  2  The dog\n" in out and "(no prompts yet)" in out
    assert "/set NAME=VALUE" in out
    dog_line = next(line for line in out.splitlines() if "The dog" in line and "  2" not in line)
    assert len(dog_line.split("The dog", 1)[1]) == 7            # exactly max_tokens characters
    assert session.history == [] and "never read" not in out


def test_bad_commands_say_why_and_carry_on(session_parts):
    code, out, err, session = run_session(session_parts, [
        "/set temperature=-1", "/set top_p=abc", "/set colour=blue", "/set", "/frobnicate", "Ωmega", "/status"])
    assert code == 0                                             # ended by EOF, not by an error
    assert "temperature must be 0" in err and "top_p needs a finite number" in err and "unknown setting 'colour'" in err
    assert "usage: /set" in err and "unknown command /frobnicate" in err and "'Ω'" in err
    assert "Settings: max_tokens=200 temperature=0.8" in out      # nothing changed


class InterruptingDecoder(Decoder):
    """Raises KeyboardInterrupt (like Ctrl-C) after a few tokens of the first generation."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = 0

    def feed(self, ids):
        self.calls += 1
        if self.calls == 5:
            raise KeyboardInterrupt
        return super().feed(ids)


def test_ctrl_c_stops_a_generation_and_returns_to_the_prompt(session_parts):
    model = tiny_model(max_seq_len=16)[0]
    code, out, err, session = run_session(session_parts, [
        "The", KeyboardInterrupt(), "/set max_tokens=3", "Once"], decoder=InterruptingDecoder(model))
    assert code == 0 and "(stopped)" in out and "Updated: max_tokens=3" in out
    assert session.history == ["The", "Once"]


# ---- the real program, through a pipe and through a terminal ---------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return checkpoint_file(tmp_path_factory.getbasetemp(), steps=30, max_seq_len=16)


def test_piped_session(checkpoint):
    script = "The cat\n/set temperature=0.5\nThe cat\n/set top_p=2\n/nonsense\n/history\n/exit\nnever\n"
    run = run_cli("generate", checkpoint, "--interactive", "--max-tokens", "20", input=script)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("> The cat") == 2 and "Updated: temperature=0.5" in run.stdout
    assert "  2  The cat" in run.stdout and "never" not in run.stdout
    assert "top-p must be in (0, 1]" in run.stderr and "unknown command /nonsense" in run.stderr
    assert run_cli("generate", checkpoint, "--interactive", input="The\n").returncode == 0   # EOF ends it


class Terminal:
    """The program on a pseudo-terminal that is its controlling terminal (so Ctrl-C sends SIGINT)."""

    def __init__(self, args):
        self.master, slave = os.openpty()

        def take_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            signal.signal(signal.SIGINT, signal.SIG_DFL)    # as from a shell, even if pytest runs in the background

        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, preexec_fn=take_terminal)
        os.close(slave)
        self.seen = b""

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, marker: bytes, timeout: float = 60.0) -> bytes:
        """Read until ``marker`` appears after what was already consumed; return what was read."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"no {marker!r} on the terminal; last output: {self.seen[-400:]!r}")
            try:
                self.seen += os.read(self.master, 65536)
            except OSError:  # the program closed the terminal
                raise AssertionError(f"terminal closed before {marker!r}; output: {self.seen[-400:]!r}") from None
        before, _, self.seen = self.seen.partition(marker)
        return before + marker

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def test_terminal_session_with_ctrl_c_and_ctrl_d(checkpoint):
    term = Terminal([str(SCRATCHLM), "generate", str(checkpoint), "--interactive", "--max-tokens", "30"])
    try:
        term.expect(b"> ")
        term.send(b"The cat\n")
        assert b"The cat" in term.expect(b"\n> ")
        term.send(b"/set temperature=0.5\n")
        term.expect(b"Updated: temperature=0.5")
        term.send(b"/set max_tokens=100000000\n")
        term.expect(b"Updated: max_tokens=100000000")
        term.send(b"Once\n")
        term.expect(b"Once")
        term.expect(b"Once")                    # the echo, then the printed prompt ...
        term.seen = b""
        while len(term.seen) < 300:            # ... and text streaming after it
            term.seen += os.read(term.master, 65536)
        term.send(b"\x03")                      # Ctrl-C: stop this generation
        term.expect(b"(stopped)")
        term.expect(b"> ")
        term.send(b"/status\n")
        term.expect(b"Settings: max_tokens=100000000 temperature=0.5")
        term.expect(b"> ")
        term.send(b"\x04")                      # Ctrl-D: leave
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()
