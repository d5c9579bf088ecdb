"""Recording feedback: RPORewriter.record_feedback, and events kept by every history backend.

Real things throughout: the tiny taught reflection model (tests/conftest.py), FAISS, the
in-memory and Qdrant vector stores, and the PostgreSQL server the tests start. What must hold:
a recorded edit is recalled by the next answer; events survive save/load, a reconnect and an
export/import between backends; forget erases events and the items they added; a malformed call
is a ValueError that changes nothing; a half-done call is rolled back.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from history_backends import DEFAULT_DIM, FACTORIES, REOPENERS
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda, RunnableParallel
from tiny_models import TAUGHT_TRAJECTORY

from langchain_rpo import RPORewriter, UserHistoryStore
from langchain_rpo.feedback import FeedbackEvent, Verdict
from langchain_rpo.history_backend import HistoryBackend
from langchain_rpo.history_transfer import (
    FORMAT_NAME,
    HistoryTransferError,
    export_history,
    import_history,
)

EMBEDDINGS = DeterministicFakeEmbedding(size=DEFAULT_DIM)
ALICE = {"configurable": {"user_id": "alice"}}
HISTORY = ["Announcing Rust 1.75.0", "Rust 1.74.1 released", "Rust 1.74.0 is here"]


@pytest.fixture(params=sorted(FACTORIES))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def history(backend_name: str) -> Iterator[HistoryBackend]:
    with FACTORIES[backend_name](EMBEDDINGS) as backend:
        backend.add_texts("alice", HISTORY, ids=["a1", "a2", "a3"])
        backend.add_texts("bob", ["Bob's diary"], ids=["b1"])
        yield backend


@pytest.fixture
def rewriter(history: HistoryBackend, taught_reflection: Any) -> RPORewriter:
    return RPORewriter(
        history=history, reflection=taught_reflection, k=2, max_item_chars=50, max_query_chars=60
    )


def answer_for(rewriter: RPORewriter, draft: str = "A generic draft", user: str = "alice") -> Any:
    return rewriter.invoke(AIMessage(draft), {"configurable": {"user_id": user}})


def state(history: HistoryBackend) -> tuple[Any, ...]:
    """Everything the backend holds for the test's users: items and events."""
    users = ("alice", "bob", "carol")
    items = sorted((r.user_id, r.id, r.text, json.dumps(r.metadata)) for r in history.export(users))
    return tuple(items), tuple(tuple(history.feedback(u)) for u in users)


# ---------------------------------------------------------------- recording


def test_an_edit_is_stored_as_an_event_and_recalled_by_the_next_answer(
    rewriter: RPORewriter, history: HistoryBackend
) -> None:
    first = answer_for(rewriter)
    meta = first.response_metadata["rpo"]
    assert first.content == TAUGHT_TRAJECTORY.rewrite and len(meta["recalled_ids"]) == 2
    edit = "Rust 1.76 ships today, my way"
    event = rewriter.record_feedback(first, edited=edit, rating=2)
    # The event holds what training needs to rebuild the prompt, looked up at record time.
    assert event.verdict is Verdict.EDITED and event.final_text == edit and event.rating == 2
    assert event.user_id == "alice" and event.draft == "A generic draft"
    assert event.rewrite == TAUGHT_TRAJECTORY.rewrite
    assert list(event.recalled_ids) == meta["recalled_ids"]
    by_id = dict(zip(["a1", "a2", "a3"], HISTORY, strict=True))
    assert list(event.recalled_texts or []) == [by_id[i] for i in meta["recalled_ids"]]
    assert (event.max_item_chars, event.max_query_chars) == (50, 60)
    assert "recalled_texts" not in meta  # the user's history never rides in the metadata
    assert history.feedback("alice") == [event]
    [item] = history.get("alice", [event.event_id])
    assert item.page_content == edit
    assert item.metadata == {"source": "feedback", "event_id": event.event_id, "verdict": "edited"}
    # The next answer, on the same draft, recalls the user's own edit first.
    second = answer_for(rewriter)
    assert second.response_metadata["rpo"]["recalled_ids"][0] == event.event_id
    again = rewriter.record_feedback(second.response_metadata["rpo"], accepted=True)
    assert again.recalled_texts is not None and again.recalled_texts[0] == edit
    assert [e.event_id for e in history.feedback("alice")] == [event.event_id, again.event_id]


