"""Generation: KV-cache decoding against full forward passes, sampling, streaming text, the CLI."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from tiny_models import SCRATCHLM, checkpoint_file, run_cli, tiny_model

from scratchlm import no_grad
from scratchlm.data.tokenizer import ByteTokenizer
from scratchlm.inference.decoder import Decoder
from scratchlm.inference.sampling import SamplingSettings, TextStream, _release, generate_text, sample_token

POS_ENCODINGS = ("learned", "sinusoidal", "rope")


def random_model(pos_encoding, n_layers=2, window=8, seed=0, **config):
    """A float64 model with weights far from their init, so every weight matters."""
    model, _ = tiny_model(text="abcdefghijk", d_model=16, n_heads=2, n_layers=n_layers, max_seq_len=window,
                          pos_encoding=pos_encoding, seed=seed, dtype="float64", **config)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data += rng.normal(0.0, 0.3, p.shape)
    return model


def full_logits(model, tokens):
    """Next-token logits after ``tokens`` from one plain forward pass (positions 0..)."""
    with no_grad():
        logits, _ = model.forward(np.asarray([tokens]))
    return logits.data[0, -1]


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
@pytest.mark.parametrize("variant", [{}, {"norm": "rmsnorm", "bias": False, "tie_weights": False}])
def test_cached_decoding_matches_full_forward(pos_encoding, variant, kernel_mode):
    model = random_model(pos_encoding, **variant)
    tokens = list(np.random.default_rng(1).integers(0, model.config.vocab_size, 8))
    decoder = Decoder(model)
    logits = decoder.feed(tokens[:3])                        # prefill, then one position per token
    for n in range(3, 8):
        np.testing.assert_allclose(logits, full_logits(model, tokens[:n]), rtol=1e-10, atol=1e-10)
        logits = decoder.feed([tokens[n]])
    np.testing.assert_allclose(logits, full_logits(model, tokens), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_float32_decoding_matches_full_forward(pos_encoding, kernel_mode):
    model, _ = tiny_model(d_model=32, n_heads=4, n_layers=2, max_seq_len=16,
                          pos_encoding=pos_encoding, steps=5)
    tokens = list(np.random.default_rng(5).integers(0, model.config.vocab_size, 16))
    decoder = Decoder(model)
    logits = decoder.feed(tokens[:1])
    for n in range(1, 16):
        np.testing.assert_allclose(logits, full_logits(model, tokens[:n]), rtol=1e-4, atol=1e-4)
        logits = decoder.feed([tokens[n]])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("variant", [{"pos_encoding": "learned"},
                                     {"pos_encoding": "rope", "norm": "rmsnorm", "bias": False, "tie_weights": False}])
def test_whole_token_step_matches_the_full_forward_on_any_thread_count(monkeypatch, compiled_kernels, variant, dtype,
                                                                        tolerance, threads):
    # d_model 128: the qkv, fc and mlp-out products hold >= SERIAL_BELOW weights, and past
    # 256 cached positions attention spreads its heads too, so every split path runs
    numba = pytest.importorskip("numba")
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"Numba has {numba.config.NUMBA_NUM_THREADS} thread(s) here")
    from scratchlm.kernels import token_step as token_step_kernels

    model, _ = tiny_model(text="abcdefghijk", d_model=128, n_heads=4, n_layers=2, max_seq_len=272,
                          seed=3, dtype=dtype, **variant)
    rng = np.random.default_rng(3)
    for p in model.parameters():
        p.data += rng.normal(0.0, 0.05, p.shape).astype(p.data.dtype)
    tokens = list(rng.integers(0, model.config.vocab_size, 262))
    assert 128 * 256 >= token_step_kernels.SERIAL_BELOW > 128 * 128
    calls = spy_on_whole_step(monkeypatch)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        decoder = Decoder(model)
        logits = decoder.feed(tokens[:250])
        for n in range(250, 262):
            logits = decoder.feed([tokens[n]])
            np.testing.assert_allclose(logits, full_logits(model, tokens[: n + 1]), rtol=tolerance, atol=tolerance)
    finally:
        numba.set_num_threads(previous)
    assert calls == [1] * 12                                     # every step was the one-call step


def spy_on_whole_step(monkeypatch):
    """A list that gets a 1 for every call of kernels.token_step.token_step_v2."""
    from scratchlm.kernels import token_step as token_step_kernels

    calls, real = [], token_step_kernels.token_step_v2
    monkeypatch.setattr(token_step_kernels, "token_step_v2", lambda *args: calls.append(1) or real(*args))
    return calls


def test_whole_token_step_equals_one_call_at_a_time_through_a_rolling_window(monkeypatch, compiled_kernels):
    # RoPE's cache rolls past its 260 slots; attention over >= 256 slots of d128 splits its
    # heads; version 2 must give what the one-call-at-a-time path gives, slot for slot
    numba = pytest.importorskip("numba")
    model, _ = tiny_model(text="abcdefghijk", d_model=128, n_heads=4, n_layers=2, max_seq_len=260,
                          seed=4, dtype="float64", pos_encoding="rope")
    tokens = np.random.default_rng(4).integers(0, model.config.vocab_size, 300)
    calls = spy_on_whole_step(monkeypatch)
    whole, one_by_one = Decoder(model), Decoder(model)
    one_by_one.whole_step = None
    previous = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        for token in tokens:
            np.testing.assert_allclose(whole.feed([token]), one_by_one.feed([token]), rtol=1e-10, atol=1e-10)
    finally:
        numba.set_num_threads(previous)
    assert whole.position == 300 and whole.cached == 260 and len(calls) == 300


def test_whole_token_step_compiles_once_for_every_depth(compiled_kernels):
    # the blocks come stacked, so the kernel's Numba type does not depend on the layer count
    pytest.importorskip("numba")
    from scratchlm.kernels import token_step as token_step_kernels

    kernel = token_step_kernels._token_step_kernel.dispatcher()
    before = len(kernel.signatures)
    for layers in (1, 2, 3):
        model, _ = tiny_model(text="abcdefghijk", n_layers=layers, max_seq_len=8, seed=layers)
        decoder = Decoder(model)
        decoder.feed([1])
        assert decoder.whole_step is not None and decoder.whole_step.qkv.shape[0] == layers
    assert len(kernel.signatures) <= before + 1


def test_reset_decodes_with_weights_changed_in_place_since_the_last_text(compiled_kernels):
    # the stacked copies the whole-step kernel reads are reused from text to text: reset()
    # must refresh them from weights an optimizer step changed in place
    model = random_model("learned")
    decoder = Decoder(model)
    for token in (1, 2):
        decoder.feed([token])
    for p in model.parameters():
        p.data *= 1.5                                                   # (...) in place, same arrays
    decoder.reset()
    assert decoder.whole_step is not None
    decoder.feed([1])
    np.testing.assert_allclose(decoder.feed([2]), full_logits(model, [1, 2]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
def test_absolute_positions_recompute_the_window_past_the_context(pos_encoding):
    model = random_model(pos_encoding, window=6)
    tokens = list(np.random.default_rng(2).integers(0, model.config.vocab_size, 20))
    decoder = Decoder(model)
    logits = decoder.feed(tokens[:4])
    for n in range(4, 20):
        assert decoder.cached <= 6
        np.testing.assert_allclose(logits, full_logits(model, list(decoder.context)[-decoder.cached:]), atol=1e-10)
        assert list(decoder.context) == tokens[:n][-6:]
        logits = decoder.feed([tokens[n]])


def test_rope_rolling_cache_equals_the_last_window_for_one_layer():
    # one layer: cached keys depend only on their token and (relative) position, so a rolling
    # cache must give exactly a fresh forward over the last T tokens
    model = random_model("rope", n_layers=1, window=6)
    tokens = list(np.random.default_rng(3).integers(0, model.config.vocab_size, 20))
    decoder = Decoder(model)
    logits = decoder.feed(tokens[:2])
    for n in range(2, 20):
        np.testing.assert_allclose(logits, full_logits(model, tokens[:n][-6:]), atol=1e-10)
        logits = decoder.feed([tokens[n]])
    assert decoder.position == 20 and decoder.cached == 6


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_generating_past_the_context_gives_exactly_max_tokens(pos_encoding):
    model, tok = tiny_model(pos_encoding=pos_encoding, max_seq_len=16)
    settings = SamplingSettings(max_tokens=70, temperature=1.0, seed=5)
    text = "".join(generate_text(Decoder(model), tok, "Once upon", settings, np.random.default_rng(5)))
    assert len(text) == 70


def test_a_prompt_longer_than_the_context_is_cut_to_a_window():
    model = random_model("learned", window=6)
    tokens = list(np.random.default_rng(4).integers(0, model.config.vocab_size, 15))
    logits = Decoder(model).feed(tokens)
    np.testing.assert_allclose(logits, full_logits(model, tokens[-5:]), atol=1e-10)


# ---- sampling ---------------------------------------------------------------------------------
LOGITS = np.log(np.array([0.05, 0.4, 0.1, 0.3, 0.15]))


def draws(settings, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_token(LOGITS, settings, rng) for _ in range(n)]


def test_temperature_zero_is_greedy():
    assert set(draws(SamplingSettings(temperature=0.0), n=20)) == {1}


def test_top_k_and_top_p_restrict_the_candidates_and_combine():
    assert set(draws(SamplingSettings(temperature=1.0, top_k=2))) == {1, 3}
    assert set(draws(SamplingSettings(temperature=1.0, top_p=0.8))) == {1, 3, 4}   # 0.4+0.3 < 0.8 <= +0.15
    assert set(draws(SamplingSettings(temperature=1.0, top_k=4, top_p=0.5))) == {1, 3}
    assert set(draws(SamplingSettings(temperature=1.0))) == {0, 1, 2, 3, 4}


def test_sampling_follows_the_probabilities():
    counts = np.bincount(draws(SamplingSettings(temperature=1.0), n=20000), minlength=5) / 20000
    np.testing.assert_allclose(counts, np.exp(LOGITS), atol=0.02)
    hot = np.bincount(draws(SamplingSettings(temperature=0.25), n=4000), minlength=5) / 4000
    assert hot[1] > 0.7


def test_same_seed_same_text_and_another_seed_another_text():
    model, tok = tiny_model(max_seq_len=16)
    decoder = Decoder(model)

    def text(seed):
        settings = SamplingSettings(max_tokens=40, temperature=1.0, seed=seed)
        return "".join(generate_text(decoder, tok, "The", settings, np.random.default_rng(seed)))

    assert text(7) == text(7)
    assert text(7) != text(8)


@pytest.mark.parametrize(("bad", "field"), [({"temperature": -0.1}, "temperature"), ({"top_p": 0.0}, "top-p"),
                                            ({"top_p": 1.5}, "top-p"), ({"top_k": -1}, "top-k"),
                                            ({"max_tokens": -1}, "max tokens"), ({"seed": -3}, "seed")])
def test_settings_reject_values_out_of_range(bad, field):
    from scratchlm.errors import OptionError

    with pytest.raises(OptionError, match=field):
        SamplingSettings(**bad)


def test_settings_updated_parses_text():
    s = SamplingSettings().updated("temperature", "0.5").updated("max-tokens", "12").updated("TOP_K", " 3")
    assert (s.temperature, s.max_tokens, s.top_k) == (0.5, 12, 3)


# ---- streaming text ----------------------------------------------------------------------------
def test_byte_stream_emits_whole_characters_only():
    stream = TextStream(ByteTokenizer())
    pieces = [stream.push(b) for b in "é€x".encode()]
    assert pieces == ["", "é", "", "", "€", "x"]
    assert stream.push(0xE2) == "" and stream.flush() == "\ufffd"


def test_stop_string_is_held_back_and_cut():
    assert _release("hello wo", "world") == ("hello ", "wo", False)
    assert _release("hello world and more", "world") == ("hello ", "", True)
    assert _release("abc", None) == ("abc", "", False)
    assert _release("hello wo", "world", final=True) == ("hello wo", "", False)


class ScriptedDecoder:
    """A stand-in decoder whose greedy continuation is a fixed text (tests stop and max_tokens)."""

    def __init__(self, tokenizer, script):
        self.ids, self.vocab, self.i = list(tokenizer.encode(script)), tokenizer.vocab_size, 0

    def reset(self):
        self.i = 0

    def feed(self, ids):
        logits = np.zeros(self.vocab)
        logits[self.ids[self.i % len(self.ids)]] = 10.0
        self.i += 1
        return logits


def test_generate_text_stops_before_the_stop_string_and_obeys_max_tokens():
    tok = ByteTokenizer()
    decoder = ScriptedDecoder(tok, "one two. three")
    greedy = SamplingSettings(max_tokens=100, temperature=0.0, stop=". ")
    assert "".join(generate_text(decoder, tok, "x", greedy, None)) == "one two"
    short = SamplingSettings(max_tokens=5, temperature=0.0)
    assert "".join(generate_text(decoder, tok, "x", short, None)) == "one t"
    assert "".join(generate_text(decoder, tok, "x", SamplingSettings(max_tokens=0), None)) == ""


# ---- the command line --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return checkpoint_file(tmp_path_factory.getbasetemp(), steps=30, max_seq_len=16)


def test_cli_prints_the_prompt_then_exactly_max_tokens(trained, tmp_path):
    out_file = tmp_path / "samples.txt"
    run = run_cli("generate", trained, "--prompt", "The", "--max-tokens", "50", "--temperature", "0",
                  "--output-file", out_file)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("The") and len(run.stdout) == len("The") + 50 + 1
    assert out_file.read_text() == run.stdout


def test_cli_same_seed_same_samples(trained):
    args = ("generate", trained, "--prompt", "Once", "--max-tokens", "30", "--num-samples", "2",
            "--top-k", "10", "--top-p", "0.9")
    first, second = run_cli(*args, "--seed", "3"), run_cli(*args, "--seed", "3")
    assert first.returncode == 0 and first.stdout == second.stdout
    assert first.stdout.count("--- sample") == 2
    assert run_cli(*args, "--seed", "4").stdout != first.stdout


def test_cli_byte_model_streams_valid_utf8(tmp_path_factory):
    ckpt = checkpoint_file(tmp_path_factory.getbasetemp(), tokenizer="byte", max_seq_len=16)
    run = subprocess.run([str(SCRATCHLM), "generate", str(ckpt), "--prompt", "naïve café", "--max-tokens", "300",
                          "--temperature", "2.0", "--seed", "1"], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    text = run.stdout.decode("utf-8")             # strict: raises on a broken byte sequence
    assert text.startswith("naïve café")
