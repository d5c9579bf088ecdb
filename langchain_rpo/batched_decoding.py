"""Decode a batch of prompts together on a CPU: shared-prefix prefill, static cache, eviction.

``ReflectionModel.batch`` uses this in place of one padded ``generate`` call. On a CPU, prefill is
compute-bound and decoding is bound by reading the weights, so a batch can only win on the
decode steps; three things that ``generate`` does not do keep those wins:

- **Ragged prefill with a shared prefix.** A padded prefill pays for its padding in full. Every
  row's prompt is read on its own instead, and the tokens all rows start with (the reflection
  prompt's system message) are read once and their keys and values reused by every row.
- **A pre-allocated cache.** ``DynamicCache`` concatenates the whole batch's keys and values on
  every step; a static cache writes one column in place.
- **Eviction of finished rows.** ``generate`` keeps decoding rows that have stopped until the
  longest one ends; here they leave the batch (and the cache) as soon as they stop.

Greedy answers are those of ``generate`` on each prompt alone, up to float rounding in the
prefill (the unit tests compare them with ``generate``, row by row).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessorList,
    StaticCache,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

__all__ = ["can_decode_together", "decode_together", "ragged_prefill", "shared_prefix_length"]

# A shared prefix shorter than this is not worth an extra forward pass.
MIN_SHARED_PREFIX = 8


class _RowStaticCache(StaticCache):
    """A ``StaticCache`` whose rows can be dropped when their sequences finish."""

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` (indices into the current batch), in that order."""
        for layer in self.layers:
            layer.keys = layer.keys.index_select(0, rows)
            layer.values = layer.values.index_select(0, rows)
            layer.batch_size = len(rows)


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The per-layer ``(keys, values)`` of a transformers cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


@functools.cache
def _static_layers_append() -> bool:
    """Whether static cache layers write at their own running length (transformers 5.x); older
    ones need the positions passed in, which this module does not do."""
    try:
        from transformers.cache_utils import StaticLayer

        return "cumulative_length" in vars(StaticLayer(max_cache_len=1))
    except (ImportError, TypeError):
        return False


def can_decode_together(model: Any, attention_mask: torch.Tensor) -> bool:
    """Whether :func:`decode_together` applies to this model and left-padded batch.

    It needs two or more rows, prompts of at least two tokens, full attention in every layer (a
    sliding-window cache cannot be rebuilt this way) and a transformers whose static cache
    appends on its own (5.x). Otherwise use ``generate``.
    """
    if attention_mask.shape[0] < 2 or int(attention_mask.sum(dim=1).min()) < 2:
        return False
    if not _static_layers_append():
        return False
    layer_types = getattr(getattr(model, "config", None), "layer_types", None) or []
    return all(kind == "full_attention" for kind in layer_types)


def _cache_keyword(model: Any) -> str:
    """The forward argument that takes the cache: ``cache`` (transformers >= 5.2x), else the
    older ``past_key_values``."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def _output_cache(output: Any) -> Any:
    """The cache a forward pass returned, under its current or its older name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _forward(model: Any, ids: torch.Tensor, cache_keyword: str, cache: Any = None) -> Any:
    """One prefill forward pass keeping only the last position's logits (when supported)."""
    kwargs = {"input_ids": ids, cache_keyword: cache, "use_cache": True}
    try:
        return model(**kwargs, logits_to_keep=1)
    except TypeError:  # models without logits_to_keep
        return model(**kwargs)


def shared_prefix_length(rows: Sequence[torch.Tensor]) -> int:
    """Tokens all ``rows`` start with, leaving each row at least one more token to read alone.

    Each row's last token is fed by the first decode step and the one before it by the row's own
    prefill, so the prefix stops two tokens short of the shortest row.
    """
    shortest = min(len(row) for row in rows)
    first = rows[0][: shortest - 2]
    same = torch.ones_like(first, dtype=torch.bool)
    for row in rows[1:]:
        same &= row[: len(first)] == first
    mismatches = (~same).nonzero()
    return int(mismatches[0]) if len(mismatches) else len(first)


