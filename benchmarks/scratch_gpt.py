"""The scratchlm side of the benchmarks: build a configuration, run one training step, decode.

``bench_end_to_end.py`` (pytest-benchmark) and the scratchlm worker processes of
``compare_torch.py`` both call these, so the two measure exactly the same work. The
PyTorch twin of this module is ``torch_gpt.py``; this one never imports torch.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from configs import BETAS, CLIP_NORM, EPS, LEARNING_RATE, VOCAB_SIZE, WEIGHT_DECAY, BenchConfig

import scratchlm  # noqa: F401  first: it configures OpenBLAS's threads before NumPy loads them
from scratchlm import backend, no_grad
from scratchlm.autograd.precision import bf16_products
from scratchlm.model import GPT, GPTConfig
from scratchlm.nn import new_caches
from scratchlm.optim import AdamW


class Trainer:
    """A GPT, its AdamW optimizer and a fixed random batch: ``step()`` is one full training step."""

    def __init__(self, config: BenchConfig, device: str = "cpu", seed: int = 0, precision: str = "fp32"):
        self.config = config
        self.bf16 = precision == "bf16"                # Linear and MLP products on bf16 operands
        self.model = GPT(GPTConfig(**config.model_kwargs()), seed=seed)
        if device != "cpu":
            self.model.to(device)
        self.xp = backend.get_array_module(self.model.wte.weight.data)
        self.optimizer = AdamW(self.model.parameters(), lr=LEARNING_RATE, betas=BETAS, eps=EPS,
                               weight_decay=WEIGHT_DECAY)
        rng = np.random.default_rng(seed)
        shape = (config.batch, config.seq_len)
        self.ids = self.xp.asarray(rng.integers(0, VOCAB_SIZE, size=shape))       # (B, T)
        self.targets = self.xp.asarray(rng.integers(0, VOCAB_SIZE, size=shape))   # (B, T)

    def step(self) -> float:
        """Forward, backward, clip, AdamW step; returns the loss (which also waits for a GPU)."""
        with bf16_products(self.bf16):
            _, loss = self.model(self.ids, self.targets)
        loss.backward()
        self.optimizer.clip_grad_norm(CLIP_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.item()

    def synchronize(self) -> None:
        backend.synchronize(self.xp)


def device_memory_mib(device: str) -> float | None:
    """GPU memory held by CuPy's pool (it keeps freed blocks, so this is near the peak); None on CPU."""
    if device == "cpu":
        return None
    return backend.array_module_for(device).get_default_memory_pool().total_bytes() / 2**20


def build_decoder(config: BenchConfig, context: int, device: str = "cpu", seed: int = 0) -> GPT:
    """A GPT of ``config``'s sizes whose window holds ``context`` positions, in eval mode."""
    model = GPT(GPTConfig(**config.model_kwargs(max_seq_len=context)), seed=seed)
    if device != "cpu":
        model.to(device)
    return model.eval()


def greedy_decode(model: GPT, prompt_ids, new_tokens: int) -> list[int]:
    """Batch-1 greedy decoding with a KV cache: prefill the prompt, then one position per token.

    ``model``'s window must hold the prompt and the new tokens (the benchmark sizes it so).
    Runs one prefill and ``new_tokens - 1`` single-position steps; returns the new ids.
    """
    xp = backend.get_array_module(model.wte.weight.data)
    ids = xp.asarray(prompt_ids, dtype=np.int64).reshape(1, -1)                 # (1, P)
    caches = new_caches(model, batch=1, capacity=ids.shape[1] + new_tokens)
    out: list[int] = []
    with no_grad():
        logits, _ = model(ids, caches=caches, start_pos=0)                       # (1, P, V)
        pos = ids.shape[1]
        while True:
            out.append(int(logits.data[0, -1].argmax()))
            if len(out) == new_tokens:
                return out
            step_ids = xp.asarray([[out[-1]]], dtype=np.int64)                  # (1, 1)
            logits, _ = model(step_ids, caches=caches, start_pos=pos)            # (1, 1, V)
            pos += 1


def product_decode(model: GPT, prompt_ids, new_tokens: int) -> list[int]:
    """Greedy decoding with the product's own decoder (``scratchlm.inference.decoder.Decoder``)."""
    from scratchlm.inference.decoder import Decoder
    from scratchlm.inference.sampling import SamplingSettings, generate_tokens

    settings = SamplingSettings(max_tokens=new_tokens, temperature=0.0)
    rng = np.random.default_rng(0)
    return list(generate_tokens(Decoder(model), np.asarray(prompt_ids), settings, rng))


def decode(model: GPT, prompt_ids, new_tokens: int) -> list[int]:
    """The product's decoder (``scratchlm.inference.decoder``) when it exists, else ``greedy_decode``."""
    if importlib.util.find_spec("scratchlm.inference.decoder") is None:
        return greedy_decode(model, prompt_ids, new_tokens)
    return product_decode(model, prompt_ids, new_tokens)
