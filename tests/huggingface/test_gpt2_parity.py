"""A Hugging Face GPT-2 folder run by scratchlm against transformers on the same weights: logits,
the loss evaluate reports, and greedy generation through the KV cache, token for token."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hf_models import gpt2_folder, transformers_model
from tiny_models import run_cli, sample_text

from scratchlm.checkpoint import load_checkpoint
from scratchlm.inference.decoder import Decoder
from scratchlm.inference.sampling import SamplingSettings, generate_tokens

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

CONTEXT = 32
PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return gpt2_folder(tmp_path_factory.mktemp("gpt2") / "tiny", n_positions=CONTEXT)


def reference_logits(folder, ids, dtype):
    with torch.no_grad():
        return transformers_model(folder, dtype)(torch.tensor(ids[None].astype(np.int64))).logits[0].numpy()


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("float64", 1e-10)])
def test_logits_equal_transformers(folder, dtype, tolerance):
    checkpoint = load_checkpoint(folder)
    ids = checkpoint.tokenizer.encode(sample_text()[:400])[:CONTEXT]                 # (T,)
    logits, _ = checkpoint.build_model(dtype=dtype).eval().forward(ids[None])       # (1, T, V)
    reference = reference_logits(folder, ids, dtype)                               # (T, V)
    assert logits.data.dtype == np.dtype(dtype)
    np.testing.assert_allclose(logits.data[0], reference, rtol=0, atol=tolerance)


def test_evaluate_reports_transformers_mean_loss(folder, tmp_path):
    checkpoint = load_checkpoint(folder)
    text = sample_text()[40:80]
    ids = checkpoint.tokenizer.encode(text)
    assert len(ids) <= CONTEXT                                                      # one window: the same targets
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    done = run_cli("evaluate", folder, tmp_path / "text.txt", "--output", tmp_path / "eval.json", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        inputs = torch.tensor(ids[None].astype(np.int64))
        expected = float(transformers_model(folder)(inputs, labels=inputs).loss)
    figures = json.loads((tmp_path / "eval.json").read_text())
    assert figures["tokens_scored"] == len(ids) - 1
    assert figures["loss"] == pytest.approx(expected, abs=1e-5)


def test_greedy_generation_is_transformers_token_for_token(folder):
    checkpoint = load_checkpoint(folder)
    prompt = checkpoint.tokenizer.encode(PROMPT)
    new = CONTEXT - len(prompt)                                                     # within the context
    settings = SamplingSettings(max_tokens=new, temperature=0.0, top_k=0, top_p=1.0, seed=0, stop=None)
    ours = list(generate_tokens(Decoder(checkpoint.build_model()), prompt, settings, np.random.default_rng(0)))
    with torch.no_grad():
        theirs = transformers_model(folder).generate(torch.tensor(prompt[None].astype(np.int64)), do_sample=False,
                                                     max_new_tokens=new, min_new_tokens=new, use_cache=True,
                                                     pad_token_id=0)[0, len(prompt):].tolist()
    assert ours == theirs


def test_generate_runs_a_model_folder_past_its_context(folder):
    done = run_cli("generate", folder, "--prompt", PROMPT, "--max-tokens", 2 * CONTEXT, "--temperature", "0",
                   "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(PROMPT) and len(done.stdout) > len(PROMPT) + CONTEXT  # the window slid on
