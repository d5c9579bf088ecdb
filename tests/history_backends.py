"""The registry of history backends that the contract tests run against.

``tests/unit/test_history_contract.py`` runs one suite over every entry. Each factory is a
context manager that yields a fresh, empty backend and cleans it up on exit; it takes
``embeddings`` (any LangChain embeddings; ``None`` picks a small deterministic one) and ignores
keyword arguments it does not know, so the suite can grow without breaking entries.

Add a backend by adding one entry here; keep the entries cheap (the suite builds one backend per
test).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings

from langchain_rpo.history_backend import HistoryBackend

DEFAULT_DIM = 16
"""Width of the deterministic embeddings a factory uses when given none."""


@contextmanager
def postgres_backend(embeddings: Embeddings | None = None, **_: Any) -> Iterator[HistoryBackend]:
    """A :class:`~langchain_rpo.history_postgres.PostgresHistory` in a fresh schema of the real
    test server (started once per process by ``tests/postgres_server.py``, never skipped).

    It connects over the server's unix socket, which pytest-socket allows, so the contract tests
    need no socket markers for it.
    """
    from postgres_server import fresh_postgres_history

    with fresh_postgres_history(embeddings or DeterministicFakeEmbedding(size=DEFAULT_DIM)) as b:
        yield b


@contextmanager
def postgres_reopen(history: HistoryBackend) -> Iterator[HistoryBackend]:
    """A new :class:`PostgresHistory` (its own pool, fresh connections) on the same schema."""
    from postgres_server import reopen_postgres_history

    with reopen_postgres_history(history) as again:  # type: ignore[arg-type]
        yield again


@contextmanager
def faiss_backend(embeddings: Embeddings | None = None, **_: Any) -> Iterator[HistoryBackend]:
    """The embedded FAISS store (:class:`~langchain_rpo.history.UserHistoryStore`)."""
    from langchain_rpo.history import UserHistoryStore

    yield UserHistoryStore(embeddings or DeterministicFakeEmbedding(size=DEFAULT_DIM))


@contextmanager
def inmemory_backend(embeddings: Embeddings | None = None, **_: Any) -> Iterator[HistoryBackend]:
    """:class:`~langchain_rpo.history_vectorstore.VectorStoreHistory` over langchain-core's
    ``InMemoryVectorStore``."""
    from langchain_core.vectorstores import InMemoryVectorStore

    from langchain_rpo.history_vectorstore import VectorStoreHistory

    embeddings = embeddings or DeterministicFakeEmbedding(size=DEFAULT_DIM)
    # Events live beside the store in a JSON Lines file (the adapter's documented way to keep
    # them), so that the reopener can give them back as it gives the dumped store back.
    with tempfile.TemporaryDirectory(prefix="rpo-inmemory-events-") as folder:
        yield VectorStoreHistory(
            InMemoryVectorStore(embeddings), feedback_path=Path(folder) / "feedback.jsonl"
        )


# Where each Qdrant backend keeps its files, so that REOPENERS can open them again.
_QDRANT_PATHS: dict[int, str] = {}
_QDRANT_COLLECTION = "rpo_history"


def _qdrant_history(path: str, embeddings: Embeddings) -> HistoryBackend:
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    from langchain_rpo.history_vectorstore import VectorStoreHistory

    client = QdrantClient(path=path)  # local mode: in-process, files under path, no server
    if not client.collection_exists(_QDRANT_COLLECTION):
        width = len(embeddings.embed_query("width probe"))
        client.create_collection(
            _QDRANT_COLLECTION,
            vectors_config=models.VectorParams(size=width, distance=models.Distance.COSINE),
        )
    store = QdrantVectorStore(client, _QDRANT_COLLECTION, embeddings)
    # As `rpo history` opens qdrant:PATH: the events file sits in the Qdrant folder.
    history = VectorStoreHistory(
        store, feedback_path=Path(path) / f"{_QDRANT_COLLECTION}.feedback.jsonl"
    )
    _QDRANT_PATHS[id(history)] = path
    return history


@contextmanager
def qdrant_backend(embeddings: Embeddings | None = None, **_: Any) -> Iterator[HistoryBackend]:
    """:class:`~langchain_rpo.history_vectorstore.VectorStoreHistory` over langchain-qdrant's
    ``QdrantVectorStore``, with qdrant-client in local mode (in-process, files in a temporary
    folder: a real Qdrant engine, no server, no socket)."""
    embeddings = embeddings or DeterministicFakeEmbedding(size=DEFAULT_DIM)
    with tempfile.TemporaryDirectory(prefix="rpo-qdrant-") as folder:
        history = _qdrant_history(folder, embeddings)
        try:
            yield history
        finally:
            _QDRANT_PATHS.pop(id(history), None)
            history.store.client.close()  # type: ignore[attr-defined]


FACTORIES: dict[str, Callable[..., AbstractContextManager[HistoryBackend]]] = {
    "faiss": faiss_backend,
    "vectorstore-inmemory": inmemory_backend,
    "vectorstore-qdrant": qdrant_backend,
    "postgres": postgres_backend,
}


# --------------------------------------------------------------------------- persistence


@contextmanager
def faiss_reopen(history: HistoryBackend) -> Iterator[HistoryBackend]:
    """Save the FAISS store to a zip and load it back."""
    from langchain_rpo.history import UserHistoryStore

    assert isinstance(history, UserHistoryStore)
    with tempfile.TemporaryDirectory(prefix="rpo-faiss-") as folder:
        path = Path(folder) / "history.zip"
        history.save(path)
        yield UserHistoryStore.load(path, history.embeddings)


@contextmanager
def inmemory_reopen(history: HistoryBackend) -> Iterator[HistoryBackend]:
    """``InMemoryVectorStore.dump`` to JSON and ``load`` it into a new adapter (same events file)."""
    from langchain_core.vectorstores import InMemoryVectorStore

    from langchain_rpo.history_vectorstore import VectorStoreHistory

    assert isinstance(history, VectorStoreHistory)
    with tempfile.TemporaryDirectory(prefix="rpo-inmemory-") as folder:
        path = str(Path(folder) / "store.json")
        history.store.dump(path)  # type: ignore[attr-defined]
        yield VectorStoreHistory(
            InMemoryVectorStore.load(path, history.embeddings),
            feedback_path=history.feedback_path,
        )


@contextmanager
def qdrant_reopen(history: HistoryBackend) -> Iterator[HistoryBackend]:
    """Close the Qdrant client and open the same folder with a new one (a process restart)."""
    path = _QDRANT_PATHS[id(history)]
    history.store.client.close()  # type: ignore[attr-defined]
    reopened = _qdrant_history(path, history.embeddings)
    try:
        yield reopened
    finally:
        _QDRANT_PATHS.pop(id(reopened), None)
        reopened.store.client.close()  # type: ignore[attr-defined]


REOPENERS: dict[str, Callable[[HistoryBackend], AbstractContextManager[HistoryBackend]]] = {
    "faiss": faiss_reopen,
    "vectorstore-inmemory": inmemory_reopen,
    "vectorstore-qdrant": qdrant_reopen,
    "postgres": postgres_reopen,
}
"""Per backend: given a backend from its factory, a new backend over the same stored data, as a
process that starts again sees it. The contract's persistence test runs for every FACTORIES entry
and fails, naming this registry, for one without a reopener."""
