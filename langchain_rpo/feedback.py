"""A user's reaction to an answer: the feedback event, the one place that defines its format.

When a user accepts a personalized answer, edits it into their own text, or rejects it, that
reaction is the best signal a personalization layer gets. :class:`FeedbackEvent` records it with
everything needed to learn from it later: whose answer it was, the request, the draft, what the
reflection model wrote (its trajectory, or its raw output when that was unusable), which history
items it read, and what the user finally kept. ``training/build_preferences.py`` turns events into
preference data. Events are stored as JSON Lines (:func:`write_events`, :func:`dump_events`,
:func:`read_events`); the history backends keep them beside each user's history in this same
form, and ``rpo history feedback`` writes a backend's events out in it.

Build an event from an earlier answer with :meth:`FeedbackEvent.from_answer`::

    answer = rewriter.invoke(draft, config={"configurable": {"user_id": "alice"}})
    event = FeedbackEvent.from_answer(answer, edited="Rust 1.76 is out", recalled_texts=texts)
    line = event.to_json()                       # one JSON Lines record
    assert FeedbackEvent.from_json(line) == event

**The recalled items' texts are stored in the event** (``recalled_texts``), not looked up again
in the history at training time. Training must rebuild the exact prompt the reflection model
read (:meth:`FeedbackEvent.reflection_messages`): looking items up by id would silently give a
different prompt once an item is edited or deleted, or once the app renders items with its own
``format_item``. The price is that an event holds copies of history items, so erasing a user
(``forget``) must erase their events too, and deleting one history item does not scrub the
copies that earlier events hold. For the same reason the event keeps the prompt's cuts
(``max_item_chars``, ``max_query_chars``).

The JSON form (``to_json``/``from_json``, also :func:`read_events`/:func:`write_events`) is a
flat object with a ``"version"`` key; reading refuses unknown keys and newer versions by name,
so a typo or a file from a newer release is an error, not a silently half-read event.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from langchain_core.messages import BaseMessage

from langchain_rpo.adapter_settings import DEFAULT_ITEM_CHARS, DEFAULT_QUERY_CHARS
from langchain_rpo.atomic import atomic_write
from langchain_rpo.history_checks import (
    check_encodable,
    check_json_value,
    check_str_sequence,
    check_user_id,
)
from langchain_rpo.metadata import RPO_METADATA_KEY
from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.trajectory import FIELDS, Trajectory

__all__ = [
    "FEEDBACK_FORMAT_VERSION",
    "FeedbackEvent",
    "Verdict",
    "EventLog",
    "answer_user",
    "check_events",
    "dump_events",
    "in_time_order",
    "iter_events",
    "read_events",
    "rpo_metadata_of",
    "utc_now",
    "utc_time",
    "write_events",
]

FEEDBACK_FORMAT_VERSION = 1
"""The version of the JSON form that :meth:`FeedbackEvent.to_json` writes."""


class _Unset(Enum):
    """The type of :data:`_UNSET`: a keyword the caller did not pass (None means "no cut")."""

    UNSET = "unset"


_UNSET = _Unset.UNSET


class Verdict(str, Enum):
    """What the user did with the answer.

    The values are stable strings (``str(verdict)`` gives them).
    """

    ACCEPTED = "accepted"
    """The user kept the answer as it was: ``final_text`` is the answer."""
    EDITED = "edited"
    """The user changed the answer into their own text: ``final_text`` is that text."""
    REJECTED = "rejected"
    """The user discarded the answer without writing their own: there is no ``final_text``."""

    def __str__(self) -> str:
        return self.value


def utc_now() -> str:
    """Return the current time as a UTC ISO 8601 string, the form events store.

    >>> utc_now().endswith("Z")
    True
    """
    return _canonical_time(datetime.now(UTC))


def _canonical_time(moment: datetime) -> str:
    """One spelling per instant, so that times sort as strings: UTC, with a ``Z``.

    >>> _canonical_time(datetime(2026, 12, 2, 19, 36, 11, tzinfo=UTC))
    '2026-12-02T19:36:11Z'
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc_time(value: object) -> str:
    """Return ``value`` (an ISO 8601 string or an aware ``datetime``) as events store times.

    >>> utc_time("2026-12-02T21:36:11+02:00")
    '2026-12-02T19:36:11Z'

    Raises:
        ValueError: When ``value`` is not an ISO 8601 time, or has no time zone.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"time must be an ISO 8601 date and time, got {value!r}. Fix: write it like "
                "'2026-12-02T19:36:11Z' (langchain_rpo.feedback.utc_now() gives the current one)."
            ) from None
    else:
        raise ValueError(f"time must be an ISO 8601 string, got {type(value).__name__}.")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"time {value!s} has no time zone, so the instant it names is unknown. Fix: give it "
            "in UTC, like '2026-12-02T19:36:11Z'."
        )
    return _canonical_time(moment)


def _optional_str(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string or None, got {type(value).__name__}.")
    check_encodable(value, name)
    return value


def _check_limit(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"{name} must be a positive int (the prompt's cut) or None (no cut), got {value!r}."
        )
    return value


def _check_rating(value: object) -> float | int | None:
    # bool is an int in Python, but True is never a meant rating.
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(
            f"rating must be a finite number (for example 1 to 5) or None, got {value!r}."
        )
    return value


def _check_trajectory(value: object) -> Trajectory | None:
    if value is None or isinstance(value, Trajectory):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            "trajectory must be a dict with the keys preferences, gaps and rewrite (as in "
            f"response_metadata['rpo']['trajectory']), a Trajectory, or None; got "
            f"{type(value).__name__}."
        )
    unknown = sorted(set(value) - set(FIELDS), key=str)
    if unknown:
        raise ValueError(
            f"trajectory has the unknown key {unknown[0]!r}; its keys are {', '.join(FIELDS)}."
        )
    if not isinstance(value.get("rewrite"), str):
        raise ValueError("trajectory needs a 'rewrite' string (the answer the model wrote).")
    for name in FIELDS:
        item = value.get(name, "")
        if not isinstance(item, str):
            raise ValueError(f"trajectory[{name!r}] must be a string, got {type(item).__name__}.")
        check_encodable(item, f"trajectory[{name!r}]")
    return Trajectory(**{name: value.get(name, "") for name in FIELDS})


def _check_ids(value: object) -> tuple[str | None, ...]:
    # An id is None when the backend returned a document without one (see RPOMetadata).
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"recalled_ids must be a list of ids, got {type(value).__name__}.")
    ids = tuple(value)
    for i, item_id in enumerate(ids):
        if item_id is not None and not isinstance(item_id, str):
            raise ValueError(
                f"recalled_ids[{i}] must be a string or None, got {type(item_id).__name__}."
            )
        if item_id is not None:
            check_encodable(item_id, f"recalled_ids[{i}]")
    return ids


@dataclass(frozen=True, kw_only=True)
class FeedbackEvent:
    """One user's reaction to one answer (accepted, edited or rejected), with what led to it.

    Every field is checked on construction (and on :meth:`from_json`): a ``ValueError`` names the
    field and the fix. Lists are stored as tuples and the trajectory as a
    :class:`~langchain_rpo.trajectory.Trajectory`, so an event cannot change after it is built.

    Attributes:
        user_id: Whose answer it was (non-empty).
        verdict: What the user did (a :class:`Verdict`; its string value is accepted too).
        draft: The draft the reflection model personalized.
        final_text: What the user finally kept: the answer itself when accepted, their own text
            when edited (non-empty for both), None when rejected.
        rating: The user's rating of the answer, when they gave one (any finite number).
        query: The request the draft answers, when known.
        trajectory: The reflection model's parsed trajectory, or None when the answer was the
            draft unchanged (no history, an unusable output...).
        raw_reflection: What the reflection model wrote, or None when it did not run.
        recalled_ids: The ids of the history items the reflection model read, best first.
        recalled_texts: Those items as the prompt showed them (before the cut), or None when
            unknown; needed to train on the event (see the module docstring for why they are
            stored).
        max_item_chars: The prompt's cut of each item (None: no cut).
        max_query_chars: The prompt's cut of the request (None: no cut).
        time: When the user reacted, UTC ISO 8601 (``2026-12-02T19:36:11Z``; an aware
            ``datetime`` or another offset is converted). Default: now.
        event_id: The event's id (default: a new uuid4 hex).
    """

    user_id: str
    verdict: Verdict
    draft: str
    final_text: str | None = None
    rating: float | int | None = None
    query: str | None = None
    trajectory: Trajectory | None = None
    raw_reflection: str | None = None
    recalled_ids: tuple[str | None, ...] = ()
    recalled_texts: tuple[str, ...] | None = None
    max_item_chars: int | None = DEFAULT_ITEM_CHARS
    max_query_chars: int | None = DEFAULT_QUERY_CHARS
    time: str = field(default_factory=utc_now)
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)  # normalising a frozen instance's own fields

        put("user_id", check_user_id(self.user_id))
        if not isinstance(self.event_id, str) or not self.event_id:
            raise ValueError(f"event_id must be a non-empty string, got {self.event_id!r}.")
        check_encodable(self.event_id, "event_id")
        try:
            put("verdict", Verdict(self.verdict))
        except ValueError:
            raise ValueError(
                f"verdict must be one of {', '.join(v.value for v in Verdict)}, got "
                f"{self.verdict!r}."
            ) from None
        if not isinstance(self.draft, str):
            raise ValueError(f"draft must be a string, got {type(self.draft).__name__}.")
        check_encodable(self.draft, "draft")
        put("final_text", _optional_str(self.final_text, "final_text"))
        put("query", _optional_str(self.query, "query"))
        put("raw_reflection", _optional_str(self.raw_reflection, "raw_reflection"))
        put("rating", _check_rating(self.rating))
        put("trajectory", _check_trajectory(self.trajectory))
        put("recalled_ids", _check_ids(self.recalled_ids))
        if self.recalled_texts is not None:
            texts = check_str_sequence(self.recalled_texts, "recalled_texts")
            for i, text in enumerate(texts):
                check_encodable(text, f"recalled_texts[{i}]")
            if len(texts) != len(self.recalled_ids):
                raise ValueError(
                    f"recalled_texts has {len(texts)} texts but recalled_ids has "
                    f"{len(self.recalled_ids)} ids; pass one text per recalled item, in the same "
                    "order, or recalled_texts=None when they are unknown."
                )
            put("recalled_texts", tuple(texts))
        put("max_item_chars", _check_limit(self.max_item_chars, "max_item_chars"))
        put("max_query_chars", _check_limit(self.max_query_chars, "max_query_chars"))
        put("time", utc_time(self.time))
        self._check_final_text()

    def _check_final_text(self) -> None:
        final = self.final_text
        if self.verdict is Verdict.REJECTED:
            if final is not None:
                raise ValueError(
                    "A rejected answer has no final text. If the user wrote their own text "
                    "instead, record it as an edit (verdict 'edited', final_text=<their text>)."
                )
        elif final is None or not final.strip():
            what = (
                "the text the user wrote"
                if self.verdict is Verdict.EDITED
                else "the answer the user kept"
            )
            raise ValueError(
                f"An {self.verdict.value} answer needs a non-empty final_text ({what}), got "
                f"{final!r}. If the user discarded the answer, record it as rejected."
            )

    # ------------------------------------------------------------------ views

    @property
    def rewrite(self) -> str | None:
        """The reflection model's rewrite, or None when the answer was the draft unchanged."""
        return self.trajectory.rewrite if self.trajectory is not None else None

    @property
    def answer(self) -> str:
        """The text the user was shown: the rewrite, else the draft."""
        return self.rewrite if self.rewrite is not None else self.draft

    @property
    def reflected(self) -> bool:
        """Whether the reflection model ran on this answer (so its prompt is known to training)."""
        return self.raw_reflection is not None or self.trajectory is not None

    def reflection_messages(self) -> list[BaseMessage]:
        """Rebuild the prompt the reflection model read for this answer.

        Returns:
            :func:`~langchain_rpo.prompts.build_reflection_messages` over the draft, the recalled
            texts and the request, with the event's cuts: what the rewriter built.

        Raises:
            ValueError: When the event recalled items but does not hold their texts.
        """
        if self.recalled_texts is None and self.recalled_ids:
            raise ValueError(
                f"Event {self.event_id} recalled {len(self.recalled_ids)} items but does not hold "
                "their texts, so the prompt the reflection model read cannot be rebuilt. Fix: pass "
                "recalled_texts= when the event is recorded."
            )
        return build_reflection_messages(
            self.draft,
            list(self.recalled_texts or ()),
            self.query,
            max_item_chars=self.max_item_chars,
            max_query_chars=self.max_query_chars,
        )

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict (the :meth:`to_json` object)."""
        return {
            "version": FEEDBACK_FORMAT_VERSION,
            "event_id": self.event_id,
            "time": self.time,
            "user_id": self.user_id,
            "verdict": self.verdict.value,
            "rating": self.rating,
            "query": self.query,
            "draft": self.draft,
            "trajectory": None if self.trajectory is None else self.trajectory.to_dict(),
            "raw_reflection": self.raw_reflection,
            "recalled_ids": list(self.recalled_ids),
            "recalled_texts": None if self.recalled_texts is None else list(self.recalled_texts),
            "max_item_chars": self.max_item_chars,
            "max_query_chars": self.max_query_chars,
            "final_text": self.final_text,
        }

    def to_json(self) -> str:
        """Return the event as one line of JSON (a JSON Lines record, without the newline)."""
        # ensure_ascii=False keeps users' texts readable; JSON escapes any newline inside them.
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeedbackEvent:
        """Build an event from its :meth:`to_dict` form, checking every field.

        Raises:
            ValueError: On a missing or unknown key, a newer version, or any invalid field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"A feedback event must be a JSON object, got {type(data).__name__}.")
        check_json_value(dict(data), "event")
        version = data.get("version")
        if version != FEEDBACK_FORMAT_VERSION:
            newer = isinstance(version, int) and version > FEEDBACK_FORMAT_VERSION
            raise ValueError(
                f"Feedback event version {version!r} is not one this release reads (it reads "
                f"version {FEEDBACK_FORMAT_VERSION})."
                + (" Fix: upgrade langchain-rpo." if newer else "")
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"version"})
        if unknown:
            raise ValueError(
                f"Feedback event has the unknown key {unknown[0]!r}; known keys: "
                f"{', '.join(sorted(names))}."
            )
        missing = [name for name in ("event_id", "time", "user_id", "verdict", "draft")
                   if name not in data]  # fmt: skip
        if missing:
            raise ValueError(f"Feedback event lacks the key {missing[0]!r}.")
        return cls(**{key: value for key, value in data.items() if key != "version"})

    @classmethod
    def from_json(cls, line: str) -> FeedbackEvent:
        """Parse one JSON Lines record written by :meth:`to_json`.

        Raises:
            ValueError: When the line is not a JSON object, or the event is invalid.
        """
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"A feedback event line is not JSON: {exc}") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------ from an answer

    @classmethod
    def from_answer(
        cls,
        answer: BaseMessage | Mapping[str, Any],
        *,
        edited: str | None = None,
        accepted: bool | None = None,
        rating: float | None = None,
        recalled_texts: Sequence[str] | None = None,
        max_item_chars: int | None | _Unset = _UNSET,
        max_query_chars: int | None | _Unset = _UNSET,
        time: str | datetime | None = None,
        event_id: str | None = None,
    ) -> FeedbackEvent:
        """Build the event of the user's reaction to an earlier answer of the rewriter.

        Say what the user did with exactly one of ``edited`` (their text; it may come with
        ``accepted=False``, since they replaced the answer) or ``accepted`` (True: kept as it
        was; False: discarded). An edit whose text is the answer itself is recorded as accepted.

        Args:
            answer: The message the rewriter returned (its ``response_metadata["rpo"]`` is
                read), that metadata dict itself, or a ``response_metadata`` dict holding it.
            edited: The text the user turned the answer into.
            accepted: Whether the user kept the answer (when they did not edit it).
            rating: The user's rating of the answer, if any.
            recalled_texts: The recalled items' texts as the prompt showed them (needed for
                training on the event; the metadata's own ``recalled_texts`` when it has them).
            max_item_chars: The rewriter's item cut (``rewriter.max_item_chars``: it defaults to
                the adapter's ``rpo_settings.json``). Not given: the metadata's
                ``max_item_chars`` when it has one, else the library default.
            max_query_chars: The rewriter's request cut, found the same way.
            time: When the user reacted (default: now).
            event_id: The event's id (default: a new one).

        Returns:
            The event.

        Raises:
            TypeError: When ``answer`` is neither a message nor a dict (a ``str`` answer carries
                no metadata).
            ValueError: When the answer has no ``rpo`` metadata or no user, the verdict is
                missing or contradictory, the edit is empty, or any field is invalid.
        """
        meta = rpo_metadata_of(answer)
        user_id = answer_user(meta)
        draft = meta.get("draft")
        if not isinstance(draft, str):
            raise ValueError(
                "The answer's rpo metadata has no draft text; it is not the metadata of an "
                "RPORewriter answer."
            )
        trajectory = _check_trajectory(meta.get("trajectory"))
        shown = trajectory.rewrite if trajectory is not None else draft
        verdict, final = _verdict(edited, accepted, shown)
        if recalled_texts is None:
            recalled_texts = meta.get("recalled_texts")
        if isinstance(max_item_chars, _Unset):
            max_item_chars = meta.get("max_item_chars", DEFAULT_ITEM_CHARS)
        if isinstance(max_query_chars, _Unset):
            max_query_chars = meta.get("max_query_chars", DEFAULT_QUERY_CHARS)
        return cls(
            user_id=user_id,
            verdict=verdict,
            draft=draft,
            final_text=final,
            rating=rating,
            query=meta.get("query"),
            trajectory=trajectory,
            raw_reflection=meta.get("raw_reflection"),
            recalled_ids=meta.get("recalled_ids") or (),
            recalled_texts=recalled_texts,
            max_item_chars=max_item_chars,
            max_query_chars=max_query_chars,
            time=utc_now() if time is None else time,  # type: ignore[arg-type]
            event_id=uuid.uuid4().hex if event_id is None else event_id,
        )


