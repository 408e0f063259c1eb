"""The character tokenizer's vectorised encode against the definition: each character's index in
the vocabulary, whatever order the vocabulary was given in."""

from __future__ import annotations

import numpy as np
import pytest
from text_cases import per_character_ids

from scratchlm.data.tokenizer import CharTokenizer
from scratchlm.errors import TokenizerError


@pytest.mark.parametrize("seed", range(4))
def test_encode_is_the_index_of_every_character(seed):
    rng = np.random.default_rng(seed)
    alphabet = [chr(c) for c in (*range(32, 127), 0xE9, 0x3B1, 0x65E5, 0x1F600, 0x10FFFD)]
    text = "".join(rng.choice(alphabet, size=5000))
    chars = sorted(set(text))
    shuffled = [chars[i] for i in rng.permutation(len(chars))]       # a vocabulary in any order
    for vocabulary in (chars, shuffled):
        ids = CharTokenizer(vocabulary).encode(text)
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, per_character_ids(vocabulary, text))
        assert CharTokenizer(vocabulary).decode(ids) == text


def test_encode_of_nothing_is_empty():
    assert CharTokenizer("ab").encode("").shape == (0,)


@pytest.mark.parametrize("text, unknown", [("abz", "'z'"), ("aéb", "'é'"), ("b", None)])
def test_a_character_outside_the_vocabulary_is_named(text, unknown):
    # 'z' and 'é' lie past the table of code points (it ends at 'd'); a gap inside it is below
    tokenizer = CharTokenizer("abd")
    if unknown is None:
        assert tokenizer.encode(text).tolist() == [1]
        return
    with pytest.raises(TokenizerError, match=unknown):
        tokenizer.encode(text)


def test_a_gap_inside_the_table_is_named():
    with pytest.raises(TokenizerError, match="'c'"):
        CharTokenizer("abd").encode("abcd")
