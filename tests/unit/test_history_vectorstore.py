"""VectorStoreHistory beyond the shared contract: reserved keys, the user filter, store kinds.

The contract itself (add, search, delete, forget, isolation, bad input, persistence) runs in
``test_history_contract.py`` for the InMemoryVectorStore and Qdrant entries; this file checks
what only the adapter has, on real stores (InMemoryVectorStore, Qdrant in local mode, LangChain
community's FAISS through ``filter_for``), and runs RPORewriter on it end to end.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import pytest
from history_backends import DEFAULT_DIM, FACTORIES
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.vectorstores import InMemoryVectorStore
from qdrant_client import QdrantClient, models
from tiny_models import TAUGHT_TRAJECTORY

from langchain_rpo import HistoryRetriever, RPORewriter
from langchain_rpo.history_vectorstore import (
    ITEM_KEY,
    USER_KEY,
    FilteredStoreDialect,
    InMemoryDialect,
    VectorStoreHistory,
    store_key,
)

EMBEDDINGS = DeterministicFakeEmbedding(size=DEFAULT_DIM)


@pytest.fixture(params=["vectorstore-inmemory", "vectorstore-qdrant"])
def history(request: pytest.FixtureRequest) -> Iterator[VectorStoreHistory]:
    with FACTORIES[request.param](EMBEDDINGS) as backend:
        assert isinstance(backend, VectorStoreHistory)
        yield backend


def test_reserved_metadata_keys_are_refused_and_never_shown(history: VectorStoreHistory) -> None:
    for key in (USER_KEY, ITEM_KEY):
        with pytest.raises(ValueError, match=f"metadatas\\[1\\] uses the reserved key '{key}'"):
            history.add_texts("alice", ["a", "b"], [{}, {key: "bob"}])
    assert history.users() == []
    history.add_texts("alice", ["a"], [{"m": 1}], ids=["1"])
    shown = [
        *history.search("alice", "a"),
        *history.get("alice", ["1"]),
        *(Document(page_content=r.text, metadata=r.metadata) for r in history.iter_items("alice")),
    ]
    assert all(USER_KEY not in d.metadata and ITEM_KEY not in d.metadata for d in shown)


def test_items_are_stored_under_a_per_user_uuid(history: VectorStoreHistory) -> None:
    history.add_texts("alice", ["a"], ids=["1"])
    history.add_texts("bob", ["b"], ids=["1"])
    keys = {store_key("alice", "1"), store_key("bob", "1")}
    stored = history.store.get_by_ids(sorted(keys))
    assert {str(d.metadata.get("_id", d.id)) for d in stored} == keys
    assert {d.metadata[USER_KEY] for d in stored} == {"alice", "bob"}


def test_an_item_under_a_users_key_but_owned_by_another_is_never_returned() -> None:
    store = InMemoryVectorStore(EMBEDDINGS)
    history = VectorStoreHistory(store)
    history.add_texts("alice", ["mine"], ids=["1"])
    # Written behind the adapter's back: alice's key, bob's item.
    store.store[store_key("alice", "2")] = {
        "id": store_key("alice", "2"), "vector": EMBEDDINGS.embed_query("bob's"),
        "text": "bob's", "metadata": {USER_KEY: "bob", ITEM_KEY: "2"},
    }  # fmt: skip
    assert history.get("alice", ["1", "2"])[0].page_content == "mine"
    assert len(history.get("alice", ["1", "2"])) == 1
    assert history.delete("alice", ["2"]) == 0
    assert [d.page_content for d in history.search("alice", "bob's", k=5)] == ["mine"]


def test_no_call_reaches_the_store_without_a_user_filter() -> None:
    class NoFilter(InMemoryDialect):
        def filter_for(self, user_id: str) -> None:  # type: ignore[override]
            return None

    store = InMemoryVectorStore(EMBEDDINGS)
    history = VectorStoreHistory(store, dialect=NoFilter(store))
    history.add_texts("alice", ["a"], ids=["1"])  # writes name their owner in metadata
    for call in (
        lambda: history.search("alice", "a"),
        lambda: history.search_by_vector("alice", EMBEDDINGS.embed_query("a")),
        lambda: history.delete("alice", ["1"]),
        lambda: history.forget("alice"),
        lambda: history.count("alice"),
        lambda: list(history.iter_items("alice")),
    ):
        with pytest.raises(ValueError, match="never searches, lists or deletes without a user"):
            call()
    assert len(store.store) == 1


def test_a_given_filter_for_replaces_the_built_in_one() -> None:
    asked: list[str] = []

    def owned_by(user_id: str):
        asked.append(user_id)
        return lambda doc: doc.metadata.get(USER_KEY) == user_id

    history = VectorStoreHistory(InMemoryVectorStore(EMBEDDINGS), filter_for=owned_by)
    history.add_texts("alice", ["a"], ids=["1"])
    history.add_texts("bob", ["a"], ids=["1"])
    assert [d.id for d in history.search("alice", "a")] == ["1"]
    assert history.delete("alice", ["1"]) == 1 and history.users() == ["bob"]
    assert asked and set(asked) == {"alice"}  # every call on alice asked for her filter


def test_items_written_behind_the_adapters_back_are_not_shown() -> None:
    store = InMemoryVectorStore(EMBEDDINGS)
    history = VectorStoreHistory(store)
    history.add_texts("alice", ["mine"], ids=["1"])
    store.add_texts(["no item id"], [{USER_KEY: "alice"}])
    assert [d.id for d in history.search("alice", "no item id", k=5)] == ["1"]
    assert [r.id for r in history.iter_items("alice")] == ["1"]


def test_a_store_of_an_unknown_kind_needs_filter_for() -> None:
    from langchain_community.vectorstores import FAISS

    store = FAISS.from_texts(["probe"], EMBEDDINGS)
    with pytest.raises(ValueError, match="does not know how to filter a FAISS.*filter_for="):
        VectorStoreHistory(store)
    with pytest.raises(ValueError, match="has no embeddings model.*embeddings="):
        VectorStoreHistory(InMemoryVectorStore(None))  # type: ignore[arg-type]


FILTER_BUILDERS = {
    "dict": lambda user_id: {USER_KEY: user_id},
    "callable": lambda user_id: lambda meta: meta.get(USER_KEY) == user_id,  # new each call
}


@pytest.mark.parametrize("builder", sorted(FILTER_BUILDERS))
def test_any_filtering_store_works_through_filter_for(builder: str) -> None:
    """LangChain community's FAISS: dict or callable filters, squared L2 distances."""
    from langchain_community.docstore.in_memory import InMemoryDocstore
    from langchain_community.vectorstores import FAISS

    store = FAISS(EMBEDDINGS, faiss.IndexFlatL2(DEFAULT_DIM), InMemoryDocstore(), {},
                  normalize_L2=True)  # fmt: skip
    dialect = FilteredStoreDialect(
        store, FILTER_BUILDERS[builder], score_to_cosine=lambda d: 1 - d / 2
    )
    history = VectorStoreHistory(store, dialect=dialect)
    history.add_texts("alice", ["alpha", "beta"], [{"n": 1}, {}], ids=["1", "2"])
    history.add_texts("bob", ["alpha"], ids=["1"])
    history.add_texts("alice", ["alpha again"], [{"n": 2}], ids=["1"])  # a replace
    [(doc, score)] = history.search_with_scores("alice", "beta", k=1)
    assert (doc.id, doc.page_content, score) == ("2", "beta", pytest.approx(1.0, abs=1e-5))
    assert {d.id for d in history.search("alice", "alpha", k=5)} == {"1", "2"}
    assert history.get("alice", ["1"])[0].metadata == {"n": 2}
    assert history.counts() == {"alice": 2, "bob": 1}
    assert history.delete("bob", ["2"]) == 0
    assert history.forget("alice") == 2
    assert history.users() == ["bob"] and len(store.index_to_docstore_id) == 1


