"""Beam search: the continuation the model finds likeliest as a whole, not one token at a time.

N beams (hypotheses) are decoded together, as one batch of N rows through ``GPT.forward``
with a KV cache of batch N. At each step every beam is extended by every token; the 2N
best extensions by summed log-probability are read best first, and each either ends a
hypothesis (it completes ``stop``, or reaches ``max_tokens``; only those ranked among the
first N count) or becomes one of the N beams of the next step. The beams' cache rows are
reordered to follow their parents. The search ends once N hypotheses have ended (or at
``max_tokens``); the best ends it, ranked by ``score / length ** length_penalty`` (GNMT's
normalisation simplified: 0 ranks by summed log-probability, more than 0 favours longer
ones). Ties go to the lower beam, then the lower token id, so the search is deterministic;
with one beam it is greedy decoding.

Past the context length the window is recomputed, as ``decoder.py`` does for absolute
positions: the last T tokens of every beam are prefilled again at positions 0.. (RoPE
attends by relative position, so it is recomputed the same way).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scratchlm import backend
from scratchlm.autograd.function import no_grad
from scratchlm.inference.sampling import penalize_repeats, seen_mask
from scratchlm.nn.attention import new_caches


class BeamCache:
    """The beams' token rows (host) and their per-layer KV caches (batch = beams, on the device)."""

    def __init__(self, model):
        self.model, self.window = model, model.config.max_seq_len
        self.xp = backend.get_array_module(model.wte.weight.data)
        self.rows = np.zeros((1, 0), dtype=np.int64)                              # (beams, n) every token fed
        self.caches = new_caches(model, 1, self.window, self.xp)

    def start(self, ids) -> np.ndarray:
        """Prefill the prompt as one beam; the logits (1, V) of its next token."""
        self.rows = np.asarray(ids, dtype=np.int64)[None, :]                      # (1, n)
        return self._prefill(self.rows[:, -self.window:])

    def extend(self, parents: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Beam i of the next step is beam ``parents[i]`` followed by ``tokens[i]``; its logits (N, V)."""
        self.rows = np.concatenate([self.rows[parents], tokens[:, None]], axis=1)  # (N, n + 1)
        rows_on_device = self.xp.asarray(parents)
        for cache in self.caches:                                                 # follow the parents
            cache.k, cache.v = cache.k[rows_on_device], cache.v[rows_on_device]   # 2 x (N, H, T, D)
        length = self.caches[0].length
        if length < self.window:
            return self._forward(tokens[:, None], start_pos=length)
        for cache in self.caches:
            cache.length = 0
        return self._prefill(self.rows[:, -self.window:])

    def _prefill(self, rows: np.ndarray) -> np.ndarray:
        return self._forward(rows, start_pos=0)

    def _forward(self, rows: np.ndarray, start_pos: int) -> np.ndarray:
        batch = self.xp.asarray(rows)                                             # (N, t)
        with no_grad():
            logits, _ = self.model.forward(batch, caches=self.caches, start_pos=start_pos)  # (N, t, V)
        return backend.to_numpy(logits.data[:, -1]).astype(np.float64)            # (N, V)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64."""
    z = logits - logits.max(axis=-1, keepdims=True)                               # (..., V)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def completes_stop(tokenizer, tokens: list[int], stop: str | None) -> bool:
    """Whether the last token makes the generated text contain ``stop`` (only the tail is decoded:
    an earlier occurrence would have ended the hypothesis already; a byte is at most a quarter character)."""
    return bool(stop) and stop in tokenizer.decode(tokens[-4 * len(stop):])


def beam_search(model, tokenizer, ids, settings, on_token: Callable[[np.ndarray, int], None] | None = None) -> list[int]:
    """The generated token ids of the best hypothesis continuing ``ids`` (see the module doc).
    ``on_token(logits, token)`` is then told, in order, the logits (V,) behind each of its tokens."""
    width, most = settings.beam_width, settings.max_tokens
    if most == 0:
        return []
    model.eval()
    beams = BeamCache(model)
    logits = beams.start(ids)                                                     # (1, V)
    penalty = settings.repetition_penalty
    seen = seen_mask(ids, logits.shape[1])[None, :] if penalty != 1.0 else None   # (1, V)
    scores = np.zeros(1)                                                          # (beams,) summed log-probabilities
    generated: list[list[int]] = [[]]
    ended: list[tuple[float, list[int], int, int]] = []                           # (rank score, tokens, step, beam)
    steps: list[tuple[np.ndarray, np.ndarray]] = []                               # (logits, parents) per step
    for produced in range(1, most + 1):
        shaped = logits if seen is None else penalize_repeats(logits, seen, penalty)
        total = scores[:, None] + log_softmax(shaped)                             # (beams, V)
        best = np.argsort(-total, axis=None, kind="stable")[: 2 * width]          # (2N,) flat, best first
        parents, tokens = np.divmod(best, total.shape[1])                         # 2 x (2N,)
        alive: list[int] = []
        for rank, (parent, token) in enumerate(zip(parents.tolist(), tokens.tolist())):
            sequence = generated[parent] + [token]
            if produced == most or completes_stop(tokenizer, sequence, settings.stop):
                if rank < width:
                    ended.append((total[parent, token] / produced ** settings.length_penalty, sequence, produced, parent))
            elif len(alive) < width:
                alive.append(rank)
        steps.append((logits, parents[alive]))
        if len(ended) >= width or not alive:
            break
        keep = np.asarray(alive)
        scores, generated = total[parents[keep], tokens[keep]], [generated[p] + [t] for p, t in
                                                                 zip(parents[keep].tolist(), tokens[keep].tolist())]
        if seen is not None:
            seen = seen[parents[keep]]
            seen[np.arange(len(keep)), tokens[keep]] = True
        logits = beams.extend(parents[keep], tokens[keep])
    _, tokens_of_best, step, beam = max(ended, key=lambda hypothesis: hypothesis[0])  # the first of equals
    if on_token is not None:
        _replay(steps, tokens_of_best, step, beam, on_token)
    return tokens_of_best


def _replay(steps, tokens: list[int], step: int, beam: int, on_token) -> None:
    """Walk the parents back from (step, beam) to tell ``on_token`` each token's logits in order."""
    rows = []
    for j in range(step, 0, -1):
        logits, _ = steps[j - 1]
        rows.append(logits[beam])                                                 # (V,)
        if j > 1:
            beam = int(steps[j - 2][1][beam])                                     # its parent one step earlier
    for row, token in zip(reversed(rows), tokens):
        on_token(row, token)
