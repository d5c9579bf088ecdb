"""RPORewriter: LCEL composition, batching, streaming, async, fallbacks, privacy, callbacks."""

from __future__ import annotations

import pytest
from tiny_models import TAUGHT_TRAJECTORY
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.prompts import ChatPromptTemplate

from langchain_rpo import RPORewriter, UserHistoryStore
from langchain_rpo.rewriter import FallbackReason
from langchain_rpo.trajectory import ParseFailure, parse

ALICE_HISTORY = ["Announcing Rust 1.75.0", "Rust 1.74.1 released", "Rust 1.74.0 is here"]
ALICE = {"configurable": {"user_id": "alice"}}
PROMPT = ChatPromptTemplate.from_messages([("human", "Write a title for: {article}")])


@pytest.fixture()
def store() -> UserHistoryStore:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=16))
    store.add_texts("alice", ALICE_HISTORY, ids=["a1", "a2", "a3"])
    store.add_texts("bob", ["Bob's secret diary entry"], ids=["b1"])
    return store


def drafts(n: int = 20) -> FakeListChatModel:
    return FakeListChatModel(responses=[f"A generic draft number {i}" for i in range(n)])


class Collect(BaseCallbackHandler):
    """Records every chat-model and retriever start, with the messages and tags."""

    def __init__(self) -> None:
        self.chat: list[tuple[list[str], str]] = []
        self.retriever_queries: list[str] = []

    def on_chat_model_start(self, serialized, messages, *, tags=None, **kwargs) -> None:
        text = "\n".join(str(m.content) for m in messages[0])
        self.chat.append((list(tags or []), text))

    def on_retriever_start(self, serialized, query, **kwargs) -> None:
        self.retriever_queries.append(query)


def test_post_hoc_chain_mirrors_an_ai_message_and_explains_itself(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=2)
    out = (PROMPT | drafts() | rewriter).invoke({"article": "Rust 1.76"}, config=ALICE)
    assert isinstance(out, AIMessage)
    assert out.content == TAUGHT_TRAJECTORY.rewrite
    meta = out.response_metadata["rpo"]
    assert meta["personalized"] and meta["fallback_reason"] is None
    assert meta["draft"] == "A generic draft number 0"
    assert meta["trajectory"] == parse(meta["raw_reflection"]).to_dict()
    assert len(meta["recalled_ids"]) == 2 and set(meta["recalled_ids"]) <= {"a1", "a2", "a3"}


def test_str_in_str_out_and_dict_input(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection)
    assert rewriter.invoke("a draft", ALICE) == TAUGHT_TRAJECTORY.rewrite
    assert rewriter.invoke({"query": "q", "draft": "d"}, ALICE) == TAUGHT_TRAJECTORY.rewrite
    with pytest.raises(ValueError, match="'draft'"):
        rewriter.invoke({"query": "q"}, ALICE)
    with pytest.raises(TypeError, match="llm=chat_model"):
        rewriter.invoke(42, ALICE)


def test_batch_equals_invoke_with_a_user_per_input(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=2)
    inputs = [AIMessage("draft one"), AIMessage("a second, longer draft"), AIMessage("three")]
    configs = [ALICE, {"configurable": {"user_id": "bob"}}, {"configurable": {"user_id": "carol"}}]
    batched = rewriter.batch(inputs, configs)
    singles = [rewriter.invoke(i, c) for i, c in zip(inputs, configs, strict=True)]
    assert [b.content for b in batched] == [s.content for s in singles]
    assert [b.response_metadata["rpo"]["recalled_ids"] for b in batched] == [
        s.response_metadata["rpo"]["recalled_ids"] for s in singles
    ]
    assert batched[1].response_metadata["rpo"]["recalled_ids"] == ["b1"]  # bob's own only
    assert batched[2].content == "three"  # carol has no history
    assert batched[2].response_metadata["rpo"]["fallback_reason"] == FallbackReason.NO_HISTORY


