"""Recording a user's reaction to an answer: the steps behind ``RPORewriter.record_feedback``.

Recording feedback does two writes to the user's history backend: the
:class:`~langchain_rpo.feedback.FeedbackEvent` (``add_feedback``), and, unless the answer was
rejected, the user's final text as a history item (``add_texts``), so the next answer can recall
it. This module checks the whole call before either write, and orders the writes so that nothing
half-done stays:

1. :func:`feedback_target` reads the answer's ``rpo`` metadata and the user (a ``ValueError``
   for a plain string, a message without the metadata, no user, or a ``config`` naming another
   user than the answer's). Given a run id instead of the answer, the metadata comes from the
   rewriter's :class:`RecentAnswers` (a ``ValueError`` for a run id it does not remember);
2. the caller looks up the recalled items (``history.get`` / ``aget``; this module does no I/O
   of its own, so the rewriter's sync and async methods share it);
3. :func:`build_feedback` builds and checks the event (:meth:`FeedbackEvent.from_answer`: an
   empty edit, an edit that also says ``accepted=True``, no verdict...) and the history item
   (:func:`~langchain_rpo.history_checks.check_add_call`);
4. :func:`store_feedback` / :func:`astore_feedback` store the event, then the item; when the item
   cannot be added, the event is deleted again and the error raised.

**Why the recalled texts are looked up at record time** rather than carried in the answer's
metadata: the metadata travels into every trace and log the app keeps, and copies of the user's
history do not belong there. The price: an item deleted or replaced between the answer and the
feedback gives other texts than the prompt showed. When an item is gone the event records
``recalled_texts=None`` (training skips such events, see
:meth:`FeedbackEvent.reflection_messages`) rather than a wrong prompt.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig

from langchain_rpo.feedback import FeedbackEvent, Verdict, answer_user, rpo_metadata_of
from langchain_rpo.history_backend import HistoryBackend
from langchain_rpo.history_checks import check_add_call

__all__ = [
    "DEFAULT_REMEMBERED_ANSWERS",
    "FEEDBACK_SOURCE",
    "FeedbackEntry",
    "RecentAnswers",
    "answer_to_record",
    "astore_feedback",
    "build_feedback",
    "feedback_target",
    "store_feedback",
]

FEEDBACK_SOURCE = "feedback"
"""``metadata["source"]`` of a history item that a feedback call added."""

DEFAULT_REMEMBERED_ANSWERS = 1024
"""How many recent answers an ``RPORewriter`` remembers by run id (``remembered_answers``)."""

_BY_METADATA = "pass the answer or its response_metadata['rpo'] instead"


def _run_key(run_id: object) -> str:
    """The canonical string of a run id (a ``UUID``, or its string in any accepted spelling).

    >>> _run_key("8A3E6C0D-0B6A-4F7E-9C1D-2B3A4C5D6E7F")
    '8a3e6c0d-0b6a-4f7e-9c1d-2b3a4c5d6e7f'
    """
    if isinstance(run_id, uuid.UUID):
        return str(run_id)
    if isinstance(run_id, str):
        try:
            return str(uuid.UUID(run_id))
        except ValueError:
            pass
    raise ValueError(
        f"run_id must be a LangChain run id (a UUID, or its string), got {run_id!r}. Fix: pass "
        f"the config['run_id'] you invoked with, or answer.response_metadata['rpo']['run_id']; "
        f"or {_BY_METADATA}."
    )


class RecentAnswers:
    """The ``rpo`` metadata of a rewriter's last answers, found by run id: in-process only.

    Each answer is found by the id of the rewriter's own run (``metadata["run_id"]``; the
    ``config["run_id"]`` of a direct ``invoke``/``stream``), and by the id of the run directly
    around it (the ``config["run_id"]`` of a chain ``prompt | model | rewriter`` the app
    invoked), unless that run holds several answers. The oldest answers are forgotten past
    ``limit`` (an LRU by the time an answer was given), and all of them when the process ends:
    across processes and restarts, keep the answer's metadata and record feedback with that.

    Thread-safe: rows of a batch, streams and async calls may answer at once.
    """

    def __init__(self) -> None:
        # own run id -> (the run around it, the answer's metadata), oldest first.
        self._answers: OrderedDict[str, tuple[str | None, Mapping[str, Any]]] = OrderedDict()
        # run around an answer -> the own run ids it holds, still remembered.
        self._inside: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)

    def remember(
        self, run_id: object, parent_run_id: object | None, meta: Mapping[str, Any], limit: int
    ) -> None:
        """Remember an answer's metadata (a deep copy: later edits of the answer do not reach it).

        Args:
            run_id: The id of the rewriter's run that gave the answer.
            parent_run_id: The id of the run around it, if any.
            meta: The answer's ``rpo`` metadata.
            limit: How many answers to keep (0 keeps none).
        """
        if limit <= 0:
            return
        own = _run_key(run_id)
        parent = None if parent_run_id is None else _run_key(parent_run_id)
        snapshot = copy.deepcopy(dict(meta))
        with self._lock:
            if own in self._answers:  # the same run answering again (it does not): replace
                self._drop(own)
            self._answers[own] = (parent, snapshot)
            if parent is not None:
                self._inside.setdefault(parent, []).append(own)
            while len(self._answers) > limit:
                self._drop(next(iter(self._answers)))

    def _drop(self, own: str) -> None:
        parent, _ = self._answers.pop(own)
        if parent is not None:
            held = self._inside[parent]
            held.remove(own)
            if not held:
                del self._inside[parent]

    def find(self, run_id: object, limit: int) -> Mapping[str, Any]:
        """The metadata of the answer that run ``run_id`` gave.

        Args:
            run_id: The rewriter's own run id, or the id of the run directly around it.
            limit: How many answers the rewriter keeps (for the error message).

        Raises:
            ValueError: For something not a run id, a run id not remembered (never seen, or
                forgotten), or the id of a run around several answers.
        """
        key = _run_key(run_id)
        with self._lock:
            if key in self._answers:
                return self._answers[key][1]
            held = list(self._inside.get(key, ()))
            if len(held) == 1:
                return self._answers[held[0]][1]
        if held:
            raise ValueError(
                f"The run {key} holds {len(held)} answers of this rewriter (a chain that called "
                "it more than once), so the run id does not say which one the feedback is on. "
                f"Fix: pass that answer's own response_metadata['rpo']['run_id'], or "
                f"{_BY_METADATA}."
            )
        raise ValueError(
            f"This rewriter has no answer of the run {key} in memory: it remembers the last "
            f"{limit} answers it gave in this process (remembered_answers={limit}), by the id "
            "of its own run or of the run directly around it, and none after a restart. Fix: "
            f"{_BY_METADATA}, which works in any process."
        )


def answer_to_record(
    answer: BaseMessage | Mapping[str, Any] | str | None,
    run_id: object | None,
    recent: RecentAnswers,
    limit: int,
) -> BaseMessage | Mapping[str, Any] | str:
    """The answer a feedback call names: the one passed, or the one remembered by ``run_id``.

    Raises:
        ValueError: When both or neither are given, or the run id is not remembered.
    """
    if (answer is None) == (run_id is None):
        raise ValueError(
            "Name the answer the feedback is on with exactly one of answer=<the message or its "
            "response_metadata['rpo']> or run_id=<the run that gave it>"
            + ("; got both." if answer is not None else "; got neither.")
        )
    if answer is not None:
        return answer
    return recent.find(run_id, limit)


@dataclass(frozen=True)
class FeedbackEntry:
    """The history item a feedback call adds: the user's final text, already checked.

    Attributes:
        id: The item's id: the event's id, so recording the same event again replaces it.
        text: The user's final text (their edit, or the answer they accepted).
        metadata: ``{"source": "feedback", "event_id": ..., "verdict": ...}``.
    """

    id: str
    text: str
    metadata: dict[str, Any]


def feedback_target(
    answer: BaseMessage | Mapping[str, Any] | str, config: RunnableConfig | None
) -> tuple[Mapping[str, Any], str, list[str]]:
    """Read whose answer it was, and which history items it recalled.

    Args:
        answer: The message the rewriter returned, or its ``rpo`` metadata dict.
        config: The feedback call's config; a ``user_id`` in its ``configurable`` must be the
            answer's user.

    Returns:
        ``(metadata, user_id, recalled ids to look up)``; ids the answer could not name (a
        document without an id) are left out.

    Raises:
        ValueError: For a ``str`` answer, an answer without ``rpo`` metadata, metadata that names
            no user, or a ``config`` whose user differs from the answer's.
    """
    try:
        meta = rpo_metadata_of(answer)
    except TypeError as exc:  # a str answer, or no message at all: a malformed call
        raise ValueError(str(exc)) from None
    user_id = answer_user(meta)
    configured = ((config or {}).get("configurable") or {}).get("user_id")
    if configured is not None and configured != user_id:
        raise ValueError(
            f"config names the user {configured!r}, but the answer was given to {user_id!r}; "
            "feedback is recorded for the user who got the answer. Fix: pass that user's "
            "config, or none (the answer names its user)."
        )
    ids = meta.get("recalled_ids") or []
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise ValueError(f"The answer's recalled_ids is not a list: {ids!r}.")
    return meta, user_id, [item_id for item_id in ids if isinstance(item_id, str)]


def build_feedback(
    meta: Mapping[str, Any],
    docs: Sequence[Document],
    *,
    format_item: Callable[[Document], str] | None,
    max_item_chars: int | None,
    max_query_chars: int | None,
    edited: str | None,
    accepted: bool | None,
    rating: float | None,
) -> tuple[FeedbackEvent, FeedbackEntry | None]:
    """Build and check the event and the history item of a feedback call; nothing is written.

    Args:
        meta: The answer's ``rpo`` metadata (from :func:`feedback_target`).
        docs: What ``history.get(user, recalled ids)`` found.
        format_item: The rewriter's ``format_item`` (None: an item's ``page_content``), so the
            texts are those the prompt showed.
        max_item_chars: The rewriter's item cut.
        max_query_chars: The rewriter's request cut.
        edited: The user's text, when they edited the answer.
        accepted: Whether they kept it (True) or discarded it (False), when they did not edit.
        rating: Their rating, if any.

    Returns:
        ``(event, item)``; the item is None for a rejected answer.

    Raises:
        ValueError: On any invalid or contradictory argument (see
            :meth:`FeedbackEvent.from_answer`).
    """
    render = format_item or (lambda doc: doc.page_content)
    wanted = list(meta.get("recalled_ids") or [])
    found = {doc.id: doc for doc in docs}
    texts: list[str] | None = None
    if all(isinstance(i, str) and i in found for i in wanted):
        texts = [render(found[i]) for i in wanted]  # the prompt's order: best first
    try:
        event = FeedbackEvent.from_answer(
            meta,
            edited=edited,
            accepted=accepted,
            rating=rating,
            recalled_texts=texts,
            max_item_chars=max_item_chars,
            max_query_chars=max_query_chars,
        )
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if event.verdict is Verdict.REJECTED or event.final_text is None:
        return event, None
    metadata = {
        "source": FEEDBACK_SOURCE,
        "event_id": event.event_id,
        "verdict": event.verdict.value,
    }
    # The same checks add_texts applies, now: a text the history would refuse fails the call
    # before the event is stored.
    _, texts_ok, metas_ok, ids_ok = check_add_call(
        event.user_id, [event.final_text], [metadata], [event.event_id]
    )
    return event, FeedbackEntry(ids_ok[0], texts_ok[0], metas_ok[0])


def store_feedback(
    history: HistoryBackend, event: FeedbackEvent, entry: FeedbackEntry | None
) -> FeedbackEvent:
    """Store the event, then add the item; if the item fails, delete the event and re-raise."""
    history.add_feedback(event.user_id, [event])
    if entry is not None:
        try:
            history.add_texts(event.user_id, [entry.text], [entry.metadata], [entry.id])
        except BaseException:
            history.delete_feedback(event.user_id, [event.event_id])
            raise
    return event


async def astore_feedback(
    history: HistoryBackend, event: FeedbackEvent, entry: FeedbackEntry | None
) -> FeedbackEvent:
    """Async twin of :func:`store_feedback`."""
    await history.aadd_feedback(event.user_id, [event])
    if entry is not None:
        try:
            await history.aadd_texts(event.user_id, [entry.text], [entry.metadata], [entry.id])
        except BaseException:
            await history.adelete_feedback(event.user_id, [event.event_id])
            raise
    return event