def answer_user(meta: Mapping[str, Any]) -> str:
    """The user an answer was given to, from its ``rpo`` metadata.

    Raises:
        ValueError: When the metadata names no user (the feedback could not be attributed).
    """
    user_id = meta.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(
            f"The answer's rpo metadata names no user (user_id={user_id!r}), so the feedback "
            "cannot be attributed. Fix: record feedback on an answer the rewriter gave for a "
            "user (config={'configurable': {'user_id': ...}})."
        )
    return user_id


def rpo_metadata_of(answer: object) -> Mapping[str, Any]:
    """The ``rpo`` metadata of an answer message, or the metadata passed itself.

    Raises:
        TypeError: For a ``str`` answer (it carries no metadata) or something not a message
            or dict.
        ValueError: When the message or dict holds no rewriter metadata.
    """
    if isinstance(answer, str):
        raise TypeError(
            "This answer is a plain string, which carries no rpo metadata to record feedback "
            "on. Fix: give the rewriter a message (an AIMessage draft, or use the wrapping form) "
            "so that it answers with a message, and pass that message."
        )
    if isinstance(answer, BaseMessage):
        meta = (answer.response_metadata or {}).get(RPO_METADATA_KEY)
        where = "This message's response_metadata"
    elif isinstance(answer, Mapping):
        meta = answer.get(RPO_METADATA_KEY, answer)
        where = "This dict"
    else:
        raise TypeError(
            f"answer must be the message an RPORewriter returned or its rpo metadata dict, got "
            f"{type(answer).__name__}."
        )
    if not isinstance(meta, Mapping) or "draft" not in meta or "user_id" not in meta:
        raise ValueError(
            f"{where} holds no RPORewriter metadata (response_metadata['rpo'] with user_id and "
            "draft): it is not an answer of the rewriter, or a later step dropped the metadata. "
            "Fix: pass the message the rewriter returned."
        )
    return meta


