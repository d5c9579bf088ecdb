"""ReflectionModel on a tiny in-process Llama: batching, streaming, stops, callbacks, loading."""

from __future__ import annotations

import pytest
from conftest import TAUGHT_TRAJECTORY
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.reflection import ReflectionModel, to_chat_dicts
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


def test_max_new_tokens_bounds_the_output_and_reports_length(
    random_reflection: ReflectionModel,
) -> None:
    message = random_reflection.invoke("hello", max_new_tokens=5)
    assert message.usage_metadata["output_tokens"] <= 5
    assert message.response_metadata["finish_reason"] in {"length", "stop"}


def test_to_chat_dicts_maps_roles_and_rejects_tool_messages() -> None:
    assert to_chat_dicts([SystemMessage("s"), HumanMessage("h"), AIMessage("a")]) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "h"},
        {"role": "assistant", "content": "a"},
    ]
    with pytest.raises(TypeError, match="ToolMessage"):
        to_chat_dicts([ToolMessage("t", tool_call_id="1")])


def test_from_model_requires_a_chat_template(taught_model, tiny_tokenizer) -> None:
    bare = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer)
    with pytest.raises(ValueError, match="chat_template"):
        ReflectionModel.from_model(taught_model, bare)


def test_an_unloaded_model_says_how_to_load_one() -> None:
    with pytest.raises(RuntimeError, match="from_pretrained"):
        ReflectionModel().invoke("hi")


def test_from_pretrained_loads_a_saved_folder_and_a_lora_adapter(
    taught_model,
    tiny_tokenizer,
    tmp_path,
) -> None:
    from peft import LoraConfig, get_peft_model

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    taught_model.save_pretrained(base_dir)
    tiny_tokenizer.save_pretrained(base_dir)
    loaded = ReflectionModel.from_pretrained(base_dir, device="cpu", max_new_tokens=40)
    assert parse(loaded.invoke(PROMPTS[0]).content) == TAUGHT_TRAJECTORY

    peft_model = get_peft_model(
        taught_model.__class__.from_pretrained(base_dir),
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=True),
    )
    peft_model.save_pretrained(adapter_dir)
    with_adapter = ReflectionModel.from_pretrained(base_dir, adapter=adapter_dir, max_new_tokens=40)
    assert with_adapter.adapter_name == str(adapter_dir)
    # LoRA starts as a no-op (B = 0), so the merged model answers as the base does.
    assert parse(with_adapter.invoke(PROMPTS[0]).content) == TAUGHT_TRAJECTORY

    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        ReflectionModel.from_pretrained(base_dir, adapter=tmp_path / "nowhere")
