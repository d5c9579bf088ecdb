"""What every personalized (or passed-through) answer says about itself: ``metadata["rpo"]``.

One module owns the shape, so the rewriter, the LlamaIndex engine and the LaMP harness read and
write the same keys. :class:`RPOMetadata` is the dict found under
``message.response_metadata["rpo"]``; :class:`FallbackReason` names every reason the draft can be
returned unchanged.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NotRequired, TypedDict

from langchain_core.messages.ai import UsageMetadata

from langchain_rpo.trajectory import ParseFailure

__all__ = ["RPO_METADATA_KEY", "FallbackReason", "RPOMetadata", "rpo_metadata"]

RPO_METADATA_KEY = "rpo"


class FallbackReason(str, Enum):
    """Why the draft was returned unchanged (``metadata["rpo"]["fallback_reason"]``).

    The values are stable strings; ``str(reason)`` and ``reason.value`` give them. Reasons
    caused by an error carry the error in ``fallback_detail``.
    """

    NO_HISTORY = "no_history"
    """The user has no history yet: nothing to personalize with (logged at DEBUG)."""
    NOT_PERSONALIZABLE = "not_personalizable"
    """The draft carries tool calls or has no text: it is passed through untouched."""
    RECALL_ERROR = "recall_error"
    """The history search failed (logged at WARNING)."""
    REFLECTION_ERROR = "reflection_error"
    """The reflection model raised (logged at WARNING)."""
    REFLECTION_TIMEOUT = "reflection_timeout"
    """The reflection model took longer than ``reflection_timeout`` (logged at WARNING)."""
    REFLECTION_NOT_TEXT = "reflection_not_text"
    """The reflection model returned something that is not text, e.g. None or a dict."""
    EMPTY_OUTPUT = ParseFailure.EMPTY_OUTPUT.value
    """The reflection model wrote nothing."""
    NO_REWRITE = ParseFailure.NO_REWRITE.value
    """The output has no ``<rewrite>`` block."""
    UNCLOSED_REWRITE = ParseFailure.UNCLOSED_REWRITE.value
    """The ``<rewrite>`` block never closes (the model ran out of tokens)."""
    EMPTY_REWRITE = ParseFailure.EMPTY_REWRITE.value
    """The ``<rewrite>`` block is empty."""
    PLACEHOLDER_REWRITE = ParseFailure.PLACEHOLDER_REWRITE.value
    """The ``<rewrite>`` block only echoes the prompt's ``...`` placeholder."""
    STRUCTURED_RESPONSE = "structured_response"
    """(LlamaIndex) a structured response is returned as it is."""
    EMPTY_DRAFT = "empty_draft"
    """(LlamaIndex) an empty response is returned as it is."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_parse_failure(cls, failure: ParseFailure) -> FallbackReason:
        """The fallback reason for a trajectory parse failure."""
        return cls(failure.value)


class RPOMetadata(TypedDict):
    """The ``rpo`` metadata of an answer.

    Attributes:
        user_id: Whose history was used.
        k: How many items were asked for.
        query: The request the draft answers, when known.
        draft: The draft's text.
        recalled_ids: Ids of the recalled history items, most similar first.
        recalled_scores: Their cosine similarities.
        trajectory: The parsed trajectory (``preferences``, ``gaps``, ``rewrite``), or None.
        raw_reflection: The reflection model's raw output, or None when it did not run.
        reflection_usage: The reflection model's token usage, when it reported one (the
            answer's own ``usage_metadata`` stays the draft's).
        personalized: Whether the answer is the rewrite (else it is the draft, unchanged).
        fallback_reason: Why the draft was kept (a :class:`FallbackReason` value), or None.
        fallback_detail: The error behind the fallback (``"TypeName: message"``), or None.
        run_id: The id of the rewriter's own run that gave the answer (a UUID string), or
            None where no LangChain run gave it (LlamaIndex). ``record_feedback(run_id=...)``
            takes it, so an app can hand a client this short id instead of the answer.
        stream_note: Only on a stream whose rewrite was cut off before ``</rewrite>``.
    """

    user_id: str | None
    k: int
    query: str | None
    draft: str
    recalled_ids: list[str | None]
    recalled_scores: list[float | None]
    trajectory: dict[str, str] | None
    raw_reflection: str | None
    reflection_usage: UsageMetadata | None
    personalized: bool
    fallback_reason: str | None
    fallback_detail: str | None
    run_id: str | None
    stream_note: NotRequired[str]


def rpo_metadata(
    *,
    user_id: str | None,
    draft: str,
    k: int = 0,
    query: str | None = None,
    recalled: list[Any] | None = None,
    trajectory: dict[str, str] | None = None,
    raw_reflection: str | None = None,
    reflection_usage: UsageMetadata | None = None,
    reason: FallbackReason | None = None,
    detail: str | None = None,
    run_id: str | None = None,
) -> RPOMetadata:
    """Build the ``rpo`` metadata of one answer.

    Args:
        user_id: Whose history was used.
        draft: The draft's text.
        k: How many items were asked for.
        query: The request, when known.
        recalled: The recalled ``Document``s (their ``id`` and ``metadata["score"]`` are kept).
        trajectory: The parsed trajectory as a dict, when the rewrite was used.
        raw_reflection: The reflection model's raw output.
        reflection_usage: The reflection model's token usage.
        reason: Why the draft was kept; None when the answer is the rewrite.
        detail: The error behind ``reason``.
        run_id: The id of the run that gave the answer, when a LangChain run did.

    Returns:
        The metadata dict (JSON-serialisable).
    """
    docs = recalled or []
    return RPOMetadata(
        user_id=user_id,
        k=k,
        query=query,
        draft=draft,
        recalled_ids=[doc.id for doc in docs],
        recalled_scores=[doc.metadata.get("score") for doc in docs],
        trajectory=trajectory,
        raw_reflection=raw_reflection,
        reflection_usage=reflection_usage,
        personalized=reason is None,
        fallback_reason=None if reason is None else reason.value,
        fallback_detail=detail,
        run_id=run_id,
    )
