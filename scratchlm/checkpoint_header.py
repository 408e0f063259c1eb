"""Checking a checkpoint from its header alone, before a single tensor is read or a model is built.

A checkpoint's config is a claim: a file may say 10^5 layers or a model dim of 10^9 and hold a
few small tensors. So the header (metadata strings, tensor names, shapes and dtypes, all read
without loading data) is checked first: the format and its version, the JSON type of every
metadata field, a config that can be built, a tokenizer whose vocabulary is the model's, every
tensor the config implies present with its shape and a float dtype and no other tensor, and the
memory loading it needs against what the machine has. Each problem is a ``CheckpointError``
that says what is wrong with the file, in one bounded line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from scratchlm.backend import FLOAT_DTYPES
from scratchlm.data.tokenizer import tokenizer_from_dict
from scratchlm.errors import CheckpointError, UserError
from scratchlm.limits import check_memory, excerpt
from scratchlm.model import GPTConfig, parameter_count, parameter_shapes

FORMAT = "scratchlm-checkpoint"
FORMAT_VERSION = "1"
OPTIMIZER_PREFIX = "optimizer."
OPTIMIZER_TENSORS = (OPTIMIZER_PREFIX + "m", OPTIMIZER_PREFIX + "v")
STORED_DTYPES = {"F32": 4, "F64": 8}       # safetensors dtype -> bytes per value; weights are floats
LOADED_COPIES = 2                          # the arrays read from the file, then the model built from them


@dataclass
class Header:
    """What a checked header says; the tensors are read afterwards."""

    config: GPTConfig
    tokenizer: object
    train_state: dict
    optimizer: dict | None                  # {"step": ...} when the file holds AdamW's moments
    dtype: str


def read_header(path, handle) -> Header:
    """Check the header of the open safetensors file ``handle`` (of ``path``); raise CheckpointError."""
    meta = handle.metadata() or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a scratchlm checkpoint "
                              "(train a model with 'scratchlm train' to get one)")
    _check_version(path, meta.get("format_version"))
    config = _config(path, _json_field(path, meta, "config", dict))
    tokenizer = _tokenizer(path, _json_field(path, meta, "tokenizer", dict), config)
    train_state = _json_field(path, meta, "train_state", dict, default={})
    dtype = meta.get("dtype", "float32")
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{path} names an unknown dtype {excerpt(dtype)} (scratchlm writes "
                              f"{' or '.join(FLOAT_DTYPES)}): the file is damaged or from another program")
    slices = {name: handle.get_slice(name) for name in handle.keys()}
    _check_tensors(path, slices, config)
    optimizer = _optimizer(path, meta, slices, config)
    stored = sum(math.prod(s.get_shape()) * STORED_DTYPES[s.get_dtype()] for s in slices.values())
    check_memory(stored * LOADED_COPIES, f"loading {path}", "use a machine with more memory")
    return Header(config, tokenizer, train_state, optimizer, dtype)


def _check_version(path, version) -> None:
    if version == FORMAT_VERSION:
        return
    if version is None:
        raise CheckpointError(f"{path} has damaged scratchlm metadata: the 'format_version' field is missing")
    if isinstance(version, str) and version.isdigit() and len(version) < 10 and int(version) > int(FORMAT_VERSION):
        raise CheckpointError(f"{path} was written by a newer scratchlm (checkpoint format version {version}; this "
                              f"one reads version {FORMAT_VERSION}): upgrade scratchlm to load it")
    raise CheckpointError(f"{path} has an unknown checkpoint format version {excerpt(version)} (this scratchlm reads "
                          f"version {FORMAT_VERSION}): the file is damaged or from another program")


def _json_field(path, meta: dict, key: str, kind: type, default=None):
    """The JSON metadata field ``key``, which must decode to a ``kind``."""
    if key not in meta:
        if default is not None:
            return default
        raise CheckpointError(f"{path} has damaged scratchlm metadata: the {key!r} field is missing")
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):
        raise CheckpointError(f"{path} has damaged scratchlm metadata: the {key!r} field is not valid JSON") from None
    if not isinstance(value, kind):
        raise CheckpointError(f"{path} has damaged scratchlm metadata: the {key!r} field holds a "
                              f"{type(value).__name__} ({excerpt(value)}), not a JSON object")
    return value


def _config(path, values: dict) -> GPTConfig:
    try:
        return GPTConfig.from_dict(values)
    except UserError as exc:
        raise CheckpointError(f"{path} holds a model config that cannot be built: {exc}") from None
    except TypeError as exc:              # a value of a type the checks never expected
        raise CheckpointError(f"{path} holds a damaged model config ({excerpt(str(exc))})") from None


def _tokenizer(path, values: dict, config: GPTConfig):
    try:
        tokenizer = tokenizer_from_dict(values)
    except UserError as exc:
        raise CheckpointError(f"{path} holds a damaged tokenizer: {exc}") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"{path} is inconsistent: its tokenizer has {tokenizer.vocab_size} symbols but its model "
                              f"has a vocabulary of {config.vocab_size}: the file is damaged")
    return tokenizer


def _optimizer(path, meta: dict, slices: dict, config: GPTConfig) -> dict | None:
    """AdamW's step count (the moments are checked with the other tensors), or None without them."""
    present = [name for name in OPTIMIZER_TENSORS if name in slices]
    if not present:
        return None
    if len(present) == 1:
        raise CheckpointError(f"{path} holds {present[0]} without its partner: the optimizer state is damaged")
    state = _json_field(path, meta, "optimizer", dict)
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path} has a damaged optimizer step count {excerpt(step)}")
    flat = (parameter_count(config),)
    for name in OPTIMIZER_TENSORS:
        _check_slice(path, name, slices[name], flat)
    return state


def _check_tensors(path, slices: dict, config: GPTConfig) -> None:
    """Every parameter the config implies, with its shape, and nothing else (but the optimizer's)."""
    expected = set()
    for name, shape in parameter_shapes(config):   # lazily: a config claiming 10^5 layers stops at the first gap
        if name not in slices:
            raise CheckpointError(f"{path} lacks the tensor {name} that its config ({_described(config)}) needs: "
                                  "the file is damaged or was edited")
        _check_slice(path, name, slices[name], shape)
        expected.add(name)
    extra = sorted(set(slices) - expected - set(OPTIMIZER_TENSORS))
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise CheckpointError(f"{path} holds a tensor {excerpt(extra[0])}{more} that its config "
                              f"({_described(config)}) has no place for: the file is damaged or was edited")


def _check_slice(path, name: str, tensor, shape: tuple) -> None:
    dtype = tensor.get_dtype()
    if dtype not in STORED_DTYPES:
        raise CheckpointError(f"{path}: tensor {name} is stored as {excerpt(dtype)}; scratchlm checkpoints hold "
                              "float32 or float64 values (the file is damaged or from another program)")
    found = tuple(tensor.get_shape())
    if found != tuple(shape):
        raise CheckpointError(f"{path}: tensor {name} has shape {excerpt(found)} but its config "
                              f"needs {excerpt(tuple(shape))}: the file is damaged or was edited")


def _described(config: GPTConfig) -> str:
    return (f"dim {config.d_model}, {config.n_layers} layers, context {config.max_seq_len}, "
            f"vocabulary {config.vocab_size}")
