"""The reflection prompt: what the reflection model reads before writing its trajectory.

One builder serves inference (:class:`~langchain_rpo.rewriter.RPORewriter`) and training
(``training/build_trajectories.py``), so a trained adapter always sees the prompt it was trained on.
A change to what this prompt shows the model bumps
:data:`~langchain_rpo.adapter_settings.PROMPT_VERSION`, which every trained adapter records.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_rpo.adapter_settings import DEFAULT_ITEM_CHARS, DEFAULT_QUERY_CHARS
from langchain_rpo.trajectory import FIELDS, escape

__all__ = ["REFLECTION_SYSTEM_PROMPT", "build_reflection_messages", "truncate"]

_TAGS = "\n".join(f"<{name}>...</{name}>" for name in FIELDS)

REFLECTION_SYSTEM_PROMPT = (
    "You rewrite a draft answer so that it matches what this user would write. "
    "Read the user's past items, then reply in exactly this format:\n"
    f"{_TAGS}\n"
    "In <preferences>, what the past items show about the user; in <gaps>, where the draft "
    "departs from it; in <rewrite>, only the rewritten answer."
)


def truncate(text: str, max_chars: int | None) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, on a word boundary, marking the cut.

    >>> truncate("one two three", 8)
    'one two…'
    >>> truncate("short", None)
    'short'
    """
    text = " ".join(text.split())
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0] or text[:max_chars]
    return cut + "…"


def build_reflection_messages(
    draft: str,
    items: Sequence[str],
    query: str | None = None,
    *,
    max_item_chars: int | None = DEFAULT_ITEM_CHARS,
    max_query_chars: int | None = DEFAULT_QUERY_CHARS,
) -> list[BaseMessage]:
    """Build the chat messages the reflection model answers with a trajectory.

    Args:
        draft: The generic draft answer to personalize.
        items: The recalled history items, already rendered as text, most relevant first.
        query: The request the draft answers, when known (the wrapping form, LaMP inputs).
        max_item_chars: Cut each item to this many characters (None: no cut).
        max_query_chars: Cut the query to this many characters (None: no cut).

    Returns:
        A system message with the format and a human message with the items, query and draft.
        Everything a user or a model wrote is escaped (:func:`~langchain_rpo.trajectory.escape`),
        so no item, request or draft can open or close a trajectory tag.
    """
    if items:
        history = "\n".join(
            f"{i}. {escape(truncate(item, max_item_chars))}" for i, item in enumerate(items, 1)
        )
    else:
        history = "(none)"
    parts = [f"User's past items:\n{history}"]
    if query:
        parts.append(f"Request:\n{escape(truncate(query, max_query_chars))}")
    parts.append(f"Draft answer:\n{escape(' '.join(draft.split()))}")
    return [
        SystemMessage(content=REFLECTION_SYSTEM_PROMPT),
        HumanMessage(content="\n\n".join(parts)),
    ]
