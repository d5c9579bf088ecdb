"""langchain-rpo: Reflective Personalization Optimization (arXiv 2511.05286) for LangChain.

A black-box chat model writes a generic draft; :class:`UserHistoryStore` recalls what matters
from the user's own history; a small local :class:`ReflectionModel` rewrites the draft through a
structured trajectory; :class:`RPORewriter` composes the three as one LCEL Runnable.
"""

from importlib import metadata as _metadata

from langchain_rpo.adapter_settings import AdapterSettings
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_backend import HistoryBackend, HistoryRecord
from langchain_rpo.history_file import HistoryFileError
from langchain_rpo.history_vectorstore import VectorStoreHistory
from langchain_rpo.metadata import FallbackReason, RPOMetadata
from langchain_rpo.reflection import GenerationCancelled, GenerationTimeout, ReflectionModel
from langchain_rpo.retriever import HistoryRetriever
from langchain_rpo.rewriter import RPORewriter
from langchain_rpo.trajectory import Trajectory, parse, render

__all__ = [
    "RPORewriter",
    "UserHistoryStore",
    "HistoryBackend",
    "HistoryRecord",
    "HistoryFileError",
    "VectorStoreHistory",
    "HistoryRetriever",
    "ReflectionModel",
    "AdapterSettings",
    "GenerationCancelled",
    "GenerationTimeout",
    "FallbackReason",
    "RPOMetadata",
    "Trajectory",
    "parse",
    "render",
]
# One source for the version: pyproject.toml, read back from the installed package's metadata
# (a static version that every packaging tool reads, with no second copy to keep in step).
try:
    __version__ = _metadata.version("langchain-rpo")
except _metadata.PackageNotFoundError:  # a source tree put on sys.path without installing it
    __version__ = "0+unknown"