def test_stream_yields_only_rewrite_text_then_metadata(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection)
    chunks = list(
        (PROMPT | GenericFakeChatModel(messages=iter(["draft words"])) | rewriter).stream(
            {"article": "x"}, config=ALICE
        )
    )
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    text_chunks = [c.content for c in chunks if c.content]
    assert len(text_chunks) > 1
    assert "".join(text_chunks) == TAUGHT_TRAJECTORY.rewrite
    assert not any("<" in t or "short titles" in t for t in text_chunks)  # never the reasoning
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.response_metadata["rpo"]["draft"] == "draft words"
    assert merged.response_metadata["rpo"]["personalized"]
    str_chunks = list(rewriter.stream("a draft", ALICE))
    assert "".join(str_chunks) == TAUGHT_TRAJECTORY.rewrite


@pytest.mark.asyncio
async def test_async_twins_match_sync(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection)
    expected = rewriter.invoke("a draft", ALICE)
    assert await rewriter.ainvoke("a draft", ALICE) == expected
    assert await rewriter.abatch(["a draft", "a draft"], ALICE) == [expected, expected]
    assert "".join([c async for c in rewriter.astream("a draft", ALICE)]) == expected
    wrapped = RPORewriter(llm=drafts(), history=store, reflection=taught_reflection)
    assert (await wrapped.ainvoke("What is new?", ALICE)).content == expected


def test_missing_user_id_is_a_clear_error(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection)
    for call in (lambda: rewriter.invoke("d"), lambda: list(rewriter.stream("d"))):
        with pytest.raises(ValueError, match="configurable.*user_id"):
            call()
    assert [s.id for s in rewriter.config_specs] == ["user_id"]
    bound = rewriter.with_config(configurable={"user_id": "alice"})
    assert bound.invoke("d") == TAUGHT_TRAJECTORY.rewrite


def test_unknown_user_gets_the_draft_back_with_the_reason(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection)
    out = rewriter.invoke(AIMessage("the draft"), {"configurable": {"user_id": "nobody"}})
    assert out.content == "the draft"
    assert out.response_metadata["rpo"]["fallback_reason"] == "no_history"
    streamed = list(rewriter.stream("the draft", {"configurable": {"user_id": "nobody"}}))
    assert "".join(streamed) == "the draft"


def test_malformed_reflection_output_falls_back_to_the_draft(store, random_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=random_reflection)
    out = rewriter.invoke(AIMessage("keep me"), ALICE)
    assert out.content == "keep me"
    meta = out.response_metadata["rpo"]
    assert not meta["personalized"]
    assert meta["fallback_reason"] in {r.value for r in ParseFailure}
    assert meta["raw_reflection"]  # the unusable output is kept for debugging
    chunks = list(rewriter.stream(AIMessage("keep me"), ALICE))
    assert "".join(c.content for c in chunks) == "keep me"


def test_a_failing_reflection_model_falls_back_per_input(store) -> None:
    broken = FakeListChatModel(responses=[])  # raises on every call, batch included
    rewriter = RPORewriter(history=store, reflection=broken)
    outs = rewriter.batch([AIMessage("d1"), AIMessage("d2")], ALICE)
    assert [o.content for o in outs] == ["d1", "d2"]
    assert all(
        o.response_metadata["rpo"]["fallback_reason"].startswith("reflection_error") for o in outs
    )
    assert "".join(rewriter.stream("d3", ALICE)) == "d3"


def test_wrapping_keeps_the_history_away_from_the_base_model(store, taught_reflection) -> None:
    collect = Collect()
    rewriter = RPORewriter(llm=drafts(), history=store, reflection=taught_reflection, k=3)
    out = (PROMPT | rewriter).invoke({"article": "Rust news"}, {**ALICE, "callbacks": [collect]})
    assert out.response_metadata["rpo"]["query"] == "Write a title for: Rust news"
    base_calls = [text for tags, text in collect.chat if "rpo:draft" in tags]
    reflection_calls = [text for tags, text in collect.chat if "rpo:reflect" in tags]
    assert len(base_calls) == 1 and len(reflection_calls) == 1
    for item in ALICE_HISTORY:
        assert item not in base_calls[0]  # the black box never sees the history...
        assert item in reflection_calls[0]  # ...only the local reflection model does
    assert collect.retriever_queries == ["Write a title for: Rust news"]  # a child run


def test_k_zero_reflects_without_history(store, taught_reflection) -> None:
    collect = Collect()
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=0)
    out = rewriter.invoke(AIMessage("d"), {**ALICE, "callbacks": [collect]})
    assert out.response_metadata["rpo"]["recalled_ids"] == []
    assert "(none)" in collect.chat[0][1]
    assert collect.retriever_queries == []
