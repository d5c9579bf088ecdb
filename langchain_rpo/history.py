"""Per-user history: one exact FAISS index per user and a JSON docstore, saved without pickle.

Each user owns a ``faiss.IndexIDMap2(faiss.IndexFlatIP(dim))`` over L2-normalised float32
vectors, so an inner-product search is an exact cosine search, and items can be removed by id.
Keeping users in separate indexes makes isolation structural: a search only ever looks at the
asking user's vectors, and forgetting a user drops their whole index.

Items have string ids (uuid4 hex by default, or the caller's); each maps to an int64 FAISS id
that is private to the user's index.

A saved store is a single zip file, written atomically (temp file in the same folder, fsync,
``os.replace``), holding ``manifest.json``, and per user a JSON docstore and the index bytes from
``faiss.serialize_index``. Nothing is pickled, so loading a file cannot run code from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import uuid
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from langchain_rpo.embeddings import SentenceTransformerEmbeddings, default_embeddings

__all__ = ["UserHistoryStore", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "langchain-rpo-history"
FORMAT_VERSION = 1
_MANIFEST = "manifest.json"


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


def _check_user_id(user_id: object) -> str:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(
            f"user_id must be a non-empty string, got {user_id!r}. Pass the id that names "
            "the user, for example config={'configurable': {'user_id': 'alice'}}."
        )
    return user_id


def _check_str_sequence(values: object, name: str) -> list[str]:
    # A bare string is a Sequence[str] too; iterating it character by character is never meant.
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of strings, got {type(values).__name__}.")
    out = list(values)
    for i, value in enumerate(out):
        if not isinstance(value, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(value).__name__}.")
    return out


def _normalised(vectors: Any, dim: int | None = None) -> np.ndarray:
    """Return a C-contiguous float32 copy of ``vectors`` (2-D), L2-normalised row by row."""
    array = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"Expected a vector or a 2-D array of vectors, got shape {array.shape}.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(
            f"Embedding dimension mismatch: got vectors of width {array.shape[1]}, but this "
            f"store holds vectors of width {dim}. Use the same embeddings model the store was "
            "built with."
        )
    # Normalise here whatever the Embeddings returned, so inner product is cosine similarity.
    faiss.normalize_L2(array)
    return array


def _embeddings_identifier(embeddings: Embeddings) -> str:
    if isinstance(embeddings, SentenceTransformerEmbeddings):
        return embeddings.identifier
    for attr in ("model_name", "model", "model_name_or_path"):
        value = getattr(embeddings, attr, None)
        if isinstance(value, str) and value:
            return f"{type(embeddings).__name__}:{value}"
    return type(embeddings).__name__


def _embedding_dim(embeddings: Embeddings) -> int:
    if isinstance(embeddings, SentenceTransformerEmbeddings):
        return embeddings.dimension
    return len(embeddings.embed_query("dimension probe"))


class UserHistoryStore:
    """Per-user exact vector store over a user's past texts.

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
            raise ValueError(
                f"The embeddings returned {len(raw)} vectors for {len(texts)} texts."
            )
        return _normalised(raw, self._dim)

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
        return _normalised(raw, self._dim)[0]

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
        queries = _check_str_sequence(texts, "texts")
        embeddings = self.embeddings
        if not queries:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        if isinstance(embeddings, SentenceTransformerEmbeddings):
            raw: Any = embeddings.encode(queries)
        else:
            raw = [embeddings.embed_query(q) for q in queries]
        return _normalised(raw, self._dim)

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
            ValueError: On an invalid user id, mismatched lengths, duplicate ids, metadata that
                JSON cannot store, or vectors whose width differs from the store's.
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
            embeddings: One vector per text (a 2-D array or a list of lists).
            metadatas: One JSON-serialisable dict per text (optional).
            ids: One unique string id per text (optional; uuid4 hex by default).

        Returns:
            The ids of the added items, in order.

        Raises:
            ValueError: As :meth:`add_texts`, and when the number of vectors differs from the
                number of texts.
        """
        user_id, texts, metas, item_ids = self._checked_items(user_id, texts, metadatas, ids)
        vectors = _normalised(embeddings, self._dim) if len(embeddings) else None
        count = 0 if vectors is None else vectors.shape[0]
        if count != len(texts):
            raise ValueError(f"Got {len(texts)} texts but {count} embeddings; pass one per text.")
        if not texts:
            return []
        self._insert(user_id, texts, metas, item_ids, vectors)
        return item_ids

    @staticmethod
    def _checked_items(
        user_id: str,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]] | None,
        ids: Sequence[str] | None,
    ) -> tuple[str, list[str], list[dict[str, Any]], list[str]]:
        """Validate an add call's arguments; return them as lists, ids generated when absent."""
        user_id = _check_user_id(user_id)
        texts = _check_str_sequence(texts, "texts")
        n = len(texts)
        if metadatas is None:
            metas: list[dict[str, Any]] = [{} for _ in range(n)]
        else:
            metas = [dict(m) if m is not None else {} for m in metadatas]
            if len(metas) != n:
                raise ValueError(
                    f"Got {n} texts but {len(metas)} metadatas; pass one metadata dict per "
                    "text, or metadatas=None."
                )
        if ids is None:
            item_ids = [uuid.uuid4().hex for _ in range(n)]
        else:
            item_ids = _check_str_sequence(ids, "ids")
            if len(item_ids) != n:
                raise ValueError(
                    f"Got {n} texts but {len(item_ids)} ids; pass one id per text, or ids=None "
                    "to generate them."
                )
            if any(not i for i in item_ids):
                raise ValueError("ids must be non-empty strings.")
            if len(set(item_ids)) != n:
                raise ValueError(
                    "ids must be unique within one call; to replace an item, add it once with "
                    "its existing id."
                )
        try:
            # Checked now, so that save() cannot fail later; the round trip also deep-copies,
            # so the caller mutating nested values afterwards cannot change the store.
            metas = json.loads(json.dumps(metas, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"metadatas must be JSON-serialisable (str keys; str, number, bool, None, list, "
                f"dict values): {exc}"
            ) from exc
        return user_id, texts, metas, item_ids

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
        user_id = _check_user_id(user_id)
        wanted = _check_str_sequence(ids, "ids")
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

    def forget(self, user_id: str) -> bool:
        """Drop a user's whole history.

        Args:
            user_id: The user.

        Returns:
            Whether the user had any history.
        """
        user_id = _check_user_id(user_id)
        with self._lock:
            return self._users.pop(user_id, None) is not None

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
            its stored metadata plus ``"score"``. An unknown user, an empty history or
            ``k <= 0`` gives ``[]``.
        """
        user_id = _check_user_id(user_id)
        if k <= 0:
            return []
        with self._lock:
            user = self._users.get(user_id)
            if user is None or user.index.ntotal == 0:
                return []
            query = _normalised(vector, self._dim)
            if query.shape[0] != 1:
                raise ValueError(
                    f"search_by_vector takes one vector, got {query.shape[0]}; call it per row."
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
            or ``k <= 0`` gives ``[]`` (without embedding the query).
        """
        user_id = _check_user_id(user_id)
        if k <= 0 or self.count(user_id) == 0:
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
            user, an empty history or ``k <= 0`` gives ``[]``.
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
        user_id = _check_user_id(user_id)
        wanted = _check_str_sequence(ids, "ids")
        with self._lock:
            user = self._users.get(user_id)
            found = [] if user is None else [(i, user.docs[i]) for i in wanted if i in user.docs]
        return [
            Document(id=i, page_content=item["page_content"], metadata=dict(item["metadata"]))
            for i, item in found
        ]

    def users(self) -> list[str]:
        """Return the users that have history, sorted."""
        with self._lock:
            return sorted(self._users)

    def count(self, user_id: str) -> int:
        """Return how many items a user has (0 for an unknown user)."""
        user_id = _check_user_id(user_id)
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
        """Save the store to one zip file, atomically.

        The file is written under a temporary name in the same folder, flushed to disk and
        renamed over ``path``: a crash mid-save leaves the previous save intact.

        Args:
            path: The file to write.
        """
        target = Path(path)
        # Resolving the default embeddings only builds a small object; it loads no model.
        embeddings_id = _embeddings_identifier(self.embeddings)
        with self._lock:
            # Snapshot under the lock (cheap copies); the disk writes happen outside it.
            manifest: dict[str, Any] = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "dim": self._dim,
                "embeddings": embeddings_id,
                "users": [],
            }
            entries: list[tuple[str, bytes, str, bytes]] = []
            for n, (uid, user) in enumerate(sorted(self._users.items())):
                folder = f"users/{n:06d}"
                docstore = {
                    "next_int": user.next_int,
                    "items": [
                        {
                            "id": item_id,
                            "faiss_id": user.str_to_int[item_id],
                            "page_content": item["page_content"],
                            "metadata": item["metadata"],
                        }
                        for item_id, item in user.docs.items()
                    ],
                }
                manifest["users"].append(
                    {
                        "user_id": uid,
                        "count": len(user.docs),
                        "docstore": f"{folder}/docstore.json",
                        "index": f"{folder}/index.faiss",
                    }
                )
                entries.append(
                    (
                        f"{folder}/docstore.json",
                        json.dumps(docstore, ensure_ascii=False).encode("utf-8"),
                        f"{folder}/index.faiss",
                        faiss.serialize_index(user.index).tobytes(),
                    )
                )
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                with zipfile.ZipFile(fh, "w") as archive:
                    archive.writestr(
                        _MANIFEST, json.dumps(manifest, indent=2), zipfile.ZIP_DEFLATED
                    )
                    for doc_name, doc_bytes, index_name, index_bytes in entries:
                        archive.writestr(doc_name, doc_bytes, zipfile.ZIP_DEFLATED)
                        # Float vectors barely compress; storing them keeps save/load fast.
                        archive.writestr(index_name, index_bytes, zipfile.ZIP_STORED)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(target.parent)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], embeddings: Embeddings | None = None
    ) -> UserHistoryStore:
        """Load a store written by :meth:`save`.

        Args:
            path: The file.
            embeddings: The embeddings to use from now on; they must be the model the store was
                built with (its dimension is checked here when given, else on first use).
                ``None`` uses the default all-MiniLM-L6-v2.

        Returns:
            The store.

        Raises:
            ValueError: When the file is not a history store, has a format version this code
                does not read, is inconsistent, or ``embeddings`` has another dimension.
        """
        path = Path(path)
        try:
            archive = zipfile.ZipFile(path, "r")
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path} is not a langchain-rpo history file (not a zip).") from exc
        with archive:
            try:
                manifest = json.loads(archive.read(_MANIFEST))
            except KeyError as exc:
                raise ValueError(
                    f"{path} is not a langchain-rpo history file (no manifest)."
                ) from exc
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
                raise ValueError(
                    f"{path} is not a langchain-rpo history file (format "
                    f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                    f"expected {FORMAT_NAME!r})."
                )
            version = manifest.get("format_version")
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path} has history format version {version!r}; this langchain-rpo reads "
                    f"version {FORMAT_VERSION}. Upgrade langchain-rpo to load it."
                )
            dim = manifest.get("dim")
            if dim is not None and (not isinstance(dim, int) or dim <= 0):
                raise ValueError(f"{path} has an invalid embedding dimension {dim!r}.")
            saved_model = manifest.get("embeddings")
            if embeddings is not None and dim is not None:
                actual = _embedding_dim(embeddings)
                if actual != dim:
                    raise ValueError(
                        f"{path} holds {dim}-dimensional vectors (embeddings {saved_model!r}), "
                        f"but the given embeddings produce {actual}-dimensional ones. Load it "
                        "with the embeddings model it was built with."
                    )
                if saved_model and _embeddings_identifier(embeddings) != saved_model:
                    warnings.warn(
                        f"{path} was built with embeddings {saved_model!r}, loading with "
                        f"{_embeddings_identifier(embeddings)!r}: same width, but searches "
                        "are only meaningful with the same model.",
                        stacklevel=2,
                    )
            store = cls(embeddings)
            store._dim = dim
            for entry in manifest.get("users", []):
                try:
                    uid = _check_user_id(entry["user_id"])
                    store._users[uid] = _read_user(archive, entry, dim, path)
                except (KeyError, TypeError, RuntimeError) as exc:
                    # RuntimeError: faiss refusing corrupt index bytes.
                    raise ValueError(f"{path} is inconsistent or damaged: {exc!r}") from exc
        return store


