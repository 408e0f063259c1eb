"""kernels.attention_route decides which attention kernels run, and the layer, the tape and the
decoder follow it: the "what runs where" table of kernels/README.md, as tests."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import tiny_model

from scratchlm.inference.decoder import Decoder
from scratchlm.kernels import attention, attention_packed, attention_route, blas, dispatch, token_step

X = np.ones((2, 4, 24), np.float32)


def fastest_packed():
    return "numba v2" if blas.available() else "numba v1"


@pytest.mark.parametrize("kw, want", [
    ({}, ("packed", None)),                                    # CPU training and scoring
    ({"rotary": True}, ("split heads", "numba v2")),           # RoPE models
    ({"cached": True}, ("split heads", "numba v2")),           # prefill over a KV cache
    ({"one_token": True}, ("token step", "numba v2")),         # the decoder's step
])
def test_the_route_on_the_cpu(compiled_kernels, kw, want):
    family, version = want
    assert attention_route.attention_route(X, **kw) == (family, version or fastest_packed())


@pytest.mark.parametrize("kw, family, version", [
    ({}, "packed", "reference"), ({"rotary": True}, "split heads", "reference"),
    ({"cached": True}, "split heads", "reference"), ({"one_token": True}, "token step", "per op")])
def test_reference_mode_routes_every_family_to_its_reference(kw, family, version):
    previous = dispatch.set_mode("reference")
    try:
        assert attention_route.attention_route(X, **kw) == (family, version)
    finally:
        dispatch.set_mode(previous)


def test_blas_kernels_off_keeps_the_packed_loop_version(monkeypatch, compiled_kernels):
    monkeypatch.setenv("SCRATCHLM_BLAS_KERNELS", "0")
    assert attention_route.attention_route(X) == ("packed", "numba v1")


def test_gpu_arrays_take_the_split_heads_cuda_kernels(monkeypatch, compiled_kernels):
    # no GPU needed: what counts is that a CuPy array never takes the packed family
    monkeypatch.setattr(attention_route, "use_cuda", lambda *arrays: True)
    monkeypatch.setattr(attention_route, "use_numba", lambda *arrays: False)
    gpu_like = X.tolist()                                      # not a NumPy array, as a CuPy one is not
    assert attention_route.attention_route(gpu_like) == ("split heads", "cuda")
    assert attention_route.attention_route(gpu_like, one_token=True) == ("token step", "per op")


def spy(monkeypatch, module, names):
    calls = []
    for name in names:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, name=name, real=real, **k: calls.append(name) or real(*a, **k))
    return calls


@pytest.mark.parametrize("pos_encoding, family", [("learned", "packed"), ("rope", "split heads")])
def test_the_layer_runs_the_family_the_route_names(monkeypatch, compiled_kernels, pos_encoding, family):
    model, _ = tiny_model(text="abcdefgh", pos_encoding=pos_encoding, max_seq_len=8)
    packed = spy(monkeypatch, attention_packed, ["packed_forward"])
    split = spy(monkeypatch, attention, ["attention_forward"])
    model(np.zeros((1, 6), np.int64))
    assert (packed, split) == ((["packed_forward"] * 2, []) if family == "packed" else ([], ["attention_forward"] * 2))


def test_the_decoder_prefills_on_split_heads_and_steps_on_the_token_step(monkeypatch, compiled_kernels):
    model, _ = tiny_model(text="abcdefgh", max_seq_len=8)
    split = spy(monkeypatch, attention, ["attention_forward"])
    step = spy(monkeypatch, token_step, ["token_step_v2", "token_step_per_op"])
    decoder = Decoder(model)
    decoder.feed([1, 2, 3])                                    # prefill: the cache is filled
    decoder.feed([4])
    assert split == ["attention_forward"] * 2 and step == ["token_step_v2"]
    previous = dispatch.set_mode("reference")
    try:
        decoder.feed([5])
    finally:
        dispatch.set_mode(previous)
    assert step == ["token_step_v2", "token_step_per_op"]
