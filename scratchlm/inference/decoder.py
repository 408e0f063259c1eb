"""Batch-1 decoding with a KV cache: feed tokens, get the logits of the next one.

Generation is overhead-bound: a new token is a handful of matrix-vector products, so
the time goes to Python and to small array calls, not to arithmetic. ``Decoder``
therefore has two paths over the same per-layer ``KVCache`` buffers:

- **prefill** (many tokens at once: the prompt, or a recomputed window) runs
  ``GPT.forward(ids, caches=..., start_pos=...)`` under ``no_grad``;
- **step** (one token) walks the model's raw weight arrays directly: one position
  through every block: no Tensors, no tape. On the CPU with compiled kernels the
  whole step is one call (``kernels.decode.token_step_v2``, its products on every
  core); otherwise (CuPy, reference mode, weights it cannot take) a few
  matrix-vector products and small vector kernels per layer. Tests check both against a full forward pass in float64.

Past the context length (``max_seq_len`` = T) the window slides:

- RoPE: a rolling cache. Positions keep growing; once T positions are cached the
  new key/value overwrites the oldest slot (a ring buffer; attention over the cache
  does not depend on slot order, and RoPE is relative, so rotated cached keys stay valid).
- learned / sinusoidal positions cannot go past T-1, so the window is recomputed:
  the last T-1 tokens are prefilled again at positions 0.., then one cheap step fits.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from scratchlm import backend
from scratchlm.autograd.function import no_grad
from scratchlm.kernels import decode as decode_kernels
from scratchlm.kernels.decode import add_norm, attend, gelu_row
from scratchlm.kernels.dispatch import use_numba
from scratchlm.model import rope_tables, sinusoidal_table
from scratchlm.nn.attention import new_caches
from scratchlm.autograd.ops.transformer import _rotate


def _raw(param):
    return None if param is None else param.data


def _or_zeros(array, like):
    """A missing bias as zeros, so the fused kernels always get an array."""
    return array if array is not None else like * 0


def _norm_arrays(norm):
    """(weight, bias or zeros, eps) of a LayerNorm or RMSNorm module."""
    weight = _raw(norm.weight)
    return weight, _or_zeros(_raw(getattr(norm, "bias", None)), weight), norm.eps


class _BlockWeights:
    """The raw arrays of one Block, fetched once per text so a step does no attribute walking.

    Named as ``kernels.decode.StackedBlocks``' fields; a missing bias is zeros.
    """

    def __init__(self, block):
        attn, mlp = block.attn, block.mlp
        self.norm1_w, self.norm1_b, self.norm1_eps = _norm_arrays(block.norm1)     # (C,), (C,), float
        self.norm2_w, self.norm2_b, self.norm2_eps = _norm_arrays(block.norm2)
        self.qkv, self.fc = _raw(attn.qkv.weight), _raw(mlp.fc.weight)            # (3C, C), (F, C)
        self.attn_out, self.mlp_out = _raw(attn.proj.weight), _raw(mlp.proj.weight)  # (C, C), (C, F)
        self.qkv_bias = _or_zeros(_raw(attn.qkv.bias), self.qkv[:, 0])            # (3C,)
        self.attn_out_bias = _or_zeros(_raw(attn.proj.bias), self.norm1_w)        # (C,)
        self.fc_bias = _or_zeros(_raw(mlp.fc.bias), self.fc[:, 0])                # (F,)
        self.mlp_out_bias = _or_zeros(_raw(mlp.proj.bias), self.norm1_w)          # (C,)


class Decoder:
    """Feeds tokens through ``model`` (put in eval mode) with a KV cache; see the module doc.

    A text is decoded with the model's weights as they were at the last ``reset()``
    (``generate_text`` resets for every text; the one-call step works on copies): after
    changing the model (training it, ``model.to(...)``), call ``reset()``.
    """

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.config = cfg
        self.window = cfg.max_seq_len
        self.rolling = cfg.pos_encoding == "rope"
        self.heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.rmsnorm = cfg.norm == "rmsnorm"
        self.context: deque[int] = deque(maxlen=self.window)  # the last T tokens fed
        self.reset()

    def _fetch_weights(self) -> None:
        """Take the model's current arrays (training or ``to(device)`` may have replaced them)."""
        model, cfg = self.model, self.config
        self.xp = backend.get_array_module(model.wte.weight.data)
        self.dtype = model.dtype
        self.scale = self.dtype.type(1.0 / math.sqrt(self.head_dim))
        self.wte = model.wte.weight.data                                          # (V, C)
        self.wpe = model.wpe.weight.data if cfg.pos_encoding == "learned" else None  # (T, C)
        self.head = self.wte if cfg.tie_weights else model.lm_head.weight.data   # (V, C)
        self.blocks = [_BlockWeights(b) for b in model.blocks]
        self.norm_f = _norm_arrays(model.norm_f)
        self.zeros = self.wte[0] * 0                                              # (C,)

    # ---- state ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything fed so far: the next feed starts a new text at position 0.

        Puts the model in eval mode and re-reads its weights, so a model trained or moved
        since the last text is decoded as it is now.
        """
        self.model.eval()
        self._fetch_weights()
        old = getattr(self, "caches", None)
        if old is None or backend.get_array_module(old[0].k) is not self.xp or old[0].k.dtype != self.dtype:
            self.caches = self._stacked_caches()
        for cache in self.caches:
            cache.length = 0
        self.whole_step = self._whole_step_arrays()
        self.position = 0      # absolute position of the next token
        self.oldest_slot = 0   # rolling cache: the slot the next token overwrites once full
        self.context.clear()

    def _stacked_caches(self):
        """One KVCache per layer whose buffers are views of one (L, 1, H, T, D) array each for
        keys and values: the prefill path writes the caches layer by layer, version 2 reads
        all layers from the two arrays."""
        caches = new_caches(self.model, 1, self.window, self.xp)
        self.cache_keys = self.xp.stack([cache.k for cache in caches])            # (L, 1, H, T, D)
        self.cache_values = self.xp.stack([cache.v for cache in caches])          # (L, 1, H, T, D)
        for cache, keys, values in zip(caches, self.cache_keys, self.cache_values):
            cache.k, cache.v = keys, values
        return caches

    def _whole_step_arrays(self):
        """The ``StackedBlocks`` that ``kernels.decode.token_step_v2`` reads, or None where it
        cannot run. The weights are copied (the model's arrays are separate), so a text is
        decoded with the weights as they were at ``reset()``."""
        blocks = self.blocks
        if not use_numba(self.wte):                                             # CuPy, reference mode
            return None
        stacked = decode_kernels.StackedBlocks(
            **{name: np.stack([getattr(block, name) for block in blocks])               # (L, ...) copies
               for name in decode_kernels.StackedBlocks._fields if name not in ("keys", "values")},
            keys=self.cache_keys[:, 0], values=self.cache_values[:, 0])          # (L, H, T, D) views
        epsilons = {self.norm_f[2]} | {eps for block in blocks for eps in (block.norm1_eps, block.norm2_eps)}
        if len(epsilons) > 1 or not decode_kernels.token_step_ready(*stacked, self.head, *self.norm_f[:2]):
            return None
        return stacked

    @property
    def cached(self) -> int:
        """How many positions the model currently attends over."""
        return self.caches[0].length

    def feed(self, ids) -> np.ndarray:
        """Feed one or more token ids; return the logits (V,) of the next token, float64 on the host."""
        ids = [int(i) for i in ids]
        if not ids:
            raise ValueError("feed() needs at least one token")
        self.context.extend(ids)
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
        window = list(self.context)[-keep:]
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
        """One position through every block, on raw arrays; returns host logits (V,).

        The residual stream x is updated in place by ``add_norm``, which also normalises it
        for the next sub-layer: each block's outputs are added at the next norm.
        """
        xp, H, D, rms = self.xp, self.heads, self.head_dim, self.rmsnorm
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
        n = self.window if full else slot + 1                                     # positions attended
        if self.whole_step is not None and use_numba(x):
            rotation = None if rope is None else (rope[0][0], rope[1][0])         # 2 x (D/2,)
            logits = decode_kernels.token_step_v2(x, self.whole_step, rotation, slot, n, H,
                                                  self.norm_f[2], rms, self.head, *self.norm_f[:2])
        else:
            logits = self._blocks_one_call_at_a_time(x, rope, slot, n)
        for cache in self.caches:
            cache.length = n
        if full:
            self.oldest_slot = (self.oldest_slot + 1) % self.window
        return backend.to_numpy(logits).astype(np.float64)

    def _blocks_one_call_at_a_time(self, x, rope, slot, n):
        """The blocks and the head, one kernel or NumPy call per step: CuPy arrays, reference
        mode, and weights version 2 cannot take (see ``_whole_step_arrays``)."""
        H, D, rms = self.heads, self.head_dim, self.rmsnorm
        delta, delta_bias = self.zeros, self.zeros                                # (C,) to add to x
        for block, cache in zip(self.blocks, self.caches):
            h = add_norm(x, delta, delta_bias, block.norm1_w, block.norm1_b, block.norm1_eps, rms)   # (C,)
            q, k, v = (block.qkv @ h + block.qkv_bias).reshape(3, H, D)          # 3 x (H, D)
            if rope is not None:
                q, k = _rotate(q, *rope), _rotate(k, *rope)
            y = attend(q, k, v, cache.k[0], cache.v[0], slot, n, self.scale)     # (H, D)
            h = add_norm(x, block.attn_out @ y.reshape(-1), block.attn_out_bias,
                         block.norm2_w, block.norm2_b, block.norm2_eps, rms)      # (C,)
            f = gelu_row(block.fc @ h + block.fc_bias)                           # (F,)
            delta, delta_bias = block.mlp_out @ f, block.mlp_out_bias            # (C,)
        return self.head @ add_norm(x, delta, delta_bias, *self.norm_f, rms)      # (V,)
