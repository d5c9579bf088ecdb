"""The history contract: one suite, run against every backend in ``tests/history_backends.py``.

Every backend must add, search, get, delete, forget, count and list the same way; keep users
apart whatever their ids look like; refuse exactly what the FAISS store refuses, with a
``ValueError`` and no change; and, where it persists, give everything back after a reopen.
Backends are real (FAISS, InMemoryVectorStore, Qdrant in local mode, PostgreSQL on the test
server) over small deterministic embeddings.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from history_backends import DEFAULT_DIM, FACTORIES, REOPENERS
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.history_backend import HistoryBackend, HistoryRecord
from langchain_rpo.history_checks import MAX_METADATA_DEPTH

BACKENDS = sorted(FACTORIES)


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def history(backend_name: str) -> Iterator[HistoryBackend]:
    with FACTORIES[backend_name](DeterministicFakeEmbedding(size=DEFAULT_DIM)) as backend:
        yield backend


def vec(*values: float) -> list[float]:
    """A DEFAULT_DIM-wide vector starting with ``values``, zeros after."""
    return [*values, *[0.0] * (DEFAULT_DIM - len(values))]


# ---------------------------------------------------------------- add, get, search


def test_add_then_search_finds_the_exact_text_first_with_cosine_one(
    history: HistoryBackend,
) -> None:
    ids = history.add_texts("alice", ["alpha", "beta", "gamma"], [{"n": 1}, {"n": 2}, {}])
    assert len(ids) == 3 and len(set(ids)) == 3
    hits = history.search_with_scores("alice", "beta", k=2)
    assert hits[0][0].id == ids[1]
    doc, score = hits[0]
    assert doc.page_content == "beta"
    assert doc.metadata == {"n": 2, "score": pytest.approx(1.0, abs=1e-5)}
    assert score == pytest.approx(1.0, abs=1e-5)
    assert hits[0][1] >= hits[1][1]
    assert [d.id for d in history.search("alice", "beta", k=2)] == [d.id for d, _ in hits]


def test_search_returns_at_most_k_most_similar_first(history: HistoryBackend) -> None:
    history.add_embeddings(
        "u",
        ["east", "north-east", "north"],
        [vec(1, 0), vec(1, 1), vec(0, 1)],
        ids=["e", "ne", "n"],
    )
    hits = history.search_with_scores_by_vector("u", vec(1, 0.1), k=2)
    assert [doc.id for doc, _ in hits] == ["e", "ne"]
    assert hits[0][1] == pytest.approx(1 / math.sqrt(1.01), abs=1e-5)
    assert hits[1][1] == pytest.approx(1.1 / math.sqrt(2 * 1.01), abs=1e-5)
    assert [d.id for d in history.search_by_vector("u", vec(0, 5), k=10)] == ["n", "ne", "e"]


def test_empty_cases_give_nothing(history: HistoryBackend) -> None:
    assert history.search("nobody", "anything") == []
    history.add_texts("u", ["one"])
    assert history.search("u", "one", k=0) == []
    assert history.search_by_vector("u", vec(1), k=0) == []
    assert history.search("someone else", "one") == []
    assert history.get("nobody", ["x"]) == []
    assert history.add_texts("u", []) == []


def test_get_returns_items_in_the_order_asked_and_skips_unknown_ids(
    history: HistoryBackend,
) -> None:
    history.add_texts("u", ["a", "b", "c"], [{"k": "A"}, {}, {"nested": {"x": [1, 2.5, None]}}],
                      ids=["1", "2", "3"])  # fmt: skip
    docs = history.get("u", ["3", "missing", "1"])
    assert [(d.id, d.page_content) for d in docs] == [("3", "c"), ("1", "a")]
    assert docs[0].metadata == {"nested": {"x": [1, 2.5, None]}}
    assert docs[1].metadata == {"k": "A"}


def test_adding_an_existing_id_replaces_the_item(history: HistoryBackend) -> None:
    history.add_texts("u", ["old text"], [{"v": 1}], ids=["x"])
    history.add_texts("u", ["new text"], [{"v": 2}], ids=["x"])
    assert history.count("u") == 1
    [doc] = history.get("u", ["x"])
    assert (doc.page_content, doc.metadata) == ("new text", {"v": 2})
    assert history.search("u", "new text", k=1)[0].metadata["score"] == pytest.approx(1, abs=1e-5)


def test_add_documents_keeps_document_ids(history: HistoryBackend) -> None:
    ids = history.add_documents("u", [Document(id="d1", page_content="one", metadata={"a": 1}),
                                      Document(page_content="two")])  # fmt: skip
    assert ids[0] == "d1" and ids[1]
    assert [d.page_content for d in history.get("u", ids)] == ["one", "two"]


def test_metadata_is_copied_in(history: HistoryBackend) -> None:
    meta: dict[str, Any] = {"tags": ["a"]}
    history.add_texts("u", ["t"], [meta], ids=["i"])
    meta["tags"].append("changed later")
    assert history.get("u", ["i"])[0].metadata == {"tags": ["a"]}


# ---------------------------------------------------------------- delete, forget


def test_delete_removes_only_the_named_items_and_counts_them(history: HistoryBackend) -> None:
    history.add_texts("u", ["a", "b", "c"], ids=["1", "2", "3"])
    assert history.delete("u", ["1", "missing", "1"]) == 1
    assert history.delete("u", []) == 0
    assert history.count("u") == 2
    assert history.get("u", ["1", "2", "3"])[0].id == "2"
    assert "1" not in {d.id for d in history.search("u", "a", k=10)}


def test_deleting_the_last_item_leaves_no_user(history: HistoryBackend) -> None:
    history.add_texts("u", ["a"], ids=["1"])
    assert history.delete("u", ["1"]) == 1
    assert history.count("u") == 0
    assert "u" not in history.users()
    assert history.search("u", "a") == []


def test_forget_deletes_the_whole_history_and_says_how_much(history: HistoryBackend) -> None:
    history.add_texts("alice", ["a", "b", "c"])
    history.add_texts("bob", ["a"])
    assert history.forget("alice") == 3
    assert history.forget("alice") == 0
    assert history.forget("never seen") == 0
    assert history.count("alice") == 0
    assert history.search("alice", "a") == []
    assert history.users() == ["bob"]
    assert history.count("bob") == 1


# ---------------------------------------------------------------- users, counts, export


def test_users_counts_and_iter_items(history: HistoryBackend) -> None:
    history.add_texts("bob", ["b1"], ids=["1"])
    history.add_embeddings("alice", ["a1", "a2"], [vec(3, 4), vec(0, 2)], [{"m": 1}, {}],
                           ids=["1", "2"])  # fmt: skip
    assert history.users() == ["alice", "bob"]
    assert history.counts() == {"alice": 2, "bob": 1}
    assert history.count("carol") == 0
    records = sorted(history.iter_items("alice", with_vectors=True), key=lambda r: r.id)
    assert [(r.user_id, r.id, r.text, r.metadata) for r in records] == [
        ("alice", "1", "a1", {"m": 1}),
        ("alice", "2", "a2", {}),
    ]
    assert records[0].vector == pytest.approx(vec(0.6, 0.8), abs=1e-6)  # stored normalised
    assert all(r.vector is None for r in history.iter_items("alice"))
    exported = list(history.export())
    assert sorted((r.user_id, r.id) for r in exported) == [("alice", "1"), ("alice", "2"),
                                                           ("bob", "1")]  # fmt: skip
    assert all(isinstance(r, HistoryRecord) for r in exported)
    assert [r.user_id for r in history.export(["bob"])] == ["bob"]


# ---------------------------------------------------------------- isolation

AWKWARD_USERS = [
    "alice",
    "alice ",
    "ALICE",
    "o'brien",
    'say "hi"',
    "100%",
    "a_b",
    "a%b",
    "x' OR '1'='1",
    "'; DROP TABLE items; --",
    "名前",
    "emoji 🎉",
    "back\\slash",
    "5:alice",
    "a:b",
    "a",
    "tab\tnew\nline",
]


def test_users_never_see_each_other_even_with_the_same_item_ids(history: HistoryBackend) -> None:
    for user in AWKWARD_USERS:
        history.add_texts(user, [f"{user} one", "shared text"], [{"owner": user}] * 2,
                          ids=["1", "2"])  # fmt: skip
    assert history.users() == sorted(AWKWARD_USERS)
    for user in AWKWARD_USERS:
        assert history.count(user) == 2
        hits = history.search(user, "shared text", k=50)
        assert len(hits) == 2
        assert {d.metadata["owner"] for d in hits} == {user}
        assert {d.metadata["owner"] for d in history.get(user, ["1", "2"])} == {user}
        assert {r.user_id for r in history.iter_items(user)} == {user}
        assert {d.metadata["owner"] for d in history.search_by_vector(user, vec(1, 1), k=50)} == {
            user
        }


def test_one_users_delete_and_forget_never_touch_another(history: HistoryBackend) -> None:
    history.add_texts("a", ["a1", "a2"], ids=["1", "2"])
    history.add_texts("a:b", ["x"], ids=["1"])
    history.add_texts("%", ["p"], ids=["1"])
    assert history.delete("b", ["1", "2"]) == 0  # a user without those items
    assert history.delete("a:b", ["1"]) == 1
    assert history.forget("%") == 1
    assert history.forget("_") == 0
    assert [d.page_content for d in history.get("a", ["1", "2"])] == ["a1", "a2"]
    assert history.users() == ["a"]


# ---------------------------------------------------------------- bad input

DEEP: dict[str, Any] = {}
_level = DEEP
for _ in range(MAX_METADATA_DEPTH):
    _level["x"] = {}
    _level = _level["x"]

BAD_CALLS: dict[str, Callable[[HistoryBackend], object]] = {
    "empty user id": lambda h: h.add_texts("", ["t"]),
    "user id not a string": lambda h: h.add_texts(5, ["t"]),  # type: ignore[arg-type]
    "user id None in search": lambda h: h.search(None, "q"),  # type: ignore[arg-type]
    "user id with a lone surrogate": lambda h: h.add_texts("\ud800", ["t"]),
    "texts as a bare string": lambda h: h.add_texts("u", "abc"),
    "a text that is not a string": lambda h: h.add_texts("u", [b"bytes"]),  # type: ignore[list-item]
    "a text with a lone surrogate": lambda h: h.add_texts("u", ["ok", "bad \udcff"]),
    "metadatas of another length": lambda h: h.add_texts("u", ["a", "b"], [{}]),
    "metadatas as one dict": lambda h: h.add_texts("u", ["a"], {"k": 1}),  # type: ignore[arg-type]
    "metadata not a dict": lambda h: h.add_texts("u", ["a"], ["meta"]),  # type: ignore[list-item]
    "metadata with a non-string key": lambda h: h.add_texts("u", ["a"], [{1: "x"}]),  # type: ignore[dict-item]
    "metadata with NaN": lambda h: h.add_texts("u", ["a"], [{"x": float("nan")}]),
    "metadata with a set": lambda h: h.add_texts("u", ["a"], [{"x": {1, 2}}]),
    "metadata with a lone surrogate": lambda h: h.add_texts("u", ["a"], [{"x": "\ud800"}]),
    "metadata nested too deep": lambda h: h.add_texts("u", ["a"], [DEEP]),
    "duplicate ids": lambda h: h.add_texts("u", ["a", "b"], ids=["1", "1"]),
    "an empty id": lambda h: h.add_texts("u", ["a"], ids=[""]),
    "ids of another length": lambda h: h.add_texts("u", ["a", "b"], ids=["1"]),
    "ids as a bare string": lambda h: h.add_texts("u", ["a"], ids="1"),
    "k negative": lambda h: h.search("u", "q", k=-1),
    "k a bool": lambda h: h.search("u", "q", k=True),
    "k a float": lambda h: h.search("u", "q", k=1.5),  # type: ignore[arg-type]
    "query not a string": lambda h: h.search("u", 5),  # type: ignore[arg-type]
    "a NaN vector": lambda h: h.add_embeddings("u", ["a"], [vec(float("nan"))]),
    "an infinite vector": lambda h: h.add_embeddings("u", ["a"], [vec(float("inf"))]),
    "a zero vector": lambda h: h.add_embeddings("u", ["a"], [vec()]),
    "a vector of another width": lambda h: h.add_embeddings("u", ["a"], [[1.0, 2.0]]),
    "fewer vectors than texts": lambda h: h.add_embeddings("u", ["a", "b"], [vec(1)]),
    "vectors that are not numbers": lambda h: h.add_embeddings("u", ["a"], [["x"] * DEFAULT_DIM]),
    "a query vector of another width": lambda h: h.search_by_vector("u", [1.0, 2.0]),
    "a NaN query vector": lambda h: h.search_by_vector("u", vec(float("nan"))),
    "two query vectors": lambda h: h.search_by_vector("u", [vec(1), vec(2)]),
    "delete ids as a bare string": lambda h: h.delete("u", "1"),
    "get ids holding a non-string": lambda h: h.get("u", [1]),  # type: ignore[list-item]
    "forget an empty user id": lambda h: h.forget(""),
    "count a non-string user id": lambda h: h.count(3),  # type: ignore[arg-type]
    # No backend stores NUL in a user id, an item id or a text (PostgreSQL text cannot hold it).
    "a NUL in the text": lambda h: h.add_texts("u", ["a\x00b"]),
    "a NUL in the user id": lambda h: h.add_texts("a\x00b", ["t"]),
    "a NUL in the item id": lambda h: h.add_texts("u", ["t"], ids=["x\x00"]),
    "a NUL in a searched user id": lambda h: h.search("a\x00", "q"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_is_refused_with_a_value_error_and_changes_nothing(
    history: HistoryBackend, case: str
) -> None:
    history.add_texts("u", ["kept"], [{"m": 1}], ids=["1"])
    with pytest.raises(ValueError):
        BAD_CALLS[case](history)
    assert history.users() == ["u"]
    assert [(d.id, d.page_content, d.metadata) for d in history.get("u", ["1"])] == [
        ("1", "kept", {"m": 1})
    ]
    assert history.count("u") == 1


# What the FAISS store accepts, every backend accepts and gives back unchanged.
EDGE_VALUES: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    # name: (user id, item id, text, metadata)
    "an empty text": ("u", "1", "", {}),
    "unicode everywhere": ("名前 🎉", "ключ/1", "日本語 🎉", {"ключ": ["é", None, True]}),
    "big and small numbers": ("u", "1", "t", {"big": 2**70, "min": -(2**63), "huge": 1e308,
                                              "tiny": 5e-324}),
    "awkward keys": ("u", "1", "t", {"": 1, "a.b": 2, "$set": 3, "rpo": 4}),
    "empty containers": ("u", "1", "t", {"l": [], "d": {}}),
    "whitespace ids": ("  ", "\t", " ", {}),
    "a NUL in metadata": ("u", "1", "t", {"k": "a\x00b", "a\x00": 1}),
}  # fmt: skip

# Known deviations from the contract, each with its reason; strict: fixing one fails the mark.
DEVIATIONS: dict[tuple[str, str], str] = {}  # (backend, case) -> why it differs


@pytest.mark.parametrize("case", sorted(EDGE_VALUES))
def test_edge_values_the_faiss_store_accepts_come_back_unchanged(
    backend_name: str, history: HistoryBackend, case: str, request: pytest.FixtureRequest
) -> None:
    reason = DEVIATIONS.get((backend_name, case))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, raises=ValueError, strict=True))
    user, item, text, metadata = EDGE_VALUES[case]
    history.add_texts(user, [text], [metadata], ids=[item])
    [doc] = history.get(user, [item])
    assert (doc.id, doc.page_content, doc.metadata) == (item, text, metadata)
    assert history.users() == [user]
    [record] = history.iter_items(user)
    assert (record.id, record.text, record.metadata) == (item, text, metadata)
    assert history.search(user, text, k=1)[0].id == item


# ---------------------------------------------------------------- persistence


def test_everything_comes_back_after_a_reopen(backend_name: str, history: HistoryBackend) -> None:
    if backend_name not in REOPENERS:
        pytest.fail(
            f"backend {backend_name!r} has no entry in REOPENERS (tests/history_backends.py): "
            "register how it is opened again (a reload or a reconnect) so that its persistence "
            "is part of the contract."
        )
    history.add_texts("alice", ["alpha", "beta"], [{"n": 1}, {"t": ["x"]}], ids=["1", "2"])
    history.add_texts("bob", ["gamma"], ids=["1"])
    before = history.search_with_scores("alice", "alpha", k=2)
    with REOPENERS[backend_name](history) as reopened:
        assert reopened.users() == ["alice", "bob"]
        assert reopened.counts() == {"alice": 2, "bob": 1}
        docs = reopened.get("alice", ["2", "1"])
        assert [(d.id, d.page_content, d.metadata) for d in docs] == [
            ("2", "beta", {"t": ["x"]}),
            ("1", "alpha", {"n": 1}),
        ]
        after = reopened.search_with_scores("alice", "alpha", k=2)
        assert [d.id for d, _ in after] == [d.id for d, _ in before]
        assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-5)
        assert reopened.delete("alice", ["1"]) == 1
        assert reopened.forget("bob") == 1
        assert reopened.users() == ["alice"]


# ---------------------------------------------------------------- feedback events


def event(user: str, n: int, *, time: str | None = None, **fields: Any) -> FeedbackEvent:
    """A small edited-answer event of ``user``, id ``e<n>``, at second ``n`` unless ``time``."""
    defaults: dict[str, Any] = {
        "verdict": "edited",
        "draft": f"draft {n}",
        "final_text": f"final {n}",
        "query": f"query {n}",
        "trajectory": {"preferences": "short", "gaps": "long", "rewrite": f"rewrite {n}"},
        "raw_reflection": f"<rewrite>rewrite {n}</rewrite>",
        "recalled_ids": ["a", "b"],
        "recalled_texts": ["alpha", "beta"],
        "rating": 4.5,
    }
    return FeedbackEvent(
        user_id=user,
        event_id=f"e{n}",
        time=time or f"2026-12-02T19:00:{n:02d}Z",
        **{**defaults, **fields},
    )


def test_feedback_comes_back_whole_in_time_order(history: HistoryBackend) -> None:
    late, early = event("alice", 9), event("alice", 3, verdict="rejected", final_text=None)
    assert history.add_feedback("alice", [late, early]) == 2
    assert history.feedback("alice") == [early, late]
    assert history.feedback("bob") == []
    assert history.feedback_users() == ["alice"]
    # Same instant: the order stored; a finer instant sorts by time, not as text.
    same = event("alice", 20, time="2026-12-02T19:00:09Z")
    finer = event("alice", 21, time="2026-12-02T19:00:09.5Z")
    history.add_feedback("alice", [finer, same])
    assert [e.event_id for e in history.feedback("alice")] == ["e3", "e9", "e20", "e21"]


def test_adding_an_event_again_replaces_it(history: HistoryBackend) -> None:
    history.add_feedback("alice", [event("alice", 1)])
    again = event("alice", 1, rating=1)
    history.add_feedback("alice", [again])
    assert history.feedback("alice") == [again]


def test_feedback_of_users_is_kept_apart(history: HistoryBackend) -> None:
    history.add_feedback("alice", [event("alice", 1)])
    history.add_feedback("bob", [event("bob", 1)])  # the same event id, another user
    assert [e.user_id for e in history.feedback("alice")] == ["alice"]
    assert history.delete_feedback("bob", ["e1"]) == 1
    assert history.feedback("alice") == [event("alice", 1)]
    assert history.feedback_users() == ["alice"]


BAD_FEEDBACK: dict[str, tuple[str, Any, str]] = {
    "another user's event": ("alice", [event("bob", 1)], "belongs to user 'bob'"),
    "a single event, not a list": ("alice", event("alice", 1), "list of FeedbackEvent"),
    "a dict, not an event": ("alice", [event("alice", 1).to_dict()], "not a FeedbackEvent"),
    "one id twice": ("alice", [event("alice", 1), event("alice", 1)], "repeats the event id"),
    "an empty user": ("", [event("alice", 1)], "user_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDBACK))
def test_a_bad_add_feedback_is_refused_and_changes_nothing(
    history: HistoryBackend, case: str
) -> None:
    history.add_feedback("alice", [event("alice", 7)])
    user, events, words = BAD_FEEDBACK[case]
    with pytest.raises(ValueError, match=words):
        history.add_feedback(user, [event("alice", 8), *events] if isinstance(events, list)
                             else events)  # fmt: skip
    assert history.feedback("alice") == [event("alice", 7)]
    assert history.feedback("bob") == []


def test_forget_erases_events_and_delete_leaves_them(history: HistoryBackend) -> None:
    history.add_texts("alice", ["alpha", "beta"], ids=["a", "b"])
    history.add_feedback("alice", [event("alice", 1), event("alice", 2)])
    history.add_texts("bob", ["gamma"])
    history.add_feedback("bob", [event("bob", 1)])
    # An event is a record of what happened; deleting an item it recalled leaves it alone.
    assert history.delete("alice", ["a"]) == 1
    assert len(history.feedback("alice")) == 2
    assert history.forget("alice") == 1
    assert history.feedback("alice") == []
    assert history.feedback_users() == ["bob"]
    assert history.feedback("bob") == [event("bob", 1)]
    # A user with events and no items is forgotten too.
    history.add_feedback("carol", [event("carol", 1, verdict="rejected", final_text=None)])
    assert history.forget("carol") == 0
    assert history.feedback("carol") == [] and history.feedback_users() == ["bob"]


def test_feedback_comes_back_after_a_reopen(backend_name: str, history: HistoryBackend) -> None:
    history.add_texts("alice", ["alpha"], ids=["a"])
    events = [event("alice", 2), event("alice", 1, verdict="accepted", final_text="rewrite 1")]
    history.add_feedback("alice", events)
    lone = event("carol", 5, verdict="rejected", final_text=None, recalled_texts=None)
    history.add_feedback("carol", [lone])  # events and no items
    with REOPENERS[backend_name](history) as reopened:
        assert reopened.feedback("alice") == [events[1], events[0]]
        assert reopened.feedback("carol") == [lone]
        assert reopened.feedback_users() == ["alice", "carol"]
        assert reopened.forget("alice") == 1
        assert reopened.feedback("alice") == []


# ---------------------------------------------------------------- async twins


def test_async_twins_do_what_the_sync_calls_do(history: HistoryBackend) -> None:
    async def scenario() -> None:
        ids = await history.aadd_texts("u", ["one", "two"], ids=["1", "2"])
        assert ids == ["1", "2"]
        assert (await history.asearch("u", "two", k=1))[0].id == "2"
        query = np.asarray(history.embeddings.embed_query("one"))
        assert (await history.asearch_by_vector("u", query, k=1))[0].id == "1"
        assert await history.acount("u") == 2
        assert await history.adelete("u", ["1"]) == 1
        assert [d.id for d in await history.aget("u", ["2", "x"])] == ["2"]
        assert await history.aadd_feedback("u", [event("u", 1)]) == 1
        assert await history.adelete_feedback("u", ["e1", "x"]) == 1
        await history.aadd_feedback("u", [event("u", 2)])
        assert await history.aforget("u") == 1
        assert history.feedback("u") == []

    asyncio.run(scenario())
