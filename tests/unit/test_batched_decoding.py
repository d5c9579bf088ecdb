"""Batched decoding: shared-prefix prefill, static cache, eviction; the answers of generate."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from tiny_models import make_model  # tests/ is on sys.path (conftest.py)
from transformers import GenerationConfig

from langchain_rpo.batched_decoding import (
    can_decode_together,
    decode_together,
    ragged_prefill,
    shared_prefix_length,
)
from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.reflection import ReflectionModel

PROMPTS = [
    build_reflection_messages("a short draft", ["Rust 1.75 released"], "what is new?"),
    build_reflection_messages("a much longer draft than the others, padded on the left", []),
    build_reflection_messages("x", ["a", "b", "c", "d"], "q"),
    build_reflection_messages("a short draft", ["Rust 1.75 released"], "what is new?"),
]


@pytest.fixture()
def varied_reflection(tiny_tokenizer) -> ReflectionModel:
    """A random model with large weights: unlike the default tiny random model, whose greedy
    answer is one token repeated, its rows write different tokens, so comparisons mean something."""
    model = make_model(tiny_tokenizer, seed=0)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                torch.nn.init.normal_(param, std=0.3)
    return ReflectionModel.from_model(model, tiny_tokenizer, max_new_tokens=12)


def _copy(model: ReflectionModel, **update) -> ReflectionModel:
    other = model.model_copy(update=update)
    other._model, other._tokenizer = model.model, model.tokenizer
    return other


def _encode(model: ReflectionModel, prompts) -> dict:
    texts = [model.render_prompt(p) for p in prompts]
    return model.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _config(model: ReflectionModel, **fields) -> GenerationConfig:
    tok = model.tokenizer
    fields = {"max_new_tokens": 12, "eos_token_id": tok.eos_token_id, **fields}
    return GenerationConfig(**fields, pad_token_id=tok.pad_token_id)


def _generate_alone(model: ReflectionModel, enc: dict, row: int, config) -> list[int]:
    """HF generate on one row without padding: the reference answer."""
    n = int(enc["attention_mask"][row].sum())
    ids = enc["input_ids"][row : row + 1, -n:]
    out = model.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
    )
    return out[0, n:].tolist()


def _strip(ids: list[int], pad: int) -> list[int]:
    while ids and ids[-1] == pad:
        ids = ids[:-1]
    return ids


def test_shared_prefix_length_stops_two_tokens_short_of_the_shortest_row() -> None:
    a = torch.tensor([1, 2, 3, 4, 5, 6])
    assert shared_prefix_length([a, torch.tensor([1, 2, 3, 9, 9, 9, 9])]) == 3
    assert shared_prefix_length([a, a.clone()]) == 4
    assert shared_prefix_length([a, torch.tensor([1, 2, 3])]) == 1
    assert shared_prefix_length([a, torch.tensor([7, 2, 3, 4, 5])]) == 0


def test_ragged_cache_gives_each_row_its_own_next_token_logits(varied_reflection) -> None:
    model = varied_reflection
    enc = _encode(model, PROMPTS)
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) > 1  # the prompts really differ in length
    rows = [enc["input_ids"][r, -n:] for r, n in enumerate(lengths)]
    assert shared_prefix_length(rows) >= 8  # the system message is read once, and reused
    with torch.inference_mode():
        cache = ragged_prefill(model.model, enc["input_ids"], enc["attention_mask"], 4)
        assert int(cache.get_seq_length()) == enc["input_ids"].shape[1] - 1
        mask = enc["attention_mask"]
        batched = model.model(
            input_ids=enc["input_ids"][:, -1:],
            attention_mask=mask,
            position_ids=mask.sum(dim=1, keepdim=True) - 1,
            cache=cache,
        ).logits[:, -1]
        for row, n in enumerate(lengths):
            alone = model.model(input_ids=enc["input_ids"][row : row + 1, -n:]).logits[0, -1]
            torch.testing.assert_close(batched[row], alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["varied_reflection", "random_reflection", "taught_reflection"])
def test_batch_answers_equal_padded_generate_and_invoke(fixture, request) -> None:
    model = request.getfixturevalue(fixture)
    together = [m.content for m in _copy(model, ragged_prefill=True).batch(PROMPTS)]
    padded = [m.content for m in _copy(model, ragged_prefill=False).batch(PROMPTS)]
    singles = [model.invoke(p).content for p in PROMPTS]
    assert together == padded == singles
    assert together[0] == together[3]


def test_batch_keeps_usage_and_finish_reasons(varied_reflection) -> None:
    together = _copy(varied_reflection, ragged_prefill=True).batch(PROMPTS)
    padded = _copy(varied_reflection, ragged_prefill=False).batch(PROMPTS)
    assert [m.usage_metadata for m in together] == [m.usage_metadata for m in padded]
    assert [m.response_metadata for m in together] == [m.response_metadata for m in padded]


@pytest.mark.parametrize("ragged", [True, False])
def test_usage_counts_a_stop_string_row_once_when_pad_is_eos(varied_reflection, ragged) -> None:
    tok = copy.deepcopy(varied_reflection.tokenizer)
    tok.pad_token = tok.eos_token  # as SmolLM2: a finished row's padding looks like its end token
    model = ReflectionModel.from_model(varied_reflection.model, tok, max_new_tokens=12)
    free = [m.content for m in model.batch(PROMPTS[:2])]
    # A stop string only the first row writes, early: that row stops, the other runs on.
    stop = next(
        free[0][i : i + 3] for i in range(1, len(free[0]) - 3) if free[0][i : i + 3] not in free[1]
    )
    batch = _copy(model, ragged_prefill=ragged).batch(PROMPTS[:2], stop=[stop])
    singles = [model.invoke(p, stop=[stop]) for p in PROMPTS[:2]]  # one row: no padding at all
    assert [m.usage_metadata for m in batch] == [m.usage_metadata for m in singles]
    assert batch[0].usage_metadata["output_tokens"] < batch[1].usage_metadata["output_tokens"]
    assert [m.response_metadata["finish_reason"] for m in batch] == ["stop", "length"]


def test_rows_leave_the_batch_when_they_stop(varied_reflection, monkeypatch) -> None:
    model = varied_reflection
    enc = _encode(model, PROMPTS[:3])
    with torch.inference_mode():
        free = decode_together(
            model.model, model.tokenizer, enc["input_ids"], enc["attention_mask"], _config(model)
        )
    # Make a token that row 0 writes at step j+1, and no row writes before, the "eos": row 0 then
    # stops after j+1 tokens while the other rows go on.
    j, stop_id = next(
        (j, int(free[0, j]))
        for j in range(1, free.shape[1] - 1)
        if int(free[0, j]) not in free[:, :j].tolist()[0]
        and all(int(free[0, j]) not in free[r, : j + 1].tolist() for r in (1, 2))
    )
    config = _config(model, eos_token_id=stop_id)
    hf = model.model
    rows_per_step: list[int] = []
    forward = hf.forward

    @functools.wraps(forward)  # keeps forward's signature, which names the cache argument
    def recording_forward(*args, **kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] == 1:
            rows_per_step.append(ids.shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(hf, "forward", recording_forward)
    with torch.inference_mode():
        out = decode_together(hf, model.tokenizer, enc["input_ids"], enc["attention_mask"], config)
    monkeypatch.undo()
    assert rows_per_step[: j + 1] == [3] * (j + 1) and rows_per_step[j + 1] == 2  # row 0 left
    assert rows_per_step == sorted(rows_per_step, reverse=True)
    for row in range(3):  # each row's answer is generate's on its prompt alone
        with torch.inference_mode():
            expected = _generate_alone(model, enc, row, config)
        assert _strip(out[row].tolist(), model.tokenizer.pad_token_id) == _strip(
            expected, model.tokenizer.pad_token_id
        )
    assert _strip(out[0].tolist(), model.tokenizer.pad_token_id)[-1] == stop_id


def test_stop_strings_end_a_row_and_stay_in_its_answer(taught_reflection) -> None:
    model = taught_reflection  # writes a whole trajectory, then </rewrite>, then eos
    answers = _copy(model, ragged_prefill=True).batch(PROMPTS[:3])
    for answer in answers:
        assert answer.content.endswith("</rewrite>")
        assert answer.response_metadata["finish_reason"] == "stop"


def test_sampling_with_top_k_1_is_greedy(varied_reflection) -> None:
    model = varied_reflection
    enc = _encode(model, PROMPTS[:3])
    args = (model.model, model.tokenizer, enc["input_ids"], enc["attention_mask"])
    with torch.inference_mode():
        greedy = decode_together(*args, _config(model))
        torch.manual_seed(0)
        sampled = decode_together(*args, _config(model, do_sample=True, top_k=1, temperature=0.7))
    assert torch.equal(greedy, sampled)


def test_prompts_are_read_once_each_after_the_shared_prefix(random_reflection, monkeypatch) -> None:
    model = _copy(random_reflection, ragged_prefill=True)
    hf = model.model
    shapes = []
    forward = hf.forward

    @functools.wraps(forward)  # keeps forward's signature, which names the cache argument
    def recording_forward(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(hf, "forward", recording_forward)
    model.batch(PROMPTS[:3])
    enc = _encode(model, PROMPTS[:3])
    lengths = sorted(enc["attention_mask"].sum(dim=1).tolist())
    ordered = _encode(model, sorted(PROMPTS[:3], key=lambda p: len(model.render_prompt(p))))
    rows = [ordered["input_ids"][r, -n:] for r, n in enumerate(lengths)]
    shared = shared_prefix_length(rows)
    # The shared prefix once, each prompt's rest but its last token, then one-token steps.
    assert shapes[:4] == [(1, shared), *[(1, n - 1 - shared) for n in lengths]]
    assert all(shape[1] == 1 and shape[0] <= 3 for shape in shapes[4:])


def test_one_row_or_one_token_prompts_go_to_generate(random_reflection) -> None:
    model = random_reflection
    assert not can_decode_together(model.model, _encode(model, PROMPTS[:1])["attention_mask"])
    assert can_decode_together(
        model.model, _encode(model, [PROMPTS[0], PROMPTS[3]])["attention_mask"]
    )
    assert not can_decode_together(model.model, torch.ones(3, 1, dtype=torch.long))
