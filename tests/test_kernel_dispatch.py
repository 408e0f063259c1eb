"""Every kernel dispatcher: reference mode never calls the fast version, auto mode does."""

from __future__ import annotations

import pytest
from test_kernels_attention_adamw import DISPATCHERS as ATTENTION_ADAMW
from test_kernels_dropout import DISPATCHERS as DROPOUT
from test_kernels_norms_gelu_embedding_ce import DISPATCHERS as NORMS_GELU_EMBEDDING_CE

from scratchlm.kernels import dispatch

DISPATCHERS = ATTENTION_ADAMW + NORMS_GELU_EMBEDDING_CE + DROPOUT


@pytest.mark.parametrize("module, name, fast_name, make_args", DISPATCHERS, ids=[d[1] for d in DISPATCHERS])
def test_dispatch_reference_mode_and_auto_mode(monkeypatch, module, name, fast_name, make_args):
    calls = []
    fast = getattr(module, fast_name)
    monkeypatch.setattr(module, fast_name, lambda *a, **k: calls.append(1) or fast(*a, **k))
    previous = dispatch.set_mode("reference")
    try:
        getattr(module, name)(*make_args())
        assert calls == []
        dispatch.set_mode("auto")
        getattr(module, name)(*make_args())
        assert calls == [1]
    finally:
        dispatch.set_mode(previous)
