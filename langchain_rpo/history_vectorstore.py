"""Per-user history over any LangChain vector store: :class:`VectorStoreHistory`.

The adapter keeps the :class:`~langchain_rpo.history_backend.HistoryBackend` contract on a store
that holds everybody's items in one collection:

- **The owner travels with each item.** Every item's metadata holds its user id under
  :data:`USER_KEY` and its own id under :data:`ITEM_KEY`; both keys are reserved (an add whose
  metadata uses one is refused), and neither is ever shown back to a caller.
- **No call goes out without the user filter.** The adapter builds the filter itself, from the
  user id of the call, for every search, count, listing and delete; a filter builder that returns
  nothing is refused before the store is asked. Reads by id check the owner again.
- **Ids cannot collide across users.** Each item is stored under :func:`store_key` ``(user_id,
  item_id)``, a deterministic UUID (version 5), so two users' item ``"1"`` are two points, and
  stores that want UUID ids (Qdrant) get them.
- **Scores are cosine similarities**, as the FAISS store reports them: vectors are stored
  normalised and the score is computed from them, whatever the store's own convention.

How one kind of store is filtered, written, listed and searched is a :class:`StoreDialect`.
Two are built in: :class:`InMemoryDialect` (langchain-core's ``InMemoryVectorStore``: a callable
filter over ``Document``) and :class:`QdrantDialect` (langchain-qdrant's ``QdrantVectorStore``:
a ``models.Filter`` on ``metadata.rpo_user_id``). Any other store that takes a metadata filter in
``similarity_search_with_score_by_vector`` works with ``filter_for=`` (a function from user id to
the store's filter): see :class:`FilteredStoreDialect` for what that path can and cannot do.

**Feedback events** are not vectors, so they are not written into the vector store (they would
turn up in searches): the adapter keeps them itself, in memory, and, when given
``feedback_path=``, in a JSON Lines file (:func:`~langchain_rpo.feedback.write_events`,
rewritten atomically on every change, read back on construction). Without a path, events live
as long as the adapter: persist the vector store and the events file together (``rpo history``
does so for ``qdrant:PATH``, in ``PATH/<collection>.feedback.jsonl``).
"""

from __future__ import annotations

import os
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from langchain_rpo.feedback import EventLog, FeedbackEvent, check_events, read_events, write_events
from langchain_rpo.history_backend import HistoryBackend, HistoryRecord
from langchain_rpo.history_checks import (
    check_add_call,
    check_k,
    check_str_sequence,
    check_user_id,
    normalised_vectors,
)

if TYPE_CHECKING:
    from langchain_qdrant import QdrantVectorStore

__all__ = [
    "ITEM_KEY",
    "RESERVED_KEYS",
    "USER_KEY",
    "FilteredStoreDialect",
    "InMemoryDialect",
    "QdrantDialect",
    "StoreDialect",
    "VectorStoreHistory",
    "store_key",
]

USER_KEY = "rpo_user_id"
"""The metadata key that holds an item's owner (reserved: user metadata may not use it)."""

ITEM_KEY = "rpo_item_id"
"""The metadata key that holds an item's own id, as the caller named it (reserved too)."""

RESERVED_KEYS = frozenset({USER_KEY, ITEM_KEY})

# A fixed namespace: the same (user, item) maps to the same key in every process and release.
_KEY_NAMESPACE = uuid.UUID("6f1b7c2e-4a57-5d0e-9a55-72706f686973")


def store_key(user_id: str, item_id: str) -> str:
    """The id an item is stored under: a UUID5 of the user and the item id.

    The user id's length comes first, so no pair of (user, item) strings can meet another's.

    >>> store_key("alice", "1") == store_key("alice", "1") != store_key("bob", "1")
    True
    >>> store_key("a", "b:c") != store_key("a:b", "c")
    True
    """
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{len(user_id)}:{user_id}:{item_id}"))


