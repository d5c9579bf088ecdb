"""SentenceTransformerEmbeddings batches as sentence-transformers does by default."""

from __future__ import annotations

import inspect

from langchain_rpo.embeddings import SentenceTransformerEmbeddings


def test_default_batch_size_matches_sentence_transformers_encode() -> None:
    from sentence_transformers import SentenceTransformer

    default = inspect.signature(SentenceTransformer.encode).parameters["batch_size"].default
    assert SentenceTransformerEmbeddings("unused-path").batch_size == default == 32


def test_encode_passes_the_batch_size_to_one_encode_call() -> None:
    calls = []

    class Fake:
        def encode(self, texts, **kwargs):
            import numpy as np

            calls.append((len(texts), kwargs["batch_size"]))
            return np.ones((len(texts), 4), dtype=np.float32)

    emb = SentenceTransformerEmbeddings("unused-path", batch_size=7)
    emb._model = Fake()
    assert emb.encode(["a"] * 20).shape == (20, 4)
    assert calls == [(20, 7)]
