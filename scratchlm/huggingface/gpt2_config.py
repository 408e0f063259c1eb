"""A Hugging Face GPT-2 ``config.json`` <-> scratchlm's GPTConfig, checked field by field.

scratchlm's model is GPT-2's architecture (learned positions, pre-LayerNorm with epsilon
1e-5, fused qkv, tanh GELU, a tied head, biases), so a GPT-2 config maps one to one; a
setting scratchlm does not compute (another activation, another epsilon, attention scaled
by layer, cross-attention) is refused by its name rather than run differently.
"""

from __future__ import annotations

from scratchlm.errors import CheckpointError, UserError
from scratchlm.limits import excerpt
from scratchlm.model import GPTConfig

LAYER_NORM_EPS = 1e-5                                   # scratchlm's LayerNorm (nn/layers.py), GPT-2's too
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")          # two names of the one tanh approximation scratchlm computes
# Fields whose value changes the arithmetic; each must be what scratchlm computes (or absent).
REQUIRED = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}


def gpt2_config(path, values: dict) -> GPTConfig:
    """The GPTConfig of a GPT-2 ``config.json`` (``values``), or CheckpointError naming the setting."""
    model_type = values.get("model_type")
    if model_type != "gpt2":
        raise CheckpointError(f"{path} holds a {excerpt(model_type)} model (model_type in config.json); scratchlm "
                              "runs GPT-2 models only (model_type 'gpt2')")
    activation = values.get("activation_function", "gelu_new")
    if activation not in TANH_GELUS:
        raise CheckpointError(f"{path}: activation_function {excerpt(activation)} is not supported; scratchlm computes "
                              f"the tanh GELU ({' or '.join(TANH_GELUS)})")
    eps = values.get("layer_norm_epsilon", LAYER_NORM_EPS)
    if eps != LAYER_NORM_EPS:
        raise CheckpointError(f"{path}: layer_norm_epsilon {excerpt(eps)} is not supported; scratchlm's LayerNorm "
                              f"uses {LAYER_NORM_EPS:g}, as GPT-2 does")
    for name, wanted in REQUIRED.items():
        if values.get(name, wanted) != wanted:
            raise CheckpointError(f"{path}: {name} {excerpt(values[name])} is not supported (scratchlm computes "
                                  f"GPT-2 with {name} {wanted})")
    n_embd = _whole(path, values, "n_embd")
    n_inner = values.get("n_inner") or 4 * n_embd
    if not isinstance(n_inner, int) or n_inner % n_embd:
        raise CheckpointError(f"{path}: n_inner {excerpt(n_inner)} is not a multiple of n_embd {n_embd}, which "
                              "scratchlm's MLP needs")
    try:
        return GPTConfig(vocab_size=_whole(path, values, "vocab_size"), d_model=n_embd,
                         n_heads=_whole(path, values, "n_head"), n_layers=_whole(path, values, "n_layer"),
                         max_seq_len=_whole(path, values, "n_positions"), dropout=0.0, ffn_mult=n_inner // n_embd,
                         norm="layernorm", pos_encoding="learned",
                         tie_weights=bool(values.get("tie_word_embeddings", True)), bias=True)
    except UserError as exc:
        raise CheckpointError(f"{path} holds a GPT-2 config scratchlm cannot build: {exc}") from None


def _whole(path, values: dict, name: str) -> int:
    value = values.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CheckpointError(f"{path}: config.json needs {name} as a positive whole number, got {excerpt(value)}")
    return value


def why_not_gpt2(config: GPTConfig) -> str | None:
    """Why GPT-2 cannot express ``config`` (None when it can): the export's one refusal line."""
    if config.pos_encoding != "learned":
        return (f"its {config.pos_encoding} positions have no place in GPT-2, which learns one vector per "
                "position (train with --pos-encoding learned)")
    if config.norm != "layernorm":
        return f"its {config.norm} has no place in GPT-2, which uses LayerNorm (train with --norm layernorm)"
    if not config.bias:
        return "it has no biases, and GPT-2's layers all have them"
    return None


def hf_config(config: GPTConfig, bos_eos_id: int | None) -> dict:
    """The ``config.json`` of a GPT2LMHeadModel with ``config``'s shape."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.max_seq_len, "n_embd": config.d_model,
        "n_layer": config.n_layers, "n_head": config.n_heads, "n_inner": config.ffn_mult * config.d_model,
        "activation_function": "gelu_new", "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": 0.0,
        "tie_word_embeddings": config.tie_weights, "scale_attn_weights": True,
        "bos_token_id": bos_eos_id, "eos_token_id": bos_eos_id, "torch_dtype": "float32",
    }
