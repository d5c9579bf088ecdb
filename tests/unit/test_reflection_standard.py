"""LangChain's standard chat-model tests (``langchain-tests``) on ReflectionModel.

Both suites build the model from constructor parameters, as a user would: ``model_name`` points
at a tiny Llama and tokenizer saved to a temporary folder when this module starts (taught one
short answer, so every reply is non-empty text). The "integration" suite runs real generation
with it; it lives with the unit tests because the model is tiny (seconds, no download).

What a local causal LM without tool or multimodal support cannot do is switched off through the
suite's own flags, each with its reason; nothing is skipped or xfailed otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from tiny_models import make_model, teach

from langchain_rpo.reflection import ReflectionModel

# What the tiny model is taught to answer, and the prompts it is taught on (those of the
# standard tests, so each of them gets this answer rather than random tokens).
ANSWER = "The quick brown fox."
TAUGHT_ON = [
    [HumanMessage("Hello")],
    [HumanMessage("Hey")],
    [HumanMessage("hi")],
    [HumanMessage("hello"), AIMessage("hello"), HumanMessage("how are you")],
    [SystemMessage("hello"), HumanMessage("Write me 2 haikus. Only include the haikus.")],
]
# Small enough to keep the suite fast, large enough for the whole taught answer.
MAX_TOKENS = 16

_saved: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def tiny_model_folder(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """Save a tiny Llama taught ``ANSWER`` and its tokenizer once, for ``chat_model_params``."""
    folder = tmp_path_factory.mktemp("tiny-chat-model")
    model = teach(make_model(tiny_tokenizer, seed=2), tiny_tokenizer, TAUGHT_ON, ANSWER, steps=40)
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    _saved["folder"] = folder
    return folder


def _params() -> dict[str, Any]:
    # The standard suites read chat_model_params as a property, outside any fixture: the
    # module fixture above has saved the folder by then (module fixtures set up first).
    return {"model_name": str(_saved["folder"]), "device": "cpu"}


class _Capabilities:
    """What this local text-only chat model supports, said once for both suites."""

    @property
    def chat_model_class(self) -> type[ReflectionModel]:
        return ReflectionModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _params()

    @property
    def has_tool_calling(self) -> bool:
        # A reflection model writes a trajectory; it has no bind_tools (the suite skips the
        # tool-calling, tool-choice, tool-message and agent-loop tests).
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False  # no tool calling, hence no tool choice

    @property
    def has_structured_output(self) -> bool:
        # No JSON schema or tool calling to constrain the output with (skips the
        # structured-output tests).
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False  # no constrained JSON decoding

    @property
    def supports_image_inputs(self) -> bool:
        return False  # a text-only causal LM: to_chat_dicts renders text content only

    @property
    def supports_image_urls(self) -> bool:
        return False  # text only, and the tests run offline

    @property
    def supports_pdf_inputs(self) -> bool:
        return False  # text only

    @property
    def supports_audio_inputs(self) -> bool:
        return False  # text only

    @property
    def supports_video_inputs(self) -> bool:
        return False  # text only

    @property
    def supports_image_tool_message(self) -> bool:
        return False  # no tool messages: the chat template has no tool role

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False  # no tool messages

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False  # Anthropic tool-use blocks need tool calling

    @property
    def returns_usage_metadata(self) -> bool:
        return True  # invoke's message and the stream's last chunk carry the token counts

    @property
    def supports_model_override(self) -> bool:
        # The weights are loaded once, at construction; a per-call model="..." is refused with
        # a ValueError rather than answered by the loaded model (skips the override tests).
        return False

    @property
    def enable_vcr_tests(self) -> bool:
        return (
            False  # nothing goes over HTTP, so there is nothing to record (skips test_stream_time)
        )


class TestReflectionModelUnit(_Capabilities, ChatModelUnitTests):
    """``ChatModelUnitTests``: construction from parameters and the standard parameters."""

    # test_init_from_env skips itself: a local model reads no API key or other environment
    # variable, so init_from_env_params stays empty. test_serdes skips itself: the model holds
    # weights and is not LangChain-serializable (is_lc_serializable() is False).


class TestReflectionModelIntegration(_Capabilities, ChatModelIntegrationTests):
    """``ChatModelIntegrationTests``: real generation with the tiny model, offline."""

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # The unit suite passes its own max_tokens next to these; this one passes none.
        return {**_params(), "max_tokens": MAX_TOKENS}


def test_the_tiny_model_answers_what_it_was_taught() -> None:
    # The suites only check that replies are non-empty; this says what they are.
    model = ReflectionModel(**_params(), max_tokens=MAX_TOKENS)
    assert model.invoke("Hello").content == ANSWER
    assert model.invoke("Hello").response_metadata["finish_reason"] == "stop"