def _verdict(edited: object, accepted: object, shown: str) -> tuple[Verdict, str | None]:
    """The verdict and final text of a feedback call, or a ValueError naming the conflict."""
    if accepted is not None and not isinstance(accepted, bool):
        raise ValueError(f"accepted must be True, False or None, got {accepted!r}.")
    if edited is not None:
        if not isinstance(edited, str):
            raise ValueError(f"edited must be the user's text, got {type(edited).__name__}.")
        if not edited.strip():
            raise ValueError(
                "edited is empty: an edit must be the text the user kept. If the user discarded "
                "the answer, pass accepted=False instead."
            )
        if accepted is True:
            raise ValueError(
                "Pass either edited=<text> or accepted=True, not both: an edited answer was "
                "not kept as it was."
            )
        if edited.strip() == shown.strip():
            return Verdict.ACCEPTED, shown
        return Verdict.EDITED, edited
    if accepted is None:
        raise ValueError(
            "Say what the user did: edited=<their text>, accepted=True (kept as it was) or "
            "accepted=False (discarded)."
        )
    return (Verdict.ACCEPTED, shown) if accepted else (Verdict.REJECTED, None)


# ---------------------------------------------------------------------- files


def iter_events(path: str | os.PathLike[str]) -> Iterator[FeedbackEvent]:
    """Read events from a JSON Lines file, one per non-blank line.

    Raises:
        ValueError: Naming the file and line of the first invalid event.
    """
    with Path(path).open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                yield FeedbackEvent.from_json(line)
            except ValueError as exc:
                raise ValueError(f"{path} line {number}: {exc}") from None


