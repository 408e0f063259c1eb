"""What the model thought of each token it generated: its probability and the likeliest alternatives.

A ``ProbabilityRecorder`` is the ``on_token`` callback of ``generate_text``: for each
generated token it keeps the model's probability of that token and of the K likeliest
tokens. The probabilities are the model's own softmax of its logits (temperature 1),
before the repetition penalty, temperature, top-k or top-p reshape them for the draw, so
they say what the model predicts whatever the sampling settings. Nothing here runs
unless a recorder is passed, so generation without ``--show-probs`` costs nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenProbability:
    """One generated token: its text, the model's probability of it, and the K likeliest tokens
    as (text, probability), likeliest first (the token itself among them if it is that likely)."""

    text: str
    probability: float
    alternatives: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict:
        return {"token": self.text, "probability": self.probability,
                "alternatives": [{"token": text, "probability": p} for text, p in self.alternatives]}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities (V,) in float64."""
    z = np.exp(logits - logits.max())                                         # (V,)
    return z / z.sum()


def token_text(tokenizer, token: int) -> str:
    """The text of one token; a byte that is only part of a UTF-8 character shows as <0xNN>."""
    if tokenizer.kind == "byte" and token >= 0x80:
        return f"<0x{token:02X}>"
    return tokenizer.decode([token])


class ProbabilityRecorder:
    """Collects a ``TokenProbability`` per generated token; ``take()`` returns them and starts afresh."""

    def __init__(self, tokenizer, k: int):
        if k < 1:
            raise ValueError(f"k must be 1 or more, got {k}")
        self.tokenizer, self.k = tokenizer, k
        self.records: list[TokenProbability] = []

    def __call__(self, logits: np.ndarray, token: int) -> None:
        probs = softmax(np.asarray(logits, dtype=np.float64))                    # (V,)
        k = min(self.k, len(probs))
        top = np.argpartition(-probs, k - 1)[:k]                                  # (k,) unordered
        top = top[np.lexsort((top, -probs[top]))]                                 # likeliest first, then lower id
        tok = self.tokenizer
        self.records.append(TokenProbability(token_text(tok, int(token)), float(probs[token]),
                                             tuple((token_text(tok, int(i)), float(probs[i])) for i in top)))

    def take(self) -> list[TokenProbability]:
        records, self.records = self.records, []
        return records
