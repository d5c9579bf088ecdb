"""ReflectionModel's ragged prefill: each prompt read alone, decoded together, same answers."""

from __future__ import annotations

import pytest
import torch

from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.reflection import ReflectionModel

PROMPTS = [
    build_reflection_messages("a short draft", ["Rust 1.75 released"], "what is new?"),
    build_reflection_messages("a much longer draft than the others, padded on the left", []),
    build_reflection_messages("x", ["a", "b", "c", "d"], "q"),
    build_reflection_messages("a short draft", ["Rust 1.75 released"], "what is new?"),
]


def _copy(model: ReflectionModel, **update) -> ReflectionModel:
    other = model.model_copy(update=update)
    other._model, other._tokenizer = model.model, model.tokenizer
    return other


def _encode(model: ReflectionModel, prompts) -> dict:
    texts = [model.render_prompt(p) for p in prompts]
    return model.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def test_ragged_cache_gives_each_row_its_own_next_token_logits(random_reflection) -> None:
    model = random_reflection
    enc = _encode(model, PROMPTS)
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) > 1  # the prompts really differ in length
    with torch.inference_mode():
        cache = model._ragged_prefill(enc)
        assert cache is not None and cache.get_seq_length() == enc["input_ids"].shape[1] - 1
        mask = enc["attention_mask"]
        positions = (mask.sum(dim=1, keepdim=True) - 1).long()
        batched = model.model(
            input_ids=enc["input_ids"][:, -1:],
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
        ).logits[:, -1]
        for row, n in enumerate(lengths):
            alone = model.model(input_ids=enc["input_ids"][row : row + 1, -n:]).logits[0, -1]
            torch.testing.assert_close(batched[row], alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["random_reflection", "taught_reflection"])
def test_batch_answers_equal_with_and_without_ragged_prefill_and_invoke(fixture, request) -> None:
    model = request.getfixturevalue(fixture)
    ragged = [m.content for m in _copy(model, ragged_prefill=True).batch(PROMPTS)]
    padded = [m.content for m in _copy(model, ragged_prefill=False).batch(PROMPTS)]
    singles = [model.invoke(p).content for p in PROMPTS]
    assert ragged == padded == singles
    assert ragged[0] == ragged[3]


def test_ragged_prefill_keeps_usage_and_finish_reasons(random_reflection) -> None:
    ragged = _copy(random_reflection, ragged_prefill=True).batch(PROMPTS)
    padded = _copy(random_reflection, ragged_prefill=False).batch(PROMPTS)
    assert [m.usage_metadata for m in ragged] == [m.usage_metadata for m in padded]
    assert [m.response_metadata for m in ragged] == [m.response_metadata for m in padded]


def test_ragged_prefill_is_skipped_when_there_is_nothing_to_gain(random_reflection) -> None:
    model = random_reflection
    with torch.inference_mode():
        assert model._ragged_prefill(_encode(model, PROMPTS[:1])) is None  # one row
        assert model._ragged_prefill(_encode(model, [PROMPTS[0], PROMPTS[3]])) is None  # equal


def test_ragged_prefill_reads_each_prompt_once_unpadded(random_reflection, monkeypatch) -> None:
    model = _copy(random_reflection, ragged_prefill=True)
    hf = model.model
    shapes = []
    forward = hf.forward

    def recording_forward(*args, **kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None:
            shapes.append(tuple(ids.shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(hf, "forward", recording_forward)
    model.batch(PROMPTS[:3])
    lengths = _encode(model, PROMPTS[:3])["attention_mask"].sum(dim=1).tolist()
    # Three unpadded prefills (all but the last token), then batched steps of one token.
    assert shapes[:3] == [(1, n - 1) for n in sorted(lengths)]
    assert all(shape == (3, 1) for shape in shapes[3:])