@pytest.mark.parametrize("distance", [models.Distance.DOT, models.Distance.EUCLID])
def test_qdrant_scores_are_cosine_whatever_the_collections_distance(
    tmp_path, distance: models.Distance
) -> None:
    from langchain_qdrant import QdrantVectorStore

    client = QdrantClient(path=str(tmp_path))
    client.create_collection(
        "h", vectors_config=models.VectorParams(size=DEFAULT_DIM, distance=distance)
    )
    store = QdrantVectorStore(client, "h", EMBEDDINGS, distance=distance)
    history = VectorStoreHistory(store)
    history.add_embeddings("u", ["e", "ne", "n"], [[3.0, 0] + [0.0] * (DEFAULT_DIM - 2),
                           [1.0, 1.0] + [0.0] * (DEFAULT_DIM - 2),
                           [0, 0.5] + [0.0] * (DEFAULT_DIM - 2)], ids=["e", "ne", "n"])  # fmt: skip
    hits = history.search_with_scores_by_vector("u", [2.0, 0] + [0.0] * (DEFAULT_DIM - 2), k=3)
    assert [d.id for d, _ in hits] == ["e", "ne", "n"]
    assert [s for _, s in hits] == pytest.approx([1.0, 0.5**0.5, 0.0], abs=1e-5)
    client.close()


