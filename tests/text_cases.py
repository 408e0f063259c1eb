"""Shared by the data tests: the ids a character tokenizer must give, by its definition."""

from __future__ import annotations

import numpy as np


def per_character_ids(chars, text) -> np.ndarray:
    """Each character's index in the vocabulary ``chars`` (one Python step per character)."""
    index = {c: i for i, c in enumerate(chars)}
    return np.array([index[c] for c in text], dtype=np.int32)