def ragged_prefill(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int
) -> _RowStaticCache:
    """Read every left-padded prompt but its last token into one static cache.

    Each row's tokens are read without padding, after the prefix they all share (read once).
    The rows' keys and values are then left-padded with zeros, which the attention mask hides as
    it would the padded tokens' own, so every row's cache ends at the same column and decoding
    goes on for all rows together. Positions match: each row's keys carry positions ``0..n-2``.

    Args:
        model: A causal LM with full attention in every layer.
        input_ids: ``(rows, width + 1)`` left-padded prompt tokens.
        attention_mask: Their mask (1 for real tokens).
        max_new_tokens: Tokens to be decoded after the prompts (the cache's spare columns).

    Returns:
        A cache holding ``width`` columns, with room for ``max_new_tokens`` more.
    """
    width = input_ids.shape[1] - 1
    cache_keyword = _cache_keyword(model)
    lengths = attention_mask.sum(dim=1).tolist()
    rows = [input_ids[row, width + 1 - n :] for row, n in enumerate(lengths)]
    shared = shared_prefix_length(rows)
    prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
    if shared >= MIN_SHARED_PREFIX:
        prefix = _cache_tensors(
            _output_cache(_forward(model, rows[0][None, :shared], cache_keyword))
        )
    else:
        shared = 0
    layers: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    for row, n in zip(rows, lengths, strict=True):
        seeded = None
        if prefix:
            # DynamicCache.update concatenates into new tensors: the prefix itself is not changed.
            seeded = DynamicCache()
            for i, (keys, values) in enumerate(prefix):
                seeded.update(keys, values, i)
        out = _forward(model, row[None, shared : n - 1], cache_keyword, seeded)
        pad = width - (n - 1)
        for i, (keys, values) in enumerate(_cache_tensors(_output_cache(out))):
            if len(layers) <= i:
                layers.append(([], []))
            layers[i][0].append(torch.nn.functional.pad(keys, (0, 0, pad, 0)))
            layers[i][1].append(torch.nn.functional.pad(values, (0, 0, pad, 0)))
    cache = _RowStaticCache(config=model.config, max_cache_len=width + max_new_tokens)
    for i, (keys, values) in enumerate(layers):
        cache.update(torch.cat(keys), torch.cat(values), i)
    return cache


def _logits_warpers(config: GenerationConfig) -> LogitsProcessorList:
    """The sampling warpers ``generate`` applies for ``config``, in its order."""
    warpers = LogitsProcessorList()
    if not config.do_sample:
        return warpers
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k is not None and config.top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=1))
    if config.top_p is not None and config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
    return warpers


def decode_together(
    model: Any,
    tokenizer: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    config: GenerationConfig,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Generate for a left-padded batch of prompts; like ``generate``, new tokens only.

    Supports what :class:`~langchain_rpo.ReflectionModel` asks of ``generate``: greedy decoding
    or sampling (temperature, top-k, top-p), ``max_new_tokens``, ``eos_token_id`` and
    ``stop_strings`` (kept in the output). Check :func:`can_decode_together` first.

    Args:
        model: The causal LM (in inference mode, under the caller's lock).
        tokenizer: Its tokenizer (for the stop strings).
        input_ids: ``(rows, length)`` left-padded prompt tokens.
        attention_mask: Their mask.
        config: ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``,
            ``eos_token_id``, ``pad_token_id``, ``stop_strings``.
        should_stop: Checked after each step; once it returns True every row ends there (the
            caller gave up: see :mod:`langchain_rpo.cancellation`).

    Returns:
        ``(rows, steps)`` new tokens, each row padded with ``pad_token_id`` after the token that
        ended it (as ``generate`` pads its output).
    """
    max_new = int(config.max_new_tokens)
    pad_id = config.pad_token_id if config.pad_token_id is not None else 0
    eos = config.eos_token_id
    eos_ids = torch.tensor([] if eos is None else [eos] if isinstance(eos, int) else list(eos))
    stop_strings = config.stop_strings
    if isinstance(stop_strings, str):
        stop_strings = [stop_strings]
    stop = StopStringCriteria(tokenizer, stop_strings) if stop_strings else None
    warpers = _logits_warpers(config)

    cache = ragged_prefill(model, input_ids, attention_mask, max_new)
    cache_keyword = _cache_keyword(model)
    rows = input_ids.shape[0]
    out = torch.full((rows, max_new), pad_id, dtype=input_ids.dtype, device=input_ids.device)
    alive = torch.arange(rows, device=input_ids.device)  # batch index -> original row
    sequences = input_ids  # the alive rows' prompt and tokens so far, for the stop strings
    mask = attention_mask
    tokens = input_ids[:, -1:]
    steps = 0
    for step in range(max_new):
        logits = model(
            input_ids=tokens,
            attention_mask=mask,
            position_ids=mask.sum(dim=1, keepdim=True) - 1,
            use_cache=True,
            **{cache_keyword: cache},
        ).logits[:, -1]
        if config.do_sample:
            scores = warpers(sequences, logits.float())
            chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)[:, 0]
        else:
            chosen = logits.argmax(dim=-1)
        out[alive, step] = chosen
        steps = step + 1
        sequences = torch.cat([sequences, chosen[:, None]], dim=1)
        done = torch.isin(chosen, eos_ids.to(chosen.device))
        if stop is not None:
            done |= stop(sequences, logits)
        if step + 1 == max_new or bool(done.all()) or (should_stop is not None and should_stop()):
            break
        if bool(done.any()):
            keep = (~done).nonzero()[:, 0]
            cache.keep_rows(keep)
            alive, sequences, mask, chosen = alive[keep], sequences[keep], mask[keep], chosen[keep]
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        tokens = chosen[:, None]
    return out[:, :steps]