def test_a_cold_start_user_learns_from_the_first_edit(
    history: HistoryBackend, taught_reflection: Any
) -> None:
    rewriter = RPORewriter(history=history, reflection=taught_reflection, k=1)
    first = answer_for(rewriter, "A plain draft", user="carol")
    assert first.content == "A plain draft"  # no history yet: the draft, unchanged
    event = rewriter.record_feedback(first, edited="Carol's own title")
    assert event.trajectory is None and event.raw_reflection is None and event.recalled_ids == ()
    second = answer_for(rewriter, "A plain draft", user="carol")
    assert second.response_metadata["rpo"]["recalled_ids"] == [event.event_id]
    assert second.content == TAUGHT_TRAJECTORY.rewrite  # now the reflection model runs


def test_accept_and_reject(rewriter: RPORewriter, history: HistoryBackend) -> None:
    kept = rewriter.record_feedback(answer_for(rewriter), accepted=True)
    assert kept.verdict is Verdict.ACCEPTED and kept.final_text == TAUGHT_TRAJECTORY.rewrite
    assert history.get("alice", [kept.event_id])[0].metadata["verdict"] == "accepted"
    same = rewriter.record_feedback(answer_for(rewriter), edited=TAUGHT_TRAJECTORY.rewrite)
    assert same.verdict is Verdict.ACCEPTED  # an "edit" that changes nothing
    before = history.count("alice")
    dropped = rewriter.record_feedback(answer_for(rewriter), accepted=False, rating=1)
    assert dropped.verdict is Verdict.REJECTED and dropped.final_text is None
    assert history.count("alice") == before  # nothing to learn from a rejection's text
    assert history.feedback("alice")[-1] == dropped


def test_a_recalled_item_deleted_before_the_feedback_leaves_the_texts_unknown(
    rewriter: RPORewriter, history: HistoryBackend
) -> None:
    answer = answer_for(rewriter)
    history.delete("alice", answer.response_metadata["rpo"]["recalled_ids"][:1])
    event = rewriter.record_feedback(answer, edited="mine")
    assert event.recalled_texts is None  # rather than a prompt the model never read
    assert len(event.recalled_ids) == 2


def test_the_async_twin_records_the_same(rewriter: RPORewriter, history: HistoryBackend) -> None:
    answer = answer_for(rewriter)
    event = asyncio.run(rewriter.arecord_feedback(answer, edited="async edit", config=ALICE))
    assert history.feedback("alice") == [event]
    assert history.get("alice", [event.event_id])[0].page_content == "async edit"


# ---------------------------------------------------------------- by run id


@pytest.fixture
def faiss_rewriter(taught_reflection: Any) -> RPORewriter:
    """A rewriter over a FAISS store: the run-id memory is the rewriter's, any backend will do."""
    store = UserHistoryStore(EMBEDDINGS)
    store.add_texts("alice", HISTORY, ids=["a1", "a2", "a3"])
    return RPORewriter(history=store, reflection=taught_reflection, k=2)


def as_alice(run_id: Any = None) -> dict[str, Any]:
    return {**ALICE, **({} if run_id is None else {"run_id": run_id})}


def same_event(a: FeedbackEvent, b: FeedbackEvent) -> bool:
    """Two recordings of one answer: equal but for their own id and time."""
    different = {"event_id", "time"}
    return all(
        getattr(a, f) == getattr(b, f) for f in a.to_dict() if f not in different | {"version"}
    )


def test_a_run_id_names_the_answer_of_invoke_batch_and_stream(faiss_rewriter: RPORewriter) -> None:
    rewriter, history = faiss_rewriter, faiss_rewriter.history
    run_id = uuid.uuid4()
    answer = rewriter.invoke(AIMessage("A generic draft"), as_alice(run_id))
    meta = answer.response_metadata["rpo"]
    assert meta["run_id"] == str(run_id)  # the answer says which run gave it
    by_id = rewriter.record_feedback(run_id=run_id, edited="my edit")
    by_meta = rewriter.record_feedback(meta, edited="my edit")
    assert same_event(by_id, by_meta) and by_id.recalled_texts is not None
    # The id's string, in any spelling, names it too.
    assert rewriter.record_feedback(run_id=str(run_id).upper(), accepted=True).final_text == (
        answer.content
    )
    # batch: each row is its own run, and its answer carries that run's id.
    answers = rewriter.batch([AIMessage("one"), AIMessage("two")], [ALICE, ALICE])
    ids = [a.response_metadata["rpo"]["run_id"] for a in answers]
    assert len(set(ids)) == 2
    events = [rewriter.record_feedback(run_id=i, accepted=False) for i in reversed(ids)]
    assert [e.draft for e in events] == ["two", "one"]
    # stream of a str draft: the answer is plain text, so the run id is the only way to name it.
    run_id = uuid.uuid4()
    text = "".join(rewriter.stream("a str draft", as_alice(run_id)))
    event = rewriter.record_feedback(run_id=run_id, edited="streamed, then edited")
    assert event.draft == "a str draft" and event.rewrite == text == TAUGHT_TRAJECTORY.rewrite
    assert history.get("alice", [event.event_id])[0].page_content == "streamed, then edited"


