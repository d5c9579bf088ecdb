"""Moving history between backends: the JSON Lines format, its checks, and `rpo history`.

Round trips run between real backends from ``tests/history_backends.py`` over small deterministic
embeddings; the command line runs in-process on FAISS files with ``--vectors`` (no model load).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from history_backends import DEFAULT_DIM, FACTORIES
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_rpo.cli import main
from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_backend import HistoryBackend, embeddings_identifier
from langchain_rpo.history_transfer import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HistoryTransferError,
    export_history,
    import_history,
    open_history,
    read_records,
)

EMBEDDINGS = DeterministicFakeEmbedding(size=DEFAULT_DIM)
EMBEDDINGS_ID = embeddings_identifier(EMBEDDINGS)


def fill(history: HistoryBackend) -> None:
    history.add_texts("alice", ["alpha", "beta", "gamma"], [{"n": 1}, {"tags": ["x", "é"]}, {}],
                      ids=["1", "2", "3"])  # fmt: skip
    history.add_texts("bob", ["delta ✓"], ids=["1"])
    history.add_texts("o'brien %_", ["line\nbreak"], [{"deep": {"a": [None, 2.5]}}], ids=["x"])


def snapshot(history: HistoryBackend) -> list[tuple[str, str, str, dict[str, Any]]]:
    return sorted((r.user_id, r.id, r.text, r.metadata) for r in history.export())


def exported(history: HistoryBackend, **options: Any) -> str:
    out = io.StringIO()
    export_history(history, out, **options)
    return out.getvalue()


@pytest.fixture(params=sorted(FACTORIES))
def other(request: pytest.FixtureRequest) -> Iterator[HistoryBackend]:
    with FACTORIES[request.param](EMBEDDINGS) as backend:
        yield backend


@pytest.fixture
def faiss() -> UserHistoryStore:
    return UserHistoryStore(EMBEDDINGS)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("with_vectors", [True, False], ids=["vectors", "reembed"])
def test_every_backend_round_trips_through_the_file(
    faiss: UserHistoryStore, other: HistoryBackend, with_vectors: bool
) -> None:
    fill(faiss)
    text = exported(faiss, with_vectors=with_vectors)
    assert import_history(other, io.StringIO(text), batch_size=2) == 5
    assert snapshot(other) == snapshot(faiss)
    hits = other.search_with_scores("alice", "beta", k=1)
    assert hits[0][0].id == "2" and hits[0][1] == pytest.approx(1.0, abs=1e-5)

    back = UserHistoryStore(EMBEDDINGS)
    import_history(back, io.StringIO(exported(other, with_vectors=with_vectors)))
    assert snapshot(back) == snapshot(faiss)


def test_the_file_is_a_header_one_line_per_item_and_a_closing_line(
    faiss: UserHistoryStore,
) -> None:
    fill(faiss)
    lines = exported(faiss, with_vectors=True).splitlines()
    assert json.loads(lines[0]) == {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                                    "embeddings": EMBEDDINGS_ID, "dim": DEFAULT_DIM,
                                    "vectors": True}  # fmt: skip
    records = [json.loads(line) for line in lines[1:-1]]
    assert [(r["user_id"], r["id"]) for r in records] == [
        ("alice", "1"), ("alice", "2"), ("alice", "3"), ("bob", "1"), ("o'brien %_", "x")
    ]  # fmt: skip
    assert all(len(r["vector"]) == DEFAULT_DIM for r in records)
    assert json.loads(lines[-1]) == {"end": FORMAT_NAME, "records": 5, "events": 0}
    assert "é" in lines[2]  # UTF-8, readable
    plain = exported(faiss, user_ids=["bob"]).splitlines()
    assert len(plain) == 3 and "vector" not in json.loads(plain[1])


def test_an_empty_backend_exports_an_empty_file_that_imports(faiss: UserHistoryStore) -> None:
    text = exported(faiss, with_vectors=True)
    assert json.loads(text.splitlines()[0])["dim"] is None
    assert import_history(UserHistoryStore(EMBEDDINGS), io.StringIO(text)) == 0


def test_an_item_seen_twice_is_replaced_not_doubled(faiss: UserHistoryStore) -> None:
    fill(faiss)
    text = exported(faiss)
    import_history(faiss, io.StringIO(text))
    assert faiss.counts() == {"alice": 3, "bob": 1, "o'brien %_": 1}
    lines = text.splitlines()
    again = "\n".join([lines[0], lines[1], lines[1].replace("alpha", "ALPHA"), lines[2],
                       json.dumps({"end": FORMAT_NAME, "records": 3, "events": 0})])  # fmt: skip
    target = UserHistoryStore(EMBEDDINGS)
    assert import_history(target, io.StringIO(again + "\n")) == 3
    assert [d.page_content for d in target.get("alice", ["1", "2"])] == ["ALPHA", "beta"]


def test_vectors_of_another_model_are_refused_unless_reembedded(faiss: UserHistoryStore) -> None:
    fill(faiss)
    text = exported(faiss, with_vectors=True).replace(EMBEDDINGS_ID, "some-other-model", 1)
    target = UserHistoryStore(EMBEDDINGS)
    with pytest.raises(HistoryTransferError, match="some-other-model.*--reembed"):
        import_history(target, io.StringIO(text))
    assert target.users() == []
    assert import_history(target, io.StringIO(text), use_vectors=False) == 5
    assert target.search("alice", "gamma", k=1)[0].id == "3"


def test_progress_bar_goes_to_stderr_only_when_asked(
    faiss: UserHistoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(faiss)
    exported(faiss)
    assert capsys.readouterr().err == ""
    text = exported(faiss, progress=True)
    import_history(UserHistoryStore(EMBEDDINGS), io.StringIO(text), progress=True)
    err = capsys.readouterr().err
    assert "export" in err and "import" in err and "5/5" in err


# ---------------------------------------------------------------- damaged files


def _good_lines() -> list[str]:
    store = UserHistoryStore(EMBEDDINGS)
    fill(store)
    return exported(store, with_vectors=True).splitlines()


def _record(line: str, **change: Any) -> str:
    value = json.loads(line)
    value.update(change)
    return json.dumps(value)


DAMAGE: dict[str, tuple[Any, int, str]] = {
    # name: (function of the good lines -> damaged text, the line named, words in the message)
    "empty file": (lambda ls: "", 1, "empty"),
    "header not JSON": (lambda ls: "{nope\n" + "\n".join(ls[1:]), 1, "not valid JSON"),
    "another format": (lambda ls: "\n".join([_record(ls[0], format="csv"), *ls[1:]]), 1,
                       "not a history export"),
    "a newer version": (lambda ls: "\n".join([_record(ls[0], version=FORMAT_VERSION + 1),
                                               *ls[1:]]), 1, "upgrade"),
    "a record not JSON": (lambda ls: "\n".join([*ls[:2], ls[2][:-5], *ls[3:]]), 3,
                          "not valid JSON"),
    "a record that is a list": (lambda ls: "\n".join([*ls[:3], "[1, 2]", *ls[4:]]), 4,
                                "JSON object"),
    "a blank line": (lambda ls: "\n".join([*ls[:2], "", *ls[2:]]), 3, "empty"),
    "a missing key": (lambda ls: "\n".join([*ls[:2], ls[2].replace('"text"', '"txt"'), *ls[3:]]),
                      3, "missing text"),
    "an empty user id": (lambda ls: "\n".join([ls[0], _record(ls[1], user_id=""), *ls[2:]]), 2,
                         "user_id"),
    "an id that is a number": (lambda ls: "\n".join([ls[0], _record(ls[1], id=7), *ls[2:]]), 2,
                               "'id'"),
    "a lone surrogate": (lambda ls: "\n".join([*ls[:4], ls[4].replace('"delta', '"\\ud800'),
                                               *ls[5:]]), 5, "surrogate"),
    "metadata with NaN": (lambda ls: "\n".join([ls[0], ls[1].replace('{"n":1}', '{"n":NaN}'),
                                                *ls[2:]]), 2, "NaN"),
    "a vector of another width": (lambda ls: "\n".join([*ls[:3], _record(ls[3], vector=[1.0]),
                                                        *ls[4:]]), 4, "width"),
    "a zero vector": (lambda ls: "\n".join([*ls[:3], _record(ls[3], vector=[0.0] * DEFAULT_DIM),
                                            *ls[4:]]), 4, "zero vector"),
    "cut short": (lambda ls: "\n".join(ls[:-1]) + "\n", 7, "cut short"),
    "cut mid-line": (lambda ls: "\n".join(ls[:4]) + "\n" + ls[4][:20], 5, "not valid JSON"),
    "a wrong count": (lambda ls: "\n".join([*ls[:-1], json.dumps({"end": FORMAT_NAME,
                                                                  "records": 9})]), 7, "9"),
    "lines after the end": (lambda ls: "\n".join([*ls, ls[1]]), 8, "after the closing line"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_file_imports_nothing_and_names_the_line(case: str) -> None:
    damage, line, words = DAMAGE[case]
    target = UserHistoryStore(EMBEDDINGS)
    target.add_texts("keep", ["kept"], ids=["k"])
    with pytest.raises(HistoryTransferError) as caught:
        import_history(target, io.StringIO(damage(_good_lines())), name="h.jsonl")
    message = str(caught.value)
    assert message.startswith(f"h.jsonl, line {line}: "), message
    assert words in message
    assert target.counts() == {"keep": 1}


class Pipe(io.StringIO):
    """A stream that cannot seek, as standard input from a pipe."""

    def seekable(self) -> bool:
        return False


def test_a_stream_is_checked_as_it_goes_and_says_what_went_in() -> None:
    lines = _good_lines()
    damaged = "\n".join([*lines[:5], "{broken", *lines[5:]])
    target = UserHistoryStore(EMBEDDINGS)
    with pytest.raises(HistoryTransferError, match=r"line 6: .*\(3 items before it were added"):
        import_history(target, Pipe(damaged), batch_size=1, name="<stdin>")
    assert target.counts() == {"alice": 3}  # bob's item, read but not yet written, is not


def test_read_records_checks_every_line() -> None:
    header, records = read_records(io.StringIO("\n".join(_good_lines())))
    assert (header.embeddings, header.dim, header.vectors) == (EMBEDDINGS_ID, DEFAULT_DIM, True)
    assert len(list(records)) == 5


def test_batch_size_must_be_positive(faiss: UserHistoryStore) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        import_history(faiss, io.StringIO(""), batch_size=0)


# ---------------------------------------------------------------- rpo history


@pytest.fixture
def no_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI runs with the default MiniLM; with --vectors it must never embed anything."""
    from langchain_rpo.embeddings import SentenceTransformerEmbeddings

    def refuse(self: object, texts: object) -> None:
        raise AssertionError("the model was asked to embed; --vectors needs no model")

    monkeypatch.setattr(SentenceTransformerEmbeddings, "encode", refuse)


