"""Text generation: sampling settings, sampling one token, and streaming a continuation.

``generate_text`` continues a prompt with a ``Decoder`` (the KV-cache decoder of
``decoder.py``) and yields the new text piece by piece as it is produced, so a
caller can print each piece at once; with ``beam_width`` set it runs the beam search
of ``beam.py`` instead and yields the best hypothesis once it is found. Sampling happens on the host with NumPy:
the logits of one position are a few dozen numbers, and a host draw from one
seeded ``numpy.random.Generator`` makes "same seed, same text" hold on every device.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace

import numpy as np

from scratchlm.errors import OptionError
from scratchlm.limits import excerpt

# Tried in order when the prompt is empty: a text has to start from some token.
START_CHARACTERS = ("\n", " ")


@dataclass(frozen=True)
class SamplingSettings:
    """How a continuation is drawn. ``top_k`` 0 and ``top_p`` 1.0 mean "off"; they combine.
    ``repetition_penalty`` 1.0 is off; ``beam_width`` 0 samples, N >= 1 runs a beam search of N
    beams (temperature, top-k and top-p then play no part); ``show_probs`` K >= 1 records each
    token's probability and the K likeliest alternatives (0: off)."""

    max_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 42
    stop: str | None = None
    repetition_penalty: float = 1.0
    beam_width: int = 0
    length_penalty: float = 1.0
    show_probs: int = 0

    def __post_init__(self):
        if self.max_tokens < 0:
            raise OptionError(f"max tokens must be 0 or more, got {self.max_tokens}")
        if not self.temperature >= 0.0:  # also rejects NaN
            raise OptionError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k < 0:
            raise OptionError(f"top-k must be 0 (off) or a positive number of tokens, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise OptionError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.seed < 0:
            raise OptionError(f"seed must be 0 or more, got {self.seed}")
        if self.stop == "":
            raise OptionError("the stop string must not be empty")
        if not self.repetition_penalty > 0.0:
            raise OptionError(f"repetition penalty must be more than 0 (1.0 is off, 1.2 is typical), "
                              f"got {self.repetition_penalty}")
        if self.beam_width < 0:
            raise OptionError(f"beam width must be 0 (off: sample) or a number of beams, got {self.beam_width}")
        if self.show_probs < 0:
            raise OptionError(f"show_probs must be 0 (off) or the number of alternatives to show, got {self.show_probs}")

    def updated(self, name: str, text: str) -> SamplingSettings:
        """A copy with one setting parsed from text (``/set top_k=5``); OptionError if it is bad."""
        name = name.strip().lower().replace("-", "_")
        kinds = {f.name: f.type for f in fields(self) if f.name != "stop"}
        if name not in kinds:
            raise OptionError(f"unknown setting {excerpt(name)}: choose one of {', '.join(kinds)}")
        whole = kinds[name] in (int, "int")
        try:
            value = int(text.strip()) if whole else float(text.strip())
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            wanted = "a whole number" if whole else "a finite number"
            raise OptionError(f"{name} needs {wanted}, got {excerpt(text.strip())}")
        return replace(self, **{name: value})


def penalize_repeats(logits: np.ndarray, seen: np.ndarray, penalty: float) -> np.ndarray:
    """CTRL's repetition penalty (Keskar et al. 2019): a copy of ``logits`` (..., V) in which the
    logits of the tokens marked in ``seen`` (a bool mask of the same shape) are divided by
    ``penalty`` where positive and multiplied by it where negative, so both move towards "less likely"."""
    shaped = logits.copy()                                                    # (..., V)
    hit = shaped[seen]                                                        # (n,) the tokens seen
    shaped[seen] = np.where(hit > 0, hit / penalty, hit * penalty)
    return shaped


def seen_mask(ids, vocab_size: int) -> np.ndarray:
    """A bool mask (V,) of the token ids in ``ids``: the context the repetition penalty looks at."""
    seen = np.zeros(vocab_size, dtype=bool)                                   # (V,)
    seen[np.asarray(ids, dtype=np.int64)] = True
    return seen


def sample_token(logits: np.ndarray, settings: SamplingSettings, rng: np.random.Generator) -> int:
    """Draw the next token id from logits (V,): greedy at temperature 0, else temperature,
    then top-k (keep the k likeliest), then top-p (keep the fewest likeliest holding p)."""
    if settings.temperature == 0.0:
        return int(np.argmax(logits))
    z = logits / settings.temperature                                         # (V,)
    if 0 < settings.top_k < len(z):
        kth = np.partition(z, -settings.top_k)[-settings.top_k]
        z = np.where(z < kth, -np.inf, z)
    z -= z.max()
    probs = np.exp(z)
    probs /= probs.sum()                                                      # (V,)
    if settings.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = int(np.searchsorted(cumulative, settings.top_p)) + 1
        kept = np.zeros_like(probs)
        kept[order[:keep]] = probs[order[:keep]]
        probs = kept
    cdf = np.cumsum(probs)
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


class TextStream:
    """Token ids -> text, one id at a time. Byte tokens go through an incremental UTF-8
    decoder, so a character split over several tokens appears once it is complete."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace") if tokenizer.kind == "byte" else None
        self._bpe = None
        if tokenizer.kind == "bpe":
            from scratchlm.data.bpe import BPEStream

            self._bpe = BPEStream(tokenizer)

    def push(self, token: int) -> str:
        if self._utf8 is not None:
            return self._utf8.decode(bytes((token,)))
        if self._bpe is not None:
            return self._bpe.push(token)
        return self.tokenizer.decode([token])

    def flush(self) -> str:
        """Whatever an unfinished byte sequence left behind (as U+FFFD)."""
        if self._bpe is not None:
            return self._bpe.flush()
        return self._utf8.decode(b"", final=True) if self._utf8 is not None else ""


def prompt_ids(tokenizer, prompt: str) -> np.ndarray:
    """The prompt as token ids (TokenizerError for characters the model never saw).

    An empty prompt starts from the tokenizer's end-of-text token where it has one (GPT-2's
    ``<|endoftext|>``, which also begins a document), else from a newline (or a space, or the
    first character of the vocabulary): a character model has no start-of-text token.
    """
    if prompt:
        return tokenizer.encode(prompt)
    if tokenizer.end_of_text_id is not None:
        return np.asarray([tokenizer.end_of_text_id], dtype=np.int32)            # (1,)
    for start in START_CHARACTERS:
        if not tokenizer.unknown(start):
            return tokenizer.encode(start)
    return np.zeros(1, dtype=np.int32)


def generate_tokens(decoder, ids, settings: SamplingSettings, rng: np.random.Generator,
                    on_token: Callable[[np.ndarray, int], None] | None = None) -> Iterator[int]:
    """Up to ``settings.max_tokens`` sampled token ids continuing ``ids`` (the decoder is reset first).
    ``on_token(logits, token)`` is told the model's logits (V,) behind each token, before any penalty."""
    if settings.max_tokens == 0:
        return
    decoder.reset()
    logits = decoder.feed(ids)                                                # (V,)
    penalty = settings.repetition_penalty
    seen = seen_mask(ids, len(logits)) if penalty != 1.0 else None          # (V,) only when it is on
    for produced in range(1, settings.max_tokens + 1):
        token = sample_token(logits if seen is None else penalize_repeats(logits, seen, penalty), settings, rng)
        if on_token is not None:
            on_token(logits, token)
        if seen is not None:
            seen[token] = True
        yield token
        if produced < settings.max_tokens:
            logits = decoder.feed([token])


