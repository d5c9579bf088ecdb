"""langchain-rpo: Reflective Personalization Optimization (arXiv 2511.05286) for LangChain.

A black-box chat model writes a generic draft; :class:`UserHistoryStore` recalls what matters
from the user's own history; a small local :class:`ReflectionModel` rewrites the draft through a
structured trajectory; :class:`RPORewriter` composes the three as one LCEL Runnable.
"""

from langchain_rpo.history import UserHistoryStore
from langchain_rpo.reflection import ReflectionModel
from langchain_rpo.retriever import HistoryRetriever
from langchain_rpo.rewriter import RPORewriter
from langchain_rpo.trajectory import Trajectory, parse, render

__all__ = [
    "RPORewriter",
    "UserHistoryStore",
    "HistoryRetriever",
    "ReflectionModel",
    "Trajectory",
    "parse",
    "render",
]
__version__ = "0.1.0"