class StoreDialect(ABC):
    """How :class:`VectorStoreHistory` speaks to one kind of vector store.

    A dialect is bound to one store. Every method that reads or deletes by user receives the
    filter that :meth:`filter_for` built for that user and must pass it to the store; the
    adapter refuses to call them with none. Documents handed back carry the stored metadata,
    reserved keys included (the adapter checks the owner and strips them), and ``.id`` set to
    the store key.
    """

    @abstractmethod
    def filter_for(self, user_id: str) -> Any:
        """The store's filter that matches exactly the items whose ``USER_KEY`` is ``user_id``."""

    @abstractmethod
    def dim(self) -> int | None:
        """The width of the stored vectors, or ``None`` while the store holds none."""

    @abstractmethod
    def upsert(
        self,
        keys: list[str],
        texts: list[str],
        metadatas: list[dict[str, Any]],
        vectors: np.ndarray,
    ) -> None:
        """Write items (normalised vectors), replacing those whose key exists."""

    @abstractmethod
    def search(
        self, user_id: str, flt: Any, vector: np.ndarray, k: int
    ) -> list[tuple[Document, float]]:
        """The user's ``k`` items (``flt``) nearest to ``vector`` (normalised), with cosines."""

    @abstractmethod
    def scan(
        self, user_id: str | None, flt: Any, *, with_vectors: bool
    ) -> Iterator[tuple[Document, list[float] | None]]:
        """Every item of the user (``flt``; ``None`` for both: every item), in a stable order."""

    @abstractmethod
    def get(self, keys: list[str]) -> list[Document]:
        """Items by store key, any order; unknown keys skipped."""

    @abstractmethod
    def delete(self, user_id: str, flt: Any, keys: list[str]) -> None:
        """Delete the user's items (``flt``) with these keys."""

    def count(self, user_id: str, flt: Any) -> int:
        """How many items the user (``flt``) has (a scan unless the store can count)."""
        return sum(1 for _ in self.scan(user_id, flt, with_vectors=False))

    def users(self) -> set[str]:
        """Every owner in the store (a scan unless the store can do better)."""
        return {
            str(doc.metadata.get(USER_KEY)) for doc, _ in self.scan(None, None, with_vectors=False)
        }


# --------------------------------------------------------------------------- InMemoryVectorStore


class InMemoryDialect(StoreDialect):
    """langchain-core's ``InMemoryVectorStore``: filters are callables over ``Document``.

    Items are written into the store's ``store`` dict in the layout its own ``add_documents``
    writes (``id``, ``vector``, ``text``, ``metadata``), so ``dump``/``load`` keep them.
    """

    def __init__(self, store: InMemoryVectorStore) -> None:
        self.store = store

    def filter_for(self, user_id: str) -> Callable[[Document], bool]:
        def owned(doc: Document) -> bool:
            return doc.metadata.get(USER_KEY) == user_id

        return owned

    def dim(self) -> int | None:
        for item in self.store.store.values():
            return len(item["vector"])
        return None

    def upsert(
        self,
        keys: list[str],
        texts: list[str],
        metadatas: list[dict[str, Any]],
        vectors: np.ndarray,
    ) -> None:
        for key, text, metadata, vector in zip(keys, texts, metadatas, vectors.tolist()):
            self.store.store[key] = {
                "id": key,
                "vector": vector,
                "text": text,
                "metadata": metadata,
            }

    def search(
        self, user_id: str, flt: Any, vector: np.ndarray, k: int
    ) -> list[tuple[Document, float]]:
        # InMemoryVectorStore's score is already the cosine similarity.
        hits = self.store.similarity_search_with_score_by_vector(vector.tolist(), k=k, filter=flt)
        return [(_copy(doc), float(score)) for doc, score in hits]

    def scan(
        self, user_id: str | None, flt: Any, *, with_vectors: bool
    ) -> Iterator[tuple[Document, list[float] | None]]:
        for item in list(self.store.store.values()):  # a snapshot: writers may run meanwhile
            doc = Document(id=item["id"], page_content=item["text"], metadata=item["metadata"])
            if flt is None or flt(doc):
                yield _copy(doc), (list(item["vector"]) if with_vectors else None)

    def get(self, keys: list[str]) -> list[Document]:
        return [_copy(doc) for doc in self.store.get_by_ids(keys)]

    def delete(self, user_id: str, flt: Any, keys: list[str]) -> None:
        for doc in self.store.get_by_ids(keys):
            if flt(doc):
                self.store.store.pop(str(doc.id), None)


# --------------------------------------------------------------------------- Qdrant


