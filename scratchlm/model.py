"""GPTConfig and GPT: a character-level, decoder-only transformer.

ids (B, T) -> token embedding (+ learned or sinusoidal positions) -> N pre-norm
Blocks (RoPE, if chosen, rotates q and k inside attention) -> final norm ->
output head (tied to the token embedding by default) -> logits (B, T, V).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from scratchlm.autograd import ops
from scratchlm.backend import get_array_module, resolve_dtype
from scratchlm.errors import ConfigError
from scratchlm.limits import excerpt
from scratchlm.nn import Block, Dropout, Embedding, Linear, Module, make_norm

NORMS = ("layernorm", "rmsnorm")
MAX_HEADS_SUGGESTED = 1024     # head counts looked at when suggesting one that divides the model dim
MAX_DIVISORS_SHOWN = 8
POS_ENCODINGS = ("learned", "sinusoidal", "rope")


@dataclass
class GPTConfig:
    vocab_size: int = 65
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    max_seq_len: int = 128
    dropout: float = 0.0
    ffn_mult: int = 4
    norm: str = "layernorm"
    pos_encoding: str = "learned"
    tie_weights: bool = True
    bias: bool = True

    def __post_init__(self):
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "max_seq_len", "ffn_mult"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {excerpt(value)}")
        if self.d_model % self.n_heads:
            raise ConfigError(heads_hint(self.d_model, self.n_heads))
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) \
                or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {excerpt(self.dropout)}")
        for name in ("tie_weights", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {excerpt(getattr(self, name))}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {excerpt(self.norm)}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ConfigError(f"pos_encoding must be one of {', '.join(POS_ENCODINGS)}, got {excerpt(self.pos_encoding)}")
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise ConfigError(f"rope needs an even head dim; {self.d_model}/{self.n_heads} = {self.head_dim} is odd")
        if self.pos_encoding == "sinusoidal" and self.d_model % 2:
            raise ConfigError(f"sinusoidal positions need an even model dim, got {self.d_model}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def heads_hint(d_model: int, n_heads: int) -> str:
    """The error for a head count that does not divide ``d_model``, with the nearest one that does.
    Only counts up to MAX_HEADS_SUGGESTED are tried: listing every divisor of a huge dim never ends."""
    valid = [h for h in range(1, min(d_model, MAX_HEADS_SUGGESTED) + 1) if d_model % h == 0]
    nearest = min(valid, key=lambda h: (abs(h - n_heads), h))
    shown = ", ".join(map(str, valid[:MAX_DIVISORS_SHOWN])) + (", ..." if len(valid) > MAX_DIVISORS_SHOWN else "")
    return (f"model dim {d_model} is not divisible by {n_heads} heads: use --num-heads {nearest} "
            f"(any of {shown} divides {d_model}), or a model dim that {n_heads} divides")


def global_shapes(config: GPTConfig) -> dict:
    """name -> shape of the parameters outside the blocks (as ``GPT.state_dict`` names them)."""
    C = config.d_model
    shapes = {"wte.weight": (config.vocab_size, C)}
    if config.pos_encoding == "learned":
        shapes["wpe.weight"] = (config.max_seq_len, C)
    shapes.update({f"norm_f.{k}": v for k, v in _norm_shapes(config).items()})
    if not config.tie_weights:
        shapes["lm_head.weight"] = (config.vocab_size, C)
    return shapes


def block_shapes(config: GPTConfig, index: int) -> dict:
    """name -> shape of the parameters of block ``index``."""
    C, F = config.d_model, config.ffn_mult * config.d_model
    linears = {"attn.qkv": (3 * C, C), "attn.proj": (C, C), "mlp.fc": (F, C), "mlp.proj": (C, F)}
    shapes = {f"norm1.{k}": v for k, v in _norm_shapes(config).items()}
    for name, shape in linears.items():
        if name == "mlp.fc":
            shapes.update({f"norm2.{k}": v for k, v in _norm_shapes(config).items()})
        shapes[f"{name}.weight"] = shape
        if config.bias:
            shapes[f"{name}.bias"] = (shape[0],)
    return {f"blocks.{index}.{k}": v for k, v in shapes.items()}


def _norm_shapes(config: GPTConfig) -> dict:
    with_bias = config.norm == "layernorm" and config.bias
    return {"weight": (config.d_model,), **({"bias": (config.d_model,)} if with_bias else {})}


def parameter_shapes(config: GPTConfig):
    """(name, shape) of every parameter, lazily (a config may claim 10^5 layers: stop early)."""
    yield from global_shapes(config).items()
    for index in range(config.n_layers):
        yield from block_shapes(config, index).items()


def parameter_count(config: GPTConfig) -> int:
    """The number of parameters, from the config alone (nothing is built)."""
    def total(shapes):
        return sum(math.prod(shape) for shape in shapes.values())

    return total(global_shapes(config)) + config.n_layers * total(block_shapes(config, 0))


def model_bytes(config: GPTConfig, dtype) -> int:
    """Bytes the parameters of ``config`` take in ``dtype``."""
    return parameter_count(config) * np.dtype(resolve_dtype(dtype)).itemsize


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy): the model is as unsure as a uniform pick among this many
    tokens. Capped at exp(700) so a diverged loss gives a huge number, not an OverflowError."""
    return math.exp(min(loss, 700.0))


