"""RPOMiddleware in a real LangChain 1.x agent loop (create_agent), and a LangGraph node.

A fake tool-calling chat model drives the loop (it asks for a tool, then answers); the tool is
real, and so are the rewriter, the FAISS store and the tiny reflection model.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from tiny_models import TAUGHT_TRAJECTORY
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_rpo import RPORewriter, UserHistoryStore

agents = pytest.importorskip("langchain.agents", reason="the [agents] extra is not installed")
from langchain_rpo.integrations.agents import RPOMiddleware  # noqa: E402


class ToolCallingFake(GenericFakeChatModel):
    """A fake chat model that accepts bind_tools, as create_agent requires of its model."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFake:
        return self


def _script() -> ToolCallingFake:
    return ToolCallingFake(
        messages=iter(
            [
                AIMessage(
                    "",
                    tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}],
                    id="turn-1",
                ),
                AIMessage("It is sunny in Paris today.", id="turn-2"),
            ]
        )
    )


@dataclass
class Context:
    user_id: str


@pytest.fixture()
def store() -> UserHistoryStore:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=16))
    store.add_texts("alice", ["Sunny again in Lyon", "Rain over Paris"])
    return store


def _agent(store: UserHistoryStore, reflection: Any, calls: list[str], **kwargs: Any) -> Any:
    @tool
    def get_weather(city: str) -> str:
        """Return the weather of a city."""
        calls.append(city)
        return f"Sunny in {city}"

    return agents.create_agent(
        _script(),
        tools=[get_weather],
        middleware=[RPOMiddleware(history=store, reflection=reflection)],
        **kwargs,
    )


def test_the_agent_calls_its_tool_and_personalizes_the_final_answer(
    store, taught_reflection
) -> None:
    calls: list[str] = []
    agent = _agent(store, taught_reflection, calls, context_schema=Context)
    state = agent.invoke(
        {"messages": [HumanMessage("What's the weather in Paris?")]},
        context=Context(user_id="alice"),
    )
    messages = state["messages"]
    assert calls == ["Paris"]  # the tool-calling turn reached the tool untouched
    tool_turn = next(m for m in messages if isinstance(m, AIMessage) and m.tool_calls)
    assert tool_turn.tool_calls[0]["args"] == {"city": "Paris"}
    assert "rpo" not in tool_turn.response_metadata
    assert isinstance(messages[-2], ToolMessage)
    final = messages[-1]
    assert final.content == TAUGHT_TRAJECTORY.rewrite and final.id == "turn-2"
    meta = final.response_metadata["rpo"]
    assert meta["personalized"] and meta["draft"] == "It is sunny in Paris today."
    assert meta["query"] == "What's the weather in Paris?" and meta["user_id"] == "alice"
    assert sum(isinstance(m, AIMessage) for m in messages) == 2  # replaced, not appended


def test_the_user_can_come_from_the_config_and_async_works(store, taught_reflection) -> None:
    calls: list[str] = []
    agent = _agent(store, taught_reflection, calls)
    state = asyncio.run(
        agent.ainvoke(
            {"messages": [HumanMessage("Weather?")]},
            config={"configurable": {"user_id": "alice"}},
        )
    )
    assert calls == ["Paris"]
    assert state["messages"][-1].response_metadata["rpo"]["personalized"]


def test_a_missing_user_is_a_clear_error(store, taught_reflection) -> None:
    agent = _agent(store, taught_reflection, [])
    with pytest.raises(ValueError, match="context=.*user_id"):
        agent.invoke({"messages": [HumanMessage("Weather?")]})


def test_a_langgraph_node_after_the_model(store, taught_reflection) -> None:
    """The docs' LangGraph example: a node that personalizes the model's final message."""
    from langgraph.graph import END, START, MessagesState, StateGraph

    rewriter = RPORewriter(history=store, reflection=taught_reflection)
    model = GenericFakeChatModel(messages=iter([AIMessage("A generic answer", id="m1")]))

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def personalize(state: MessagesState) -> dict[str, Any]:
        last = state["messages"][-1]
        if last.tool_calls:  # a tool-calling turn goes to the tools untouched
            return {}
        request = next(m.text for m in reversed(state["messages"]) if m.type == "human")
        return {"messages": [rewriter.invoke({"query": request, "draft": last})]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("personalize", personalize)
    graph.add_edge(START, "model")
    graph.add_edge("model", "personalize")
    graph.add_edge("personalize", END)
    app = graph.compile()
    out = app.invoke(
        {"messages": [HumanMessage("Any news?")]}, {"configurable": {"user_id": "alice"}}
    )
    assert [m.type for m in out["messages"]] == ["human", "ai"]
    assert out["messages"][-1].content == TAUGHT_TRAJECTORY.rewrite


def test_streamed_ui_events_never_show_the_reasoning(store, taught_reflection) -> None:
    """LangGraph's messages mode and a tag-filtering astream_events consumer see no markup."""
    from langgraph.graph import END, START, MessagesState, StateGraph

    rewriter = RPORewriter(history=store, reflection=taught_reflection)

    def personalize(state: MessagesState) -> dict[str, Any]:
        chunks = list(rewriter.stream({"query": "q", "draft": AIMessage("a draft", id="d1")}))
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged = merged + chunk
        return {"messages": [merged]}

    graph = StateGraph(MessagesState)
    graph.add_node("personalize", personalize)
    graph.add_edge(START, "personalize")
    graph.add_edge("personalize", END)
    app = graph.compile()
    shown = [
        str(message.content)
        for message, _ in app.stream(
            {"messages": [HumanMessage("hi")]},
            {"configurable": {"user_id": "alice"}},
            stream_mode="messages",
        )
    ]
    assert shown and not any("<" in text or "short titles" in text for text in shown)
    assert "".join(shown).endswith(TAUGHT_TRAJECTORY.rewrite)

    async def events() -> list[dict[str, Any]]:
        return [
            event
            async for event in rewriter.astream_events(
                AIMessage("a draft"), {"configurable": {"user_id": "alice"}}, exclude_tags=["nostream"]
            )
        ]

    seen = asyncio.run(events())
    model_tokens = [e for e in seen if e["event"] == "on_chat_model_stream"]
    assert model_tokens == []  # the reflection run is filtered out by its tag
    rewrite = "".join(
        str(e["data"]["chunk"].content) for e in seen if e["event"] == "on_chain_stream"
    )
    assert rewrite == TAUGHT_TRAJECTORY.rewrite
