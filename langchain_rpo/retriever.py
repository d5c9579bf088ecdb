"""``HistoryRetriever``: a LangChain retriever over one user's history in any history backend.

The user is resolved, first match wins, from:

1. the ``user_id`` keyword of the call: ``retriever.invoke(q, user_id="alice")``;
2. ``config["configurable"]["user_id"]``, as LangChain's own history runnables name the user:
   ``chain.invoke(x, config={"configurable": {"user_id": "alice"}})``;
3. the ``user_id`` field: ``HistoryRetriever(store=store, user_id="alice")``.

The number of results likewise comes from the call's ``k`` keyword, else the ``k`` field.

``batch``/``abatch`` embed all the queries in one call (``store.embed_queries``) and search each
user's index by vector; each query still gets its own retriever run (callbacks), and a query
that fails fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import get_config_list, run_in_executor
from langchain_core.runnables.utils import ConfigurableFieldSpec
from typing_extensions import override

from langchain_rpo.history_backend import HistoryBackend

__all__ = ["HistoryRetriever", "user_id_spec"]

# Keywords that BaseRetriever.invoke itself reads and then forwards to _get_relevant_documents.
_FORWARDED_BY_BASE = frozenset({"verbose"})


def _configured_user_id(config: RunnableConfig | None) -> Any:
    # ensure_config also picks up the config of an enclosing runnable (context variable), so a
    # retriever called inside a chain step without an explicit config still sees the user.
    return (ensure_config(config).get("configurable") or {}).get("user_id")


def user_id_spec(default: str | None = None) -> ConfigurableFieldSpec:
    """The ``user_id`` config field, declared alike by every runnable of this package.

    One spec for all, so a chain holding several of them advertises one consistent field (as
    LangChain's own history runnables declare ``session_id``).
    """
    return ConfigurableFieldSpec(
        id="user_id",
        annotation=str,
        name="User ID",
        description="The user whose history is recalled (config['configurable']['user_id']).",
        default=default,
        is_shared=True,
    )


class HistoryRetriever(BaseRetriever):
    """Retrieve a user's own past items most similar to the query.

    Example:
        ```python
        retriever = HistoryRetriever(store=store, k=2)
        retriever.invoke("new Rust version", config={"configurable": {"user_id": "alice"}})
        retriever.invoke("new Rust version", user_id="alice", k=1)
        ```

    Each document has ``.id`` set and ``metadata["score"]`` (cosine similarity).
    """

    store: HistoryBackend
    """The per-user history store."""
    user_id: str | None = None
    """The user when neither the call nor the config names one."""
    k: int = 4
    """How many items to return when the call does not say."""

    @property
    @override
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        # Declared like RunnableWithMessageHistory does, so chains advertise the user id.
        return [
            *super().config_specs,
            user_id_spec(self.user_id),
        ]

    @override
    def invoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        user_id = _configured_user_id(config)
        if user_id is not None:
            kwargs.setdefault("user_id", user_id)
        return super().invoke(input, config, **kwargs)

    @override
    async def ainvoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        user_id = _configured_user_id(config)
        if user_id is not None:
            kwargs.setdefault("user_id", user_id)
        return await super().ainvoke(input, config, **kwargs)

    def _embedded(self, queries: list[str]) -> list[np.ndarray | None]:
        """All queries embedded in one call; ``None`` rows embed on their own (and may fail)."""
        try:
            return list(self.store.embed_queries(queries))
        except Exception:  # noqa: BLE001 - one bad query must not fail the others
            return [None] * len(queries)

    @override
    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Retrieve for many queries: one embedding call, then one exact search per query.

        Each query may name its own user in its own config. With ``return_exceptions=True`` a
        failing query gives its exception in its place and the others their documents.
        """
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        vectors = self._embedded(list(inputs))
        results: list[Any] = []
        for query, cfg, vector in zip(inputs, configs, vectors, strict=True):
            try:
                results.append(self.invoke(query, cfg, query_vector=vector, **kwargs))
            except Exception as err:
                if not return_exceptions:
                    raise
                results.append(err)
        return results

    @override
    async def abatch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[Document]]:
        """Async twin of :meth:`batch` (embedding and searches run in an executor thread)."""
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        vectors = await run_in_executor(None, self._embedded, list(inputs))
        results: list[Any] = []
        for query, cfg, vector in zip(inputs, configs, vectors, strict=True):
            try:
                results.append(await self.ainvoke(query, cfg, query_vector=vector, **kwargs))
            except Exception as err:
                if not return_exceptions:
                    raise
                results.append(err)
        return results

    def _resolve(
        self, k: int | None, user_id: str | None, extra: dict[str, Any]
    ) -> tuple[str, int]:
        unexpected = set(extra) - _FORWARDED_BY_BASE
        if unexpected:
            raise TypeError(
                f"HistoryRetriever got unexpected keyword arguments {sorted(unexpected)}; "
                "it accepts k, user_id and query_vector."
            )
        user = user_id if user_id is not None else self.user_id
        if user is None:
            raise ValueError(
                "HistoryRetriever needs a user id: pass "
                "config={'configurable': {'user_id': ...}} to invoke (or user_id=... as a "
                "keyword), or set HistoryRetriever(user_id=...)."
            )
        return user, self.k if k is None else k

    @override
    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        user_id: str | None = None,
        query_vector: Sequence[float] | np.ndarray | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        user, n = self._resolve(k, user_id, kwargs)
        if query_vector is not None:
            return self.store.search_by_vector(user, query_vector, k=n)
        return self.store.search(user, query, k=n)

    @override
    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        user_id: str | None = None,
        query_vector: Sequence[float] | np.ndarray | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        user, n = self._resolve(k, user_id, kwargs)
        # Embedding and search are blocking CPU work: keep them off the event loop.
        if query_vector is not None:
            return await run_in_executor(None, self.store.search_by_vector, user, query_vector, n)
        return await run_in_executor(None, self.store.search, user, query, n)
