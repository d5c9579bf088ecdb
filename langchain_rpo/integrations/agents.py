"""``RPOMiddleware``: personalize the final answer of a LangChain 1.x agent (``create_agent``).

.. code-block:: python

    from langchain.agents import create_agent
    from langchain_rpo import ReflectionModel, UserHistoryStore
    from langchain_rpo.integrations.agents import RPOMiddleware

    agent = create_agent(
        model,
        tools=[get_weather],
        middleware=[RPOMiddleware(history=store, reflection=ReflectionModel.from_pretrained())],
    )
    agent.invoke({"messages": [("user", "Weather in Paris?")]}, context={"user_id": "alice"})

The middleware wraps each model call of the agent loop. A turn whose answer carries tool calls
(or a structured response) is left alone, so the tools run as they would without it; a final
answer (a model turn without tool calls) is rewritten for the user by an :class:`RPORewriter`,
with the user's last message as the request. The answer keeps its id, so it takes the draft's
place in the agent's messages, and carries ``response_metadata["rpo"]`` like any rewrite.

The user comes from the agent's runtime context (``context={"user_id": ...}``, a dict or any
object with a ``user_id`` attribute, e.g. the dataclass given as ``context_schema``), else from
the run's config (``config={"configurable": {"user_id": ...}}``).

Needs ``pip install "langchain-rpo[agents]"`` (LangChain 1.x and LangGraph).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
    from langgraph.config import get_config
except ImportError as err:  # pragma: no cover - exercised by the base-install test
    raise ImportError(
        "RPOMiddleware needs LangChain 1.x agents: pip install \"langchain-rpo[agents]\""
    ) from err
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig

from langchain_rpo.history_backend import HistoryBackend
from langchain_rpo.rewriter import RPORewriter

__all__ = ["RPOMiddleware"]


class RPOMiddleware(AgentMiddleware):
    """Personalize an agent's final answers; leave its tool-calling turns alone.

    Args:
        rewriter: A post-hoc :class:`RPORewriter` (no ``llm``). Or give ``history`` and
            ``reflection`` (and any other ``RPORewriter`` field as a keyword) to build one.
        history: The per-user history store (when no ``rewriter`` is given).
        reflection: The reflection model (when no ``rewriter`` is given).
        user_id_key: The name of the user id in the runtime context and in ``configurable``.
        **rewriter_kwargs: More ``RPORewriter`` fields (``k``, ``reflection_timeout``...).

    Raises:
        ValueError: A rewriter in the wrapping form, or neither a rewriter nor history and
            reflection.
    """

    def __init__(
        self,
        rewriter: RPORewriter | None = None,
        *,
        history: HistoryBackend | None = None,
        reflection: Runnable | None = None,
        user_id_key: str = "user_id",
        **rewriter_kwargs: Any,
    ) -> None:
        super().__init__()
        if rewriter is None:
            if history is None or reflection is None:
                raise ValueError(
                    "RPOMiddleware needs a rewriter: pass RPOMiddleware(rewriter) or "
                    "RPOMiddleware(history=store, reflection=reflection_model)."
                )
            rewriter = RPORewriter(history=history, reflection=reflection, **rewriter_kwargs)
        if rewriter.llm is not None:
            raise ValueError(
                "RPOMiddleware personalizes the agent model's own answers: give it a post-hoc "
                "RPORewriter (without llm=)."
            )
        self.rewriter = rewriter
        self.user_id_key = user_id_key

    # ------------------------------------------------------------------ what to rewrite

    def _user_id(self, request: ModelRequest) -> str | None:
        context = getattr(request.runtime, "context", None)
        if isinstance(context, dict):
            user_id = context.get(self.user_id_key)
        else:
            user_id = getattr(context, self.user_id_key, None)
        if user_id is None:
            try:
                configurable = get_config().get("configurable") or {}
            except RuntimeError:  # called outside a graph run: no config to read
                configurable = {}
            user_id = configurable.get(self.user_id_key)
        return user_id

    @staticmethod
    def _final_answer(response: ModelResponse) -> AIMessage | None:
        """The turn's answer when it is final (no tool calls, no structured output), else None."""
        if response.structured_response is not None or len(response.result) != 1:
            return None
        (message,) = response.result
        if not isinstance(message, AIMessage) or message.tool_calls or message.invalid_tool_calls:
            return None
        return message

    @staticmethod
    def _request_text(messages: list[BaseMessage]) -> str | None:
        for message in reversed(messages):
            if isinstance(message, HumanMessage):
                return str(message.text) or None
        return None

    def _rewrite_input(
        self, request: ModelRequest, response: ModelResponse
    ) -> tuple[dict[str, Any], RunnableConfig] | None:
        answer = self._final_answer(response)
        if answer is None:
            return None
        user_id = self._user_id(request)
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(
                f"RPOMiddleware needs the user: invoke the agent with context={{"
                f"'{self.user_id_key}': '<user id>'}} (or a context_schema with a "
                f"{self.user_id_key} field), or config={{'configurable': {{"
                f"'{self.user_id_key}': '<user id>'}}}}."
            )
        value = {"query": self._request_text(request.messages), "draft": answer}
        return value, {"configurable": {"user_id": user_id}}

    # ------------------------------------------------------------------ hooks

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> ModelResponse:
        """Call the model; rewrite its answer for the user when the turn is final."""
        response = handler(request)
        todo = self._rewrite_input(request, response)
        if todo is None:
            return response
        answer = self.rewriter.invoke(*todo)
        return ModelResponse(result=[answer], structured_response=None)

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        """Async twin of :meth:`wrap_model_call`."""
        response = await handler(request)
        todo = self._rewrite_input(request, response)
        if todo is None:
            return response
        answer = await self.rewriter.ainvoke(*todo)
        return ModelResponse(result=[answer], structured_response=None)
