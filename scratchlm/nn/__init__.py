"""Layers: Module and Parameter, Linear, Embedding, norms, Dropout, MLP, attention and Block."""

from scratchlm.nn.attention import Block, CausalSelfAttention, KVCache, make_norm, new_caches
from scratchlm.nn.layers import MLP, Dropout, Embedding, LayerNorm, Linear, RMSNorm
from scratchlm.nn.module import Module, Parameter

__all__ = [
    "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "RMSNorm", "Dropout", "MLP",
    "CausalSelfAttention", "KVCache", "Block", "make_norm", "new_caches",
]