def generate_text(decoder, tokenizer, prompt: str, settings: SamplingSettings,
                  rng: np.random.Generator, on_token: Callable[[np.ndarray, int], None] | None = None) -> Iterator[str]:
    """The continuation of ``prompt`` (not the prompt itself), as pieces of text, as produced.

    With ``settings.stop``, the text ends just before the first occurrence of the stop
    string (which is not yielded); text that might be the start of it is held back
    until the next tokens show whether it is. ``on_token`` as for ``generate_tokens``
    (a beam search tells it about the tokens of the best hypothesis, at the end).
    """
    ids = prompt_ids(tokenizer, prompt)
    if settings.beam_width:
        from scratchlm.inference.beam import beam_search

        tokens = beam_search(decoder.model, tokenizer, ids, settings, on_token)
        ready, _, _ = _release(tokenizer.decode(tokens), settings.stop, final=True)
        if ready:
            yield ready
        return
    stream = TextStream(tokenizer)
    pending = ""
    for token in generate_tokens(decoder, ids, settings, rng, on_token):
        pending += stream.push(token)
        ready, pending, stopped = _release(pending, settings.stop)
        if ready:
            yield ready
        if stopped:
            return
    pending += stream.flush()
    ready, _, _ = _release(pending, settings.stop, final=True)
    if ready:
        yield ready


def _release(pending: str, stop: str | None, final: bool = False) -> tuple[str, str, bool]:
    """Split ``pending`` into (text safe to show, text held back, whether the stop string was hit)."""
    if not stop:
        return pending, "", False
    at = pending.find(stop)
    if at >= 0:
        return pending[:at], "", True
    if final:
        return pending, "", False
    held = next((n for n in range(min(len(stop) - 1, len(pending)), 0, -1) if stop.startswith(pending[-n:])), 0)
    return pending[: len(pending) - held], pending[len(pending) - held :], False
