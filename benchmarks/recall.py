"""Benchmark 1: recall at scale.

``UserHistoryStore`` (one exact FAISS index per user) against the common way to hold many users
in LangChain, one ``langchain_community.vectorstores.FAISS`` holding everyone's items with a
``{"user": ...}`` metadata filter, and against exact brute force in NumPy (the ground truth).

Run from the repository root (needs ``pip install langchain-community``, the ``bench`` extra)::

    python -m benchmarks.recall                         # 100 users x 100 / 1,000 / 10,000 items
    python -m benchmarks.recall --items 100 --users 10 --queries 5   # seconds (smoke test)

Vectors are synthetic random unit vectors of width 384 (all-MiniLM-L6-v2's): embedding a
million texts is out of a CPU budget, and the search cost does not depend on where vectors came
from. They enter the store through :meth:`UserHistoryStore.add_embeddings` and the community
store through ``FAISS.from_embeddings`` (its default flat L2 index: on unit vectors L2 order is
cosine order). Each query is one of the user's items plus as much Gaussian noise again.

How the community store filters matters for what it returns: it searches the ``fetch_k`` nearest
vectors of *all* users, then keeps those whose metadata match, then the first ``k``. With its
default ``fetch_k=20`` and 100 users, a user's items are rarely among the 20; so it is measured
twice, at the default and at ``fetch_k`` = every vector in the store, the only setting that is
exact for any query.

Measured per size: build time, resident memory added by the build (RSS delta), search latency
p50/p95 over the same queries (the variants interleaved query by query, in rotating order), and
recall@k against brute force. The ratios are community latency over ours, per query, summarised
by their median and by the ratio of medians.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from benchmarks._common import (
    fmt_ms,
    fmt_s,
    p50,
    p95,
    print_footer,
    print_header,
    print_table,
    rss_mb,
    verdict,
)
from langchain_rpo.history import UserHistoryStore

DIM = 384
TARGET_SPEEDUP = 3.0


class _NoEmbeddings(Embeddings):
    """Stands in for an embeddings model: this benchmark only ever passes vectors."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("the recall benchmark passes vectors only")

    def embed_query(self, text: str) -> list[float]:
        raise RuntimeError("the recall benchmark passes vectors only")


