"""Batch-1 decoding with a KV cache: feed tokens, get the logits of the next one.

Generation is overhead-bound: a new token is a handful of matrix-vector products, so
the time goes to Python and to small array calls, not to arithmetic. ``Decoder``
therefore has two paths over the same per-layer ``KVCache`` buffers:

- **prefill** (many tokens at once: the prompt, or a recomputed window) runs
  ``GPT.forward(ids, caches=..., start_pos=...)`` under ``no_grad``;
- **step** (one token) walks the model's raw weight arrays directly: one position
  through every block: no Tensors, no tape. On the CPU with compiled kernels the
  whole step is one call (``kernels.token_step.token_step_v2``, its products on every
  core); otherwise (CuPy, reference mode, weights it cannot take)
  ``token_step_per_op``: a few matrix-vector products and small vector kernels per
  layer. Tests check both against a full forward pass in float64.

Past the context length (``max_seq_len`` = T) the window slides:

- RoPE: a rolling cache. Positions keep growing; once T positions are cached the
  new key/value overwrites the oldest slot (a ring buffer; attention over the cache
  does not depend on slot order, and RoPE is relative, so rotated cached keys stay valid).
- learned / sinusoidal positions cannot go past T-1, so the window is recomputed:
  the last T-1 tokens are prefilled again at positions 0.., then one cheap step fits.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from scratchlm import backend
from scratchlm.autograd.function import no_grad
from scratchlm.kernels import token_step
from scratchlm.kernels.attention_route import attention_route
from scratchlm.kernels.dispatch import use_numba
from scratchlm.limits import check_memory, human_number
from scratchlm.model import rope_tables, sinusoidal_table
from scratchlm.nn.attention import new_caches


def _raw(param):
    return None if param is None else param.data


def _or_zeros(array, like):
    """A missing bias as zeros, so the fused kernels always get an array."""
    return array if array is not None else like * 0


def _norm_arrays(norm):
    """(weight, bias or zeros) of a LayerNorm or RMSNorm module."""
    weight = _raw(norm.weight)
    return weight, _or_zeros(_raw(getattr(norm, "bias", None)), weight)


def _block_arrays(block) -> dict:
    """One Block's raw arrays under ``kernels.token_step.StackedBlocks``' field names; a
    missing bias is zeros."""
    attn, mlp = block.attn, block.mlp
    norm1_w, norm1_b = _norm_arrays(block.norm1)                                 # (C,), (C,)
    norm2_w, norm2_b = _norm_arrays(block.norm2)
    qkv, fc = _raw(attn.qkv.weight), _raw(mlp.fc.weight)                         # (3C, C), (F, C)
    return dict(norm1_w=norm1_w, norm1_b=norm1_b, norm2_w=norm2_w, norm2_b=norm2_b, qkv=qkv, fc=fc,
                attn_out=_raw(attn.proj.weight), mlp_out=_raw(mlp.proj.weight),  # (C, C), (C, F)
                qkv_bias=_or_zeros(_raw(attn.qkv.bias), qkv[:, 0]),              # (3C,)
                attn_out_bias=_or_zeros(_raw(attn.proj.bias), norm1_w),          # (C,)
                fc_bias=_or_zeros(_raw(mlp.fc.bias), fc[:, 0]),                  # (F,)
                mlp_out_bias=_or_zeros(_raw(mlp.proj.bias), norm1_w))            # (C,)


def _one_eps(model) -> float:
    """The norms' epsilon: the token step takes one for the whole model (GPT builds them so)."""
    epsilons = {model.norm_f.eps} | {norm.eps for b in model.blocks for norm in (b.norm1, b.norm2)}
    if len(epsilons) > 1:
        raise ValueError(f"the decoder needs one eps for every norm; this model has {sorted(epsilons)}")
    return epsilons.pop()


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
        # keys and values for every layer and position, built twice over while being stacked
        cache_bytes = 4 * cfg.n_layers * cfg.max_seq_len * cfg.d_model * np.dtype(model.dtype).itemsize
        check_memory(cache_bytes, f"the key/value cache of a context of {human_number(cfg.max_seq_len)} tokens",
                     "this model's context (max_seq_len) is too long to generate with on this machine")
        self.reset()

    def _fetch_weights(self) -> None:
        """Take the model's current arrays (training or ``to(device)`` may have replaced them)."""
        model, cfg = self.model, self.config
        self.xp = backend.get_array_module(model.wte.weight.data)
        self.dtype = model.dtype
        self.wte = model.wte.weight.data                                          # (V, C)
        self.wpe = model.wpe.weight.data if cfg.pos_encoding == "learned" else None  # (T, C)
        self.head = self.wte if cfg.tie_weights else model.lm_head.weight.data   # (V, C)
        self.eps = _one_eps(model)
        self.norm_f = _norm_arrays(model.norm_f)                                  # (C,), (C,)
        per_layer = [_block_arrays(b) for b in model.blocks]
        self.blocks = {name: [arrays[name] for arrays in per_layer] for name in per_layer[0]}  # name -> L arrays

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
        self.per_op_blocks = self._per_op_blocks()
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

    def _per_op_blocks(self):
        """``StackedBlocks`` of per-layer lists over the model's own arrays and the cache views."""
        return token_step.StackedBlocks(**self.blocks, keys=self.cache_keys[:, 0], values=self.cache_values[:, 0])

    def _whole_step_arrays(self):
        """The ``StackedBlocks`` that ``kernels.token_step.token_step_v2`` reads, or None where
        it cannot run. The weights are copied (the model's arrays are separate), so a text is
        decoded with the weights as they were at ``reset()``."""
        if not use_numba(self.wte):                                             # CuPy, reference mode
            return None
        stacked = token_step.StackedBlocks(
            **self._stacked_weights(),                                           # (L, ...) copies
            keys=self.cache_keys[:, 0], values=self.cache_values[:, 0])          # (L, H, T, D) views
        return stacked if token_step.token_step_ready(*stacked, self.head, *self.norm_f) else None

    def _stacked_weights(self) -> dict:
        """name -> (L, ...) copy of every layer's array, refreshed in place after the first
        reset: a fresh np.stack of GPT-2 small's 340 MB spends most of its time faulting in
        new pages, a copy into the buffers of the last text does not."""
        old = getattr(self, "_stacked", None)
        fits = old is not None and all(
            old[name].shape == (len(arrays), *arrays[0].shape) and old[name].dtype == arrays[0].dtype
            for name, arrays in self.blocks.items())
        if not fits:
            self._stacked = {name: np.stack(arrays) for name, arrays in self.blocks.items()}
            return self._stacked
        for name, arrays in self.blocks.items():
            for layer, array in enumerate(arrays):
                np.copyto(self._stacked[name][layer], array)
        return self._stacked

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

        The residual stream x is updated in place (see ``kernels.token_step``): each block's
        outputs are added at the next norm.
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
            cos, sin = rope_tables([pos], D, self.dtype, xp)                      # 2 x (1, D/2)
            rope = (cos[0], sin[0])                                               # 2 x (D/2,)
        full = self.cached == self.window
        slot = self.oldest_slot if full else self.cached
        n = self.window if full else slot + 1                                     # positions attended
        args = (rope, slot, n, H, self.eps, rms, self.head, *self.norm_f)
        version = attention_route(x, rotary=self.rolling, cached=True, one_token=True).version
        if version == "numba v2" and self.whole_step is not None:
            logits = token_step.token_step_v2(x, self.whole_step, *args)
        else:
            logits = token_step.token_step_per_op(x, self.per_op_blocks, *args)
        for cache in self.caches:
            cache.length = n
        if full:
            self.oldest_slot = (self.oldest_slot + 1) % self.window
        return backend.to_numpy(logits).astype(np.float64)