# ---------------------------------------------------------------- consumers


def test_rpo_rewriter_runs_end_to_end_on_a_vector_store_history(
    history: VectorStoreHistory, taught_reflection
) -> None:
    history.add_texts("alice", ["Announcing Rust 1.75.0", "Rust 1.74.1 released"],
                      ids=["a1", "a2"])  # fmt: skip
    history.add_texts("bob", ["Bob's secret diary entry"], ids=["a1"])
    prompt = ChatPromptTemplate.from_messages([("human", "Write a title for: {article}")])
    rewriter = RPORewriter(history=history, reflection=taught_reflection, k=2)
    chain = prompt | FakeListChatModel(responses=["A generic draft"] * 4) | rewriter
    out = chain.invoke({"article": "Rust 1.76"}, config={"configurable": {"user_id": "alice"}})
    assert isinstance(out, AIMessage) and out.content == TAUGHT_TRAJECTORY.rewrite
    meta = out.response_metadata["rpo"]
    assert meta["personalized"] and sorted(meta["recalled_ids"]) == ["a1", "a2"]
    recalled = history.get("alice", meta["recalled_ids"])
    assert {d.page_content for d in recalled} == {"Announcing Rust 1.75.0", "Rust 1.74.1 released"}

    nobody = chain.invoke({"article": "x"}, config={"configurable": {"user_id": "carol"}})
    assert not nobody.response_metadata["rpo"]["personalized"]

    docs = HistoryRetriever(store=history, k=5).invoke("diary", user_id="bob")
    assert [d.page_content for d in docs] == ["Bob's secret diary entry"]


def test_the_lamp_dense_retriever_ranks_the_same_on_any_backend(
    history: VectorStoreHistory,
) -> None:
    from langchain_rpo.lamp.data import Question
    from langchain_rpo.lamp.methods import DenseRetriever
    from langchain_rpo.lamp.tasks import get_task

    spec = get_task("LaMP_5")
    prefix = "Generate a title for the following abstract of a paper: "
    questions = [
        Question(id=f"q{i}", input=f"{prefix}needle {i}",
                 profile=({"title": "hay", "abstract": "stack"},
                          {"title": "needle", "abstract": str(i)},
                          {"title": "other", "abstract": "words"}))
        for i in range(3)
    ]  # fmt: skip
    on_faiss = DenseRetriever(spec, lambda: EMBEDDINGS).top_k(questions, 2)
    on_adapter = DenseRetriever(spec, lambda: EMBEDDINGS, history=lambda _: history)
    assert on_adapter.top_k(questions, 2) == on_faiss
    assert [ranked[0] for ranked in on_faiss] == [1, 1, 1]
    assert history.users() == ["q0", "q1", "q2"]  # the question id is the user


def test_the_llamaindex_engine_takes_a_vector_store_history(
    history: VectorStoreHistory, taught_reflection
) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document as LIDocument
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    from langchain_rpo.integrations.llamaindex import RPOQueryEngine

    history.add_texts("alice", ["Announcing Rust 1.75.0", "Rust 1.74.1 released"],
                      ids=["a1", "a2"])  # fmt: skip
    index = VectorStoreIndex.from_documents(
        [LIDocument(text="Rust 1.76 stabilises new language features.", id_="d1")],
        embed_model=MockEmbedding(embed_dim=8),
    )
    inner = index.as_query_engine(llm=MockLLM(max_tokens=6), similarity_top_k=1)
    engine = RPOQueryEngine(inner, history=history, reflection=taught_reflection, k=2)
    response = engine.for_user("alice").query("What changed?")
    assert response.response == TAUGHT_TRAJECTORY.rewrite
    assert sorted(response.metadata["rpo"]["recalled_ids"]) == ["a1", "a2"]
    assert engine.history is history
