"""A fork server for the SIGKILL test: imports once, then forks one saving child per command.

Protocol (one line each way): the test writes ``fork PATH START``; this process forks a child
and answers ``pid PID``. The child builds its base state, writes ``begin``, then builds
:func:`version_store` states START, START+1, ... and saves each to PATH, writing ``saved V``
after each save returns. When the child has died (the test kills it with SIGKILL), this process
writes ``dead PID``; every line of a child comes before its ``dead`` line. The server itself
never runs FAISS work, so no OpenMP thread pool exists when it forks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from _store_helpers import HashEmbeddings, build_store  # noqa: E402

from langchain_rpo.history import UserHistoryStore  # noqa: E402

DIM = 32
USERS = 3
ITEMS = 300
MAX_VERSIONS = 100_000  # a child the test forgot to kill stops on its own


def base_store() -> UserHistoryStore:
    store = build_store(users=USERS, items=ITEMS, dim=DIM, seed=5)
    store._embeddings = HashEmbeddings(DIM)
    return store


def apply_version(store: UserHistoryStore, version: int) -> None:
    """Move ``store`` to ``version``: every user's marker item is replaced (new text, metadata,
    vector and FAISS id), and the user of the version forgets one extra item."""
    rng = np.random.default_rng(version)
    for u, user in enumerate(store.users()):
        store.add_embeddings(
            user, [f"version {version} of {user}"], rng.normal(size=(1, DIM)),
            metadatas=[{"version": version}], ids=["marker"],
        )
        if u == version % USERS:
            store.delete(user, [f"{user}/{version % ITEMS}"])


def version_store(start: int, version: int) -> UserHistoryStore:
    """The state a child forked with ``start`` has saved as ``version``."""
    store = base_store()
    for v in range(start, version + 1):
        apply_version(store, v)
    return store


def child(path: str, start: int) -> None:
    store = base_store()
    os.write(1, b"begin\n")  # the test's random delay starts now, when saving starts
    for version in range(start, start + MAX_VERSIONS):
        apply_version(store, version)
        store.save(path)
        os.write(1, f"saved {version}\n".encode())
    os._exit(0)


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        command, path, start = line.split()
        assert command == "fork"
        pid = os.fork()
        if pid == 0:
            try:
                child(path, int(start))
            finally:
                os._exit(1)
        print(f"pid {pid}", flush=True)
        os.waitpid(pid, 0)
        print(f"dead {pid}", flush=True)


if __name__ == "__main__":
    main()
