"""GPT-2's tensor names and layouts <-> scratchlm's parameters.

GPT-2 keeps its linear layers as ``Conv1D``: the weight is stored (in, out), the transpose
of scratchlm's (out, in) ``Linear``. Everything else (embeddings, LayerNorms, biases) has
the same shape under another name. Files saved by ``transformers`` prefix every name with
``transformer.`` (and write ``lm_head.weight`` only for an untied head); the original
OpenAI upload has no prefix and also stores the causal-mask buffers ``attn.bias`` and
``attn.masked_bias``, which are constants, not weights.
"""

from __future__ import annotations

from scratchlm.model import GPTConfig, parameter_shapes

PREFIX = "transformer."
BUFFERS = ("attn.bias", "attn.masked_bias")             # GPT-2's causal masks, not parameters
BLOCK_NAMES = {  # scratchlm name in block i -> (GPT-2 name in h.i, stored transposed)
    "norm1.weight": ("ln_1.weight", False), "norm1.bias": ("ln_1.bias", False),
    "attn.qkv.weight": ("attn.c_attn.weight", True), "attn.qkv.bias": ("attn.c_attn.bias", False),
    "attn.proj.weight": ("attn.c_proj.weight", True), "attn.proj.bias": ("attn.c_proj.bias", False),
    "norm2.weight": ("ln_2.weight", False), "norm2.bias": ("ln_2.bias", False),
    "mlp.fc.weight": ("mlp.c_fc.weight", True), "mlp.fc.bias": ("mlp.c_fc.bias", False),
    "mlp.proj.weight": ("mlp.c_proj.weight", True), "mlp.proj.bias": ("mlp.c_proj.bias", False),
}
GLOBAL_NAMES = {"wte.weight": "wte.weight", "wpe.weight": "wpe.weight",
                "norm_f.weight": "ln_f.weight", "norm_f.bias": "ln_f.bias"}


def gpt2_name(name: str) -> tuple[str, bool]:
    """(GPT-2's name without the ``transformer.`` prefix, stored transposed) of scratchlm parameter ``name``."""
    if name == "lm_head.weight":
        return name, False
    if name in GLOBAL_NAMES:
        return GLOBAL_NAMES[name], False
    _, index, rest = name.split(".", 2)                  # blocks.<i>.<rest>
    theirs, transposed = BLOCK_NAMES[rest]
    return f"h.{index}.{theirs}", transposed


def gpt2_layout(config: GPTConfig):
    """(scratchlm name, GPT-2 name, GPT-2's stored shape, transposed) of every parameter, lazily."""
    for name, shape in parameter_shapes(config):
        theirs, transposed = gpt2_name(name)
        yield name, theirs, tuple(reversed(shape)) if transposed else tuple(shape), transposed


def is_buffer(name: str) -> bool:
    """Whether a stored GPT-2 tensor is one of the causal-mask constants (never loaded)."""
    return name.startswith("h.") and name.split(".", 2)[-1] in BUFFERS
