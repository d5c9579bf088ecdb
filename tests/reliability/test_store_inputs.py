"""Store inputs: every bad item is refused whole, by name, before the store changes.

Each case runs on a fresh store of three users. It must raise a ``ValueError`` whose message
matches the case's pattern (the offending item and field), leave the store exactly as it was
(contents, FAISS ids, allocator), and leave it saveable (a save that loads back equal).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _store_helpers import DIM, HashEmbeddings, build_store, snapshot
from langchain_core.documents import Document

from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_checks import MAX_METADATA_DEPTH

USER = "user1-ü"


def _nested(levels: int) -> dict[str, Any]:
    """A metadata dict nesting ``levels`` levels of containers (itself included)."""
    value: Any = "leaf"
    for level in range(levels - 1):
        value = [value] if level % 2 else {"k": value}
    return {"top": value}


def _cyclic() -> dict[str, Any]:
    meta: dict[str, Any] = {"a": []}
    meta["a"].append(meta)
    return meta


class BadModel(HashEmbeddings):
    """Returns a broken vector for the text "bad"."""

    def __init__(self, vector: list[float]) -> None:
        super().__init__(DIM)
        self.vector = vector

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = super().embed_documents(texts)
        return [self.vector if t == "bad" else v for t, v in zip(texts, vectors)]

    def embed_query(self, text: str) -> list[float]:
        return self.vector if text == "bad" else super().embed_query(text)


def _vectors(*rows: Any) -> np.ndarray:
    return np.array([np.ones(DIM) if row is None else row for row in rows], dtype=np.float64)


NAN_ROW = [1.0] * (DIM - 1) + [float("nan")]
INF_ROW = [float("inf")] + [0.0] * (DIM - 1)
BIG_ROW = [1e39] + [0.0] * (DIM - 1)  # beyond float32: becomes inf when stored
ZERO_ROW = [0.0] * DIM

Call = Callable[[UserHistoryStore], object]

# (group, case name, call, pattern the ValueError's message must match)
ADD_CASES: list[tuple[str, Call, str]] = [
    ("lone surrogate in a text", lambda s: s.add_texts(USER, ["ok", "bad \ud800"]),
     r"texts\[1\] holds a lone surrogate"),
    ("lone surrogate in an id", lambda s: s.add_texts(USER, ["a", "b"], ids=["x", "y\udfff"]),
     r"ids\[1\] holds a lone surrogate"),
    ("lone surrogate in a user id", lambda s: s.add_texts("user\ud800", ["a"]),
     r"user_id holds a lone surrogate"),
    ("lone surrogate in a metadata key",
     lambda s: s.add_texts(USER, ["a", "b"], metadatas=[{}, {"k\ud800": 1}]),
     r"metadatas\[1\] key 'k\\ud800' holds a lone surrogate"),
    ("lone surrogate in a nested metadata value",
     lambda s: s.add_texts(USER, ["a"], metadatas=[{"tags": ["x", "\udc80"]}]),
     r"metadatas\[0\]\['tags'\]\[1\] holds a lone surrogate"),
    ("lone surrogate in a document", lambda s: s.add_documents(USER, [Document("x\ud800")]),
     r"texts\[0\] holds a lone surrogate"),
    ("int metadata key", lambda s: s.add_texts(USER, ["a"], metadatas=[{1: "x"}]),
     r"metadatas\[0\] has the key 1 of type int; metadata keys must be strings"),
    ("tuple metadata key", lambda s: s.add_texts(USER, ["a"], metadatas=[{"n": {(1, 2): 3}}]),
     r"metadatas\[0\]\['n'\] has the key \(1, 2\) of type tuple"),
    ("None metadata key", lambda s: s.add_texts(USER, ["a"], metadatas=[{None: 3}]),
     r"key None of type NoneType"),
    ("metadata one level too deep",
     lambda s: s.add_texts(USER, ["a"], metadatas=[_nested(MAX_METADATA_DEPTH + 1)]),
     rf"metadatas\[0\].* deeper than MAX_METADATA_DEPTH \({MAX_METADATA_DEPTH} levels\)"),
    ("metadata nested 10000 levels",
     lambda s: s.add_texts(USER, ["a"], metadatas=[_nested(10_000)]),
     r"deeper than MAX_METADATA_DEPTH"),
    ("cyclic metadata", lambda s: s.add_texts(USER, ["a"], metadatas=[_cyclic()]),
     r"deeper than MAX_METADATA_DEPTH"),
    ("NaN metadata value", lambda s: s.add_texts(USER, ["a"], metadatas=[{"x": float("nan")}]),
     r"metadatas\[0\]\['x'\] is nan; JSON cannot store NaN"),
    ("infinite metadata value",
     lambda s: s.add_texts(USER, ["a"], metadatas=[{"x": [float("-inf")]}]),
     r"metadatas\[0\]\['x'\]\[0\] is -inf"),
    ("set metadata value", lambda s: s.add_texts(USER, ["a"], metadatas=[{"x": {1}}]),
     r"metadatas\[0\]\['x'\] is of type set, which JSON cannot store"),
    ("bytes metadata value", lambda s: s.add_texts(USER, ["a"], metadatas=[{"x": b"1"}]),
     r"is of type bytes"),
    ("NumPy metadata value", lambda s: s.add_texts(USER, ["a"], metadatas=[{"x": np.float32(1)}]),
     r"is of type float32.*\.item\(\)"),
    ("huge int metadata value", lambda s: s.add_texts(USER, ["a"], metadatas=[{"x": 10**5000}]),
     r"metadatas\[0\] cannot be stored as JSON"),
    ("metadata not a dict", lambda s: s.add_texts(USER, ["a"], metadatas=[["k", "v"]]),
     r"metadatas\[0\] must be a dict, got list"),
    ("one dict as metadatas", lambda s: s.add_texts(USER, ["a"], metadatas={"k": "v"}),
     r"metadatas must be a list of dicts"),
    ("empty id", lambda s: s.add_texts(USER, ["a", "b"], ids=["x", ""]),
     r"ids\[1\] is empty"),
    ("NaN vector", lambda s: s.add_embeddings(USER, ["a", "b"], _vectors(None, NAN_ROW)),
     r"embeddings\[1\] is not finite"),
    ("infinite vector", lambda s: s.add_embeddings(USER, ["a"], _vectors(INF_ROW)),
     r"embeddings\[0\] is not finite"),
    ("vector beyond float32", lambda s: s.add_embeddings(USER, ["a", "b"], _vectors(None, BIG_ROW)),
     r"embeddings\[1\] is not finite .*beyond float32"),
    ("zero vector",
     lambda s: s.add_embeddings(USER, ["a", "b", "c"], _vectors(None, None, ZERO_ROW)),
     r"embeddings\[2\] is a zero vector"),
    ("wider vectors than the store's",
     lambda s: s.add_embeddings(USER, ["a"], np.ones((1, DIM + 1))),
     rf"dimension mismatch: got vectors of width {DIM + 1}.* width {DIM}"),
    ("narrower vectors than the store's",
     lambda s: s.add_embeddings("newcomer", ["a"], np.ones((1, DIM - 1))),
     r"dimension mismatch"),
    ("vectors of width 0", lambda s: s.add_embeddings(USER, ["a"], np.ones((1, 0))),
     r"embeddings has width 0"),
    ("ragged vectors", lambda s: s.add_embeddings(USER, ["a", "b"], [[1.0] * DIM, [1.0]]),
     r"embeddings must be an array of numbers"),
    ("vectors of strings", lambda s: s.add_embeddings(USER, ["a"], [["1"] * DIM]),
     r"embeddings must be numbers"),
    ("3-D vectors", lambda s: s.add_embeddings(USER, ["a"], np.ones((1, 1, DIM))),
     r"embeddings must be a vector or a 2-D array"),
    ("fewer vectors than texts", lambda s: s.add_embeddings(USER, ["a", "b"], np.ones((1, DIM))),
     r"Got 2 texts but 1 embeddings"),
    ("model returns NaN", lambda s: _with_model(s, NAN_ROW).add_texts(USER, ["ok", "bad"]),
     r"the embeddings model's vector for texts\[1\] is not finite"),
    ("model returns a zero vector", lambda s: _with_model(s, ZERO_ROW).add_texts(USER, ["bad"]),
     r"the embeddings model's vector for texts\[0\] is a zero vector"),
]


def _with_model(store: UserHistoryStore, vector: list[float]) -> UserHistoryStore:
    store._embeddings = BadModel(vector)
    return store


_Q = np.ones(DIM)
SEARCH_CASES: list[tuple[str, Call, str]] = []
for _name, _k in [("nan", float("nan")), ("1.5", 1.5), ("True", True), ("-1", -1), ("'3'", "3"),
                  ("None", None), ("inf", float("inf"))]:
    SEARCH_CASES += [
        (f"search k={_name}", lambda s, k=_k: s.search(USER, "q", k=k), r"k must be"),
        (f"search_with_scores k={_name}", lambda s, k=_k: s.search_with_scores(USER, "q", k=k),
         r"k must be"),
        (f"search_by_vector k={_name}", lambda s, k=_k: s.search_by_vector(USER, _Q, k=k),
         r"k must be"),
        (f"search of an unknown user k={_name}",
         lambda s, k=_k: s.search("nobody", "q", k=k), r"k must be"),
    ]
SEARCH_CASES += [
    ("NaN query vector", lambda s: s.search_by_vector(USER, NAN_ROW),
     r"query vector is not finite"),
    ("infinite query vector", lambda s: s.search_with_scores_by_vector(USER, INF_ROW),
     r"query vector is not finite"),
    ("zero query vector", lambda s: s.search_by_vector(USER, ZERO_ROW),
     r"query vector is a zero vector"),
    ("query vector of another width", lambda s: s.search_by_vector(USER, np.ones(DIM + 2)),
     r"dimension mismatch"),
    ("two query vectors", lambda s: s.search_by_vector(USER, np.ones((2, DIM))),
     r"takes one vector, got 2"),
    ("query of bytes", lambda s: s.search(USER, b"q"), r"query must be a string, got bytes"),
    ("query of None", lambda s: s.search_with_scores(USER, None), r"query must be a string"),
    ("model returns a NaN query vector", lambda s: _with_model(s, NAN_ROW).search(USER, "bad"),
     r"query vector is not finite"),
    ("lone surrogate in a searched user id", lambda s: s.search("u\ud800", "q"),
     r"user_id holds a lone surrogate"),
]


def _run_case(store_path: Path, call: Call, pattern: str) -> tuple[bool, str]:
    store = build_store()
    before = snapshot(store)
    try:
        call(store)
    except ValueError as exc:
        if not re.search(pattern, str(exc)):
            return False, f"message {str(exc)!r} does not match {pattern!r}"
    except Exception as exc:  # noqa: BLE001 - the case reports it
        return False, f"raised {type(exc).__name__}: {exc}"
    else:
        return False, "accepted"
    if snapshot(store) != before:
        return False, "the store changed"
    store._embeddings = HashEmbeddings(DIM)
    store.save(store_path)
    if snapshot(UserHistoryStore.load(store_path)) != before:
        return False, "the store did not save and load back unchanged"
    return True, ""


@pytest.mark.parametrize(
    ("group", "cases"),
    [("store inputs: add", ADD_CASES), ("store inputs: search", SEARCH_CASES)],
    ids=["add", "search"],
)
def test_bad_inputs_are_refused_by_name_and_change_nothing(
    fault_cases: Any, tmp_path: Path, group: str, cases: list[tuple[str, Call, str]]
) -> None:
    for name, call, pattern in cases:
        held, detail = _run_case(tmp_path / "h.zip", call, pattern)
        fault_cases.record(group, held, f"{name}: {detail}")
    fault_cases.check()


def test_edge_values_that_are_valid_are_accepted(fault_cases: Any, tmp_path: Path) -> None:
    """The limits are exact: what is refused above is accepted just inside."""
    group = "store inputs: valid edge values"
    store = build_store()
    directions = np.random.default_rng(7).normal(size=(3, DIM))
    vectors = directions * np.array([[1e-30], [1e30], [1.0]])  # too small / large to square
    store.add_embeddings(USER, ["tiny", "huge", "neg"], vectors, ids=["tiny", "huge", "neg"],
                         metadatas=[_nested(MAX_METADATA_DEPTH), {"ключ": "ü ✓ 😀"}, None])
    for item_id, vector in zip(["tiny", "huge", "neg"], vectors):
        top = store.search_with_scores_by_vector(USER, vector, k=1)
        held = top[0][0].id == item_id and abs(top[0][1] - 1.0) < 1e-5
        fault_cases.record(group, held, f"{item_id} vector not found by itself: {top}")
    for k in (0, np.int64(2), np.int32(1), 10**12):
        got = store.search(USER, "q", k=k)
        fault_cases.record(group, len(got) == min(int(k), store.count(USER)), f"k={k!r}: {got}")
    store.save(tmp_path / "h.zip")
    fault_cases.record(
        group, snapshot(UserHistoryStore.load(tmp_path / "h.zip")) == snapshot(store),
        "edge values did not round-trip through save",
    )
    fault_cases.check()
