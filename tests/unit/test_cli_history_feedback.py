"""``rpo history feedback``: a backend's feedback events, written for ``build_preferences``.

Real things: the tiny taught reflection model records real events on a FAISS history file; the
command writes them; ``training.build_preferences`` reads them back (its own ``iter_events``) and
builds DPO records from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from history_backends import DEFAULT_DIM
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage

from langchain_rpo import RPORewriter, UserHistoryStore
from langchain_rpo.cli import main
from langchain_rpo.feedback import FeedbackEvent
from training import build_preferences

EMBEDDINGS = DeterministicFakeEmbedding(size=DEFAULT_DIM)


@pytest.fixture
def history_file(tmp_path: Path, taught_reflection: Any) -> tuple[Path, UserHistoryStore]:
    """A saved FAISS store with events of alice (an edit, a rejection), bob and carol."""
    store = UserHistoryStore(EMBEDDINGS)
    store.add_texts("alice", ["Announcing Rust 1.75.0", "Rust 1.74.1 released"], ids=["a1", "a2"])
    store.add_texts("bob", ["Bob's diary"], ids=["b1"])
    rewriter = RPORewriter(history=store, reflection=taught_reflection, k=2)
    for user, verdict in (("alice", {"edited": "Rust 1.76 is out"}), ("bob", {"accepted": True}),
                          ("alice", {"accepted": False})):  # fmt: skip
        answer = rewriter.invoke(AIMessage("A generic draft"), {"configurable": {"user_id": user}})
        rewriter.record_feedback(answer, **verdict)
    store.add_feedback("carol", [FeedbackEvent(user_id="carol", verdict="rejected", draft="d")])
    path = tmp_path / "history.zip"
    store.save(path)
    return path, store


def _rpo(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_events_round_trip_into_build_preferences(
    history_file: tuple[Path, UserHistoryStore], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, store = history_file
    events = tmp_path / "runs" / "feedback.jsonl"
    events.parent.mkdir()
    code, out, err = _rpo(["history", "feedback", str(path), str(events)], capsys)
    assert (code, out, err.strip()) == (0, "", f"wrote 4 feedback events of 3 users from {path}")
    # build_preferences' own reader gets every event back, equal, each user's in time order.
    read = list(build_preferences.iter_events(events))
    expected = [e for user in ("alice", "bob", "carol") for e in store.feedback(user)]
    assert read == expected
    summary = build_preferences.run(
        build_preferences.PreferenceConfig(events=str(events), out=str(tmp_path / "dpo.jsonl"))
    )
    assert summary["events"] == 4 and summary["users"] == 3
    assert summary["by_verdict"] == {"edited": 1, "accepted": 1, "rejected": 2}
    [record] = [json.loads(x) for x in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert record["user"] == "alice" and record["verdict"] == "edited"  # the one DPO pair


def test_one_user_to_stdout_and_the_errors(
    history_file: tuple[Path, UserHistoryStore], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, store = history_file
    code, out, err = _rpo(["history", "feedback", str(path), "-", "--user", "bob"], capsys)
    assert code == 0 and err.strip() == f"wrote 1 feedback events of 1 users from {path}"
    assert [FeedbackEvent.from_json(line) for line in out.splitlines()] == store.feedback("bob")
    # A user without events writes an empty file, not an error.
    empty = tmp_path / "none.jsonl"
    code, _, _ = _rpo(["history", "feedback", str(path), str(empty), "--user", "dave"], capsys)
    assert code == 0 and empty.read_text() == ""
    missing = tmp_path / "nope.zip"
    for argv, words in (
        (["history", "feedback", str(missing), str(tmp_path / "x.jsonl")], "no such history file"),
        (["history", "feedback", str(path), str(tmp_path / "x.jsonl"), "--user", ""],
         "user_id must be a non-empty string"),
        (["history", "feedback", str(path)], "FILE"),
    ):  # fmt: skip
        code, _, err = _rpo(argv, capsys)
        assert code == 1 and err.startswith("rpo: error: ") and words in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()
