"""RPOQueryEngine: LlamaIndex query engines personalized by RPO, with llama-index-core's mocks.

The wrapped engine is a real ``VectorStoreIndex`` query engine over ``MockEmbedding`` and
``MockLLM`` (llama-index-core's own test doubles); the reflection model is the tiny taught model
of ``conftest.py`` or a LlamaIndex LLM. Seconds, no network.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from langchain_core.embeddings import DeterministicFakeEmbedding
from llama_index.core import Document as LIDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.base.response.schema import PydanticResponse, Response
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import BaseModel

from langchain_rpo import RPORewriter, UserHistoryStore
from langchain_rpo.integrations.llamaindex import RPOQueryEngine

TAUGHT_REWRITE = "Rust 1.76 released"  # what conftest's taught reflection model always writes


@pytest.fixture
def store() -> UserHistoryStore:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=16))
    store.add_texts("alice", ["Announcing Rust 1.75.0", "Rust 1.74.1 released"], ids=["a1", "a2"])
    store.add_texts("bob", ["PEP 8: style guide", "PEP 20: the Zen of Python"], ids=["b1", "b2"])
    return store


def _inner_engine(**kwargs: Any):
    docs = [
        LIDocument(text="Rust 1.76 stabilises new language features.", id_="d1"),
        LIDocument(text="Python 3.13 adds a free-threaded build.", id_="d2"),
    ]
    index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))
    return index.as_query_engine(llm=MockLLM(max_tokens=6), similarity_top_k=1, **kwargs)


class Title(BaseModel):
    text: str


class FixedLLM(CustomLLM):
    """A LlamaIndex LLM that always answers with the same text."""

    text: str = ""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        yield CompletionResponse(text=self.text, delta=self.text)


def test_wraps_a_vector_index_engine_and_personalizes(store, taught_reflection) -> None:
    inner = _inner_engine()
    draft = inner.query("What is new in Rust?")
    engine = RPOQueryEngine(inner, history=store, reflection=taught_reflection, k=2)

    response = engine.for_user("alice").query("What is new in Rust?")

    assert isinstance(response, Response)
    assert response.response == TAUGHT_REWRITE
    meta = response.metadata["rpo"]
    assert meta["personalized"] is True and meta["fallback_reason"] is None
    assert meta["draft"] == draft.response  # MockLLM is deterministic
    assert meta["query"] == "What is new in Rust?"
    assert meta["trajectory"]["rewrite"] == TAUGHT_REWRITE
    assert set(meta["trajectory"]) == {"preferences", "gaps", "rewrite"}
    assert sorted(meta["recalled_ids"]) == ["a1", "a2"]  # alice's items, never bob's
    # The wrapped engine's sources and metadata survive.
    assert [n.node.node_id for n in response.source_nodes] == [
        n.node.node_id for n in draft.source_nodes
    ]
    assert set(draft.metadata or {}) <= set(response.metadata)


def test_users_are_isolated_and_for_user_shares_everything(store, taught_reflection) -> None:
    engine = RPOQueryEngine(_inner_engine(), history=store, reflection=taught_reflection, k=4)
    bob = engine.for_user("bob")
    assert bob.rewriter is engine.rewriter and bob.query_engine is engine.query_engine
    assert engine.user_id is None
    recalled = bob.query("style").metadata["rpo"]["recalled_ids"]
    assert sorted(recalled) == ["b1", "b2"]


def test_user_without_history_gets_the_draft_with_the_reason(store, taught_reflection) -> None:
    inner = _inner_engine()
    engine = RPOQueryEngine(inner, history=store, reflection=taught_reflection, user_id="carol")
    response = engine.query("What is new in Rust?")
    assert response.response == inner.query("What is new in Rust?").response
    assert response.metadata["rpo"]["fallback_reason"] == "no_history"
    assert response.metadata["rpo"]["personalized"] is False


def test_missing_user_fails_before_the_wrapped_engine_runs(store, taught_reflection) -> None:
    class Exploding(MockLLM):
        def complete(self, *args: Any, **kwargs: Any):  # pragma: no cover - must not run
            raise AssertionError("the wrapped engine ran")

    inner = VectorStoreIndex.from_documents(
        [LIDocument(text="x")], embed_model=MockEmbedding(embed_dim=8)
    ).as_query_engine(llm=Exploding())
    engine = RPOQueryEngine(inner, history=store, reflection=taught_reflection)
    with pytest.raises(ValueError, match="for_user"):
        engine.query("anything")


async def test_aquery(store, taught_reflection) -> None:
    engine = RPOQueryEngine(_inner_engine(), history=store, reflection=taught_reflection)
    response = await engine.for_user("alice").aquery("What is new in Rust?")
    assert response.response == TAUGHT_REWRITE
    assert response.metadata["rpo"]["personalized"] is True


def test_streaming_wrapped_engine_is_read_to_the_end(store, taught_reflection) -> None:
    inner = _inner_engine(streaming=True)
    engine = RPOQueryEngine(inner, history=store, reflection=taught_reflection, user_id="alice")
    response = engine.query("What is new in Rust?")
    assert isinstance(response, Response)
    assert response.response == TAUGHT_REWRITE
    assert response.metadata["rpo"]["draft"].strip()


def test_a_llamaindex_llm_can_be_the_reflection_model(store) -> None:
    trajectory = "<preferences>terse</preferences><gaps>long</gaps><rewrite>Short title</rewrite>"
    engine = RPOQueryEngine(
        _inner_engine(), history=store, reflection=FixedLLM(text=trajectory), user_id="alice"
    )
    response = engine.query("What is new in Rust?")
    assert response.response == "Short title"
    assert response.metadata["rpo"]["trajectory"]["preferences"] == "terse"

    # llama-index-core's MockLLM writes no trajectory: the draft is kept, with the reason.
    engine = RPOQueryEngine(
        _inner_engine(), history=store, reflection=MockLLM(max_tokens=3), user_id="alice"
    )
    response = engine.query("What is new in Rust?")
    assert response.response == response.metadata["rpo"]["draft"]
    assert response.metadata["rpo"]["fallback_reason"] == "no_rewrite_block"


def test_built_from_a_rewriter_and_personalize_for_workflow_steps(store, taught_reflection) -> None:
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=1)
    engine = RPOQueryEngine(_inner_engine(), rewriter=rewriter)
    draft = Response("A generic answer.")
    out = engine.personalize("What is new in Rust?", draft, user_id="alice")
    assert out.response == TAUGHT_REWRITE
    assert out.metadata["rpo"]["draft"] == "A generic answer."
    assert len(out.metadata["rpo"]["recalled_ids"]) == 1
    empty = engine.personalize("q", Response(None), user_id="alice")
    assert empty.response is None and empty.metadata["rpo"]["fallback_reason"] == "empty_draft"
    structured = engine.personalize("q", PydanticResponse(Title(text="T")), user_id="alice")
    assert structured.response == Title(text="T")
    assert structured.metadata["rpo"]["fallback_reason"] == "structured_response"
    with pytest.raises(ValueError, match="not both"):
        RPOQueryEngine(_inner_engine(), history=store, rewriter=rewriter)
    with pytest.raises(ValueError, match="reflection="):
        RPOQueryEngine(_inner_engine(), history=store)
    with pytest.raises(TypeError, match="query engine"):
        RPOQueryEngine(rewriter, rewriter=rewriter)  # type: ignore[arg-type]


def test_wrapped_engine_prompts_stay_reachable(store, taught_reflection) -> None:
    engine = RPOQueryEngine(_inner_engine(), history=store, reflection=taught_reflection)
    prompts = engine.get_prompts()
    assert any(key.startswith("query_engine:") for key in prompts)


def test_base_package_never_imports_llama_index() -> None:
    code = (
        "import sys, langchain_rpo, langchain_rpo.integrations; "
        "assert not [m for m in sys.modules if m.startswith('llama_index')], 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