def read_events(path: str | os.PathLike[str]) -> list[FeedbackEvent]:
    """Read all the events of a JSON Lines file (see :func:`iter_events`)."""
    return list(iter_events(path))


def dump_events(stream: TextIO, events: Iterable[FeedbackEvent]) -> int:
    """Write events to an open text stream as JSON Lines, one :meth:`~FeedbackEvent.to_json` a line.

    Returns:
        How many events were written.
    """
    count = 0
    for event in events:
        stream.write(event.to_json() + "\n")
        count += 1
    return count


def write_events(path: str | os.PathLike[str], events: Iterable[FeedbackEvent]) -> int:
    """Write events as JSON Lines, atomically (the file is the old one or the new one).

    Returns:
        How many events were written.
    """
    with atomic_write(path, "w", encoding="utf-8", private=True) as stream:  # users' edits
        return dump_events(stream, events)


# ---------------------------------------------------------------------- backends


def check_events(user_id: str, events: Iterable[FeedbackEvent]) -> list[FeedbackEvent]:
    """Check a backend's ``add_feedback`` call: every backend refuses exactly the same calls.

    Args:
        user_id: The user the call names (already checked with ``check_user_id``).
        events: The events to store.

    Returns:
        The events, as a list.

    Raises:
        ValueError: When ``events`` is a string or a single event rather than a list, holds
            something other than a :class:`FeedbackEvent`, an event of another user (no call can
            write into another user's events), or one event id twice.
    """
    if isinstance(events, (str, bytes, FeedbackEvent)) or not isinstance(events, Iterable):
        raise ValueError(
            f"events must be a list of FeedbackEvent, got {type(events).__name__}. Fix: wrap a "
            "single event in a list."
        )
    checked = list(events)
    seen: set[str] = set()
    for i, event in enumerate(checked):
        if not isinstance(event, FeedbackEvent):
            raise ValueError(
                f"events[{i}] is a {type(event).__name__}, not a FeedbackEvent. Fix: build it "
                "with FeedbackEvent(...), FeedbackEvent.from_dict or FeedbackEvent.from_answer."
            )
        if event.user_id != user_id:
            raise ValueError(
                f"events[{i}] belongs to user {event.user_id!r}, but the call names {user_id!r}; "
                "a call only writes its own user's events. Fix: add each user's events with "
                "their own user id."
            )
        if event.event_id in seen:
            raise ValueError(
                f"events[{i}] repeats the event id {event.event_id!r}; pass each event once."
            )
        seen.add(event.event_id)
    return checked


