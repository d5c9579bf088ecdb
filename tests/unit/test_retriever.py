"""Unit tests for HistoryRetriever, including LangChain's standard retriever suite."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.runnables import RunnableLambda
from langchain_tests.integration_tests import RetrieversIntegrationTests

from langchain_rpo.history import UserHistoryStore
from langchain_rpo.retriever import HistoryRetriever

TEXTS = {
    "alice": ["Rust 1.75 released", "Rust 1.74.1 released", "Async fn in traits", "Cargo tips"],
    "bob": ["Slow-cooked ragu", "Fresh pasta by hand", "Sourdough starter"],
}


def _store() -> UserHistoryStore:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=16))
    for user, texts in TEXTS.items():
        store.add_texts(user, texts, metadatas=[{"owner": user} for _ in texts])
    return store


STORE = _store()


class TestHistoryRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[HistoryRetriever]:
        return HistoryRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": STORE, "user_id": "alice", "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "Rust 1.75 released"


@pytest.fixture
def store() -> UserHistoryStore:
    return _store()


def _owners(docs: list[Document]) -> set[str]:
    return {doc.metadata["owner"] for doc in docs}


def test_user_from_config(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, k=3)
    docs = retriever.invoke("Cargo tips", config={"configurable": {"user_id": "alice"}})
    assert len(docs) == 3 and _owners(docs) == {"alice"}
    assert docs[0].page_content == "Cargo tips" and docs[0].id
    assert docs[0].metadata["score"] == pytest.approx(1.0, abs=1e-5)


async def test_user_from_config_async(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store)
    docs = await retriever.ainvoke("pasta", config={"configurable": {"user_id": "bob"}}, k=2)
    assert len(docs) == 2 and _owners(docs) == {"bob"}


def test_precedence_kwarg_over_config_over_field(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, user_id="alice", k=10)
    assert _owners(retriever.invoke("q")) == {"alice"}
    config = {"configurable": {"user_id": "bob"}}
    assert _owners(retriever.invoke("q", config=config)) == {"bob"}
    assert _owners(retriever.invoke("q", config=config, user_id="alice")) == {"alice"}


async def test_precedence_async(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, user_id="alice", k=10)
    config = {"configurable": {"user_id": "bob"}}
    assert _owners(await retriever.ainvoke("q", config=config)) == {"bob"}
    assert _owners(await retriever.ainvoke("q", config=config, user_id="alice")) == {"alice"}


def test_k_per_call_and_field(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, user_id="alice", k=3)
    assert len(retriever.invoke("q")) == 3
    assert len(retriever.invoke("q", k=1)) == 1
    assert retriever.invoke("q", k=0) == []


def test_missing_user_names_both_ways(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store)
    with pytest.raises(ValueError, match=r"configurable.*user_id.*HistoryRetriever\(user_id="):
        retriever.invoke("q")


async def test_missing_user_async(store: UserHistoryStore) -> None:
    with pytest.raises(ValueError, match="needs a user id"):
        await HistoryRetriever(store=store).ainvoke("q")


def test_unknown_user_gives_nothing(store: UserHistoryStore) -> None:
    assert HistoryRetriever(store=store, user_id="carol").invoke("q") == []


def test_unexpected_kwarg_is_an_error(store: UserHistoryStore) -> None:
    with pytest.raises(TypeError, match="top_k"):
        HistoryRetriever(store=store, user_id="alice").invoke("q", top_k=2)


def test_config_specs_declare_user_id(store: UserHistoryStore) -> None:
    specs = HistoryRetriever(store=store, user_id="alice").config_specs
    assert [spec.id for spec in specs] == ["user_id"]
    assert specs[0].default == "alice"


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[tuple[str, UUID | None, str]] = []
        self.ends: list[int] = []

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.starts.append((query, parent_run_id, kwargs.get("name", "")))

    def on_retriever_end(self, documents: Any, **kwargs: Any) -> None:
        self.ends.append(len(documents))


def test_callbacks_and_config_inside_a_chain(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, k=2)
    chain = RunnableLambda(lambda x: x["question"]) | retriever
    recorder = _Recorder()
    docs = chain.invoke(
        {"question": "sourdough"},
        config={"configurable": {"user_id": "bob"}, "callbacks": [recorder]},
    )
    assert _owners(docs) == {"bob"}
    [(query, parent, name)] = recorder.starts
    assert query == "sourdough" and parent is not None and name == "HistoryRetriever"
    assert recorder.ends == [2]


def test_config_inherited_from_enclosing_runnable(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, k=2)
    # Called inside a step without passing config on: the context config still names the user.
    step = RunnableLambda(lambda q: retriever.invoke(q))
    docs = step.invoke("pasta", config={"configurable": {"user_id": "bob"}})
    assert _owners(docs) == {"bob"}


def test_batch_with_per_input_users(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, k=1)
    results = retriever.batch(
        ["Rust", "ragu"],
        config=[{"configurable": {"user_id": "alice"}}, {"configurable": {"user_id": "bob"}}],
    )
    assert [_owners(docs) for docs in results] == [{"alice"}, {"bob"}]
