"""Beam search, the repetition penalty and the recorded token probabilities, against hand-checked cases."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_generate import full_logits
from tiny_models import tiny_model

from scratchlm.data.tokenizer import CharTokenizer
from scratchlm.inference.beam import beam_search
from scratchlm.inference.decoder import Decoder
from scratchlm.inference.probs import ProbabilityRecorder, softmax
from scratchlm.inference.sampling import SamplingSettings, generate_text, penalize_repeats, seen_mask


class MarkovModel:
    """A stand-in GPT whose next-token probabilities depend only on the last token: ``table[last]``."""

    def __init__(self, table, window: int = 8):
        self.table = np.log(np.asarray(table, dtype=np.float64))                 # (V, V)
        V = len(table)
        self.config = SimpleNamespace(max_seq_len=window, n_layers=1, n_heads=1, d_model=1, vocab_size=V)
        self.wte = SimpleNamespace(weight=SimpleNamespace(data=np.zeros((V, 1)), dtype=np.float64))

    def eval(self):
        return self

    def forward(self, ids, caches=None, start_pos=0):
        for cache in caches:                                                     # as attention would
            cache.length = min(cache.length + ids.shape[1], self.config.max_seq_len)
        return SimpleNamespace(data=self.table[np.asarray(ids)]), None           # (N, t, V)


# tokens a b c x; from x: a 0.6, b 0.4; from a: a, b, c a third each; from b: c 0.9
TABLE = [[1 / 3, 1 / 3, 1 / 3 - 1e-9, 1e-9], [0.04, 0.03, 0.9, 0.03], [0.25, 0.25, 0.25, 0.25], [0.6, 0.4, 1e-9, 1e-9]]
TOKENS = CharTokenizer(list("abcx"))


def test_beam_search_finds_the_likelier_pair_greedy_misses():
    model, start = MarkovModel(TABLE), TOKENS.encode("x")
    greedy = beam_search(model, TOKENS, start, SamplingSettings(max_tokens=2, beam_width=1))
    beams = beam_search(model, TOKENS, start, SamplingSettings(max_tokens=2, beam_width=2))
    assert TOKENS.decode(greedy) == "aa"                                         # 0.6 * 1/3 = 0.2
    assert TOKENS.decode(beams) == "bc"                                          # 0.4 * 0.9 = 0.36


def test_beam_search_honours_stop_and_the_length_penalty():
    model, start = MarkovModel(TABLE), TOKENS.encode("x")
    # "bc" ends at once (p 0.36, length 2); the a-beams go on to max_tokens (a third per step)
    stopped = beam_search(model, TOKENS, start, SamplingSettings(max_tokens=6, beam_width=2, stop="c"))
    assert TOKENS.decode(stopped) == "bc"
    text = "".join(generate_text(SimpleNamespace(model=model), TOKENS, "x",
                                 SamplingSettings(max_tokens=6, beam_width=2, stop="c"), None))
    assert text == "b"                                                           # the stop string is not shown
    assert len(beam_search(model, TOKENS, start, SamplingSettings(max_tokens=5, beam_width=3))) == 5


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_beam_width_one_is_greedy_even_past_the_window(pos_encoding):
    model, tok = tiny_model(steps=20, max_seq_len=8, pos_encoding=pos_encoding, dtype="float64")
    decoder = Decoder(model)
    for stop in (None, "e"):
        greedy = SamplingSettings(max_tokens=30, temperature=0.0, stop=stop)
        beam = SamplingSettings(max_tokens=30, beam_width=1, stop=stop)
        expected = "".join(generate_text(decoder, tok, "The", greedy, np.random.default_rng(0)))
        assert "".join(generate_text(decoder, tok, "The", beam, None)) == expected
        assert len(expected) == 30 if stop is None else "e" not in expected


def test_repetition_penalty_against_a_hand_computed_row():
    logits = np.array([2.0, -1.0, 0.5, -3.0, 0.0])
    shaped = penalize_repeats(logits, seen_mask([0, 1, 1, 4], 5), 1.25)
    np.testing.assert_allclose(shaped, [1.6, -1.25, 0.5, -3.0, 0.0])
    np.testing.assert_allclose(logits, [2.0, -1.0, 0.5, -3.0, 0.0])              # the row itself is untouched


def test_repetition_penalty_changes_greedy_text_and_one_is_off():
    model, tok = tiny_model(steps=20, max_seq_len=16)
    decoder, rng = Decoder(model), np.random.default_rng(0)

    def text(penalty):
        settings = SamplingSettings(max_tokens=40, temperature=0.0, repetition_penalty=penalty)
        return "".join(generate_text(decoder, tok, "The", settings, rng))

    plain = "".join(generate_text(decoder, tok, "The", SamplingSettings(max_tokens=40, temperature=0.0), rng))
    assert text(1.0) == plain
    assert text(3.0) != plain
    with pytest.raises(Exception, match="more than 0"):
        SamplingSettings(repetition_penalty=0.0)


def test_recorded_probabilities_are_the_models_softmax():
    model, tok = tiny_model(steps=20, max_seq_len=16, dtype="float64")
    recorder = ProbabilityRecorder(tok, tok.vocab_size)
    text = "".join(generate_text(Decoder(model), tok, "The", SamplingSettings(max_tokens=10, temperature=0.0),
                                 np.random.default_rng(0), recorder))
    records = recorder.take()
    assert "".join(r.text for r in records) == text
    ids = list(tok.encode("The" + text))
    for n, record in enumerate(records):
        probs = softmax(full_logits(model, ids[: 3 + n]))                        # (V,)
        assert record.probability == pytest.approx(probs[ids[3 + n]], rel=1e-9)
        shown = [p for _, p in record.alternatives]
        assert shown == sorted(shown, reverse=True) and sum(shown) == pytest.approx(1.0)
        assert record.alternatives[0] == (record.text, record.probability)       # greedy took the likeliest
        np.testing.assert_allclose(shown, np.sort(probs)[::-1], rtol=1e-9)
    assert recorder.take() == []