def in_time_order(events: Iterable[FeedbackEvent]) -> list[FeedbackEvent]:
    """Sort events by time; events of the same instant keep the order they were stored in.

    Compared as instants, not as strings: ``...:11Z`` is earlier than ``...:11.5Z`` but sorts
    after it as text.
    """
    return sorted(events, key=lambda event: datetime.fromisoformat(event.time))


class EventLog:
    """Feedback events in memory, per user: what the embedded backends keep beside their items.

    The FAISS store saves it in its zip; :class:`~langchain_rpo.history_vectorstore.
    VectorStoreHistory` keeps one (optionally in a JSON Lines file). Thread-safe. Calls take a
    user id already checked by the backend, and events checked by :func:`check_events`.
    """

    def __init__(self) -> None:
        # user -> event id -> event, in the order stored (a replaced event keeps its place).
        self._events: dict[str, dict[str, FeedbackEvent]] = {}
        self._lock = threading.RLock()

    def add(self, user_id: str, events: Sequence[FeedbackEvent]) -> int:
        """Store events of one user (a stored id is replaced). Returns how many."""
        with self._lock:
            mine = self._events.setdefault(user_id, {})
            for event in events:
                mine[event.event_id] = event
            if not mine:
                del self._events[user_id]
        return len(events)

    def events(self, user_id: str) -> list[FeedbackEvent]:
        """The user's events in time order."""
        with self._lock:
            return in_time_order(self._events.get(user_id, {}).values())

    def stored(self) -> dict[str, list[FeedbackEvent]]:
        """Every user's events in the order stored (for saving), users sorted."""
        with self._lock:
            return {user: list(self._events[user].values()) for user in sorted(self._events)}

    def delete(self, user_id: str, event_ids: Sequence[str]) -> int:
        """Delete the user's events by id (unknown ids ignored). Returns how many went."""
        with self._lock:
            mine = self._events.get(user_id, {})
            gone = sum(mine.pop(event_id, None) is not None for event_id in set(event_ids))
            if not mine:
                self._events.pop(user_id, None)
            return gone

    def forget(self, user_id: str) -> int:
        """Delete all of the user's events. Returns how many there were."""
        with self._lock:
            return len(self._events.pop(user_id, {}))

    def users(self) -> list[str]:
        """The users with at least one event, sorted."""
        with self._lock:
            return sorted(self._events)

    def replace_all(self, events: Mapping[str, Sequence[FeedbackEvent]]) -> None:
        """Replace every user's events (when loading a saved store)."""
        with self._lock:
            self._events = {
                user: {event.event_id: event for event in user_events}
                for user, user_events in events.items()
                if user_events
            }
