"""Evaluation: every character scored once, the loss against brute force, strides, the CLI panel."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tiny_models import checkpoint_file, run_cli, sample_text, tiny_model

from scratchlm import no_grad
from scratchlm.errors import OptionError, TokenizerError
from scratchlm.inference.scoring import evaluate_text, plan_windows

TEXT = sample_text()[:300]


def brute_force(model, ids, context_of):
    """Mean NLL and accuracy, predicting ids[t] from ids[context_of(t) : t], one forward per target."""
    nll, right = [], []
    for t in range(1, len(ids)):
        with no_grad():
            logits, _ = model.forward(ids[None, context_of(t) : t])
        z = logits.data[0, -1].astype(np.float64)
        log_probs = z - z.max() - math.log(np.exp(z - z.max()).sum())
        nll.append(-log_probs[ids[t]])
        right.append(int(np.argmax(z)) == ids[t])
    return float(np.mean(nll)), float(np.mean(right))


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return tiny_model(text=TEXT, d_model=16, n_heads=2, n_layers=2, max_seq_len=8, seed=3, dtype="float64")


@pytest.mark.parametrize(("n_tokens", "context", "stride"), [(2, 8, 8), (5, 8, 3), (9, 8, 8), (50, 8, 8),
                                                             (50, 8, 3), (50, 8, 1), (17, 8, 8), (100, 16, 5)])
def test_windows_score_every_target_once_with_at_least_context_minus_stride(n_tokens, context, stride):
    scored = []
    for number, (start, length, count) in enumerate(plan_windows(n_tokens, context, stride)):
        assert 0 <= start and length <= context and start + length <= n_tokens - 1
        targets = list(range(start + length - count + 1, start + length + 1))
        scored += targets
        if number > 0:
            assert length == context and count <= stride
            assert all(t - start >= context - stride for t in targets)   # the context each one sees
    assert scored == list(range(1, n_tokens))


def test_stride_one_equals_brute_force_with_full_context(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ids = tok.encode(TEXT[:60])
    result = evaluate_text(model, tok, TEXT[:60], stride=1, batch_size=7)
    loss, accuracy = brute_force(model, ids, lambda t: max(0, t - 8))
    assert result.loss == pytest.approx(loss, rel=1e-10)
    assert result.accuracy == pytest.approx(accuracy)
    assert result.tokens_scored == result.characters_scored == 59
    assert result.perplexity == pytest.approx(math.exp(loss))
    assert result.bits_per_char == pytest.approx(loss / math.log(2))


def test_non_overlapping_windows_equal_brute_force_and_stride_changes_the_context(model_and_tokenizer):
    model, tok = model_and_tokenizer
    text = TEXT[:33]                       # 32 targets: four windows of 8, no overlap
    ids = tok.encode(text)
    result = evaluate_text(model, tok, text, batch_size=3)
    loss, _ = brute_force(model, ids, lambda t: (t - 1) // 8 * 8)
    assert result.loss == pytest.approx(loss, rel=1e-10)
    overlapped = evaluate_text(model, tok, text, stride=2)  # windows end at 8, 10, ..., 32
    window_end = lambda t: 8 if t <= 8 else 8 + -(-(t - 8) // 2) * 2
    assert overlapped.loss == pytest.approx(brute_force(model, ids, lambda t: window_end(t) - 8)[0], rel=1e-10)
    assert overlapped.loss != pytest.approx(result.loss, rel=1e-6)


def test_a_text_shorter_than_the_context_is_scored_in_one_short_window(model_and_tokenizer):
    model, tok = model_and_tokenizer
    result = evaluate_text(model, tok, TEXT[:5])
    assert result.tokens_scored == 4
    assert result.loss == pytest.approx(brute_force(model, tok.encode(TEXT[:5]), lambda t: 0)[0], rel=1e-10)


def test_unknown_characters_are_named_for_char_models_and_scored_as_bytes_for_byte_models():
    model, tok = tiny_model(text=TEXT, d_model=16, n_heads=2, n_layers=1, max_seq_len=8)
    with pytest.raises(TokenizerError, match="'Ω'"):
        evaluate_text(model, tok, TEXT[:40] + "Ω")
    byte_model, byte_tok = tiny_model(text=TEXT, tokenizer="byte", d_model=16, n_heads=2, n_layers=1, max_seq_len=8)
    result = evaluate_text(byte_model, byte_tok, "naïve Ω")
    assert result.tokens_scored == len("naïve Ω".encode()) - 1 and result.characters_scored == 6


def test_stride_longer_than_the_context_is_refused(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(OptionError, match="stride"):
        evaluate_text(model, tok, TEXT, stride=9)


def test_cli_prints_the_panel_and_writes_the_same_figures(tmp_path_factory, tmp_path):
    ckpt = checkpoint_file(tmp_path_factory.getbasetemp(), steps=30, max_seq_len=16)
    data = tmp_path / "data.txt"
    data.write_text(sample_text()[:2000], encoding="utf-8")
    out = tmp_path / "eval.json"
    run = run_cli("evaluate", ckpt, data, "--output", out, "--stride", "8", "--batch-size", "4")
    assert run.returncode == 0, run.stderr
    for label in ("Model Evaluation", "Test Loss:", "Perplexity:", "Bits/Char:", "Accuracy:", "Characters scored:"):
        assert label in run.stdout
    figures = json.loads(out.read_text())
    assert f"{figures['loss']:.4f}" in run.stdout and f"{figures['perplexity']:.2f}" in run.stdout
    assert figures["characters_scored"] == 1999 and figures["stride"] == 8
    vocab = len(set(sample_text()))
    assert figures["loss"] < math.log(vocab)  # better than a uniform guess after 30 training steps