def test_the_run_id_of_a_chain_around_the_rewriter_names_its_answer(
    faiss_rewriter: RPORewriter,
) -> None:
    chain = RunnableLambda(lambda text: AIMessage(text)) | faiss_rewriter
    run_id = uuid.uuid4()
    answer = chain.invoke("chain draft", as_alice(run_id))
    own = answer.response_metadata["rpo"]["run_id"]
    assert own != str(run_id)  # the rewriter's run is a child of the chain's
    assert faiss_rewriter.record_feedback(run_id=run_id, accepted=True).draft == "chain draft"
    assert faiss_rewriter.record_feedback(run_id=own, accepted=True).draft == "chain draft"
    # A run around two answers does not say which one: an error naming the fix.
    both = RunnableParallel(x=faiss_rewriter, y=faiss_rewriter)
    run_id = uuid.uuid4()
    out = both.invoke(AIMessage("twice"), as_alice(run_id))
    before = state(faiss_rewriter.history)
    with pytest.raises(ValueError, match="holds 2 answers.*response_metadata"):
        faiss_rewriter.record_feedback(run_id=run_id, accepted=True)
    assert state(faiss_rewriter.history) == before
    own = out["y"].response_metadata["rpo"]["run_id"]
    assert faiss_rewriter.record_feedback(run_id=own, accepted=True).draft == "twice"


def test_the_async_twins_remember_their_runs(faiss_rewriter: RPORewriter) -> None:
    rewriter = faiss_rewriter

    async def scenario() -> list[FeedbackEvent]:
        first, second = uuid.uuid4(), uuid.uuid4()
        await rewriter.ainvoke(AIMessage("async one"), as_alice(first))
        chunks = [c async for c in rewriter.astream(AIMessage("async two"), as_alice(second))]
        assert chunks[-1].response_metadata["rpo"]["run_id"] == str(second)
        [third] = await rewriter.abatch([AIMessage("async three")], [ALICE])
        return [
            await rewriter.arecord_feedback(run_id=first, accepted=True),
            await rewriter.arecord_feedback(run_id=second, edited="edited async"),
            await rewriter.arecord_feedback(
                run_id=third.response_metadata["rpo"]["run_id"], accepted=False
            ),
        ]

    events = asyncio.run(scenario())
    assert [e.draft for e in events] == ["async one", "async two", "async three"]
    assert [e.verdict for e in events] == [Verdict.ACCEPTED, Verdict.EDITED, Verdict.REJECTED]
    assert rewriter.history.feedback("alice") == events


def test_a_run_id_the_rewriter_does_not_remember_is_a_value_error_that_changes_nothing(
    taught_reflection: Any,
) -> None:
    store = UserHistoryStore(EMBEDDINGS)
    store.add_texts("alice", HISTORY, ids=["a1", "a2", "a3"])
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=1, remembered_answers=2)
    runs = [uuid.uuid4() for _ in range(3)]
    answers = [rewriter.invoke(AIMessage(f"draft {i}"), as_alice(r)) for i, r in enumerate(runs)]
    before = state(store)
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "never seen": (
            {"run_id": uuid.uuid4()},
            r"pass the answer or its response_metadata\['rpo'\]",
        ),
        "forgotten (the oldest of 3, 2 kept)": ({"run_id": runs[0]}, "remembered_answers=2"),
        "not a run id": ({"run_id": "run-1"}, "must be a LangChain run id"),
        "an int": ({"run_id": 7}, "must be a LangChain run id"),
        "both": ({"answer": answers[1], "run_id": runs[1]}, "exactly one.*got both"),
        "neither": ({}, "exactly one.*got neither"),
        "another user in config": (
            {"run_id": runs[2], "config": {"configurable": {"user_id": "bob"}}},
            "config names the user 'bob'",
        ),
    }
    for case, (kwargs, words) in cases.items():
        with pytest.raises(ValueError, match=words):
            rewriter.record_feedback(**{"accepted": True, **kwargs})
        assert state(store) == before, case
    assert rewriter.record_feedback(run_id=runs[2], accepted=True).draft == "draft 2"
    # remembered_answers=0 remembers nothing; the metadata route still works.
    forgetful = RPORewriter(history=store, reflection=taught_reflection, k=1, remembered_answers=0)
    run_id = uuid.uuid4()
    answer = forgetful.invoke(AIMessage("kept nowhere"), as_alice(run_id))
    with pytest.raises(ValueError, match="remembered_answers=0"):
        forgetful.record_feedback(run_id=run_id, accepted=True)
    assert forgetful.record_feedback(answer, accepted=True).draft == "kept nowhere"