class QdrantDialect(StoreDialect):
    """langchain-qdrant's ``QdrantVectorStore`` (dense mode): ``models.Filter`` on the owner key.

    Writes, listing (``scroll``), counting and deleting go through the store's ``QdrantClient``
    with the same filter, so the store's own embeddings are never called. For a server, index
    the owner field as a tenant key (``create_payload_index(collection,
    "metadata.rpo_user_id", KeywordIndexParams(type="keyword", is_tenant=True))``) so a user's
    search reads only their points.
    """

    def __init__(self, store: QdrantVectorStore) -> None:
        from qdrant_client import models

        self.models = models
        self.store = store
        self.client = store.client
        self.collection = store.collection_name
        self.user_field = f"{store.metadata_payload_key}.{USER_KEY}"

    def filter_for(self, user_id: str) -> Any:
        m = self.models
        return m.Filter(
            must=[m.FieldCondition(key=self.user_field, match=m.MatchValue(value=user_id))]
        )

    def dim(self) -> int | None:
        vectors = self.client.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, dict):
            params = vectors.get(self.store.vector_name)
            return None if params is None else int(params.size)
        return None if vectors is None else int(vectors.size)

    def upsert(
        self,
        keys: list[str],
        texts: list[str],
        metadatas: list[dict[str, Any]],
        vectors: np.ndarray,
    ) -> None:
        points = [
            self.models.PointStruct(
                id=key,
                vector={self.store.vector_name: vector},
                payload={
                    self.store.content_payload_key: text,
                    self.store.metadata_payload_key: metadata,
                },
            )
            for key, text, metadata, vector in zip(keys, texts, metadatas, vectors.tolist())
        ]
        self.client.upsert(self.collection, points=points, wait=True)

    def _document(self, point: Any) -> Document:
        payload = point.payload or {}
        return Document(
            id=str(point.id),
            page_content=payload.get(self.store.content_payload_key, ""),
            metadata=dict(payload.get(self.store.metadata_payload_key) or {}),
        )

    def _vector(self, point: Any) -> list[float]:
        vector = point.vector
        if isinstance(vector, dict):
            vector = vector[self.store.vector_name]
        return list(vector)

    def search(
        self, user_id: str, flt: Any, vector: np.ndarray, k: int
    ) -> list[tuple[Document, float]]:
        points = self.client.query_points(
            self.collection,
            query=vector.tolist(),
            using=self.store.vector_name or None,
            query_filter=flt,
            limit=k,
            with_payload=True,
            with_vectors=True,
        ).points
        # The store ranks by its own distance; on normalised vectors cosine, dot and euclid
        # agree on the order, and the cosine is computed here from the stored vector.
        return [(self._document(p), _cosine(vector, self._vector(p))) for p in points]

    def scan(
        self, user_id: str | None, flt: Any, *, with_vectors: bool
    ) -> Iterator[tuple[Document, list[float] | None]]:
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=256,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            for point in points:
                yield self._document(point), (self._vector(point) if with_vectors else None)
            if offset is None:
                return

    def get(self, keys: list[str]) -> list[Document]:
        return [
            self._document(p)
            for p in self.client.retrieve(self.collection, keys, with_payload=True)
        ]

    def delete(self, user_id: str, flt: Any, keys: list[str]) -> None:
        m = self.models
        both = m.Filter(must=[flt, m.HasIdCondition(has_id=keys)])  # the user's, and these ids
        self.client.delete(
            self.collection, points_selector=m.FilterSelector(filter=both), wait=True
        )

    def count(self, user_id: str, flt: Any) -> int:
        return int(self.client.count(self.collection, count_filter=flt, exact=True).count)

    def users(self) -> set[str]:
        owners: set[str] = set()
        offset = None
        while True:  # only the owner field travels
            points, offset = self.client.scroll(
                self.collection, limit=1024, offset=offset, with_payload=[self.user_field]
            )
            for point in points:
                owner = ((point.payload or {}).get(self.store.metadata_payload_key) or {}).get(
                    USER_KEY
                )
                if isinstance(owner, str):
                    owners.add(owner)
            if offset is None:
                return owners


# --------------------------------------------------------------------------- any other store


