"""The per-user history protocol: what every history backend does, one user at a time.

``RPORewriter``, ``HistoryRetriever``, the LlamaIndex engine, the LaMP harness and the demo use
a history only through :class:`HistoryBackend`, so any backend serves them: the embedded FAISS
store (:class:`~langchain_rpo.history.UserHistoryStore`, the default), PostgreSQL + pgvector, or
any LangChain vector store.

Every call names its user, and no call can reach another user's items: that is the contract each
backend keeps (and the contract tests in ``tests/unit/test_history_contract.py`` check), however
it stores them. Inputs are held to the same rules everywhere (:mod:`langchain_rpo.history_checks`).

A backend implements the abstract methods; the rest (documents, scores, async twins, export)
have working defaults written in terms of those.

**Feedback events** (:class:`~langchain_rpo.feedback.FeedbackEvent`: a user's reaction to an
answer) live beside the user's history: :meth:`HistoryBackend.add_feedback`,
:meth:`HistoryBackend.feedback`, :meth:`HistoryBackend.delete_feedback`. ``forget`` erases a
user's events with their items; ``delete`` of items leaves events alone (an event is a record of
what happened, and it holds its own copy of the texts it recalled, see
:mod:`langchain_rpo.feedback`). The built-in backends implement them; a third-party backend
that does not raises ``NotImplementedError`` naming the method, rather than losing events.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from langchain_rpo.embeddings import SentenceTransformerEmbeddings
from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.history_checks import check_add_call, check_k, check_query, check_user_id

__all__ = ["HistoryBackend", "HistoryRecord", "embeddings_identifier"]


def embeddings_identifier(embeddings: Embeddings) -> str:
    """A short name for an embeddings model, recorded wherever vectors are stored or exported.

    Vectors are only comparable when they come from the same model: backends save this name
    beside their vectors, and ``rpo history import`` refuses vectors whose name differs from
    the target's.

    Args:
        embeddings: The embeddings.

    Returns:
        ``SentenceTransformerEmbeddings.identifier``, else ``"ClassName:model"`` when the object
        names its model, else the class name.
    """
    if isinstance(embeddings, SentenceTransformerEmbeddings):
        return embeddings.identifier
    for attr in ("model_name", "model", "model_name_or_path"):
        value = getattr(embeddings, attr, None)
        if isinstance(value, str) and value:
            return f"{type(embeddings).__name__}:{value}"
    return type(embeddings).__name__


@dataclass(frozen=True)
class HistoryRecord:
    """One history item as it travels between backends (``rpo history export``/``import``).

    Attributes:
        user_id: Whose item it is.
        id: The item's id (unique within the user).
        text: The item's text.
        metadata: Its JSON metadata.
        vector: Its embedding (normalised), when the export includes vectors.
    """

    user_id: str
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: list[float] | None = None


class HistoryBackend(ABC):
    """Per-user history: add, search, get, delete, forget, count, export; every call names its user.

    Searches are by cosine similarity over the backend's embeddings; each returned
    ``Document`` has ``.id`` set and ``metadata["score"]``.
    """

    # ------------------------------------------------------------------ what a backend implements

    @property
    @abstractmethod
    def embeddings(self) -> Embeddings:
        """The embeddings model that texts and queries are embedded with."""

    @abstractmethod
    def add_embeddings(
        self,
        user_id: str,
        texts: Sequence[str],
        embeddings: Sequence[Sequence[float]] | np.ndarray,
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add texts with vectors computed elsewhere (same model); an existing id is replaced.

        Returns:
            The ids of the added items, in order.

        Raises:
            ValueError: On any input the backend could not store or give back exactly; the
                whole call is refused and nothing changes.
        """

    @abstractmethod
    def search_with_scores_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[tuple[Document, float]]:
        """The user's ``k`` items nearest to an embedded query, most similar first, with scores."""

    @abstractmethod
    def get(self, user_id: str, ids: Sequence[str]) -> list[Document]:
        """The user's items by id, in the order asked; unknown ids are skipped."""

    @abstractmethod
    def delete(self, user_id: str, ids: Sequence[str]) -> int:
        """Delete the user's items by id; unknown ids are ignored. Returns how many went."""

    @abstractmethod
    def forget(self, user_id: str) -> int:
        """Delete the user's whole history, feedback events included. Returns how many items it held.

        The events go too because they hold copies of the user's texts (their edits, the items
        an answer recalled): erasing a user must leave none of their words behind.
        """

    @abstractmethod
    def users(self) -> list[str]:
        """The users that have history, sorted."""

    @abstractmethod
    def count(self, user_id: str) -> int:
        """How many items the user has (0 for an unknown user)."""

    @abstractmethod
    def iter_items(self, user_id: str, *, with_vectors: bool = False) -> Iterator[HistoryRecord]:
        """Every item of one user (in a stable order), for export."""

    # ------------------------------------------------------------------ feedback events

    def add_feedback(self, user_id: str, events: Sequence[FeedbackEvent]) -> int:
        """Store feedback events of one user; an event whose id is stored already is replaced.

        The call is checked whole first (:func:`~langchain_rpo.feedback.check_events`): a list
        of events, all of this user, no event id twice; a bad call stores nothing.

        Returns:
            How many events were stored.

        Raises:
            ValueError: On a call :func:`~langchain_rpo.feedback.check_events` refuses.
            NotImplementedError: When this backend does not keep feedback events.
        """
        raise self._no_feedback("add_feedback")

    def feedback(self, user_id: str) -> list[FeedbackEvent]:
        """The user's feedback events in time order (same instant: the order they were stored)."""
        raise self._no_feedback("feedback")

    def delete_feedback(self, user_id: str, event_ids: Sequence[str]) -> int:
        """Delete the user's events by id; unknown ids are ignored. Returns how many went.

        Deleting an event leaves the history item its final text became (``delete`` that
        item by id when it should go too: its metadata holds ``event_id``).
        """
        raise self._no_feedback("delete_feedback")

    def feedback_users(self) -> list[str]:
        """The users that have feedback events, sorted (a user may have events and no items)."""
        raise self._no_feedback("feedback_users")

    def _no_feedback(self, method: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} does not keep feedback events ({method}). Fix: implement "
            "add_feedback, feedback, delete_feedback and feedback_users (and erase events in "
            "forget), or use a built-in backend (UserHistoryStore, PostgresHistory, "
            "VectorStoreHistory)."
        )

    # ------------------------------------------------------------------ defaults

    def counts(self) -> dict[str, int]:
        """The number of items of every user."""
        return {user: self.count(user) for user in self.users()}

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of queries: a ``(len(texts), dim)`` float32 array of normalised rows."""
        rows = [self.embeddings.embed_query(text) for text in texts]
        array = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        return array / np.where(norms == 0, 1, norms)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query the way :meth:`search` does."""
        return self.embed_queries([text])[0]

    def add_texts(
        self,
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Embed texts with :attr:`embeddings` and add them (an existing id is replaced).

        The call is checked (:func:`~langchain_rpo.history_checks.check_add_call`) before the
        embeddings model sees anything, so a bad text fails as a ``ValueError`` naming it, not
        as whatever the model raises.
        """
        user_id, texts, metas, item_ids = check_add_call(user_id, texts, metadatas, ids)
        vectors = self.embeddings.embed_documents(texts) if texts else []
        if len(vectors) != len(texts):
            raise ValueError(
                f"The embeddings returned {len(vectors)} vectors for {len(texts)} texts."
            )
        return self.add_embeddings(user_id, texts, vectors, metas, item_ids)

    def add_documents(self, user_id: str, docs: Sequence[Document]) -> list[str]:
        """Add documents (``doc.id`` is used when set)."""
        docs = list(docs)
        return self.add_texts(
            user_id,
            [doc.page_content for doc in docs],
            metadatas=[doc.metadata for doc in docs],
            ids=[doc.id or uuid.uuid4().hex for doc in docs],
        )

    def search_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[Document]:
        """Like :meth:`search`, for a query already embedded."""
        return [doc for doc, _ in self.search_with_scores_by_vector(user_id, vector, k)]

    def search_with_scores(
        self, user_id: str, query: str, k: int = 4
    ) -> list[tuple[Document, float]]:
        """The user's ``k`` items most similar to ``query``, with cosine similarities.

        An unknown user, an empty history or ``k=0`` gives ``[]`` without embedding the query.
        """
        user_id = check_user_id(user_id)
        check_query(query)
        k = check_k(k)
        if k == 0 or self.count(user_id) == 0:
            return []
        return self.search_with_scores_by_vector(user_id, self.embed_query(query), k)

    def search(self, user_id: str, query: str, k: int = 4) -> list[Document]:
        """The user's ``k`` items most similar to ``query``; only this user's items, ever."""
        return [doc for doc, _ in self.search_with_scores(user_id, query, k)]

    def export(
        self, user_ids: Sequence[str] | None = None, *, with_vectors: bool = False
    ) -> Iterator[HistoryRecord]:
        """Every item of the given users (default: all), user by user, streaming."""
        for user in self.users() if user_ids is None else user_ids:
            yield from self.iter_items(user, with_vectors=with_vectors)

    # ------------------------------------------------------------------ async twins

    async def aadd_texts(
        self,
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Async twin of :meth:`add_texts` (in an executor thread unless a backend overrides it)."""
        return await run_in_executor(None, self.add_texts, user_id, texts, metadatas, ids)

    async def asearch(self, user_id: str, query: str, k: int = 4) -> list[Document]:
        """Async twin of :meth:`search`."""
        return await run_in_executor(None, self.search, user_id, query, k)

    async def asearch_by_vector(
        self, user_id: str, vector: Sequence[float] | np.ndarray, k: int = 4
    ) -> list[Document]:
        """Async twin of :meth:`search_by_vector`."""
        return await run_in_executor(None, self.search_by_vector, user_id, vector, k)

    async def adelete(self, user_id: str, ids: Sequence[str]) -> int:
        """Async twin of :meth:`delete`."""
        return await run_in_executor(None, self.delete, user_id, ids)

    async def aforget(self, user_id: str) -> int:
        """Async twin of :meth:`forget`."""
        return await run_in_executor(None, self.forget, user_id)

    async def aadd_feedback(self, user_id: str, events: Sequence[FeedbackEvent]) -> int:
        """Async twin of :meth:`add_feedback`."""
        return await run_in_executor(None, self.add_feedback, user_id, events)

    async def adelete_feedback(self, user_id: str, event_ids: Sequence[str]) -> int:
        """Async twin of :meth:`delete_feedback`."""
        return await run_in_executor(None, self.delete_feedback, user_id, event_ids)

    async def aget(self, user_id: str, ids: Sequence[str]) -> list[Document]:
        """Async twin of :meth:`get`."""
        return await run_in_executor(None, self.get, user_id, ids)

    async def acount(self, user_id: str) -> int:
        """Async twin of :meth:`count`."""
        return await run_in_executor(None, self.count, user_id)
