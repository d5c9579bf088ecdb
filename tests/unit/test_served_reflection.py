"""A reflection model served over an OpenAI-compatible API (as vLLM serves the LoRA adapter).

``langchain-openai``'s ``ChatOpenAI`` talks to a real HTTP server on 127.0.0.1 that runs a tiny
real model (tests/openai_server.py) under the adapter's served name, with the settings
docs/serving.md gives, through invoke, batch and stream.
"""

from __future__ import annotations

import asyncio

import pytest
from tiny_models import TAUGHT_TRAJECTORY
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage
from openai_server import serve_chat_completions

from langchain_rpo import RPORewriter, UserHistoryStore

openai_chat = pytest.importorskip("langchain_openai", reason="the [openai] extra is not installed")

pytestmark = [
    pytest.mark.local_http,
    pytest.mark.enable_socket,
    pytest.mark.allow_hosts(["127.0.0.1"]),
]

ALICE = {"configurable": {"user_id": "alice"}}
SERVED = "rpo-smollm2-135m-rpo"  # the name given to --lora-modules


@pytest.fixture()
def store() -> UserHistoryStore:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=16))
    store.add_texts("alice", ["Announcing Rust 1.75.0", "Rust 1.74.1 released"])
    return store


def _served(base_url: str) -> object:
    # The settings docs/serving.md gives: greedy, the adapter's budget, stop at </rewrite>.
    return openai_chat.ChatOpenAI(
        base_url=base_url,
        api_key="EMPTY",
        model=SERVED,
        temperature=0,
        max_tokens=96,
        stop=["</rewrite>"],
        max_retries=0,
        timeout=30,
    )


def test_a_served_reflection_model_personalizes_through_every_entry_point(
    store, taught_reflection
) -> None:
    with serve_chat_completions(taught_reflection, SERVED) as server:
        rewriter = RPORewriter(history=store, reflection=_served(server.base_url))
        answer = rewriter.invoke(AIMessage("a generic draft"), ALICE)
        batch = rewriter.batch([AIMessage("one draft"), AIMessage("another draft")], ALICE)
        streamed = list(rewriter.stream("a draft", ALICE))
        astreamed = asyncio.run(_collect(rewriter))
        requests = list(server.requests)
    meta = answer.response_metadata["rpo"]
    # The server cut the output at the stop sequence, as vLLM does: the rewrite still counts.
    assert "</rewrite>" not in meta["raw_reflection"]
    assert answer.content == TAUGHT_TRAJECTORY.rewrite and meta["personalized"]
    assert meta["reflection_usage"]["output_tokens"] > 0
    assert [m.content for m in batch] == [TAUGHT_TRAJECTORY.rewrite] * 2
    assert "".join(streamed) == TAUGHT_TRAJECTORY.rewrite
    assert "".join(astreamed) == TAUGHT_TRAJECTORY.rewrite
    assert len(requests) == 5
    for request in requests:
        assert request["model"] == SERVED and request["stop"] == ["</rewrite>"]
        assert request["temperature"] == 0
        roles = [m["role"] for m in request["messages"]]
        assert roles == ["system", "user"]
        assert "Announcing Rust 1.75.0" in request["messages"][1]["content"]


async def _collect(rewriter: RPORewriter) -> list[str]:
    return [chunk async for chunk in rewriter.astream("a draft", ALICE)]


def test_an_output_cut_by_the_token_budget_still_falls_back(store, taught_reflection) -> None:
    with serve_chat_completions(taught_reflection, SERVED) as server:
        short = _served(server.base_url).model_copy(update={"max_tokens": 3})
        out = RPORewriter(history=store, reflection=short).invoke(AIMessage("keep me"), ALICE)
    assert out.content == "keep me"
    assert out.response_metadata["rpo"]["fallback_reason"] in {
        "no_rewrite_block",
        "unclosed_rewrite_block",
    }


def test_an_unknown_served_name_falls_back_with_the_server_error(store, taught_reflection) -> None:
    with serve_chat_completions(taught_reflection, SERVED) as server:
        wrong = _served(server.base_url).model_copy(update={"model_name": "no-such-adapter"})
        out = RPORewriter(history=store, reflection=wrong).invoke(AIMessage("keep me"), ALICE)
    meta = out.response_metadata["rpo"]
    assert out.content == "keep me" and meta["fallback_reason"] == "reflection_error"
    assert "NotFoundError" in meta["fallback_detail"]