def sinusoidal_table(positions, dim: int, dtype, xp=np):
    """(T, dim): sin on even features, cos on odd, wavelengths 2pi .. 10000*2pi."""
    pos = xp.asarray(positions, dtype=np.float64)[:, None]                     # (T, 1)
    freq = xp.exp(-math.log(10000.0) * xp.arange(0, dim, 2, dtype=np.float64) / dim)  # (dim/2,)
    table = xp.zeros((len(positions), dim), dtype=np.float64)
    table[:, 0::2] = xp.sin(pos * freq)
    table[:, 1::2] = xp.cos(pos * freq)
    return table.astype(dtype)


def rope_tables(positions, head_dim: int, dtype, xp=np, base: float = 10000.0):
    """cos and sin (T, head_dim/2) of the rotation angles pos * base^(-2i/head_dim)."""
    pos = xp.asarray(positions, dtype=np.float64)[:, None]                     # (T, 1)
    inv_freq = base ** (-xp.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (D/2,)
    angles = pos * inv_freq                                                    # (T, D/2)
    return xp.cos(angles).astype(dtype), xp.sin(angles).astype(dtype)


class GPT(Module):
    def __init__(self, config: GPTConfig, seed: int = 0, dtype=None):
        config.validate()
        dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        self.config = config
        self.dropout_rng = np.random.default_rng(seed + 1)
        dropout = Dropout(config.dropout, self.dropout_rng)
        self.wte = Embedding(config.vocab_size, config.d_model, rng=rng, dtype=dtype)
        if config.pos_encoding == "learned":
            self.wpe = Embedding(config.max_seq_len, config.d_model, rng=rng, dtype=dtype)
        self.drop = dropout
        self.blocks = [Block(config, rng=rng, dropout=dropout, dtype=dtype) for _ in range(config.n_layers)]
        self.norm_f = make_norm(config, dtype)
        if not config.tie_weights:
            self.lm_head = Linear(config.d_model, config.vocab_size, bias=False, rng=rng, dtype=dtype)

    @property
    def dtype(self):
        return self.wte.weight.dtype

    def forward(self, ids, targets=None, caches=None, start_pos: int = 0):
        """ids (B, T) ints -> (logits (B, T, V), loss or None).

        ``targets`` (B, T) gives the mean cross-entropy (``-1`` entries are ignored).
        ``caches`` (one KVCache per layer) and ``start_pos`` are for generation.
        """
        cfg = self.config
        B, T = ids.shape
        xp = get_array_module(self.wte.weight.data)
        positions = xp.arange(start_pos, start_pos + T)
        x = self.wte(ids)                                                        # (B, T, C)
        rope = None
        if cfg.pos_encoding == "learned":
            if start_pos + T > cfg.max_seq_len:
                raise ValueError(f"positions up to {start_pos + T} exceed the context of {cfg.max_seq_len}")
            x = x + ops.embedding(self.wpe.weight, positions)                    # (B, T, C)
        elif cfg.pos_encoding == "sinusoidal":
            x = x + sinusoidal_table(positions, cfg.d_model, self.dtype, xp)     # (B, T, C)
        else:
            rope = rope_tables(positions, cfg.head_dim, self.dtype, xp)          # 2 x (T, D/2)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, None if caches is None else caches[i])            # (B, T, C)
        x = self.norm_f(x)                                                       # (B, T, C)
        head = self.wte.weight if cfg.tie_weights else self.lm_head.weight
        logits = ops.linear(x, head)                                             # (B, T, V)
        if targets is None:
            return logits, None
        loss = ops.cross_entropy(logits.reshape(B * T, cfg.vocab_size), targets.reshape(-1))
        return logits, loss
