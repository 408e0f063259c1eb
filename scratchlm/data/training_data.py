"""The token streams a run trains and validates on, from wherever DATA is: in memory, cached, or prepared.

- a prepared folder (``scratchlm prepare``): its token files, memory-mapped, with its own
  tokenizer and validation split;
- DATA of ``CACHE_FROM_BYTES`` or more (char or byte tokens): the implicit token cache,
  memory-mapped, so memory does not grow with the corpus;
- anything else: tokenized in memory, as small DATA always was.

The ids are the same whichever way they come (``corpus.py`` makes both), so the same seed
gives the same run. Validation is the tail ``val_split`` of the stream, or a held-out file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchlm.data.corpus import checked_sources, read_corpus
from scratchlm.data.text import split_tokens
from scratchlm.data.token_cache import CacheUnwritable, cache_root, cached_corpus, open_prepared, prepared_folder
from scratchlm.data.token_file import release_pages
from scratchlm.data.validation import validation_ids
from scratchlm.errors import DataError

TOKENS_PER_CHAR_SAMPLE = 1 << 22  # byte tokens read to find the val split's bytes per character


@dataclass
class TrainingData:
    tokenizer: object
    train_ids: np.ndarray          # (N_train,) host array or read-only memory map
    val_ids: np.ndarray            # (N_val,)
    info: dict                     # what config.yaml and the checkpoints record about the text
    cache_note: str | None = None  # for the panel: the token cache used, or why none could be


def training_data(data, kind: str, tokenizer=None, val_split: float = 0.1, validation_data=None,
                  cache_dir=None, progress=None) -> TrainingData:
    """The run's tokens. ``tokenizer`` (a resumed or fine-tuned model's) fixes the vocabulary."""
    folder = prepared_folder(data)
    if folder is not None:
        return _prepared(folder, tokenizer)
    paths = checked_sources(data)           # folders and patterns expanded once, for both ways below
    note = cache = None
    try:
        found = cached_corpus(paths, kind, tokenizer, cache_root(cache_dir), progress)
    except CacheUnwritable as exc:
        found, note = None, f"none: {exc}, so the text was tokenized in memory (--cache-dir DIR moves it)"
    if found is not None:
        corpus, cache = found
        note = f"{'reused' if cache.reused else 'written'}: {cache.folder}"
    else:
        corpus = read_corpus(paths, kind, tokenizer, progress)
    info = corpus.info()
    if cache is not None:
        info["token_cache"] = str(cache.folder)
    if validation_data:
        train_ids, (val_ids, info["validation"]) = corpus.ids, validation_ids(validation_data, corpus.tokenizer)
    else:
        train_ids, val_ids = split_tokens(corpus.ids, val_split)
    return TrainingData(corpus.tokenizer, train_ids, val_ids, info, note)


def _prepared(folder, tokenizer) -> TrainingData:
    dataset = open_prepared(folder)
    if tokenizer is not None and tokenizer.to_dict() != dataset.description["tokenizer"]:
        raise DataError(f"{folder} was prepared with another vocabulary than this run's model: prepare it again "
                        "with the model's tokenizer, or train on the text files themselves")
    corpus = dataset.corpus(tokenizer)
    info = dict(corpus.info(), prepared=str(folder))
    if dataset.validation is not None:
        train_ids, val_ids = corpus.ids, dataset.ids("val")
        info["validation"] = dataset.validation
    else:
        train_ids, val_ids = split_tokens(corpus.ids, dataset.description["split"]["val_split"])
    return TrainingData(corpus.tokenizer, train_ids, val_ids, info, f"{folder} (prepared by scratchlm prepare)")


def characters_of(tokenizer, ids) -> int:
    """How many characters the token ids (N,) stand for (bits per character divide by it)."""
    if tokenizer.kind == "byte":
        return int(np.count_nonzero((ids & 0xC0) != 0x80))     # every byte but a continuation byte
    if tokenizer.kind == "char":
        return len(ids)
    return len(tokenizer.decode(ids))


def tokens_per_char(tokenizer, val_ids) -> float:
    """Validation tokens per character, from at most ``TOKENS_PER_CHAR_SAMPLE`` of them (a large
    byte split is never read whole for it)."""
    sample = np.array(val_ids[:TOKENS_PER_CHAR_SAMPLE])                           # (<= 4M,) a copy
    release_pages(val_ids)
    return len(sample) / max(characters_of(tokenizer, sample), 1)
