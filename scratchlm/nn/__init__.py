"""Layers: Module and Parameter, Linear, Embedding, norms, Dropout, MLP, attention and Block."""

from .attention import Block, CausalSelfAttention, KVCache, make_norm, new_caches
from .layers import MLP, Dropout, Embedding, LayerNorm, Linear, RMSNorm
from .module import Module, Parameter

__all__ = [
    "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout", "MLP",
    "CausalSelfAttention", "KVCache", "Block", "make_norm", "new_caches",
]
