"""Batch-1 decoding with a KV cache: feed tokens, get the logits of the next one.

Generation is overhead-bound: a new token is a handful of matrix-vector products, so
the time goes to Python and to small array calls, not to arithmetic. ``Decoder``
therefore has two paths over the same per-layer ``KVCache`` buffers:

- **prefill** (many tokens at once: the prompt, or a recomputed window) runs
  ``GPT.forward(ids, caches=..., start_pos=...)`` under ``no_grad``;
- **step** (one token) walks the model's raw weight arrays directly: one position
  through every block, no Tensors, no tape, preallocated-free NumPy matrix-vector
  products. Tests check both paths against a full forward pass in float64.

Past the context length (``max_seq_len`` = T) the window slides:

- RoPE: a rolling cache. Positions keep growing; once T positions are cached the
  new key/value overwrites the oldest slot (a ring buffer; attention over the cache
  does not depend on slot order, and RoPE is relative, so rotated cached keys stay valid).
- learned / sinusoidal positions cannot go past T-1, so the window is recomputed:
  the last T-1 tokens are prefilled again at positions 0.., then one cheap step fits.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend
from .function import no_grad
from .kernels.gelu import gelu_forward_reference
from .model import rope_tables, sinusoidal_table
from .nn.attention import new_caches
from .ops.transformer import _rotate


class _BlockWeights:
    """The raw arrays of one Block, fetched once so a step does no attribute walking."""

    def __init__(self, block):
        def raw(param):
            return None if param is None else param.data

        self.norm1 = (raw(block.norm1.weight), raw(getattr(block.norm1, "bias", None)), block.norm1.eps)
        self.norm2 = (raw(block.norm2.weight), raw(getattr(block.norm2, "bias", None)), block.norm2.eps)
        attn, mlp = block.attn, block.mlp
        self.qkv = (raw(attn.qkv.weight), raw(attn.qkv.bias))
        self.attn_proj = (raw(attn.proj.weight), raw(attn.proj.bias))
        self.fc = (raw(mlp.fc.weight), raw(mlp.fc.bias))
        self.mlp_proj = (raw(mlp.proj.weight), raw(mlp.proj.bias))


class Decoder:
    """Feeds tokens through ``model`` (put in eval mode) with a KV cache; see the module doc."""

    def __init__(self, model):
        model.eval()
        cfg = model.config
        self.model = model
        self.config = cfg
        self.window = cfg.max_seq_len
        self.rolling = cfg.pos_encoding == "rope"
        self.heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.xp = backend.get_array_module(model.wte.weight.data)
        self.dtype = model.dtype
        self.rmsnorm = cfg.norm == "rmsnorm"
        self.wte = model.wte.weight.data                                          # (V, C)
        self.wpe = model.wpe.weight.data if cfg.pos_encoding == "learned" else None  # (T, C)
        self.head = self.wte if cfg.tie_weights else model.lm_head.weight.data   # (V, C)
        self.blocks = [_BlockWeights(b) for b in model.blocks]
        self.norm_f = (model.norm_f.weight.data, getattr(model.norm_f, "bias", None), model.norm_f.eps)
        if self.norm_f[1] is not None:
            self.norm_f = (self.norm_f[0], self.norm_f[1].data, self.norm_f[2])
        self.scale = self.dtype.type(1.0 / math.sqrt(self.head_dim))
        self.caches = new_caches(model, 1, self.window, self.xp)
        self.reset()

    # ---- state ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything fed so far (the next feed starts a new text at position 0)."""
        for cache in self.caches:
            cache.length = 0
        self.position = 0      # absolute position of the next token
        self.oldest_slot = 0   # rolling cache: the slot the next token overwrites once full
        self.context: list[int] = []  # the last T tokens fed (what a recomputed window needs)

    @property
    def cached(self) -> int:
        """How many positions the model currently attends over."""
        return self.caches[0].length

    def feed(self, ids) -> np.ndarray:
        """Feed one or more token ids; return the logits (V,) of the next token, float64 on the host."""
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("feed() needs at least one token")
        self.context = (self.context + ids)[-self.window :]
        if len(ids) == 1 and (self.rolling or self.cached < self.window):
            logits = self._step(ids[0])
        elif self.cached + len(ids) <= self.window:
            logits = self._prefill(ids)
        else:
            logits = self._recompute_window(len(ids))
        self.position += len(ids)
        return logits

    def _next_position(self) -> int:
        """RoPE positions keep growing; absolute encodings count positions inside the window."""
        return self.position if self.rolling else self.cached

    def _recompute_window(self, new_tokens: int) -> np.ndarray:
        """Empty the cache and prefill the last T (RoPE) or T-1 tokens (absolute positions)."""
        keep = self.window if self.rolling else self.window - 1
        window = self.context[-keep:]
        for cache in self.caches:
            cache.length = 0
        self.oldest_slot = 0
        saved, self.position = self.position, self.position + new_tokens - len(window)
        logits = self._prefill(window)
        self.position = saved
        return logits

    # ---- the two paths --------------------------------------------------------------
    def _prefill(self, ids) -> np.ndarray:
        xp, start_pos = self.xp, self._next_position()
        batch = xp.asarray(np.asarray(ids, dtype=np.int64)[None, :])              # (1, T)
        with no_grad():
            logits, _ = self.model.forward(batch, caches=self.caches, start_pos=start_pos)  # (1, T, V)
        return backend.to_numpy(logits.data[0, -1]).astype(np.float64)

    def _step(self, token: int) -> np.ndarray:
        """One position through every block, on raw arrays; returns host logits (V,)."""
        xp, H, D = self.xp, self.heads, self.head_dim
        pos = self._next_position()
        x = self.wte[token].copy()                                                # (C,)
        rope = None
        if self.wpe is not None:
            x += self.wpe[pos]
        elif not self.rolling:
            x += sinusoidal_table([pos], x.shape[0], self.dtype, xp)[0]
        else:
            rope = rope_tables([pos], D, self.dtype, xp)                          # 2 x (1, D/2)
        full = self.cached == self.window
        slot = self.oldest_slot if full else self.cached
        for block, cache in zip(self.blocks, self.caches):
            h = self._norm(x, *block.norm1)                                       # (C,)
            qkv = self._linear(h, *block.qkv).reshape(3, H, D)                    # (3, H, D)
            q, k = qkv[0], qkv[1]                                                 # (H, D)
            if rope is not None:
                q, k = _rotate(q, *rope), _rotate(k, *rope)
            cache.k[0, :, slot] = k
            cache.v[0, :, slot] = qkv[2]
            n = self.window if full else slot + 1
            y = self._attend(q, cache.k[0, :, :n], cache.v[0, :, :n])            # (C,)
            x += self._linear(y, *block.attn_proj)
            f = self._linear(self._norm(x, *block.norm2), *block.fc)             # (F,)
            x += self._linear(gelu_forward_reference(f), *block.mlp_proj)
        for cache in self.caches:
            cache.length = slot + 1 if not full else self.window
        if full:
            self.oldest_slot = (self.oldest_slot + 1) % self.window
        logits = self.head @ self._norm(x, *self.norm_f)                          # (V,)
        return backend.to_numpy(logits).astype(np.float64)

    # ---- one-vector building blocks -------------------------------------------------
    def _attend(self, q, keys, values):
        """q (H, D) over keys/values (H, n, D) -> (H*D,): softmax(q k / sqrt(D)) v per head."""
        xp = self.xp
        scores = xp.matmul(keys, q[:, :, None])[:, :, 0]                         # (H, n)
        scores *= self.scale
        scores -= scores.max(axis=1, keepdims=True)
        weights = xp.exp(scores, out=scores)
        weights /= weights.sum(axis=1, keepdims=True)                            # (H, n)
        return xp.matmul(weights[:, None, :], values).reshape(-1)                # (H*D,)

    @staticmethod
    def _linear(x, weight, bias):
        y = weight @ x                                                           # (out,)
        if bias is not None:
            y += bias
        return y

    def _norm(self, x, weight, bias, eps):
        """LayerNorm (or RMSNorm) of one vector (C,)."""
        if self.rmsnorm:
            return x * (weight / math.sqrt(float(x @ x) / x.shape[0] + eps))
        centred = x - x.sum() / x.shape[0]                                       # (C,)
        y = centred * (weight / math.sqrt(float(centred @ centred) / x.shape[0] + eps))
        if bias is not None:
            y += bias
        return y
