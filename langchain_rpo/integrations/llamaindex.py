"""RPO for LlamaIndex: a query engine that personalizes any other query engine's answers.

:class:`RPOQueryEngine` wraps a LlamaIndex query engine (a ``VectorStoreIndex``'s, a router, a
sub-question engine...). The wrapped engine answers as usual, with no user history: that answer
is the draft. The user's own history is recalled from any
:class:`~langchain_rpo.HistoryBackend` (the FAISS :class:`~langchain_rpo.UserHistoryStore`,
PostgreSQL, or a LangChain vector store through ``VectorStoreHistory``), the reflection model rewrites the draft through the structured trajectory, and the rewrite is
returned as a LlamaIndex ``Response`` whose ``source_nodes`` are the wrapped engine's and whose
``metadata["rpo"]`` is exactly the LangChain ``response_metadata["rpo"]`` of
:class:`~langchain_rpo.RPORewriter` (draft, trajectory, recalled ids and scores, fallback reason).

Example:
    .. code-block:: python

        from llama_index.core import VectorStoreIndex
        from langchain_rpo import ReflectionModel, UserHistoryStore
        from langchain_rpo.integrations.llamaindex import RPOQueryEngine

        engine = RPOQueryEngine(
            VectorStoreIndex.from_documents(docs).as_query_engine(),
            history=UserHistoryStore.load("history.zip"),
            reflection=ReflectionModel.from_pretrained(),
        )
        response = engine.for_user("alice").query("What changed in the release?")
        response.response                   # the personalized answer
        response.metadata["rpo"]["draft"]   # what the wrapped engine said

The reflection model is any LangChain chat model (usually a :class:`~langchain_rpo.ReflectionModel`)
or any LlamaIndex LLM (for example one serving the LoRA adapter behind an OpenAI-compatible
endpoint). Install with ``pip install "langchain-rpo[llamaindex]"``; the base package never
imports this module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from types import EllipsisType
from typing import Any

try:
    import llama_index.core.instrumentation as instrument
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.base.llms.types import ChatMessage, MessageRole
    from llama_index.core.base.response.schema import (
        RESPONSE_TYPE,
        AsyncStreamingResponse,
        PydanticResponse,
        Response,
        StreamingResponse,
    )
    from llama_index.core.callbacks.base import CallbackManager
    from llama_index.core.llms.llm import LLM
    from llama_index.core.prompts.mixin import PromptMixinType
    from llama_index.core.schema import QueryBundle
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "langchain_rpo.integrations.llamaindex needs llama-index-core: "
        'pip install "langchain-rpo[llamaindex]"'
    ) from err

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from langchain_rpo.history_backend import HistoryBackend
from langchain_rpo.metadata import RPO_METADATA_KEY, FallbackReason, rpo_metadata
from langchain_rpo.rewriter import RPORewriter

__all__ = ["RPOQueryEngine", "llamaindex_llm_as_runnable"]

dispatcher = instrument.get_dispatcher(__name__)

_ROLES = {"system": MessageRole.SYSTEM, "human": MessageRole.USER, "ai": MessageRole.ASSISTANT}


def _to_llamaindex_messages(messages: Sequence[BaseMessage]) -> list[ChatMessage]:
    return [
        ChatMessage(role=_ROLES.get(message.type, MessageRole.USER), content=str(message.text))
        for message in messages
    ]


def llamaindex_llm_as_runnable(llm: LLM) -> Runnable:
    """Adapt a LlamaIndex LLM so that :class:`~langchain_rpo.RPORewriter` can reflect with it.

    The reflection prompt (LangChain messages) becomes LlamaIndex ``ChatMessage`` objects and the
    LLM's ``chat`` / ``achat`` answer text is returned.

    Args:
        llm: Any LlamaIndex LLM.

    Returns:
        A LangChain runnable from a list of messages to the answer's text.
    """

    def chat(messages: Sequence[BaseMessage]) -> str:
        return str(llm.chat(_to_llamaindex_messages(messages)).message.content or "")

    async def achat(messages: Sequence[BaseMessage]) -> str:
        return str((await llm.achat(_to_llamaindex_messages(messages))).message.content or "")

    return RunnableLambda(chat, afunc=achat, name=f"LlamaIndex:{type(llm).__name__}")


class RPOQueryEngine(BaseQueryEngine):
    """Personalize the answers of any LlamaIndex query engine with the user's own history.

    Build it either from the parts (``history`` and ``reflection``) or from an existing
    :class:`~langchain_rpo.RPORewriter` (``rewriter=``). The user comes from ``user_id``; use
    :meth:`for_user` to get an engine bound to another user (cheap: everything is shared).

    Nothing is ever lost: a user without history, an unusable reflection output or a failing
    reflection model all return the wrapped engine's answer unchanged, with the reason in
    ``response.metadata["rpo"]["fallback_reason"]``. Streaming answers of the wrapped engine are
    read to the end first (the rewrite needs the whole draft); structured (Pydantic) answers are
    passed through unchanged, with ``fallback_reason="structured_response"``, and so are empty
    answers (``"empty_draft"``).

    Args:
        query_engine: The LlamaIndex query engine whose answers are personalized.
        history: The per-user history: any :class:`~langchain_rpo.HistoryBackend`.
        reflection: A LangChain chat model (e.g. :class:`~langchain_rpo.ReflectionModel`) or a
            LlamaIndex LLM.
        user_id: The user whose history personalizes the answers (see :meth:`for_user`).
        k: How many history items to recall (None: as ``RPORewriter``, the reflection
            adapter's, else 4).
        format_item: Renders a recalled LangChain ``Document`` for the reflection prompt.
        max_item_chars: Each recalled item is cut to this many characters in the prompt (None:
            no cut; ``...``, the default: as ``RPORewriter``, the adapter's, else 300).
        rewriter: An :class:`~langchain_rpo.RPORewriter` to use instead of ``history``,
            ``reflection``, ``k``, ``format_item`` and ``max_item_chars``.
        callback_manager: LlamaIndex callbacks (default: the wrapped engine's).
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        history: HistoryBackend | None = None,
        reflection: Runnable | LLM | None = None,
        *,
        user_id: str | None = None,
        k: int | None = None,
        format_item: Callable[[Document], str] | None = None,
        max_item_chars: int | None | EllipsisType = ...,
        rewriter: RPORewriter | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if not isinstance(query_engine, BaseQueryEngine):
            raise TypeError(
                "RPOQueryEngine wraps a LlamaIndex query engine (for example "
                f"index.as_query_engine()); got a {type(query_engine).__name__}."
            )
        if rewriter is None:
            if history is None or reflection is None:
                raise ValueError(
                    "RPOQueryEngine needs history= and reflection= (or rewriter=RPORewriter(...))."
                )
            if isinstance(reflection, LLM):
                reflection = llamaindex_llm_as_runnable(reflection)
            # Only what the caller chose: RPORewriter fills in the adapter's settings (and
            # warns about a chosen value that differs from them).
            chosen: dict[str, Any] = {} if k is None else {"k": k}
            if max_item_chars is not ...:
                chosen["max_item_chars"] = max_item_chars
            rewriter = RPORewriter(
                history=history, reflection=reflection, format_item=format_item, **chosen
            )
        elif history is not None or reflection is not None:
            raise ValueError("Pass either rewriter= or history= and reflection=, not both.")
        self._query_engine = query_engine
        self._rewriter = rewriter
        self.user_id = user_id
        super().__init__(
            callback_manager=callback_manager or getattr(query_engine, "callback_manager", None)
        )

    @property
    def query_engine(self) -> BaseQueryEngine:
        """The wrapped query engine."""
        return self._query_engine

    @property
    def rewriter(self) -> RPORewriter:
        """The LangChain :class:`~langchain_rpo.RPORewriter` doing the personalization."""
        return self._rewriter

    @property
    def history(self) -> HistoryBackend:
        """The per-user history store."""
        return self._rewriter.history

    def for_user(self, user_id: str) -> RPOQueryEngine:
        """Return an engine for ``user_id`` sharing this one's wrapped engine, store and model."""
        bound = copy.copy(self)
        bound.user_id = user_id
        return bound

    def _get_prompt_modules(self) -> PromptMixinType:
        # The wrapped engine's prompts stay visible and editable through get/update_prompts.
        return {"query_engine": self._query_engine}

    # ------------------------------------------------------------------ personalization

    def _config(self, user_id: str | None) -> RunnableConfig:
        user_id = user_id if user_id is not None else self.user_id
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(
                "RPOQueryEngine needs to know whose history to use: build it with "
                "user_id='<user id>' or call engine.for_user('<user id>').query(...)."
            )
        return {"configurable": {"user_id": user_id}, "run_name": "RPOQueryEngine"}

    @staticmethod
    def _rewriter_input(query_bundle: QueryBundle, draft: str) -> dict[str, Any]:
        return {"query": query_bundle.query_str, "draft": AIMessage(content=draft)}

    @staticmethod
    def _skip_reason(response: RESPONSE_TYPE) -> FallbackReason | None:
        """Why a response is returned as it is (a structured or an empty answer), or None."""
        if isinstance(response, PydanticResponse):
            return FallbackReason.STRUCTURED_RESPONSE
        if not (response.response or "").strip():
            return FallbackReason.EMPTY_DRAFT
        return None

    @staticmethod
    def _passthrough(response: Any, reason: FallbackReason, user_id: str | None) -> Any:
        meta = dict(response.metadata or {})
        meta[RPO_METADATA_KEY] = rpo_metadata(
            user_id=user_id, draft=str(response.response or ""), reason=reason
        )
        response.metadata = meta
        return response

    @staticmethod
    def _response(draft: Response, answer: BaseMessage) -> Response:
        meta = dict(draft.metadata or {})
        meta[RPO_METADATA_KEY] = answer.response_metadata[RPO_METADATA_KEY]
        return Response(str(answer.content), source_nodes=list(draft.source_nodes), metadata=meta)

    @dispatcher.span
    def personalize(
        self, query: str | QueryBundle, response: RESPONSE_TYPE, user_id: str | None = None
    ) -> RESPONSE_TYPE:
        """Personalize a response some query engine already gave (for workflow steps).

        Args:
            query: The query the response answers.
            response: The LlamaIndex response (the draft).
            user_id: The user (default: this engine's ``user_id``).

        Returns:
            A ``Response`` with the rewrite and ``metadata["rpo"]``.
        """
        config = self._config(user_id)
        bundle = query if isinstance(query, QueryBundle) else QueryBundle(query)
        if isinstance(response, AsyncStreamingResponse):
            raise TypeError("an async streaming response: use apersonalize() or aquery()")
        if isinstance(response, StreamingResponse):
            response = response.get_response()
        reason = self._skip_reason(response)
        if reason is not None:
            return self._passthrough(response, reason, config["configurable"]["user_id"])
        answer = self._rewriter.invoke(self._rewriter_input(bundle, response.response), config)
        return self._response(response, answer)

    @dispatcher.span
    async def apersonalize(
        self, query: str | QueryBundle, response: RESPONSE_TYPE, user_id: str | None = None
    ) -> RESPONSE_TYPE:
        """Async twin of :meth:`personalize`."""
        config = self._config(user_id)
        bundle = query if isinstance(query, QueryBundle) else QueryBundle(query)
        if isinstance(response, AsyncStreamingResponse):
            response = await response.get_response()
        elif isinstance(response, StreamingResponse):
            response = response.get_response()
        reason = self._skip_reason(response)
        if reason is not None:
            return self._passthrough(response, reason, config["configurable"]["user_id"])
        answer = await self._rewriter.ainvoke(
            self._rewriter_input(bundle, response.response), config
        )
        return self._response(response, answer)

    # ------------------------------------------------------------------ BaseQueryEngine

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        self._config(None)  # fail before the wrapped engine spends anything
        return self.personalize(query_bundle, self._query_engine.query(query_bundle))

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        self._config(None)
        return await self.apersonalize(query_bundle, await self._query_engine.aquery(query_bundle))
