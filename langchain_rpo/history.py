"""Per-user history: one exact FAISS index per user and a JSON docstore, saved without pickle.

Each user owns a ``faiss.IndexIDMap2(faiss.IndexFlatIP(dim))`` over L2-normalised float32
vectors, so an inner-product search is an exact cosine search, and items can be removed by id.
Keeping users in separate indexes makes isolation structural: a search only ever looks at the
asking user's vectors, and forgetting a user drops their whole index.

Items have string ids (uuid4 hex by default, or the caller's); each maps to an int64 FAISS id
that is private to the user's index.

Beside the items, each user's feedback events (:class:`~langchain_rpo.feedback.FeedbackEvent`)
are kept in memory and saved in the same file; ``forget`` erases them with the items.

This module is the in-memory store. What it accepts is checked by
:mod:`langchain_rpo.history_checks` before anything changes; the file it saves to and loads from
is owned by :mod:`langchain_rpo.history_file` (one zip, written atomically, no pickle, refused
with :class:`~langchain_rpo.history_file.HistoryFileError` when damaged or crafted).
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from langchain_rpo import history_file
from langchain_rpo.embeddings import SentenceTransformerEmbeddings, default_embeddings
from langchain_rpo.feedback import EventLog, FeedbackEvent, check_events
from langchain_rpo.history_backend import HistoryBackend, HistoryRecord
from langchain_rpo.history_backend import embeddings_identifier as _embeddings_identifier
from langchain_rpo.history_checks import (
    check_add_call,
    check_k,
    check_str_sequence,
    check_user_id,
    normalised_vectors,
)
from langchain_rpo.history_file import FORMAT_NAME, FORMAT_VERSION, HistoryFileError

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "HistoryFileError", "UserHistoryStore"]


@dataclass
class _UserIndex:
    """One user's exact index and docstore."""

    index: faiss.IndexIDMap2
    # str id -> {"page_content": str, "metadata": dict}
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    str_to_int: dict[str, int] = field(default_factory=dict)
    int_to_str: dict[int, str] = field(default_factory=dict)
    next_int: int = 0

    @classmethod
    def empty(cls, dim: int) -> _UserIndex:
        return cls(index=faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def from_stored(cls, stored: history_file.StoredUser, dim: int) -> _UserIndex:
        """Rebuild a user from a checked file (vectors in their saved order)."""
        user = cls.empty(dim)
        user.index.add_with_ids(stored.vectors, stored.faiss_ids)
        user.next_int = stored.next_int
        for item in stored.items:
            user.docs[item.id] = {"page_content": item.page_content, "metadata": item.metadata}
            user.str_to_int[item.id] = item.faiss_id
            user.int_to_str[item.faiss_id] = item.id
        return user

    def stored(self, user_id: str) -> history_file.StoredUser:
        """Copy this user out for saving (the caller holds the store's lock)."""
        items = [
            history_file.StoredItem(
                item_id, self.str_to_int[item_id], doc["page_content"], doc["metadata"]
            )
            for item_id, doc in self.docs.items()
        ]
        return history_file.StoredUser(
            user_id=user_id,
            next_int=self.next_int,
            items=items,
            vectors=self.index.index.reconstruct_n(0, self.index.ntotal),
            faiss_ids=faiss.vector_to_array(self.index.id_map),
        )


def _embedding_dim(embeddings: Embeddings) -> int:
    if isinstance(embeddings, SentenceTransformerEmbeddings):
        return embeddings.dimension
    return len(embeddings.embed_query("dimension probe"))


class UserHistoryStore(HistoryBackend):
    """Per-user exact vector store over a user's past texts: the embedded history backend.

    Example:
        ```python
        store = UserHistoryStore()  # all-MiniLM-L6-v2, loaded on first use
        store.add_texts("alice", ["Announcing Rust 1.75.0", "Rust 1.74.1 released"])
        store.search("alice", "new Rust version", k=1)
        store.save("history.zip")
        store = UserHistoryStore.load("history.zip")
        ```

    Thread-safe: embeddings are computed outside the store's lock (they are the slow part),
    index changes and searches happen inside it.

    Args:
        embeddings: Any LangChain embeddings. ``None`` uses the process-wide default
            all-MiniLM-L6-v2 (:func:`langchain_rpo.embeddings.default_embeddings`), resolved on
            first use so that constructing a store is cheap.
    """

    def __init__(self, embeddings: Embeddings | None = None) -> None:
        self._embeddings = embeddings
        self._users: dict[str, _UserIndex] = {}
        self._dim: int | None = None
        self._lock = threading.RLock()
        self._feedback = EventLog()  # saved in the zip beside the items (history_file v2)

    def __repr__(self) -> str:
        with self._lock:
            return f"{type(self).__name__}(users={len(self._users)}, items={self._total()})"

    # ------------------------------------------------------------------ embeddings

    @property
    def embeddings(self) -> Embeddings:
        """The embeddings model (the default one is resolved here, on first use)."""
        if self._embeddings is None:
            self._embeddings = default_embeddings()
        return self._embeddings

    @property
    def dim(self) -> int | None:
        """The embedding width, or ``None`` while the store has never held a vector."""
        return self._dim

    def _embed_documents(self, texts: list[str]) -> np.ndarray:
        embeddings = self.embeddings
        if isinstance(embeddings, SentenceTransformerEmbeddings):
            raw: Any = embeddings.encode(texts)  # skips the list round trip
        else:
            raw = embeddings.embed_documents(texts)
        if len(raw) != len(texts):
            raise ValueError(f"The embeddings returned {len(raw)} vectors for {len(texts)} texts.")
        return normalised_vectors(raw, self._dim, "the embeddings model's vector for texts[{i}]")

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query the way :meth:`search` does.

        Args:
            text: The query.

        Returns:
            A 1-D float32 L2-normalised vector, ready for :meth:`search_by_vector`.
        """
        if not isinstance(text, str):
            raise ValueError(f"query must be a string, got {type(text).__name__}.")
        embeddings = self.embeddings
        if isinstance(embeddings, SentenceTransformerEmbeddings):
            raw: Any = embeddings.encode([text])
        else:
            raw = embeddings.embed_query(text)
        return normalised_vectors(raw, self._dim, "the embeddings model's query vector")[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of queries, in one ``encode`` call for sentence-transformers models.

        Other embeddings get one ``embed_query`` call per text, which keeps query-specific
        behaviour (some models embed queries differently from documents).

        Args:
            texts: The queries.

        Returns:
            A ``(len(texts), dim)`` float32 array of L2-normalised rows, each ready for
            :meth:`search_by_vector`.
        """
        queries = check_str_sequence(texts, "texts")
        embeddings = self.embeddings
        if not queries:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        if isinstance(embeddings, SentenceTransformerEmbeddings):
            raw: Any = embeddings.encode(queries)
        else:
            raw = [embeddings.embed_query(q) for q in queries]
        return normalised_vectors(raw, self._dim, "the embeddings model's vector for texts[{i}]")

    # ------------------------------------------------------------------ writes

    def add_texts(
        self,
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add texts to a user's history.

        Re-adding an existing id replaces that item (text, metadata and vector).

        Args:
            user_id: The user.
            texts: The texts to add.
            metadatas: One JSON-serialisable dict per text (optional).
            ids: One unique string id per text (optional; uuid4 hex by default).

        Returns:
            The ids of the added items, in order.

        Raises:
            ValueError: Before anything changes, naming the item (``texts[3]``,
                ``metadatas[0]['tags']``): an invalid user id; mismatched lengths; empty or
                duplicate ids; a string UTF-8 cannot encode (a lone surrogate) in the user id, a
                text, an id, a metadata key or value; metadata that is not a dict or that JSON
                cannot store exactly (non-string keys, NaN, sets, nesting deeper than
                :data:`~langchain_rpo.history_checks.MAX_METADATA_DEPTH`); or a vector from the
                embeddings model that is not finite, is zero, or has another width than the
                store's.
        """
        user_id, texts, metas, item_ids = self._checked_items(user_id, texts, metadatas, ids)
        if not texts:
            return []
        vectors = self._embed_documents(texts)  # outside the lock: the slow part
        self._insert(user_id, texts, metas, item_ids, vectors)
        return item_ids

    def add_embeddings(
        self,
        user_id: str,
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]] | np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add texts whose vectors were computed elsewhere (same model as the store's).

        Like :meth:`add_texts`, without calling the embeddings model: for vectors computed in
        bulk beforehand (on a GPU, by a batch job, or carried over from another store). The
        vectors are L2-normalised here, as :meth:`add_texts` does.

        Args:
            user_id: The user.
            texts: The texts.
            embeddings: One vector per text (a 2-D array or a list of lists), finite and
                non-zero, of the store's width.
            metadatas: One JSON-serialisable dict per text (optional).
            ids: One unique string id per text (optional; uuid4 hex by default).

        Returns:
            The ids of the added items, in order.

        Raises:
            ValueError: As :meth:`add_texts` (a bad vector is named ``embeddings[i]``), and when
                the number of vectors differs from the number of texts.
        """
        user_id, texts, metas, item_ids = self._checked_items(user_id, texts, metadatas, ids)
        if not texts or len(embeddings) == 0:
            if texts or len(embeddings):
                raise ValueError(
                    f"Got {len(texts)} texts but {len(embeddings)} embeddings; pass one per text."
                )
            return []
        vectors = normalised_vectors(embeddings, self._dim, "embeddings[{i}]")
        if vectors.shape[0] != len(texts):  # (one flat vector is one row)
            raise ValueError(
                f"Got {len(texts)} texts but {vectors.shape[0]} embeddings; pass one per text."
            )
        self._insert(user_id, texts, metas, item_ids, vectors)
        return item_ids

    @staticmethod
    def _checked_items(
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None,
        ids: Sequence[str] | None,
    ) -> tuple[str, list[str], list[dict[str, Any]], list[str]]:
        """Check an add call's arguments (:func:`~langchain_rpo.history_checks.check_add_call`)."""
        return check_add_call(user_id, texts, metadatas, ids)

    def _insert(
        self,
        user_id: str,
        texts: list[str],
        metas: list[dict[str, Any]],
        item_ids: list[str],
        vectors: np.ndarray,
    ) -> None:
        """Add checked items with their normalised vectors to a user's index, under the lock."""
        n = len(texts)
        with self._lock:
            if self._dim is None:
                self._dim = int(vectors.shape[1])
            elif vectors.shape[1] != self._dim:  # another thread fixed the width meanwhile
                raise ValueError(
                    f"Embedding dimension mismatch: got vectors of width {vectors.shape[1]}, "
                    f"but this store holds vectors of width {self._dim}."
                )
            user = self._users.get(user_id)
            if user is None:
                user = self._users[user_id] = _UserIndex.empty(self._dim)
            replaced = [user.str_to_int[i] for i in item_ids if i in user.str_to_int]
            if replaced:
                user.index.remove_ids(np.asarray(replaced, dtype=np.int64))
                for int_id in replaced:
                    del user.int_to_str[int_id]
            int_ids = np.arange(user.next_int, user.next_int + n, dtype=np.int64)
            user.next_int += n
            user.index.add_with_ids(vectors, int_ids)
            for item_id, int_id, text, meta in zip(item_ids, int_ids.tolist(), texts, metas):
                user.docs[item_id] = {"page_content": text, "metadata": meta}
                user.str_to_int[item_id] = int_id
                user.int_to_str[int_id] = item_id

    def add_documents(self, user_id: str, docs: Sequence[Document]) -> list[str]:
        """Add documents to a user's history (``doc.id`` is used when set).

        Args:
            user_id: The user.
            docs: The documents.

        Returns:
            The ids of the added items, in order.
        """
        docs = list(docs)
        ids = [doc.id or uuid.uuid4().hex for doc in docs]
        return self.add_texts(
            user_id,
            [doc.page_content for doc in docs],
            metadatas=[doc.metadata for doc in docs],
            ids=ids,
        )

    def delete(self, user_id: str, ids: Sequence[str]) -> int:
        """Delete items from a user's history; unknown ids are ignored.

        A user whose last item is deleted is forgotten (as with :meth:`forget`).

        Args:
            user_id: The user.
            ids: The item ids.

        Returns:
            How many items were deleted.
        """
        user_id = check_user_id(user_id)
        wanted = check_str_sequence(ids, "ids")
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return 0
            found = list(dict.fromkeys(i for i in wanted if i in user.docs))
            if not found:
                return 0
            int_ids = [user.str_to_int.pop(i) for i in found]
            user.index.remove_ids(np.asarray(int_ids, dtype=np.int64))
            for item_id, int_id in zip(found, int_ids):
                del user.docs[item_id]
                del user.int_to_str[int_id]
            if not user.docs:
                del self._users[user_id]
            return len(found)

    def forget(self, user_id: str) -> int:
        """Drop a user's whole history.

        Args:
            user_id: The user.

        Returns:
            How many items the user had (0, falsy, when the user had no history).
        """
        user_id = check_user_id(user_id)
        with self._lock:
            user = self._users.pop(user_id, None)
            self._feedback.forget(user_id)
            return 0 if user is None else len(user.docs)

    # ------------------------------------------------------------------ feedback events

    def add_feedback(self, user_id: str, events: Sequence[FeedbackEvent]) -> int:
        """Store feedback events of one user (see :meth:`HistoryBackend.add_feedback`).

        Kept in memory and written by :meth:`save` as the user's ``feedback/*.jsonl`` member.
        """
        user_id = check_user_id(user_id)
        checked = check_events(user_id, events)
        with self._lock:
            return self._feedback.add(user_id, checked)

    def feedback(self, user_id: str) -> list[FeedbackEvent]:
        """The user's feedback events in time order."""
        return self._feedback.events(check_user_id(user_id))

    def delete_feedback(self, user_id: str, event_ids: Sequence[str]) -> int:
        """Delete the user's events by id; unknown ids are ignored. Returns how many went."""
        user_id = check_user_id(user_id)
        wanted = check_str_sequence(event_ids, "event_ids")
        with self._lock:
            return self._feedback.delete(user_id, wanted)

    def feedback_users(self) -> list[str]:
        """The users that have feedback events, sorted."""
        return self._feedback.users()

    # ------------------------------------------------------------------ reads

    def search_with_scores_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[tuple[Document, float]]:
        """Return a user's ``k`` items nearest to an embedded query, with cosine similarities.

        Args:
            user_id: The user.
            vector: The query vector (normalised here, so any scale works).
            k: How many items at most.

        Returns:
            ``(document, score)`` pairs, most similar first; each document has ``.id`` set and
            its stored metadata plus ``"score"``. An unknown user, an empty history or ``k=0``
            gives ``[]``.

        Raises:
            ValueError: On an invalid user id; a ``k`` that is not an ``int`` of 0 or more
                (``bool`` and ``float`` are refused, NumPy integers accepted); a vector that is
                not finite, is zero, has another width than the store's, or is more than one.
        """
        user_id = check_user_id(user_id)
        k = check_k(k)
        query = normalised_vectors(vector, self._dim, "the query vector")
        if query.shape[0] != 1:
            raise ValueError(
                f"search_by_vector takes one vector, got {query.shape[0]}; call it per row."
            )
        if k == 0:
            return []
        with self._lock:
            user = self._users.get(user_id)
            if user is None or user.index.ntotal == 0:
                return []
            if query.shape[1] != self._dim:  # the store was empty when the vector was checked
                raise ValueError(
                    f"Embedding dimension mismatch: got a query vector of width "
                    f"{query.shape[1]}, but this store holds vectors of width {self._dim}."
                )
            scores, int_ids = user.index.search(query, min(k, user.index.ntotal))
            hits = []
            for score, int_id in zip(scores[0].tolist(), int_ids[0].tolist()):
                if int_id < 0:
                    continue
                item_id = user.int_to_str[int_id]
                hits.append((item_id, user.docs[item_id], float(score)))
        # Documents are built outside the lock; the item dicts are replaced, never mutated.
        return [
            (
                Document(
                    id=item_id,
                    page_content=item["page_content"],
                    metadata={**item["metadata"], "score": score},
                ),
                score,
            )
            for item_id, item, score in hits
        ]

    def search_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[Document]:
        """Like :meth:`search`, for a query already embedded (see :meth:`embed_queries`).

        Args:
            user_id: The user.
            vector: The query vector.
            k: How many items at most.

        Returns:
            Documents, most similar first, with ``metadata["score"]`` (cosine similarity).

        Raises:
            ValueError: As :meth:`search_with_scores_by_vector`.
        """
        return [doc for doc, _ in self.search_with_scores_by_vector(user_id, vector, k)]

    def search_with_scores(
        self, user_id: str, query: str, k: int = 4
    ) -> list[tuple[Document, float]]:
        """Return a user's ``k`` items most similar to ``query``, with cosine similarities.

        Args:
            user_id: The user.
            query: The query text.
            k: How many items at most.

        Returns:
            ``(document, score)`` pairs, most similar first. An unknown user, an empty history
            or ``k=0`` gives ``[]`` (without embedding the query).

        Raises:
            ValueError: On an invalid user id, a query that is not a string, a ``k`` that is not
                an ``int`` of 0 or more, or a query vector from the embeddings model that is not
                finite or is zero.
        """
        user_id = check_user_id(user_id)
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}.")
        k = check_k(k)
        if k == 0 or self.count(user_id) == 0:
            return []
        return self.search_with_scores_by_vector(user_id, self.embed_query(query), k)

    def search(self, user_id: str, query: str, k: int = 4) -> list[Document]:
        """Return a user's ``k`` items most similar to ``query``.

        Only this user's items are searched, ever.

        Args:
            user_id: The user.
            query: The query text.
            k: How many items at most.

        Returns:
            Documents, most similar first; each has ``.id`` set and its stored metadata plus
            ``"score"`` (cosine similarity; it shadows a stored ``"score"`` key). An unknown
            user, an empty history or ``k=0`` gives ``[]``.

        Raises:
            ValueError: As :meth:`search_with_scores`.
        """
        return [doc for doc, _ in self.search_with_scores(user_id, query, k)]

    def get(self, user_id: str, ids: Sequence[str]) -> list[Document]:
        """Return a user's items by id, in the order asked; unknown ids are skipped.

        Args:
            user_id: The user.
            ids: The item ids.

        Returns:
            The documents found.
        """
        user_id = check_user_id(user_id)
        wanted = check_str_sequence(ids, "ids")
        with self._lock:
            user = self._users.get(user_id)
            found = [] if user is None else [(i, user.docs[i]) for i in wanted if i in user.docs]
        return [
            Document(id=i, page_content=item["page_content"], metadata=dict(item["metadata"]))
            for i, item in found
        ]

    def iter_items(self, user_id: str, *, with_vectors: bool = False) -> Iterator[HistoryRecord]:
        """Every item of one user, in insertion order (a snapshot taken under the lock).

        Args:
            user_id: The user.
            with_vectors: Include each item's (normalised) vector.

        Yields:
            One :class:`~langchain_rpo.history_backend.HistoryRecord` per item.
        """
        user_id = check_user_id(user_id)
        with self._lock:
            user = self._users.get(user_id)
            if user is None:
                return
            items = [(i, doc, user.str_to_int[i]) for i, doc in user.docs.items()]
            vectors = (
                {int_id: user.index.reconstruct(int_id).tolist() for _, _, int_id in items}
                if with_vectors
                else {}
            )
        for item_id, doc, int_id in items:
            yield HistoryRecord(
                user_id=user_id,
                id=item_id,
                text=doc["page_content"],
                metadata=dict(doc["metadata"]),
                vector=vectors.get(int_id),
            )

    def users(self) -> list[str]:
        """Return the users that have history, sorted."""
        with self._lock:
            return sorted(self._users)

    def count(self, user_id: str) -> int:
        """Return how many items a user has (0 for an unknown user)."""
        user_id = check_user_id(user_id)
        with self._lock:
            user = self._users.get(user_id)
            return 0 if user is None else len(user.docs)

    def counts(self) -> dict[str, int]:
        """Return the number of items of every user."""
        with self._lock:
            return {uid: len(user.docs) for uid, user in sorted(self._users.items())}

    def _total(self) -> int:
        return sum(len(user.docs) for user in self._users.values())

    def __len__(self) -> int:
        with self._lock:
            return self._total()

    def __contains__(self, user_id: object) -> bool:
        with self._lock:
            return isinstance(user_id, str) and user_id in self._users

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the store to one zip file, atomically (format: :mod:`langchain_rpo.history_file`).

        The file is written under a temporary name in the same folder, flushed to disk and
        renamed over ``path``: a crash mid-save leaves the previous save intact, and the next
        save to ``path`` removes the temporary file a killed save left behind.

        Args:
            path: The file to write.

        Raises:
            ValueError: When one user's texts and metadata, or the list of users, exceed the
                file format's size limits (``path`` is untouched).
        """
        # Resolving the default embeddings only builds a small object; it loads no model.
        embeddings_id = _embeddings_identifier(self.embeddings)
        with self._lock:
            # A snapshot under the lock (array and list copies); encoding and disk writes happen
            # outside it. Item dicts are replaced, never mutated, so sharing them is safe.
            snapshot = history_file.StoredHistory(
                dim=self._dim,
                embeddings=embeddings_id,
                users=[user.stored(uid) for uid, user in sorted(self._users.items())],
                feedback=self._feedback.stored(),
            )
        history_file.write(path, snapshot)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], embeddings: Embeddings | None = None
    ) -> UserHistoryStore:
        """Load a store written by :meth:`save`.

        The whole file is checked before anything is built (see
        :mod:`langchain_rpo.history_file`): a damaged or crafted file loads nothing.

        Args:
            path: The file.
            embeddings: The embeddings to use from now on; they must be the model the store was
                built with (its dimension is checked here when given, else on first use).
                ``None`` uses the default all-MiniLM-L6-v2.

        Returns:
            The store.

        Raises:
            HistoryFileError: When the file is not a history store, has a format version this
                code does not read, or is damaged or inconsistent in any way (a ``ValueError``).
            ValueError: When ``embeddings`` has another dimension than the stored vectors.
            OSError: When the file cannot be opened.
        """
        stored = history_file.read(path)
        dim = stored.dim
        if embeddings is not None and dim is not None:
            actual = _embedding_dim(embeddings)
            if actual != dim:
                raise ValueError(
                    f"{path} holds {dim}-dimensional vectors (embeddings {stored.embeddings!r}), "
                    f"but the given embeddings produce {actual}-dimensional ones. Load it "
                    "with the embeddings model it was built with."
                )
            if stored.embeddings and _embeddings_identifier(embeddings) != stored.embeddings:
                warnings.warn(
                    f"{path} was built with embeddings {stored.embeddings!r}, loading with "
                    f"{_embeddings_identifier(embeddings)!r}: same width, but searches "
                    "are only meaningful with the same model.",
                    stacklevel=2,
                )
        store = cls(embeddings)
        store._dim = dim
        for user in stored.users:
            store._users[user.user_id] = _UserIndex.from_stored(user, dim)  # type: ignore[arg-type]
        store._feedback.replace_all(stored.feedback)
        return store