def _read_user(
    archive: zipfile.ZipFile, entry: dict[str, Any], dim: int | None, path: Path
) -> _UserIndex:
    uid = entry["user_id"]
    docstore = json.loads(archive.read(entry["docstore"]))
    index_bytes = np.frombuffer(archive.read(entry["index"]), dtype=np.uint8)
    index = faiss.deserialize_index(index_bytes)
    if not isinstance(index, faiss.IndexIDMap2) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path}: the index of user {uid!r} is not an inner-product IndexIDMap2.")
    if index.d != dim:
        raise ValueError(
            f"{path}: the index of user {uid!r} has dimension {index.d}, the manifest says {dim}."
        )
    user = _UserIndex(index=index, next_int=int(docstore["next_int"]))
    for item in docstore["items"]:
        item_id, int_id = item["id"], int(item["faiss_id"])
        user.docs[item_id] = {"page_content": item["page_content"], "metadata": item["metadata"]}
        user.str_to_int[item_id] = int_id
        user.int_to_str[int_id] = item_id
    stored_ids = set(faiss.vector_to_array(index.id_map).tolist())
    if index.ntotal != len(user.docs) or stored_ids != set(user.int_to_str):
        raise ValueError(
            f"{path}: user {uid!r} has {len(user.docs)} docstore items but {index.ntotal} "
            "vectors with other ids; the file is inconsistent."
        )
    return user


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
