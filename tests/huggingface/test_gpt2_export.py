"""scratchlm export CKPT OUTPUT_DIR: transformers loads the folder unaided, with the same logits, the
same greedy text and a tokenizer that gives the same ids (char, byte and BPE); models GPT-2 cannot
express are refused in one line and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest
from hf_models import gpt2_folder
from tiny_models import run_cli, sample_text, tiny_model

from scratchlm.checkpoint import load_checkpoint, save_checkpoint
from scratchlm.inference.decoder import Decoder
from scratchlm.inference.sampling import SamplingSettings, generate_tokens

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MIXED = "The quick brown fox, naïve café, 日本語 and 😀 emoji.\n\tTabs too."


def exported(tmp_path, path):
    out = tmp_path / "exported"
    done = run_cli("export", path, out)
    assert done.returncode == 0, done.stderr
    return out, transformers.AutoModelForCausalLM.from_pretrained(out).eval(), transformers.AutoTokenizer.from_pretrained(out)


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_an_exported_model_runs_in_transformers(tmp_path, kind):
    model, tok = tiny_model(tokenizer=kind, steps=20)
    _, theirs, their_tok = exported(tmp_path, save_checkpoint(tmp_path / "m.pt", model, tok))
    text = sample_text()[:3000] + ("" if kind == "char" else MIXED)
    ids = tok.encode(text)
    assert their_tok(text, add_special_tokens=False)["input_ids"] == ids.tolist()
    assert their_tok.decode(ids.tolist()) == text
    window = ids[:32]                                                               # (T,)
    logits, _ = model.forward(window[None])                                         # (1, T, V)
    with torch.no_grad():
        reference = theirs(torch.tensor(window[None].astype(np.int64))).logits.numpy()
    np.testing.assert_allclose(logits.data, reference, rtol=0, atol=1e-5)
    prompt = ids[:8]
    settings = SamplingSettings(max_tokens=24, temperature=0.0, top_k=0, top_p=1.0, seed=0, stop=None)
    ours = list(generate_tokens(Decoder(model), prompt, settings, np.random.default_rng(0)))
    with torch.no_grad():
        greedy = theirs.generate(torch.tensor(prompt[None].astype(np.int64)), do_sample=False, max_new_tokens=24,
                                 min_new_tokens=24, pad_token_id=0)[0, 8:].tolist()
    assert greedy == ours


def test_a_gpt2_folder_exports_back_to_the_same_tensors(tmp_path):
    folder = gpt2_folder(tmp_path / "gpt2")
    out, _, their_tok = exported(tmp_path, folder)
    again, first = load_checkpoint(out), load_checkpoint(folder)
    for name, array in first.weights.items():
        np.testing.assert_array_equal(again.weights[name], array)
    assert their_tok(MIXED, add_special_tokens=False)["input_ids"] == first.tokenizer.encode(MIXED).tolist()


@pytest.mark.parametrize("option, why", [({"pos_encoding": "rope"}, "rope positions have no place in GPT-2"),
                                         ({"pos_encoding": "sinusoidal"}, "sinusoidal positions"),
                                         ({"norm": "rmsnorm"}, "rmsnorm has no place in GPT-2")])
def test_models_gpt2_cannot_express_are_refused(tmp_path, option, why):
    model, tok = tiny_model(**option)
    done = run_cli("export", save_checkpoint(tmp_path / "m.pt", model, tok), tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and why in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_an_existing_folder_is_never_overwritten(tmp_path):
    model, tok = tiny_model()
    (tmp_path / "out").mkdir()
    done = run_cli("export", save_checkpoint(tmp_path / "m.pt", model, tok), tmp_path / "out")
    assert done.returncode == 2 and "already exists" in done.stderr


def test_an_exported_bpe_model_names_its_end_of_text_token(tmp_path):
    from transformers import GenerationConfig

    folder = gpt2_folder(tmp_path / "gpt2")
    out, theirs, their_tok = exported(tmp_path, folder)
    end = load_checkpoint(folder).tokenizer.end_of_text_id
    assert end is not None
    assert (theirs.config.bos_token_id, theirs.config.eos_token_id) == (end, end)
    assert (their_tok.bos_token_id, their_tok.eos_token_id) == (end, end)
    assert GenerationConfig.from_model_config(theirs.config).eos_token_id == end


def test_a_char_model_exports_without_special_tokens(tmp_path):
    model, tok = tiny_model()
    _, theirs, their_tok = exported(tmp_path, save_checkpoint(tmp_path / "m.pt", model, tok))
    assert theirs.config.eos_token_id is None and their_tok.eos_token is None