def _rpo(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_moves_a_faiss_file_to_another_through_jsonl(
    tmp_path: Path, no_embedding: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = UserHistoryStore(EMBEDDINGS)
    fill(source)
    source.save(tmp_path / "a.zip")
    jsonl, target = tmp_path / "h.jsonl", tmp_path / "b.zip"

    code, _, err = _rpo(["history", "export", str(tmp_path / "a.zip"), str(jsonl), "--vectors"],
                        capsys)  # fmt: skip
    assert (code, err.strip()) == (0, f"exported 5 items from {tmp_path / 'a.zip'}")
    code, _, err = _rpo(["history", "import", str(jsonl), str(target), "-q"], capsys)
    assert (code, err.strip()) == (0, f"imported 5 items into {target}")
    assert snapshot(UserHistoryStore.load(target)) == snapshot(source)
    # Users' texts: the export and the imported file are readable by their owner only.
    assert jsonl.stat().st_mode & 0o077 == 0 and target.stat().st_mode & 0o077 == 0

    code, out, _ = _rpo(["history", "export", str(target), "-", "--user", "bob", "--vectors"],
                        capsys)  # fmt: skip
    assert code == 0 and [json.loads(x)["id"] for x in out.splitlines()[1:-1]] == ["1"]


def test_cli_imports_from_stdin_and_into_qdrant(
    tmp_path: Path, no_embedding: None, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from qdrant_client import QdrantClient, models

    source = UserHistoryStore(EMBEDDINGS)
    fill(source)
    events = [FeedbackEvent(user_id="alice", verdict="edited", draft="d", final_text="mine"),
              FeedbackEvent(user_id="carol", verdict="rejected", draft="d")]  # fmt: skip
    source.add_feedback("alice", events[:1])
    source.add_feedback("carol", events[1:])  # events and no items
    source.save(tmp_path / "a.zip")
    _rpo(["history", "export", str(tmp_path / "a.zip"), str(tmp_path / "h.jsonl"), "--vectors"],
         capsys)  # fmt: skip
    folder = tmp_path / "qdrant"
    client = QdrantClient(path=str(folder))  # the collection, at the test vectors' width
    client.create_collection("rpo_history", vectors_config=models.VectorParams(
        size=DEFAULT_DIM, distance=models.Distance.COSINE))  # fmt: skip
    client.close()

    monkeypatch.setattr(sys, "stdin", io.StringIO((tmp_path / "h.jsonl").read_text("utf-8")))
    code, _, err = _rpo(["history", "import", "-", f"qdrant:{folder}"], capsys)
    assert code == 0, err
    code, out, _ = _rpo(["history", "export", f"qdrant:{folder}", "-", "--vectors"], capsys)
    assert code == 0
    moved = UserHistoryStore()  # the CLI's model (never run here): the file's vectors name it
    import_history(moved, io.StringIO(out))
    assert snapshot(moved) == snapshot(source)
    # Events are kept beside the Qdrant collection, in the folder, and come back out.
    assert (folder / "rpo_history.feedback.jsonl").is_file()
    assert [moved.feedback(u) for u in ("alice", "carol")] == [events[:1], events[1:]]


def test_cli_errors_are_one_line_and_leave_the_target_alone(
    tmp_path: Path, no_embedding: None, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(_good_lines()[:3]) + "\n{oops\n", encoding="utf-8")
    target = tmp_path / "t.zip"
    monkeypatch.setitem(sys.modules, "langchain_rpo.history_postgres", None)  # not installed
    cases = [
        (["history", "import", str(bad), str(target)], f"{bad}, line 4: not valid JSON"),
        (["history", "export", str(tmp_path / "missing.zip"), "-"], "no such history file"),
        (["history", "export", str(tmp_path), "-"], "a folder"),
        (["history", "import", str(tmp_path / "nope.jsonl"), str(target)], "No such file"),
        (["history", "export", "postgresql://localhost/x", "-"], "no PostgreSQL backend"),
        (["history", "export", "qdrant:", "-"], "needs a folder"),
        (["history", "export", f"qdrant:{tmp_path / 'nowhere'}", "-"], "no such Qdrant folder"),
        (["history", "import", str(bad), str(target), "--batch-size", "0"], "--batch-size must"),
        (["history", "frobnicate"], "unknown command"),
    ]
    for argv, words in cases:
        code, _, err = _rpo(argv, capsys)
        assert code == 1, argv
        assert len(err.strip().splitlines()) == 1 and err.startswith("rpo: error: "), err
        assert words in err, err
    assert not target.exists()


def test_open_history_saves_a_faiss_file_only_on_success(tmp_path: Path) -> None:
    path = tmp_path / "h.zip"
    with pytest.raises(RuntimeError), open_history(str(path), create=True):
        raise RuntimeError("import failed")
    assert not path.exists()
    with open_history(str(path), create=True) as backend:
        backend.add_embeddings("u", ["t"], [[1.0] + [0.0] * (DEFAULT_DIM - 1)])
    assert UserHistoryStore.load(path).count("u") == 1