# ---------------------------------------------------------------- malformed calls


def _malformed(answer: AIMessage) -> dict[str, tuple[Any, dict[str, Any], str]]:
    meta = answer.response_metadata["rpo"]
    return {
        "a str answer": ("a plain answer", {"accepted": True}, "plain string"),
        "a message without rpo metadata": (AIMessage("hi"), {"accepted": True}, "no RPORewriter"),
        "an unknown dict": ({"foo": 1}, {"accepted": True}, "no RPORewriter"),
        "an int": (42, {"accepted": True}, "answer must be"),
        "no user": ({**meta, "user_id": None}, {"accepted": True}, "names no user"),
        "an empty edit": (answer, {"edited": "  "}, "edited is empty"),
        "an edit that is not text": (answer, {"edited": 5}, "edited must be"),
        "edited and accepted": (answer, {"edited": "x", "accepted": True}, "not both"),
        "no verdict": (answer, {}, "Say what the user did"),
        "accepted not a bool": (answer, {"accepted": "yes"}, "accepted must be"),
        "a NaN rating": (answer, {"accepted": True, "rating": float("nan")}, "rating"),
        "another user in config": (
            answer,
            {"accepted": True, "config": {"configurable": {"user_id": "bob"}}},
            "config names the user 'bob'",
        ),
        "a lone surrogate in the edit": (answer, {"edited": "bad \ud800"}, "surrogate"),
    }


def test_every_malformed_call_is_a_value_error_that_changes_nothing(
    rewriter: RPORewriter, history: HistoryBackend
) -> None:
    answer = answer_for(rewriter)
    rewriter.record_feedback(answer, edited="an earlier edit")
    before = state(history)
    for case, (given, kwargs, words) in _malformed(answer).items():
        with pytest.raises(ValueError, match=words):
            rewriter.record_feedback(given, **kwargs)
        assert state(history) == before, case


class FailingAdds(UserHistoryStore):
    """A FAISS store whose item adds fail (a full disk, a lost connection), events still work."""

    def add_texts(self, *args: Any, **kwargs: Any) -> list[str]:
        raise OSError("the disk is full")


def test_an_event_is_rolled_back_when_its_history_item_cannot_be_added(
    taught_reflection: Any,
) -> None:
    store = FailingAdds(EMBEDDINGS)
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=1)
    answer = rewriter.invoke(AIMessage("draft"), ALICE)
    with pytest.raises(OSError, match="disk is full"):
        rewriter.record_feedback(answer, edited="mine")
    assert store.feedback("alice") == [] and store.feedback_users() == []
    # A rejection adds no item, so it is stored whole.
    assert rewriter.record_feedback(answer, accepted=False).verdict is Verdict.REJECTED


class FlakyEmbeddings(DeterministicFakeEmbedding):
    """Deterministic embeddings whose document embedding can be made to fail (a model server
    that went down), while queries still embed."""

    down: bool = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.down:
            raise ConnectionError("the embeddings server is down")
        return super().embed_documents(texts)