class FilteredStoreDialect(StoreDialect):
    """Any ``VectorStore`` with a metadata filter, given the function that builds it.

    What this generic path can and cannot do, honestly:

    - Writes go through ``store.add_texts(texts, metadatas, ids=keys)``, so **the store embeds**
      with its own embeddings (which must be the adapter's); vectors given to ``add_embeddings``
      are checked but not written as given.
    - Searches use ``store.similarity_search_with_score_by_vector(vector, k, filter=...)`` and
      ``score_to_cosine`` turns the store's score into a cosine similarity (identity by default:
      right for stores that report cosine similarity; pass one for stores that report a distance).
    - The store cannot list items, so **this adapter keeps an index of (user, item) keys in
      memory**: ``users``, ``count``, ``iter_items``, ``forget`` and export see only what this
      process added. Use a built-in dialect, or write one, for a store you reopen.
    - Stores that filter *after* fetching candidates (LangChain community's ``FAISS`` fetches
      ``fetch_k=20`` then filters) can return fewer than ``k`` of a user's items when other
      users' items crowd the candidates; the adapter never returns another user's item either
      way.

    Args:
        store: The vector store.
        filter_for: User id -> the store's filter for ``metadata["rpo_user_id"] == user_id``.
        score_to_cosine: Turns the store's score into a cosine similarity.
    """

    def __init__(
        self,
        store: VectorStore,
        filter_for: Callable[[str], Any],
        score_to_cosine: Callable[[float], float] = float,
    ) -> None:
        if not hasattr(store, "similarity_search_with_score_by_vector"):
            raise ValueError(
                f"{type(store).__name__} has no similarity_search_with_score_by_vector, so "
                "VectorStoreHistory cannot search it by vector with a filter. Fix: write a "
                "StoreDialect for it and pass dialect=."
            )
        self.store = store
        self._filter_for = filter_for
        self._score = score_to_cosine
        self._keys: dict[str, dict[str, Document]] = {}  # owner -> key -> item
        self._dim: int | None = None

    def filter_for(self, user_id: str) -> Any:
        return self._filter_for(user_id)

    def dim(self) -> int | None:
        return self._dim

    def upsert(
        self,
        keys: list[str],
        texts: list[str],
        metadatas: list[dict[str, Any]],
        vectors: np.ndarray,
    ) -> None:
        # Replace, as the contract says: some stores refuse an id they already hold.
        existing = [str(doc.id) for doc in self.store.get_by_ids(keys)]
        if existing:
            self.store.delete(ids=existing)
        self.store.add_texts(texts, metadatas, ids=keys)
        self._dim = int(vectors.shape[1])
        for key, text, metadata in zip(keys, texts, metadatas):
            owned = self._keys.setdefault(metadata[USER_KEY], {})
            owned[key] = Document(id=key, page_content=text, metadata=metadata)

    def search(
        self, user_id: str, flt: Any, vector: np.ndarray, k: int
    ) -> list[tuple[Document, float]]:
        hits = self.store.similarity_search_with_score_by_vector(  # type: ignore[attr-defined]
            vector.tolist(), k=k, filter=flt
        )
        return [(_copy(doc), self._score(score)) for doc, score in hits]

    def scan(
        self, user_id: str | None, flt: Any, *, with_vectors: bool
    ) -> Iterator[tuple[Document, list[float] | None]]:
        # The store cannot list: the in-memory index answers, by owner.
        owners = list(self._keys) if user_id is None else [user_id]
        for owner in owners:
            for doc in list(self._keys.get(owner, {}).values()):
                yield _copy(doc), None  # the store gives no vectors back

    def get(self, keys: list[str]) -> list[Document]:
        return [_copy(doc) for doc in self.store.get_by_ids(keys)]

    def delete(self, user_id: str, flt: Any, keys: list[str]) -> None:
        # The adapter checked these keys' owner through get(); the store deletes by id only.
        self.store.delete(ids=keys)
        owned = self._keys.get(user_id, {})
        for key in keys:
            owned.pop(key, None)
        if not owned:
            self._keys.pop(user_id, None)

    def users(self) -> set[str]:
        return set(self._keys)


# --------------------------------------------------------------------------- the adapter


def _copy(doc: Document) -> Document:
    # Stores hand back their own metadata dicts (InMemoryVectorStore does): never edit those.
    return Document(id=doc.id, page_content=doc.page_content, metadata=dict(doc.metadata))


