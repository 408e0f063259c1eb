"""The benchmark configurations, shared by every benchmark and by both sides of the comparison.

All five are the same nanoGPT-style architecture (vocab 65, learned positions, pre-LayerNorm,
fused qkv, tanh-GELU MLP x4, tied head, biases, no dropout) trained with AdamW and a global
gradient-norm clip of 1.0 on random tokens. Only the sizes differ. This module imports nothing
heavy, so the PyTorch side and the scratchlm side can both read it without loading the other.
"""

from __future__ import annotations

from dataclasses import dataclass

VOCAB_SIZE = 65
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.999)
EPS = 1e-8
CLIP_NORM = 1.0
GENERATE_TOKENS = 200          # new tokens per generation benchmark (batch 1, one prompt token)
GENERATE_CONTEXT = 256         # generation models hold prompt + 200 new tokens in their window


@dataclass(frozen=True)
class BenchConfig:
    key: str
    name: str
    d_model: int
    n_heads: int
    n_layers: int
    seq_len: int
    batch: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len

    def model_kwargs(self, max_seq_len: int | None = None) -> dict:
        """Keyword arguments of ``scratchlm.model.GPTConfig`` (and of ``torch_gpt.TorchGPT``)."""
        return dict(
            vocab_size=VOCAB_SIZE, d_model=self.d_model, n_heads=self.n_heads,
            n_layers=self.n_layers, max_seq_len=max_seq_len or self.seq_len,
        )

    def describe(self) -> str:
        return (f"{self.key} {self.name}: d{self.d_model} h{self.n_heads} L{self.n_layers} "
                f"seq{self.seq_len} batch{self.batch}")


CONFIGS = {
    "a": BenchConfig("a", "tiny", d_model=64, n_heads=2, n_layers=2, seq_len=128, batch=16),
    "b": BenchConfig("b", "baby", d_model=128, n_heads=4, n_layers=4, seq_len=64, batch=12),
    "c": BenchConfig("c", "good", d_model=256, n_heads=8, n_layers=6, seq_len=128, batch=32),
    "d": BenchConfig("d", "large", d_model=512, n_heads=8, n_layers=12, seq_len=128, batch=8),
    # GPT-2 small's shape (85M parameters, but vocab 65): for the GPU comparison; on this CPU a step
    # would take ~10 s (an estimate from d's 1.3 s, not measured)
    "e": BenchConfig("e", "gpt2-small", d_model=768, n_heads=12, n_layers=12, seq_len=256, batch=16),
}

CPU_CONFIGS = ("a", "b", "c", "d")    # the CPU bar of docs/performance.md
GPU_CONFIGS = ("c", "d", "e")         # the GPU bar: compare_torch's default with --device cuda

GENERATE_CONFIGS = ("a", "c")


def parse_keys(text: str) -> list[str]:
    """'a,b,c' -> ['a', 'b', 'c'], checking each key names a configuration."""
    keys = [k.strip().lower() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CONFIGS]
    if unknown or not keys:
        raise ValueError(f"unknown configuration(s) {unknown or text!r}: choose from {', '.join(CONFIGS)}")
    return keys