def test_every_backend_rolls_back_the_event_when_the_item_add_fails(
    backend_name: str, taught_reflection: Any
) -> None:
    """The event is stored, then the item's embedding fails: the event is deleted again."""
    embeddings = FlakyEmbeddings(size=DEFAULT_DIM)
    with FACTORIES[backend_name](embeddings) as history:
        history.add_texts("alice", HISTORY, ids=["a1", "a2", "a3"])
        rewriter = RPORewriter(history=history, reflection=taught_reflection, k=1)
        answer = rewriter.invoke(AIMessage("draft"), ALICE)
        earlier = rewriter.record_feedback(answer, accepted=False)
        before = state(history)
        embeddings.down = True
        with pytest.raises(ConnectionError, match="server is down"):
            rewriter.record_feedback(answer, edited="mine")
        assert state(history) == before
        assert history.feedback("alice") == [earlier]


def test_a_text_no_backend_can_store_is_refused_before_anything_is_written(
    rewriter: RPORewriter, history: HistoryBackend
) -> None:
    answer = answer_for(rewriter)
    before = state(history)
    with pytest.raises(ValueError, match="NUL"):
        rewriter.record_feedback(answer, edited="nul \x00 inside")
    assert state(history) == before


# ---------------------------------------------------------------- persistence and transfer


def test_events_and_their_items_survive_a_reopen(
    backend_name: str, rewriter: RPORewriter, history: HistoryBackend
) -> None:
    edited = rewriter.record_feedback(answer_for(rewriter), edited="kept across restarts")
    rejected = rewriter.record_feedback(answer_for(rewriter, user="bob"), accepted=False)
    with REOPENERS[backend_name](history) as reopened:
        assert reopened.feedback("alice") == [edited]
        assert reopened.feedback("bob") == [rejected]
        assert reopened.get("alice", [edited.event_id])[0].page_content == "kept across restarts"
        # forget erases the user's events and the items they added, and nobody else's.
        assert reopened.forget("alice") == 4
        assert reopened.feedback("alice") == [] and reopened.get("alice", [edited.event_id]) == []
        assert reopened.feedback("bob") == [rejected]


def test_events_travel_with_export_and_import_between_backends(
    rewriter: RPORewriter, history: HistoryBackend
) -> None:
    rewriter.record_feedback(answer_for(rewriter), edited="alice's edit", rating=5)
    rewriter.record_feedback(answer_for(rewriter, user="bob"), accepted=True)
    lone = FeedbackEvent(user_id="carol", verdict="rejected", draft="d")  # events, no items
    history.add_feedback("carol", [lone])
    out = io.StringIO()
    assert export_history(history, out, with_vectors=True) == 3 + 1 + 1 + 1
    text = out.getvalue()
    assert json.loads(text.splitlines()[-1]) == {"end": FORMAT_NAME, "records": 6, "events": 3}
    for name in sorted(FACTORIES):  # into every backend, and back out the same
        with FACTORIES[name](EMBEDDINGS) as target:
            assert import_history(target, io.StringIO(text)) == 6
            assert import_history(target, io.StringIO(text)) == 6  # again: replaced, not doubled
            assert state(target) == state(history), name
            assert target.feedback_users() == ["alice", "bob", "carol"]
    only_bob = io.StringIO()
    export_history(history, only_bob, user_ids=["bob"])
    assert json.loads(only_bob.getvalue().splitlines()[-1])["events"] == 1


def _export(history: HistoryBackend) -> list[str]:
    out = io.StringIO()
    export_history(history, out)
    return out.getvalue().splitlines()


def _feedback_line(line: str, **change: Any) -> str:
    value = json.loads(line)
    value["feedback"].update(change)
    return json.dumps(value)


@pytest.fixture
def store_with_events() -> UserHistoryStore:
    store = UserHistoryStore(EMBEDDINGS)
    store.add_texts("alice", ["alpha"], ids=["a"])
    store.add_feedback(
        "alice",
        [FeedbackEvent(user_id="alice", verdict="edited", draft="d", final_text="f", event_id=i)
         for i in ("e1", "e2")],
    )  # fmt: skip
    return store


TRANSFER_DAMAGE: dict[str, tuple[Any, int, str]] = {
    # lines: header, item, event, event, end
    "an event of a bad verdict": (lambda ls: [*ls[:2], _feedback_line(ls[2], verdict="meh"),
                                              *ls[3:]], 3, "verdict"),
    "an event with an unknown key": (lambda ls: [*ls[:2], _feedback_line(ls[2], extra=1),
                                                 *ls[3:]], 3, "unknown key"),
    "a feedback line with another key": (lambda ls: [*ls[:2], ls[2][:-1] + ', "x": 1}',
                                                     *ls[3:]], 3, "unexpected"),
    "an item after the events": (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 3,
                                 "after the feedback"),
    "an event count that lies": (lambda ls: [*ls[:-1], ls[-1].replace('"events":2',
                                                                       '"events":1')], 5,
                                 "1 events"),
    "an event line dropped": (lambda ls: [*ls[:2], *ls[3:]], 4, "events"),
    "events in a version 1 file": (lambda ls: [ls[0].replace('"version":2', '"version":1'),
                                               *ls[1:]], 3, "version 1"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TRANSFER_DAMAGE))
