"""A writer process for the PostgreSQL fault and concurrency tests (run as a script).

``python tests/postgres_worker.py URL SCHEMA USER BATCHES BATCH_SIZE DIM [--shared-ids]``

Adds ``BATCHES`` batches of ``BATCH_SIZE`` items to ``USER`` with ``add_embeddings``, item ids
``b{batch}-{i}``, and prints ``begin {batch}`` before and ``committed {batch}`` after each add
(flushed), so a test can kill it mid-batch and know what it had committed. With
``--shared-ids`` every batch reuses ids ``s-{i}`` (concurrent upserts on the same keys).
"""

from __future__ import annotations

import sys

import numpy as np
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rpo.history_postgres import PostgresHistory


def main(argv: list[str]) -> int:
    url, schema, user, batches, size, dim = argv[:6]
    shared = "--shared-ids" in argv
    rng = np.random.default_rng(abs(hash(user)) % 2**32)
    with PostgresHistory(
        url, embeddings=DeterministicFakeEmbedding(size=int(dim)), schema=schema, partitions=4
    ) as history:
        for batch in range(int(batches)):
            ids = [f"s-{i}" if shared else f"b{batch}-{i}" for i in range(int(size))]
            vectors = rng.standard_normal((int(size), int(dim))).astype(np.float32)
            print(f"begin {batch}", flush=True)
            history.add_embeddings(user, [f"{user} {i}" for i in ids], vectors, ids=ids)
            print(f"committed {batch}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
