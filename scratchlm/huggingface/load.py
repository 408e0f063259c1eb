"""Reading a Hugging Face GPT-2 folder as a scratchlm ``Checkpoint``, offline, without torch.

A folder holds ``config.json``, the weights (``model.safetensors``, or shards listed in
``model.safetensors.index.json``) and the tokenizer (``tokenizer.json``, or ``vocab.json``
+ ``merges.txt``). Everything is checked before a tensor is read: the config (``gpt2_config``),
which weight files there are (a ``pytorch_model.bin`` is a pickle: it is refused unopened),
the tokenizer against the vocabulary, then every tensor's name, dtype and shape.
"""

from __future__ import annotations

import json
import math
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from scratchlm.checkpoint import Checkpoint, check_finite
from scratchlm.data.bpe import load_bpe, tokenizer_files
from scratchlm.errors import CheckpointError
from scratchlm.huggingface.gpt2_config import gpt2_config
from scratchlm.huggingface.gpt2_weights import PREFIX, gpt2_layout, is_buffer
from scratchlm.limits import check_memory, excerpt

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
OTHER_FORMATS = ("tf_model.h5", "flax_model.msgpack")
READABLE = {"F16": 2, "F32": 4, "F64": 8}               # safetensors dtypes NumPy reads (it has no bfloat16)
CONVERT_HINT = ("convert it to safetensors where torch and transformers are installed: "
                "AutoModelForCausalLM.from_pretrained(folder).save_pretrained(folder)")


def is_model_folder(path) -> bool:
    """Whether ``path`` is a folder with a ``config.json`` (what ``load_gpt2_folder`` reads)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file()


def load_gpt2_folder(path) -> Checkpoint:
    """The GPT-2 model in folder ``path`` as a Checkpoint (float32), or CheckpointError saying what is wrong."""
    path = Path(path)
    config = gpt2_config(path, _read_config(path / CONFIG))
    files = _weight_files(path)
    tokenizer = _tokenizer(path, config.vocab_size)
    with ExitStack() as stack:
        handles = _open_all(path, files, stack)
        stored = {}                                     # GPT-2 name (no prefix) -> (handle, stored name)
        for handle in handles:
            for name in handle.keys():
                stored[name.removeprefix(PREFIX)] = (handle, name)
        plan = _check_tensors(path, config, stored)
        weights = {}
        for ours, (handle, name, transposed) in plan.items():
            array = handle.get_tensor(name).astype(np.float32)
            weights[ours] = np.ascontiguousarray(array.T if transposed else array)   # (out, in) for a Conv1D
    check_finite(path, weights)
    return Checkpoint(config, tokenizer, weights, None, {"source": "huggingface", "folder": str(path)}, "float32")


def _read_config(path: Path) -> dict:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{path} is not a readable JSON file: the model folder is damaged") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} holds a {type(values).__name__}, not a JSON object: the model folder is damaged")
    return values


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights: one, or the shards an index lists."""
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS]
    if (folder / INDEX).is_file():
        index = _read_config(folder / INDEX).get("weight_map")
        if not isinstance(index, dict) or not index:
            raise CheckpointError(f"{folder / INDEX} has no weight_map: the sharded checkpoint is damaged")
        shards = sorted(set(map(str, index.values())))
        for shard in shards:
            if Path(shard).name != shard or not (folder / shard).is_file():
                raise CheckpointError(f"{folder / INDEX} names a shard {excerpt(shard)} that is not a file in "
                                      f"{folder}: the sharded checkpoint is incomplete")
        return [folder / shard for shard in shards]
    pickled = next((name for name in PICKLES if (folder / name).is_file()), None)
    if pickled:
        raise CheckpointError(f"{folder} holds its weights as {pickled}, a pickle, which scratchlm never opens "
                              f"(loading one can run code): {CONVERT_HINT}")
    other = next((name for name in OTHER_FORMATS if (folder / name).is_file()), None)
    found = f"only {other}" if other else "no weights"
    raise CheckpointError(f"{folder} holds {found}: scratchlm reads {WEIGHTS} (or its shards with {INDEX})")


def _tokenizer(folder: Path, vocab_size: int):
    if tokenizer_files(folder) is None:
        raise CheckpointError(f"{folder} has no tokenizer: a GPT-2 folder holds tokenizer.json (or vocab.json and "
                              "merges.txt) beside config.json; save it there with tokenizer.save_pretrained(folder)")
    tokenizer = load_bpe(folder)
    if tokenizer.vocab_size != vocab_size:
        raise CheckpointError(f"{folder}: the tokenizer has {tokenizer.vocab_size:,} tokens but config.json's "
                              f"vocab_size is {vocab_size:,}: the tokenizer belongs to another model")
    return tokenizer


def _open_all(folder: Path, files: list[Path], stack: ExitStack) -> list:
    from safetensors import safe_open

    handles = []
    for file in files:
        try:
            handles.append(stack.enter_context(safe_open(str(file), framework="np")))
        except Exception:  # SafetensorError for truncated or foreign bytes
            raise CheckpointError(f"{file} is not a readable safetensors file (truncated or corrupted): "
                                  f"download {folder} again") from None
    return handles


def _check_tensors(folder: Path, config, stored: dict) -> dict:
    """scratchlm name -> (handle, stored name, transposed), once every name, dtype and shape is right."""
    plan, used, total = {}, set(), 0
    for ours, theirs, shape, transposed in gpt2_layout(config):
        if theirs not in stored:
            raise CheckpointError(f"{folder} lacks the tensor {PREFIX}{theirs} that its config.json "
                                  f"({_described(config)}) needs: the weights are incomplete or of another model")
        handle, name = stored[theirs]
        piece = handle.get_slice(name)
        dtype, found = piece.get_dtype(), tuple(piece.get_shape())
        if dtype not in READABLE:
            raise CheckpointError(f"{folder}: tensor {name} is stored as {dtype}, which scratchlm cannot read: save the "
                                  "model as float32 (model.float().save_pretrained(folder))")
        if found != shape:
            raise CheckpointError(f"{folder}: tensor {name} has shape {excerpt(found)} but config.json "
                                  f"({_described(config)}) needs {excerpt(shape)}: the weights belong to another model")
        plan[ours] = (handle, name, transposed)
        used.add(theirs)
        total += math.prod(shape) * 4
    head_ignored = {"lm_head.weight"} if config.tie_weights else set()   # a tied head is the embedding itself
    extra = sorted(n for n in set(stored) - used - head_ignored if not is_buffer(n))
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise CheckpointError(f"{folder} holds a tensor {excerpt(stored[extra[0]][1])}{more} that a GPT-2 of its "
                              f"config.json ({_described(config)}) has no place for: the weights are of another model")
    check_memory(total * 2, f"loading {folder}", "use a machine with more memory")   # the arrays read, then the model
    return plan


def _described(config) -> str:
    return (f"n_embd {config.d_model}, n_layer {config.n_layers}, n_positions {config.max_seq_len}, "
            f"vocab_size {config.vocab_size}")