def test_a_damaged_event_line_imports_nothing(
    store_with_events: UserHistoryStore, case: str
) -> None:
    damage, line, words = TRANSFER_DAMAGE[case]
    target = UserHistoryStore(EMBEDDINGS)
    text = "\n".join(damage(_export(store_with_events))) + "\n"
    with pytest.raises(HistoryTransferError) as caught:
        import_history(target, io.StringIO(text), name="h.jsonl")
    assert str(caught.value).startswith(f"h.jsonl, line {line}: "), str(caught.value)
    assert words in str(caught.value)
    assert target.users() == [] and target.feedback_users() == []


def test_a_version_1_transfer_file_still_imports(store_with_events: UserHistoryStore) -> None:
    lines = _export(store_with_events)
    v1 = [lines[0].replace('"version":2', '"version":1'), lines[1],
          json.dumps({"end": FORMAT_NAME, "records": 1})]  # fmt: skip
    target = UserHistoryStore(EMBEDDINGS)
    assert import_history(target, io.StringIO("\n".join(v1) + "\n")) == 1
    assert target.counts() == {"alice": 1} and target.feedback_users() == []


def test_a_version_1_history_file_still_loads(tmp_path: Path) -> None:
    """A store saved before feedback existed: no feedback list, no feedback members."""
    store = UserHistoryStore(EMBEDDINGS)
    store.add_texts("alice", ["alpha", "beta"], ids=["a", "b"])
    path = tmp_path / "v2.zip"
    store.save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    assert manifest["format_version"] == 2 and manifest["feedback"] == []
    del manifest["feedback"]
    manifest["format_version"] = 1
    members["manifest.json"] = json.dumps(manifest).encode()
    old = tmp_path / "v1.zip"
    with zipfile.ZipFile(old, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    loaded = UserHistoryStore.load(old, EMBEDDINGS)
    assert loaded.counts() == {"alice": 2} and loaded.feedback_users() == []
    loaded.add_feedback("alice", [FeedbackEvent(user_id="alice", verdict="rejected", draft="d")])
    loaded.save(old)  # saved again: version 2, with the event
    assert len(UserHistoryStore.load(old, EMBEDDINGS).feedback("alice")) == 1


def test_a_backend_without_feedback_says_so(taught_reflection: Any) -> None:
    """A third-party backend that keeps no events fails loudly, and its items still export."""

    class ItemsOnly(UserHistoryStore):
        add_feedback = HistoryBackend.add_feedback  # type: ignore[assignment]
        feedback_users = HistoryBackend.feedback_users  # type: ignore[assignment]

    store = ItemsOnly(EMBEDDINGS)
    store.add_texts("alice", ["alpha"])
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=1)
    with pytest.raises(NotImplementedError, match="does not keep feedback events"):
        rewriter.record_feedback(rewriter.invoke(AIMessage("d"), ALICE), accepted=True)
    assert store.count("alice") == 1
    assert export_history(store, io.StringIO()) == 1


def test_the_readme_section_runs_as_written(taught_reflection: Any) -> None:
    """README "Learning from feedback": its snippet, run on a real store and the tiny model."""
    import re

    readme = Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text(encoding="utf-8").split("## Learning from feedback", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    store = UserHistoryStore(EMBEDDINGS)
    store.add_texts("alice", HISTORY)
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=2)
    namespace: dict[str, Any] = {"rewriter": rewriter, "draft": AIMessage("Rust news")}
    exec(compile(match.group(1), "README.md#learning-from-feedback", "exec"), namespace)  # noqa: S102
    verdicts = [e.verdict.value for e in store.feedback("alice")]
    assert verdicts == ["edited", "accepted", "rejected", "accepted"]  # the last one by run id
    assert namespace["event"].final_text == "Rust 1.76 is out"
    # the edit and the two accepted answers: one item per event
    assert store.count("alice") == len(HISTORY) + 3
