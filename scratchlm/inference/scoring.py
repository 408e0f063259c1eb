"""Scoring a text with a model: loss, perplexity, bits per character and accuracy.

Every token after the first is predicted once (the first has nothing before it).
Windows of the model's context T slide over the text by ``stride`` positions:

    window 0: inputs ids[0 : T]        scores targets 1 .. T
    window k: inputs ids[e-T : e]      scores only its last ``stride`` targets (e-stride+1 .. e)

so with ``stride < T`` each target after the first window sees at least
``T - stride`` tokens of context (``stride = 1`` gives every target its full
context, which is also the slowest). The last window ends exactly at the last
token, and a text shorter than the context is scored in one shorter window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from scratchlm import backend
from scratchlm.autograd.function import no_grad
from scratchlm.errors import DataError, OptionError
from scratchlm.model import perplexity


@dataclass
class Evaluation:
    loss: float               # mean cross-entropy per token, in nats
    perplexity: float         # exp(loss)
    bits_per_char: float      # total cross-entropy in bits / characters scored
    accuracy: float           # share of tokens whose likeliest prediction was right
    tokens_scored: int
    characters_scored: int    # every character but the first
    stride: int
    context: int

    def to_dict(self) -> dict:
        return asdict(self)


def plan_windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, length, scored) per window: inputs ids[start : start+length], scoring its last ``scored`` targets."""
    last = n_tokens - 1                      # index of the last target
    end = min(context, last)
    plan = [(0, end, end)]
    while end < last:
        new_end = min(end + stride, last)
        plan.append((new_end - context, context, new_end - end))
        end = new_end
    return plan


def score_ids(model, ids, stride: int | None = None, batch_size: int = 32,
              progress: Callable[[int, int], None] | None = None) -> tuple[float, int, int]:
    """(summed cross-entropy in nats, correct predictions, tokens scored) over ``ids`` (N,)."""
    context = model.config.max_seq_len
    stride = context if stride is None else stride
    if stride < 1 or batch_size < 1:
        raise OptionError("stride and batch size must be positive")
    if len(ids) < 2:
        raise DataError("the text needs at least two characters (the first one is only context)")
    xp = backend.get_array_module(model.wte.weight.data)
    ids = xp.asarray(np.asarray(ids, dtype=np.int64))
    plan = plan_windows(len(ids), context, stride)
    model.eval()
    nll, correct, count = 0.0, 0, 0
    for first in range(0, len(plan), batch_size):
        batch = plan[first : first + batch_size]
        length = batch[0][1]
        starts = xp.asarray([start for start, _, _ in batch])[:, None]             # (B, 1)
        offsets = xp.arange(length)[None, :]                                       # (1, L)
        inputs, targets = ids[starts + offsets], ids[starts + offsets + 1]        # (B, L) each
        scored = xp.asarray([n for _, _, n in batch])[:, None]                     # (B, 1)
        mask = offsets >= length - scored                                          # (B, L)
        with no_grad():
            logits, _ = model.forward(inputs)                                      # (B, L, V)
        rows = logits.data[mask].astype(np.float64)                                # (M, V)
        wanted = targets[mask]                                                     # (M,)
        top = rows.max(axis=1)                                                     # (M,)
        log_norm = top + xp.log(xp.exp(rows - top[:, None]).sum(axis=1))          # (M,)
        nll += float((log_norm - rows[xp.arange(len(wanted)), wanted]).sum())
        correct += int((rows.argmax(axis=1) == wanted).sum())
        count += int(len(wanted))
        if progress is not None:
            progress(min(first + batch_size, len(plan)), len(plan))
    return nll, correct, count


def evaluate_text(model, tokenizer, text: str, stride: int | None = None, batch_size: int = 32,
                  progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """Score every character of ``text`` (TokenizerError for characters the vocabulary lacks)."""
    context = model.config.max_seq_len
    stride = context if stride is None else stride
    if stride > context:
        raise OptionError(
            f"--stride {stride} is larger than the model's context of {context}: characters between "
            f"windows would never be scored; use a stride from 1 to {context}"
        )
    ids = tokenizer.encode(text)
    nll, correct, count = score_ids(model, ids, stride, batch_size, progress)
    loss = nll / count
    characters = max(len(text) - 1, 1)
    return Evaluation(
        loss=loss,
        perplexity=perplexity(loss),
        bits_per_char=nll / math.log(2.0) / characters,
        accuracy=correct / count,
        tokens_scored=count,
        characters_scored=characters,
        stride=stride,
        context=context,
    )
