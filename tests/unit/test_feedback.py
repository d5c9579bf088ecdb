"""Feedback events: the JSON Lines round trip, events from real rewriter answers, clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from tiny_models import TAUGHT_TRAJECTORY

from langchain_rpo import RPORewriter, UserHistoryStore
from langchain_rpo.feedback import (
    FEEDBACK_FORMAT_VERSION,
    FeedbackEvent,
    Verdict,
    read_events,
    utc_time,
    write_events,
)
from langchain_rpo.metadata import rpo_metadata
from langchain_rpo.trajectory import Trajectory

HISTORY = {
    "a1": "Announcing Rust 1.75.0",
    "a2": "Rust 1.74.1 released",
    "a3": "Rust 1.74.0 is here",
}
ALICE = {"configurable": {"user_id": "alice"}}
PROMPT = ChatPromptTemplate.from_messages([("human", "Write a title for: {article}")])


def event(**overrides: object) -> FeedbackEvent:
    fields = {
        "user_id": "alice",
        "verdict": "edited",
        "draft": "A generic draft about the new Rust release.",
        "final_text": "Rust 1.76 is out — «à la carte» 🦀",
        "rating": 4,
        "query": "Write a title for: Rust 1.76",
        "trajectory": {"preferences": "short", "gaps": "too long", "rewrite": "Rust 1.76"},
        "raw_reflection": "<preferences>short</preferences><gaps>too long</gaps>"
        "<rewrite>Rust 1.76</rewrite>",
        "recalled_ids": ["a1", "a2"],
        "recalled_texts": [HISTORY["a1"], HISTORY["a2"]],
        "time": "2026-12-02T19:36:11Z",
    }
    fields.update(overrides)
    return FeedbackEvent(**fields)  # type: ignore[arg-type]


class ReflectionPrompts(BaseCallbackHandler):
    """Records the messages the reflection model is given."""

    def __init__(self) -> None:
        self.prompts: list[list[str]] = []

    def on_chat_model_start(self, serialized, messages, *, tags=None, **kwargs) -> None:
        if "rpo:reflect" in (tags or []):
            self.prompts.append([str(m.content) for m in messages[0]])


@pytest.fixture()
def store() -> UserHistoryStore:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=16))
    store.add_texts("alice", list(HISTORY.values()), ids=list(HISTORY))
    return store


# ----------------------------------------------------------------------------- round trip


def test_an_event_round_trips_through_one_json_line() -> None:
    original = event()
    line = original.to_json()
    assert "\n" not in line and json.loads(line)["version"] == FEEDBACK_FORMAT_VERSION
    assert "🦀" in line  # users' texts stay readable in the file
    again = FeedbackEvent.from_json(line)
    assert again == original and hash(again) == hash(original)
    assert again.trajectory == Trajectory(rewrite="Rust 1.76", preferences="short", gaps="too long")
    assert again.rewrite == again.answer == "Rust 1.76" and again.reflected
    assert again.recalled_texts == (HISTORY["a1"], HISTORY["a2"])
    assert FeedbackEvent.from_dict(original.to_dict()) == original


def test_events_round_trip_through_a_jsonl_file(tmp_path) -> None:
    events = [
        event(),
        event(verdict="accepted", final_text="Rust 1.76", rating=None, event_id="e2"),
        event(
            verdict="rejected",
            final_text=None,
            trajectory=None,
            raw_reflection="junk",
            recalled_ids=["a1", None],
            recalled_texts=None,
            query=None,
        ),
        event(final_text="line one\nline two", max_item_chars=None, max_query_chars=80),
    ]
    path = tmp_path / "feedback.jsonl"
    assert write_events(path, events) == 4
    assert path.read_text(encoding="utf-8").count("\n") == 4
    assert read_events(path) == events
    assert path.stat().st_mode & 0o077 == 0  # users' edits: readable by the owner only


def test_times_are_stored_in_utc_with_one_spelling() -> None:
    assert event(time="2026-12-02T21:36:11+02:00").time == "2026-12-02T19:36:11Z"
    assert event(time="2026-12-02T19:36:11.250000+00:00").time == "2026-12-02T19:36:11.250000Z"
    assert utc_time(event().time) == event().time
    fresh = FeedbackEvent(user_id="u", verdict="rejected", draft="d")
    assert fresh.time.endswith("Z") and len(fresh.event_id) == 32


def test_an_event_cannot_change_after_it_is_built() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        event().final_text = "something else"  # type: ignore[misc]
    assert isinstance(event().recalled_ids, tuple) and event().verdict is Verdict.EDITED


# ----------------------------------------------------------------------------- from answers


def test_from_answer_records_a_real_rewriter_answer_and_rebuilds_its_prompt(
    store, taught_reflection
):
    seen = ReflectionPrompts()
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=2)
    drafts = FakeListChatModel(responses=["A generic draft about Rust 1.76"])
    answer = (PROMPT | drafts | rewriter).invoke(
        {"article": "Rust 1.76"}, config={**ALICE, "callbacks": [seen]}
    )
    assert answer.content == TAUGHT_TRAJECTORY.rewrite
    ids = answer.response_metadata["rpo"]["recalled_ids"]
    texts = [HISTORY[i] for i in ids]

    # What a recorder passes: the texts it recalled, and the cuts the rewriter used.
    cuts = {"max_item_chars": rewriter.max_item_chars, "max_query_chars": rewriter.max_query_chars}
    edited = FeedbackEvent.from_answer(
        answer, edited="Rust 1.76 is out", recalled_texts=texts, **cuts
    )
    assert edited.verdict is Verdict.EDITED and edited.final_text == "Rust 1.76 is out"
    assert edited.user_id == "alice" and edited.draft == "A generic draft about Rust 1.76"
    assert edited.trajectory == Trajectory(**answer.response_metadata["rpo"]["trajectory"])
    assert edited.rewrite == TAUGHT_TRAJECTORY.rewrite and edited.recalled_ids == tuple(ids)
    assert edited.raw_reflection == answer.response_metadata["rpo"]["raw_reflection"]
    # The event rebuilds exactly the prompt the reflection model read.
    assert [str(m.content) for m in edited.reflection_messages()] == seen.prompts[0]

    kept = FeedbackEvent.from_answer(answer, accepted=True, rating=5, recalled_texts=texts)
    assert kept.verdict is Verdict.ACCEPTED and kept.final_text == answer.content
    same = FeedbackEvent.from_answer(answer, edited=f" {answer.content} ", recalled_texts=texts)
    assert same.verdict is Verdict.ACCEPTED  # an "edit" that changed nothing
    gone = FeedbackEvent.from_answer(answer.response_metadata, accepted=False)
    assert gone.verdict is Verdict.REJECTED and gone.final_text is None
    replaced = FeedbackEvent.from_answer(answer, edited="Mine", accepted=False)
    assert replaced.verdict is Verdict.EDITED


def test_from_answer_of_a_fallback_keeps_the_draft_and_no_trajectory(store, taught_reflection):
    rewriter = RPORewriter(history=store, reflection=taught_reflection)
    answer = rewriter.invoke(AIMessage("A draft"), config={"configurable": {"user_id": "nobody"}})
    recorded = FeedbackEvent.from_answer(answer, edited="My own title")
    assert recorded.trajectory is None and recorded.answer == "A draft"
    assert not recorded.reflected and recorded.recalled_ids == ()
    kept = FeedbackEvent.from_answer(answer.response_metadata["rpo"], accepted=True)
    assert kept.final_text == "A draft"


def test_from_answer_reads_recalled_texts_and_cuts_from_the_metadata_when_it_has_them() -> None:
    meta = dict(rpo_metadata(user_id="alice", draft="d", trajectory=None), recalled_ids=["a1"])
    meta["recalled_texts"] = [HISTORY["a1"]]
    meta["max_item_chars"], meta["max_query_chars"] = 80, None
    recorded = FeedbackEvent.from_answer(meta, accepted=True)
    assert recorded.recalled_texts == (HISTORY["a1"],)
    assert (recorded.max_item_chars, recorded.max_query_chars) == (80, None)
    # Without them in the metadata: the library defaults, unless the caller passes the cuts.
    del meta["max_item_chars"], meta["max_query_chars"]
    recorded = FeedbackEvent.from_answer(meta, accepted=True, max_item_chars=None)
    assert (recorded.max_item_chars, recorded.max_query_chars) == (None, 1000)


# ----------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"user_id": ""}, "user_id must be a non-empty string"),
        ({"user_id": None}, "user_id must be a non-empty string"),
        ({"verdict": "liked"}, "verdict must be one of accepted, edited, rejected"),
        ({"final_text": ""}, "edited answer needs a non-empty final_text"),
        ({"final_text": "  "}, "edited answer needs a non-empty final_text"),
        ({"verdict": "accepted", "final_text": None}, "accepted answer needs a non-empty"),
        ({"verdict": "rejected"}, "record it as an edit"),
        ({"time": "2026-12-02T19:36:11"}, "has no time zone"),
        ({"time": "yesterday"}, "ISO 8601"),
        ({"rating": float("nan")}, "rating must be a finite number"),
        ({"rating": True}, "rating must be a finite number"),
        ({"recalled_texts": ["only one"]}, "pass one text per recalled item"),
        ({"recalled_texts": "a1"}, "recalled_texts must be a list of strings"),
        ({"recalled_ids": [1]}, "recalled_ids[0] must be a string or None"),
        ({"trajectory": {"rewrite": "x", "mood": "y"}}, "unknown key 'mood'"),
        ({"trajectory": {"gaps": "x"}}, "needs a 'rewrite' string"),
        ({"draft": "bad \ud800"}, "lone surrogate"),
        ({"max_item_chars": 0}, "max_item_chars must be a positive int"),
        ({"event_id": ""}, "event_id must be a non-empty string"),
    ],
)
def test_a_malformed_event_is_a_clear_error(overrides, message) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        event(**overrides)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({**event().to_dict(), "version": 2}), "upgrade langchain-rpo"),
        (json.dumps({**event().to_dict(), "colour": "red"}), "unknown key 'colour'"),
        (json.dumps({k: v for k, v in event().to_dict().items() if k != "draft"}), "lacks the key"),
        (event().to_json().replace('"rating": 4', '"rating": NaN'), "NaN"),
    ],
)
def test_a_malformed_line_is_a_clear_error(line, message) -> None:
    with pytest.raises(ValueError, match=message):
        FeedbackEvent.from_json(line)


def test_a_bad_line_in_a_file_is_named_by_its_number(tmp_path) -> None:
    path = tmp_path / "feedback.jsonl"
    path.write_text(event().to_json() + "\n\n" + event(event_id="x").to_json()[:-1] + "\n")
    with pytest.raises(ValueError, match=r"feedback.jsonl line 3: .*not JSON"):
        read_events(path)


@pytest.mark.parametrize(
    ("answer", "kwargs", "error", "message"),
    [
        ("a plain string", {"accepted": True}, TypeError, "plain string"),
        (42, {"accepted": True}, TypeError, "must be the message an RPORewriter returned"),
        (AIMessage("no metadata"), {"accepted": True}, ValueError, "holds no RPORewriter metadata"),
        ({"user_id": None, "draft": "d"}, {"accepted": True}, ValueError, "names no user"),
        ({"user_id": "u", "draft": "d"}, {"edited": ""}, ValueError, "edited is empty"),
        ({"user_id": "u", "draft": "d"}, {}, ValueError, "Say what the user did"),
        ({"user_id": "u", "draft": "d"}, {"edited": "x", "accepted": True}, ValueError, "not both"),
        ({"user_id": "u", "draft": "d"}, {"accepted": "yes"}, ValueError, "True, False or None"),
        (
            {"user_id": "u", "draft": "d", "recalled_ids": ["a"]},
            {"accepted": True, "recalled_texts": []},
            ValueError,
            "one text per recalled item",
        ),
    ],
)
def test_a_malformed_feedback_call_is_a_clear_error(answer, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        FeedbackEvent.from_answer(answer, **kwargs)


def test_an_event_without_recalled_texts_says_how_to_rebuild_its_prompt() -> None:
    with pytest.raises(ValueError, match="pass recalled_texts="):
        event(recalled_texts=None).reflection_messages()
    no_items = event(recalled_ids=[], recalled_texts=None)
    assert "(none)" in str(no_items.reflection_messages()[1].content)


def test_doctests() -> None:
    import doctest

    from langchain_rpo import feedback

    result = doctest.testmod(feedback)
    assert result.attempted > 0 and result.failed == 0
