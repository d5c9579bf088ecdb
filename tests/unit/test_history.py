"""Unit tests for UserHistoryStore (deterministic fake embeddings: fast, no model)."""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from langchain_rpo import history as history_module
from langchain_rpo import history_file
from langchain_rpo.history import FORMAT_VERSION, UserHistoryStore

DIM = 16


@pytest.fixture
def store() -> UserHistoryStore:
    return UserHistoryStore(DeterministicFakeEmbedding(size=DIM))


class ScaledEmbedding(Embeddings):
    """Returns unnormalised vectors, to check the store normalises them itself."""

    def __init__(self, size: int = DIM) -> None:
        self.inner = DeterministicFakeEmbedding(size=size)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[7.0 * x for x in v] for v in self.inner.embed_documents(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [0.5 * x for x in self.inner.embed_query(text)]


# ---------------------------------------------------------------- add / search


def test_search_finds_exact_item_first_with_cosine_score(store: UserHistoryStore) -> None:
    ids = store.add_texts("alice", ["alpha", "beta", "gamma"], metadatas=[{"n": 1}, {"n": 2}, {}])
    docs = store.search("alice", "beta", k=2)
    assert [d.id for d in docs][0] == ids[1]
    assert docs[0].page_content == "beta"
    assert docs[0].metadata["n"] == 2
    assert docs[0].metadata["score"] == pytest.approx(1.0, abs=1e-5)
    assert docs[0].metadata["score"] >= docs[1].metadata["score"]
    assert len(docs) == 2


def test_store_normalises_vectors_whatever_embeddings_return() -> None:
    store = UserHistoryStore(ScaledEmbedding())
    store.add_texts("u", ["alpha", "beta"])
    pairs = store.search_with_scores("u", "alpha", k=2)
    assert pairs[0][0].page_content == "alpha"
    assert pairs[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(-1.0001 <= score <= 1.0001 for _, score in pairs)


def test_search_edge_cases(store: UserHistoryStore) -> None:
    assert store.search("nobody", "q") == []
    store.add_texts("alice", ["a", "b"])
    assert store.search("alice", "a", k=0) == []
    assert len(store.search("alice", "a", k=50)) == 2
    assert len(store.search("alice", "a", k=np.int64(1))) == 1
    for bad in (-3, 1.5, float("nan"), True, "3", None):
        with pytest.raises(ValueError, match="k must be"):
            store.search("alice", "a", k=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="k must be"):
            store.search_by_vector("nobody", [1.0] * DIM, k=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query must be a string"):
        store.search("nobody", 3)  # type: ignore[arg-type]


def test_counts_users_len_contains(store: UserHistoryStore) -> None:
    store.add_texts("alice", ["a", "b"])
    store.add_texts("bob", ["c"])
    assert store.count("alice") == 2
    assert store.count("carol") == 0
    assert store.counts() == {"alice": 2, "bob": 1}
    assert store.users() == ["alice", "bob"]
    assert len(store) == 3
    assert "alice" in store and "carol" not in store and 3 not in store


def test_add_texts_generates_uuid_hex_ids(store: UserHistoryStore) -> None:
    ids = store.add_texts("alice", ["a", "b"])
    assert len(set(ids)) == 2
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert store.add_texts("alice", []) == []


def test_readd_same_id_replaces(store: UserHistoryStore) -> None:
    store.add_texts("alice", ["old text", "other"], metadatas=[{"v": 1}, {}], ids=["x", "y"])
    store.add_texts("alice", ["new text"], metadatas=[{"v": 2}], ids=["x"])
    assert store.count("alice") == 2
    [doc] = store.get("alice", ["x"])
    assert doc.page_content == "new text" and doc.metadata == {"v": 2}
    top = store.search("alice", "new text", k=1)[0]
    assert top.id == "x" and top.metadata["score"] == pytest.approx(1.0, abs=1e-5)
    # The old vector is gone: searching for the old text never returns two copies of x.
    ids = [d.id for d in store.search("alice", "old text", k=5)]
    assert sorted(ids) == ["x", "y"]


def test_add_documents_uses_doc_id(store: UserHistoryStore) -> None:
    ids = store.add_documents(
        "alice", [Document(page_content="a", id="doc-1", metadata={"t": "x"}), Document("b")]
    )
    assert ids[0] == "doc-1" and len(ids[1]) == 32
    assert store.get("alice", ["doc-1"])[0].metadata == {"t": "x"}


def test_get_keeps_order_and_skips_unknown(store: UserHistoryStore) -> None:
    store.add_texts("alice", ["a", "b", "c"], ids=["1", "2", "3"])
    assert [d.id for d in store.get("alice", ["3", "nope", "1"])] == ["3", "1"]
    assert store.get("bob", ["1"]) == []
    # Returned metadata is a copy: mutating it does not change the store.
    doc = store.get("alice", ["1"])[0]
    doc.metadata["evil"] = True
    assert "evil" not in store.get("alice", ["1"])[0].metadata


# ---------------------------------------------------------------- delete / forget


def test_delete(store: UserHistoryStore) -> None:
    store.add_texts("alice", ["a", "b", "c"], ids=["1", "2", "3"])
    assert store.delete("alice", ["2", "missing", "2"]) == 1
    assert store.count("alice") == 2
    assert "2" not in [d.id for d in store.search("alice", "b", k=10)]
    assert store.delete("bob", ["1"]) == 0
    assert store.delete("alice", []) == 0
    # Deleting the last items forgets the user.
    assert store.delete("alice", ["1", "3"]) == 2
    assert "alice" not in store and store.search("alice", "a") == []
    # And the user can start again.
    store.add_texts("alice", ["z"])
    assert store.count("alice") == 1


def test_forget(store: UserHistoryStore) -> None:
    store.add_texts("alice", ["a"])
    store.add_texts("bob", ["b"])
    assert store.forget("alice") == 1  # how many items went
    assert store.forget("alice") == 0
    assert store.users() == ["bob"]
    assert store.search("alice", "a") == []


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", ["", None, 3, b"alice"])
def test_invalid_user_id(store: UserHistoryStore, bad: object) -> None:
    with pytest.raises(ValueError, match="user_id must be a non-empty string"):
        store.add_texts(bad, ["a"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_id"):
        store.search(bad, "a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_id"):
        store.count(bad)  # type: ignore[arg-type]


def test_length_and_type_validation(store: UserHistoryStore) -> None:
    with pytest.raises(ValueError, match="one metadata dict per text"):
        store.add_texts("u", ["a", "b"], metadatas=[{}])
    with pytest.raises(ValueError, match="one id per text"):
        store.add_texts("u", ["a", "b"], ids=["1"])
    with pytest.raises(ValueError, match="unique"):
        store.add_texts("u", ["a", "b"], ids=["1", "1"])
    with pytest.raises(ValueError, match="list of strings"):
        store.add_texts("u", "just one string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"texts\[1\] must be a string"):
        store.add_texts("u", ["a", 2])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"metadatas\[0\]\['when'\] is of type object, which JSON"):
        store.add_texts("u", ["a"], metadatas=[{"when": object()}])
    with pytest.raises(ValueError, match="list of strings"):
        store.delete("u", "1")  # type: ignore[arg-type]
    assert len(store) == 0  # nothing half-added


def test_dimension_mismatch_on_add_and_search_by_vector(store: UserHistoryStore) -> None:
    store.add_texts("u", ["a"])
    store._embeddings = DeterministicFakeEmbedding(size=DIM + 1)
    with pytest.raises(ValueError, match="dimension mismatch"):
        store.add_texts("u", ["b"])
    with pytest.raises(ValueError, match="dimension mismatch"):
        store.search_by_vector("u", [0.1] * (DIM + 1))


# ---------------------------------------------------------------- batch query path


def test_embed_queries_and_search_by_vector_match_search(store: UserHistoryStore) -> None:
    store.add_texts("alice", ["alpha", "beta", "gamma", "delta"])
    queries = ["beta", "delta"]
    vectors = store.embed_queries(queries)
    assert vectors.shape == (2, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for query, vector in zip(queries, vectors):
        by_vector = store.search_by_vector("alice", vector, k=3)
        by_text = store.search("alice", query, k=3)
        assert [d.id for d in by_vector] == [d.id for d in by_text]
        assert by_vector[0].page_content == query
    np.testing.assert_allclose(store.embed_query("beta"), vectors[0], atol=1e-6)
    assert store.search_by_vector("nobody", vectors[0]) == []


# ---------------------------------------------------------------- persistence


def test_save_load_round_trip(store: UserHistoryStore, tmp_path: Path) -> None:
    store.add_texts("alice", ["a", "b", "c"], metadatas=[{"i": 1}, {"i": 2}, {"l": [1, "x"]}])
    store.add_texts("bob", ["ünïcode ✓"], ids=["b1"])
    store.delete("alice", [store.search("alice", "b", k=1)[0].id])
    path = tmp_path / "h.zip"
    store.save(path)

    loaded = UserHistoryStore.load(path, DeterministicFakeEmbedding(size=DIM))
    assert loaded.counts() == store.counts() == {"alice": 2, "bob": 1}
    assert loaded.dim == DIM
    for user, query in [("alice", "a"), ("alice", "c"), ("bob", "ünïcode ✓")]:
        assert store.search_with_scores(user, query, k=5) == loaded.search_with_scores(
            user, query, k=5
        )
    # The loaded store keeps working: adding after load does not collide with old FAISS ids.
    loaded.add_texts("alice", ["d"])
    assert loaded.count("alice") == 3 and loaded.search("alice", "d", k=1)[0].page_content == "d"

    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = archive.namelist()
    assert manifest["format"] == "langchain-rpo-history"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["dim"] == DIM
    assert {u["user_id"]: u["count"] for u in manifest["users"]} == {"alice": 2, "bob": 1}
    assert not any(name.endswith((".pkl", ".pickle", ".npy")) for name in names)


def test_save_load_empty_store(tmp_path: Path) -> None:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=DIM))
    store.save(tmp_path / "empty.zip")
    loaded = UserHistoryStore.load(tmp_path / "empty.zip", DeterministicFakeEmbedding(size=DIM))
    assert len(loaded) == 0 and loaded.users() == []


def test_interrupted_save_leaves_previous_save(
    store: UserHistoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.zip"
    store.add_texts("alice", ["old"], ids=["o"])
    store.save(path)
    before = path.read_bytes()

    store.add_texts("alice", ["new"], ids=["n"])
    store.add_texts("bob", ["other"])
    real_writestr = zipfile.ZipFile.writestr
    calls = {"n": 0}

    def failing_writestr(self: zipfile.ZipFile, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # the manifest and a docstore are already written
            raise OSError("disk full (simulated)")
        real_writestr(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="simulated"):
        store.save(path)
    monkeypatch.undo()

    assert calls["n"] == 3
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.zip"]  # no temp file left
    old = UserHistoryStore.load(path, DeterministicFakeEmbedding(size=DIM))
    assert old.counts() == {"alice": 1}
    assert [d.id for d in old.search("alice", "new", k=5)] == ["o"]


def test_load_rejects_other_dimension(store: UserHistoryStore, tmp_path: Path) -> None:
    store.add_texts("alice", ["a"])
    store.save(tmp_path / "h.zip")
    with pytest.raises(ValueError, match=r"16-dimensional.*8-dimensional"):
        UserHistoryStore.load(tmp_path / "h.zip", DeterministicFakeEmbedding(size=8))


def _rewrite_manifest(path: Path, **changes: object) -> None:
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(contents["manifest.json"])
    manifest.update(changes)
    contents["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


def test_load_rejects_unknown_version_and_format(store: UserHistoryStore, tmp_path: Path) -> None:
    store.add_texts("alice", ["a"])
    path = tmp_path / "h.zip"
    store.save(path)
    _rewrite_manifest(path, format_version=99)
    with pytest.raises(ValueError, match=rf"version 99.*reads versions 1, {FORMAT_VERSION}"):
        UserHistoryStore.load(path, DeterministicFakeEmbedding(size=DIM))
    _rewrite_manifest(path, format_version=FORMAT_VERSION, format="something-else")
    with pytest.raises(ValueError, match="not a langchain-rpo history file"):
        UserHistoryStore.load(path, DeterministicFakeEmbedding(size=DIM))
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a zip"):
        UserHistoryStore.load(tmp_path / "junk.zip")


def test_load_with_default_embeddings_checks_dim_lazily(
    store: UserHistoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_texts("alice", ["a"])
    store.save(tmp_path / "h.zip")
    # Loading without embeddings must not load a model; the mismatch shows on first use.
    monkeypatch.setattr(
        history_module, "default_embeddings", lambda: DeterministicFakeEmbedding(size=8)
    )
    loaded = UserHistoryStore.load(tmp_path / "h.zip")
    assert loaded.count("alice") == 1
    with pytest.raises(ValueError, match="dimension mismatch"):
        loaded.search("alice", "a")


def test_no_pickle_in_module() -> None:
    for module in (history_module, history_file):
        source = Path(module.__file__).read_text()
        assert "import pickle" not in source and "allow_pickle" not in source


# ---------------------------------------------------------------- isolation and threads


# Every character a history stores: no backend stores NUL (PostgreSQL text cannot hold it).
STORABLE = st.characters(codec="utf-8", exclude_characters="\x00")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(
        st.tuples(st.sampled_from(["u1", "u2", "u3"]), st.text(STORABLE, min_size=1, max_size=12)),
        min_size=1,
        max_size=30,
    ),
    query_user=st.sampled_from(["u1", "u2", "u3", "u4"]),
    query=st.text(STORABLE, max_size=12),
    k=st.integers(min_value=0, max_value=40),
)
def test_search_never_returns_another_users_item(
    items: list[tuple[str, str]], query_user: str, query: str, k: int
) -> None:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=8))
    owned: dict[str, set[str]] = {}
    for user, text in items:
        [item_id] = store.add_texts(user, [text], metadatas=[{"owner": user}])
        owned.setdefault(user, set()).add(item_id)
    docs = store.search(query_user, query, k=k)
    assert {doc.id for doc in docs} <= owned.get(query_user, set())
    assert all(doc.metadata["owner"] == query_user for doc in docs)
    assert len(docs) == min(k, len(owned.get(query_user, ())))


def test_concurrent_adds_and_searches(store: UserHistoryStore) -> None:
    n_threads, per_thread = 8, 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                store.add_texts(f"user{t}", [f"t{t} item {i}"], metadatas=[{"owner": t}])
                store.add_texts("shared", [f"shared {t}-{i}"], ids=[f"s{t}-{i}"])
                for doc in store.search(f"user{t}", f"t{t} item {i}", k=3):
                    assert doc.metadata["owner"] == t
                store.search("shared", "shared", k=5)
                if i % 5 == 4:  # some deletes racing with the others' searches
                    assert store.delete("shared", [f"s{t}-{i}"]) == 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    expected_shared = n_threads * (per_thread - per_thread // 5)
    assert store.counts() == {
        "shared": expected_shared,
        **{f"user{t}": per_thread for t in range(n_threads)},
    }
    assert len(store) == expected_shared + n_threads * per_thread
    for t in range(n_threads):
        top = store.search(f"user{t}", f"t{t} item 3", k=1)[0]
        assert top.page_content == f"t{t} item 3"