def unit_vectors(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random float32 unit vectors (last axis)."""
    x = rng.standard_normal(shape, dtype=np.float32)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


def build_ours(vectors: np.ndarray) -> UserHistoryStore:
    store = UserHistoryStore(_NoEmbeddings())
    users, items, _ = vectors.shape
    for u in range(users):
        store.add_embeddings(
            f"user{u}",
            [f"item {u}:{j}" for j in range(items)],
            vectors[u],
            ids=[f"{u}:{j}" for j in range(items)],
        )
    return store


def build_community(vectors: np.ndarray) -> Any:
    with warnings.catch_warnings():  # "langchain-community is being sunset"
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.vectorstores import FAISS

    users, items, _ = vectors.shape
    pairs = [(f"item {u}:{j}", vectors[u, j]) for u in range(users) for j in range(items)]
    metadatas = [{"user": f"user{u}"} for u in range(users) for j in range(items)]
    ids = [f"{u}:{j}" for u in range(users) for j in range(items)]
    return FAISS.from_embeddings(pairs, _NoEmbeddings(), metadatas=metadatas, ids=ids)


def brute_force(vectors: np.ndarray, user: int, query: np.ndarray, k: int) -> list[str]:
    """Exact top-k ids of one user's items by cosine (NumPy)."""
    scores = vectors[user] @ query
    k = min(k, scores.shape[0])
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [f"{user}:{j}" for j in top.tolist()]


def measure(vectors: np.ndarray, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    users, items, _ = vectors.shape
    total = users * items
    k = args.k
    out: dict[str, Any] = {"items": items, "total": total}

    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    ours = build_ours(vectors)
    out["build_ours"] = time.perf_counter() - start
    gc.collect()
    out["mem_ours"] = rss_mb() - before

    before = rss_mb()
    start = time.perf_counter()
    community = build_community(vectors)
    out["build_comm"] = time.perf_counter() - start
    gc.collect()
    out["mem_comm"] = rss_mb() - before
    out["mem_raw"] = vectors.nbytes / 2**20

    q_users = rng.integers(0, users, size=args.queries)
    q_items = rng.integers(0, items, size=args.queries)
    noise = unit_vectors(rng, (args.queries, DIM))
    queries = vectors[q_users, q_items] + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    fetch_exact = total
    variants = {
        "ours": lambda u, q: [d.id for d in ours.search_by_vector(f"user{u}", q, k=k)],
        "numpy": lambda u, q: brute_force(vectors, u, q, k),
        "comm_default": lambda u, q: [
            d.id
            for d, _ in community.similarity_search_with_score_by_vector(
                q, k=k, filter={"user": f"user{u}"}
            )
        ],
        "comm_exact": lambda u, q: [
            d.id
            for d, _ in community.similarity_search_with_score_by_vector(
                q, k=k, filter={"user": f"user{u}"}, fetch_k=fetch_exact
            )
        ],
    }
    names = list(variants)
    # Warm-up: one query through every variant.
    for name in names:
        variants[name](int(q_users[0]), queries[0])
    times: dict[str, list[float]] = {n: [] for n in names}
    recalls: dict[str, list[float]] = {n: [] for n in names}
    for i, (u, q) in enumerate(zip(q_users.tolist(), queries)):
        truth = set(brute_force(vectors, u, q, k))
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
        for name in order:
            start = time.perf_counter()
            got = variants[name](u, q)
            times[name].append(time.perf_counter() - start)
            recalls[name].append(len(truth & set(got)) / len(truth))
    out["times"] = times
    out["recall"] = {n: float(np.mean(r)) for n, r in recalls.items()}
    out["ratio_exact"] = [c / o for c, o in zip(times["comm_exact"], times["ours"])]
    out["ratio_default"] = [c / o for c, o in zip(times["comm_default"], times["ours"])]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100, help="Users in the store.")
    parser.add_argument(
        "--items", default="100,1000,10000", help="Items per user, comma-separated sizes."
    )
    parser.add_argument("--k", type=int, default=4, help="Items returned per search.")
    parser.add_argument("--queries", type=int, default=30, help="Queries per size.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.items.split(",") if s]

    print_header(
        "Benchmark 1: recall at scale (UserHistoryStore vs langchain-community FAISS + filter)",
        {
            "users": args.users,
            "items per user": ", ".join(f"{s:,}" for s in sizes),
            "k": args.k,
            "queries per size": args.queries,
            "vectors": f"synthetic random unit vectors, dim {DIM}, float32",
            "community store": "FAISS.from_embeddings (IndexFlatL2), filter={'user': u}",
        },
        packages=["faiss-cpu", "numpy", "langchain-community", "langchain-core"],
    )
    rng = np.random.default_rng(args.seed)
    results = []
    for items in sizes:
        vectors = unit_vectors(rng, (args.users, items, DIM))
        results.append(measure(vectors, args, rng))
        del vectors
        gc.collect()

    labels = {
        "ours": "UserHistoryStore (per-user exact index)",
        "numpy": "NumPy brute force (per-user matrix, ground truth)",
        "comm_default": "community FAISS + filter, fetch_k=20 (default)",
        "comm_exact": "community FAISS + filter, fetch_k=all vectors",
    }
    rows = []
    for r in results:
        for name, label in labels.items():
            t = r["times"][name]
            build = {"ours": r["build_ours"], "comm_default": r["build_comm"]}.get(name)
            mem = {"ours": r["mem_ours"], "comm_default": r["mem_comm"], "numpy": r["mem_raw"]}
            rows.append(
                [
                    f"{r['items']:,}",
                    f"{r['total']:,}",
                    label,
                    fmt_ms(p50(t)),
                    fmt_ms(p95(t)),
                    f"{r['recall'][name]:.3f}",
                    fmt_s(build)
                    if build is not None
                    else ("(same)" if name == "comm_exact" else "-"),
                    f"{mem[name]:.0f}"
                    if name in mem
                    else ("(same)" if name == "comm_exact" else "-"),
                ]
            )
    print_table(
        [
            "items/user",
            "vectors",
            "variant",
            "p50 ms",
            "p95 ms",
            f"recall@{args.k}",
            "build s",
            "memory MiB",
        ],
        rows,
    )
    print("memory: RSS added by the build (NumPy: the vectors themselves). Build: one run each.\n")

    ratio_rows = []
    for r in results:
        ratio_exact = p50(r["ratio_exact"])
        ok = r["recall"]["ours"] == 1.0 and ratio_exact >= TARGET_SPEEDUP
        ratio_rows.append(
            [
                f"{r['items']:,}",
                f"{r['recall']['ours']:.3f}",
                f"{ratio_exact:.1f}x",
                f"{p50(r['times']['comm_exact']) / p50(r['times']['ours']):.1f}x",
                f"{p50(r['ratio_default']):.1f}x",
                f"{r['recall']['comm_default']:.3f}",
                f"{r['build_comm'] / r['build_ours']:.2f}x",
                f"{r['mem_comm'] / r['mem_ours']:.2f}x" if r["mem_ours"] > 0 else "-",
                verdict(ok),
            ]
        )
    print_table(
        [
            "items/user",
            "ours recall",
            "speedup vs exact community (median of per-query ratios)",
            "ratio of p50s",
            "speedup vs default community",
            "default community recall",
            "community/ours build time",
            "community/ours memory",
            f"target: recall 1.0 and >= {TARGET_SPEEDUP:.0f}x",
        ],
        ratio_rows,
    )
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
