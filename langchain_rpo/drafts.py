"""What the rewriter reads (a draft, in each accepted shape) and writes back (the answer).

The rule this module keeps: **an answer carries everything its draft carried**. A personalized
answer replaces only the draft's text (non-text content blocks, tool calls, usage, ``name``,
``id`` and ``additional_kwargs`` stay as they were); a fallback returns the draft's fields
exactly, with only ``response_metadata["rpo"]`` added. A draft that carries tool calls, or has
no text, is not personalizable: it passes through untouched (an agent's tool-calling turn must
reach its tools).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import (
    Any,
    NotRequired,  # pydantic reads TypedDicts from here on 3.11
    Union,
)

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.prompt_values import PromptValue
from typing_extensions import TypedDict

from langchain_rpo.metadata import RPO_METADATA_KEY, RPOMetadata

__all__ = [
    "Draft",
    "DraftInput",
    "RewriteOutput",
    "RewriteRequest",
    "read_draft",
    "read_wrapped",
    "text_of",
]


class RewriteRequest(TypedDict):
    """The post-hoc input that also names the request: ``{"query": ..., "draft": ...}``."""

    draft: str | AIMessage
    """The draft to personalize (its type decides the output's)."""
    query: NotRequired[str | None]
    """The request the draft answers: the reflection model reads it, and recall searches by it."""
    recall_query: NotRequired[str | None]
    """Search the history with this instead of the query (the LaMP harness's retrieval query)."""


# What RPORewriter accepts post hoc, and what it returns (its input/output schemas).
DraftInput = Union[str, AIMessage, RewriteRequest]  # noqa: UP007 - a runtime type for pydantic
RewriteOutput = Union[str, AIMessage]  # noqa: UP007


def text_of(value: Any) -> str:
    """Text of a message, a prompt value, a list of messages or a plain string.

    Raises:
        TypeError: For anything else (None, a dict, a number...).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return str(value.text)
    if isinstance(value, PromptValue):
        messages = value.to_messages()
        return str(messages[-1].text) if messages else ""
    if isinstance(value, Sequence) and value and isinstance(value[-1], BaseMessage):
        return str(value[-1].text)
    raise TypeError(f"cannot read text from a {type(value).__name__}")


def _carries_tool_calls(message: BaseMessage) -> bool:
    return isinstance(message, AIMessage) and bool(
        message.tool_calls
        or message.invalid_tool_calls
        or (isinstance(message, AIMessageChunk) and message.tool_call_chunks)
    )


def _is_text_block(block: Any) -> bool:
    return isinstance(block, str) or (
        isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def _replace_text(content: str | list[Any], rewrite: str) -> str | list[Any]:
    """The draft's content with its text replaced by ``rewrite``, other blocks in place."""
    if isinstance(content, str):
        return rewrite
    out: list[Any] = []
    placed = False
    for block in content:
        if not _is_text_block(block):
            out.append(block)
        elif not placed:
            placed = True
            if isinstance(block, str):
                out.append(rewrite)
            else:
                # Annotations (citations...) point into the old text: they no longer hold.
                kept = {key: value for key, value in block.items() if key != "annotations"}
                out.append({**kept, "text": rewrite})
    return out


@dataclass(frozen=True)
class Draft:
    """One draft to personalize, as the rewriter read it.

    Attributes:
        original: The draft as it came (a message or a ``str``); answers mirror it.
        text: Its text.
        query: The request it answers, when known.
        recall_query: The text the history is searched with (the query, else the draft).
    """

    original: BaseMessage | str
    text: str
    query: str | None = None
    recall_query: str = ""

    @property
    def personalizable(self) -> bool:
        """False for a draft that carries tool calls or has no text: it passes through."""
        if isinstance(self.original, BaseMessage) and _carries_tool_calls(self.original):
            return False
        return bool(self.text.strip())

    def fallback(self, meta: RPOMetadata) -> BaseMessage | str:
        """The draft unchanged (a ``str`` stays a ``str``), with the metadata added."""
        if isinstance(self.original, str):
            return self.original
        return _with_metadata(self.original, meta)

    def answer(self, rewrite: str, meta: RPOMetadata) -> BaseMessage | str:
        """The draft with its text replaced by ``rewrite`` and the metadata added."""
        if isinstance(self.original, str):
            return rewrite
        return _with_metadata(self.original, meta, _replace_text(self.original.content, rewrite))

    def chunk(self, text: str) -> AIMessageChunk | str:
        """A streamed piece of the rewrite, in the draft's shape."""
        if isinstance(self.original, str):
            return text
        return AIMessageChunk(content=text)

    def closing_chunk(self, text: str, meta: RPOMetadata) -> BaseMessage | str:
        """The last streamed chunk: the rest of ``text`` plus everything else the draft carried.

        Summed with the chunks before it, it gives the answer :meth:`answer` would give (the
        draft's non-text content blocks come after the streamed text).
        """
        if isinstance(self.original, str):
            return text
        draft = self.original
        content: str | list[Any] = text
        if not isinstance(draft.content, str):
            others = [block for block in draft.content if not _is_text_block(block)]
            if others:
                content = [text, *others] if text else others
        fields: dict[str, Any] = {
            "content": content,
            "response_metadata": {**draft.response_metadata, RPO_METADATA_KEY: meta},
            "additional_kwargs": dict(draft.additional_kwargs),
            "id": draft.id,
            "name": draft.name,
            "chunk_position": "last",
        }
        if isinstance(draft, AIMessage) and draft.usage_metadata is not None:
            fields["usage_metadata"] = draft.usage_metadata
        return AIMessageChunk(**fields)


def _with_metadata(
    message: BaseMessage, meta: RPOMetadata, content: str | list[Any] | None = None
) -> BaseMessage:
    """``message`` with ``meta`` added (and ``content`` in place of its own, when given)."""
    # model_copy keeps every field (and the message's own class); the metadata dict is new, so
    # the caller's draft is never mutated.
    update: dict[str, Any] = {
        "response_metadata": {**message.response_metadata, RPO_METADATA_KEY: meta}
    }
    if content is not None:
        update["content"] = content
    return message.model_copy(update=update)


def read_draft(value: Any) -> Draft:
    """Read a post-hoc input: a message, a ``str``, or ``{"query", "draft", "recall_query"}``.

    Raises:
        ValueError: A dict without ``"draft"``, or whose ``query``/``recall_query`` is not text.
        TypeError: Any other input type (with how to use the wrapping form instead).
    """
    query: Any = None
    recall_query: Any = None
    if isinstance(value, Mapping):
        if "draft" not in value:
            raise ValueError(
                "A dict input to RPORewriter needs a 'draft' key (and optionally 'query' and "
                f"'recall_query'); got keys {sorted(map(str, value))}."
            )
        query, recall_query, value = value.get("query"), value.get("recall_query"), value["draft"]
        for name, field in (("query", query), ("recall_query", recall_query)):
            if field is not None and not isinstance(field, str):
                raise ValueError(
                    f"The {name!r} of a dict input to RPORewriter must be a string or None, got "
                    f"a {type(field).__name__}."
                )
    if isinstance(value, BaseMessage):
        text = str(value.text)
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(
            "RPORewriter personalizes a draft: pass an AIMessage, a str, or "
            f"{{'query': ..., 'draft': ...}}; got a {type(value).__name__}. To have it call "
            "the model itself, build it as RPORewriter(llm=chat_model, ...)."
        )
    return Draft(value, text, query or None, recall_query or query or text)


def read_wrapped(model_input: Any, output: Any) -> Draft:
    """Read the wrapped model's input (the query) and its output (the draft)."""
    try:
        query: str | None = text_of(model_input) or None
    except TypeError:  # an input we cannot read as text: recall from the draft instead
        query = None
    draft = read_draft(output)
    return Draft(draft.original, draft.text, query, query or draft.text)