def _cosine(query: np.ndarray, stored: Sequence[float]) -> float:
    vector = np.asarray(stored, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return float(np.dot(query, vector) / norm) if norm else 0.0


def _dialect_for(store: VectorStore, filter_for: Callable[[str], Any] | None) -> StoreDialect:
    if isinstance(store, InMemoryVectorStore):
        return InMemoryDialect(store)
    try:
        from langchain_qdrant import QdrantVectorStore
    except ImportError:  # the qdrant extra is not installed: then this is not a Qdrant store
        QdrantVectorStore = None  # type: ignore[assignment,misc]
    if QdrantVectorStore is not None and isinstance(store, QdrantVectorStore):
        return QdrantDialect(store)
    if filter_for is not None:
        return FilteredStoreDialect(store, filter_for)
    raise ValueError(
        f"VectorStoreHistory does not know how to filter a {type(store).__name__} by user. "
        "Fix: pass filter_for=lambda user_id: <the store's metadata filter for "
        f"{USER_KEY!r} == user_id>, or dialect=<a StoreDialect for this store>. Built in: "
        "InMemoryVectorStore, QdrantVectorStore."
    )


class VectorStoreHistory(HistoryBackend):
    """Per-user history over a LangChain ``VectorStore`` that filters on metadata.

    Example:
        ```python
        from langchain_core.vectorstores import InMemoryVectorStore

        history = VectorStoreHistory(InMemoryVectorStore(embeddings))
        history.add_texts("alice", ["Announcing Rust 1.75.0"])
        history.search("alice", "new Rust version", k=1)
        ```

    Inputs are checked exactly as the FAISS store checks them
    (:mod:`langchain_rpo.history_checks`), and metadata may not use :data:`RESERVED_KEYS`.
    Writes and deletes from this object are serialised by a lock; several processes writing
    the same store rely on the store's own guarantees.

    Args:
        store: The vector store. Built in: ``InMemoryVectorStore``, langchain-qdrant's
            ``QdrantVectorStore`` (dense mode).
        filter_for: A function from a user id to the store's filter that matches
            ``metadata["rpo_user_id"] == user_id``: required for a store without a built-in
            dialect (see :class:`FilteredStoreDialect`); for a built-in one it replaces the
            built-in filter.
        embeddings: The embeddings to embed texts and queries with (default: the store's own).
        dialect: A :class:`StoreDialect` bound to ``store``, overriding the built-in choice.
        feedback_path: A JSON Lines file that keeps the feedback events (read now when it
            exists, rewritten atomically on every change). ``None``: events are kept in memory
            only, and are lost with this object.

    Raises:
        ValueError: When the store is of a kind with no built-in dialect and neither
            ``filter_for`` nor ``dialect`` is given, or it has no embeddings and none are given.
    """

    def __init__(
        self,
        store: VectorStore,
        *,
        filter_for: Callable[[str], Any] | None = None,
        embeddings: Embeddings | None = None,
        dialect: StoreDialect | None = None,
        feedback_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.store = store
        self.dialect = dialect if dialect is not None else _dialect_for(store, filter_for)
        if filter_for is not None and dialect is None:
            # The caller's filter wins over a built-in one (a store indexed another way).
            self.dialect.filter_for = filter_for  # type: ignore[method-assign]
        resolved = embeddings if embeddings is not None else store.embeddings
        if resolved is None:
            raise ValueError(
                f"The {type(store).__name__} has no embeddings model. Fix: pass embeddings= "
                "(the model its vectors were made with)."
            )
        self._embeddings = resolved
        self._lock = threading.RLock()
        self._feedback = EventLog()
        self.feedback_path = None if feedback_path is None else os.fspath(feedback_path)
        if self.feedback_path is not None and os.path.exists(self.feedback_path):
            loaded: dict[str, list[FeedbackEvent]] = {}
            for event in read_events(self.feedback_path):  # every line checked, file named
                loaded.setdefault(event.user_id, []).append(event)
            self._feedback.replace_all(loaded)

    def _save_feedback(self) -> None:
        """Write every event to ``feedback_path`` (the caller holds the lock)."""
        if self.feedback_path is not None:
            stored = self._feedback.stored()
            write_events(self.feedback_path, (e for events in stored.values() for e in events))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.store).__name__})"

    @property
    def embeddings(self) -> Embeddings:
        """The embeddings model texts and queries are embedded with."""
        return self._embeddings

    def _filter(self, user_id: str) -> Any:
        """The store's filter for this user; never a call without one."""
        flt = self.dialect.filter_for(user_id)
        if flt is None or flt == {}:
            raise ValueError(
                f"The filter builder returned {flt!r} for a user: VectorStoreHistory never "
                "searches, lists or deletes without a user filter. Fix: make filter_for return "
                f"the store's filter for metadata[{USER_KEY!r}] == user_id."
            )
        return flt

    def _item(self, user_id: str, doc: Document) -> Document | None:
        """The caller's view of a stored document, or ``None`` when it is not this user's item.

        ``None`` too for an item written to the store without this adapter (no item id).
        """
        meta = dict(doc.metadata)
        if meta.get(USER_KEY) != user_id or not isinstance(meta.get(ITEM_KEY), str):
            return None
        item_id = meta.pop(ITEM_KEY, None)
        meta.pop(USER_KEY, None)
        return Document(id=item_id, page_content=doc.page_content, metadata=meta)

    # ------------------------------------------------------------------ writes

    def add_embeddings(
        self,
        user_id: str,
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]] | np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add texts with vectors computed elsewhere (same model); an existing id is replaced.

        Args:
            user_id: The user.
            texts: The texts.
            embeddings: One finite, non-zero vector per text, of the store's width.
            metadatas: One JSON dict per text (optional; :data:`RESERVED_KEYS` refused).
            ids: One unique string id per text (optional; uuid4 hex by default).

        Returns:
            The ids of the added items, in order.

        Raises:
            ValueError: As the FAISS store's ``add_embeddings``, and on a reserved metadata key;
                nothing is written.
        """
        user_id, texts, metas, item_ids = check_add_call(
            user_id, texts, metadatas, ids, reserved_keys=RESERVED_KEYS
        )
        if not texts or len(embeddings) == 0:
            if texts or len(embeddings):
                raise ValueError(
                    f"Got {len(texts)} texts but {len(embeddings)} embeddings; pass one per text."
                )
            return []
        with self._lock:
            vectors = normalised_vectors(embeddings, self.dialect.dim(), "embeddings[{i}]")
            if vectors.shape[0] != len(texts):
                raise ValueError(
                    f"Got {len(texts)} texts but {vectors.shape[0]} embeddings; pass one per text."
                )
            stored = [{**meta, USER_KEY: user_id, ITEM_KEY: i} for meta, i in zip(metas, item_ids)]
            keys = [store_key(user_id, i) for i in item_ids]
            self.dialect.upsert(keys, texts, stored, vectors)
        return item_ids

    def delete(self, user_id: str, ids: Sequence[str]) -> int:
        """Delete the user's items by id; unknown ids (and other users' items) are ignored.

        Returns:
            How many items were deleted.
        """
        user_id = check_user_id(user_id)
        wanted = list(dict.fromkeys(check_str_sequence(ids, "ids")))
        if not wanted:
            return 0
        flt = self._filter(user_id)
        keys = [store_key(user_id, i) for i in wanted]
        with self._lock:
            found = [doc for doc in self.dialect.get(keys) if self._item(user_id, doc)]
            if found:
                self.dialect.delete(user_id, flt, [str(doc.id) for doc in found])
        return len(found)

    def forget(self, user_id: str) -> int:
        """Delete the user's whole history, feedback events included.

        The events go first: when the events file cannot be written, nothing is deleted and the
        error is raised (rather than leaving events that a restart would bring back).

        Returns:
            How many items the user held (0 for none).
        """
        user_id = check_user_id(user_id)
        flt = self._filter(user_id)
        with self._lock:
            events = self._feedback.events(user_id)
            if events:
                self._feedback.forget(user_id)
                try:
                    self._save_feedback()
                except BaseException:
                    self._feedback.add(user_id, events)
                    raise
            keys = [str(d.id) for d, _ in self.dialect.scan(user_id, flt, with_vectors=False)]
            for start in range(0, len(keys), 1024):
                self.dialect.delete(user_id, flt, keys[start : start + 1024])
        return len(keys)

    # ------------------------------------------------------------------ feedback events

    def add_feedback(self, user_id: str, events: Sequence[FeedbackEvent]) -> int:
        """Store feedback events of one user (see :meth:`HistoryBackend.add_feedback`).

        Kept by the adapter, not in the vector store (see the module docstring); written to
        ``feedback_path`` when one was given. When that write fails, the events are taken back
        out of memory and the error raised, so memory and file agree.
        """
        user_id = check_user_id(user_id)
        checked = check_events(user_id, events)
        with self._lock:
            before = {e.event_id: e for e in self._feedback.events(user_id)}
            self._feedback.add(user_id, checked)
            try:
                self._save_feedback()
            except BaseException:
                self._feedback.delete(user_id, [e.event_id for e in checked])
                self._feedback.add(
                    user_id, [before[e.event_id] for e in checked if e.event_id in before]
                )
                raise
        return len(checked)

    def feedback(self, user_id: str) -> list[FeedbackEvent]:
        """The user's feedback events in time order."""
        return self._feedback.events(check_user_id(user_id))

    def delete_feedback(self, user_id: str, event_ids: Sequence[str]) -> int:
        """Delete the user's events by id; unknown ids are ignored. Returns how many went."""
        user_id = check_user_id(user_id)
        wanted = check_str_sequence(event_ids, "event_ids")
        with self._lock:
            gone = self._feedback.delete(user_id, wanted)
            if gone:
                self._save_feedback()
            return gone

    def feedback_users(self) -> list[str]:
        """The users that have feedback events, sorted."""
        return self._feedback.users()

    # ------------------------------------------------------------------ reads

    def search_with_scores_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[tuple[Document, float]]:
        """The user's ``k`` items nearest to an embedded query, most similar first.

        Returns:
            ``(document, cosine similarity)`` pairs; each document has ``.id`` and
            ``metadata["score"]`` set.

        Raises:
            ValueError: As the FAISS store: a bad user id, ``k``, or query vector.
        """
        user_id = check_user_id(user_id)
        k = check_k(k)
        query = normalised_vectors(vector, self.dialect.dim(), "the query vector")
        if query.shape[0] != 1:
            raise ValueError(
                f"search_by_vector takes one vector, got {query.shape[0]}; call it per row."
            )
        if k == 0:
            return []
        hits = []
        for doc, score in self.dialect.search(user_id, self._filter(user_id), query[0], k):
            item = self._item(user_id, doc)
            if item is not None:  # the store honoured the filter; checked all the same
                item.metadata["score"] = score
                hits.append((item, score))
        hits.sort(key=lambda pair: -pair[1])
        return hits

    def get(self, user_id: str, ids: Sequence[str]) -> list[Document]:
        """The user's items by id, in the order asked; unknown ids are skipped."""
        user_id = check_user_id(user_id)
        wanted = check_str_sequence(ids, "ids")
        if not wanted:
            return []
        found: dict[str, Document] = {}
        for doc in self.dialect.get(list(dict.fromkeys(store_key(user_id, i) for i in wanted))):
            item = self._item(user_id, doc)
            if item is not None and item.id is not None:
                found[item.id] = item
        return [_copy(found[i]) for i in wanted if i in found]

    def iter_items(self, user_id: str, *, with_vectors: bool = False) -> Iterator[HistoryRecord]:
        """Every item of one user, in the store's stable order, for export."""
        user_id = check_user_id(user_id)
        flt = self._filter(user_id)
        for doc, vector in self.dialect.scan(user_id, flt, with_vectors=with_vectors):
            item = self._item(user_id, doc)
            if item is None or item.id is None:
                continue
            if vector is not None:
                vector = normalised_vectors(vector, None, "a stored vector")[0].tolist()
            yield HistoryRecord(user_id, item.id, item.page_content, item.metadata, vector)

    def users(self) -> list[str]:
        """The users that have history, sorted."""
        return sorted(self.dialect.users())

    def count(self, user_id: str) -> int:
        """How many items the user has (0 for an unknown user)."""
        user_id = check_user_id(user_id)
        return self.dialect.count(user_id, self._filter(user_id))
