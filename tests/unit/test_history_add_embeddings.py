"""Unit tests for UserHistoryStore.add_embeddings (texts with vectors computed elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from langchain_rpo.history import UserHistoryStore

DIM = 16


class NoCalls(Embeddings):
    """Fails the test if the store embeds anything itself."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("add_embeddings must not call the embeddings model")

    def embed_query(self, text: str) -> list[float]:
        raise AssertionError("add_embeddings must not call the embeddings model")


def test_add_embeddings_matches_add_texts_and_skips_the_model() -> None:
    fake = DeterministicFakeEmbedding(size=DIM)
    texts = ["alpha", "beta", "gamma"]
    reference = UserHistoryStore(fake)
    reference.add_texts("u", texts, ids=["a", "b", "c"], metadatas=[{"n": 1}, {}, {}])

    store = UserHistoryStore(NoCalls())
    vectors = np.asarray(fake.embed_documents(texts)) * 5.0  # unnormalised on purpose
    ids = store.add_embeddings(
        "u", texts, vectors, metadatas=[{"n": 1}, {}, {}], ids=["a", "b", "c"]
    )
    assert ids == ["a", "b", "c"]
    assert store.dim == DIM and store.count("u") == 3
    query = np.asarray(fake.embed_query("beta"))
    got = store.search_with_scores_by_vector("u", query, k=3)
    want = reference.search_with_scores_by_vector("u", query, k=3)
    assert [d.id for d, _ in got] == [d.id for d, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
    assert got[0][0].page_content == "beta" and got[0][1] == pytest.approx(1.0, abs=1e-5)
    assert store.get("u", ["a"])[0].metadata == {"n": 1}


def test_add_embeddings_accepts_lists_generates_ids_and_replaces_by_id() -> None:
    store = UserHistoryStore(NoCalls())
    rng = np.random.default_rng(0)
    first = store.add_embeddings("u", ["x", "y"], rng.normal(size=(2, DIM)).tolist())
    assert len(first) == 2 and len(set(first)) == 2
    vector = rng.normal(size=DIM)
    store.add_embeddings("u", ["x2"], [vector.tolist()], ids=[first[0]])
    assert store.count("u") == 2
    top = store.search_by_vector("u", vector, k=1)[0]
    assert top.id == first[0] and top.page_content == "x2"


def test_add_embeddings_empty_is_a_no_op() -> None:
    store = UserHistoryStore(NoCalls())
    assert store.add_embeddings("u", [], np.zeros((0, DIM), dtype=np.float32)) == []
    assert store.add_embeddings("u", [], []) == []
    assert "u" not in store and store.dim is None


@pytest.mark.parametrize("n_vectors", [1, 3])
def test_add_embeddings_rejects_a_count_mismatch(n_vectors: int) -> None:
    store = UserHistoryStore(NoCalls())
    with pytest.raises(ValueError, match="2 texts but"):
        store.add_embeddings("u", ["a", "b"], np.ones((n_vectors, DIM)))
    assert "u" not in store


def test_add_embeddings_rejects_another_width_and_bad_arguments() -> None:
    store = UserHistoryStore(NoCalls())
    store.add_embeddings("u", ["a"], np.ones((1, DIM)))
    with pytest.raises(ValueError, match="dimension mismatch"):
        store.add_embeddings("v", ["b"], np.ones((1, DIM + 1)))
    with pytest.raises(ValueError, match="user_id"):
        store.add_embeddings("", ["b"], np.ones((1, DIM)))
    with pytest.raises(ValueError, match="unique"):
        store.add_embeddings("u", ["b", "c"], np.ones((2, DIM)), ids=["same", "same"])
    with pytest.raises(ValueError, match="JSON"):
        store.add_embeddings("u", ["b"], np.ones((1, DIM)), metadatas=[{"x": object()}])
    assert store.count("u") == 1 and "v" not in store


def test_add_embeddings_round_trips_through_save(tmp_path) -> None:
    store = UserHistoryStore(NoCalls())
    vectors = np.random.default_rng(1).normal(size=(4, DIM)).astype(np.float32)
    ids = store.add_embeddings("u", list("abcd"), vectors)
    store.save(tmp_path / "h.zip")
    loaded = UserHistoryStore.load(
        tmp_path / "h.zip", embeddings=DeterministicFakeEmbedding(size=DIM)
    )
    assert [d.id for d in loaded.search_by_vector("u", vectors[2], k=1)] == [ids[2]]
