"""LaMP file reading: streaming, and one clear error (file, record, fix) per kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langchain_rpo.lamp.data import (
    LampDataError,
    check_ids,
    iter_questions,
    read_outputs,
    validate_split,
    write_outputs,
)


def _question(qid: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": qid,
        "input": "Generate a title for the following abstract of a paper: about X",
        "profile": [{"id": f"{qid}-p", "title": "Old title", "abstract": "old abstract"}],
    }
    record.update(changes)
    return record


def _write(path: Path, value: Any) -> Path:
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return path


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    questions = _write(
        tmp_path / "dev_questions.json", [_question("1"), _question("2", user="ann")]
    )
    outputs = _write(
        tmp_path / "dev_outputs.json",
        {"task": "LaMP_5", "golds": [{"id": "1", "output": "T1"}, {"id": "2", "output": "T2"}]},
    )
    return questions, outputs


def test_reads_a_valid_split(split: tuple[Path, Path]) -> None:
    questions, outputs = split
    read = list(iter_questions(questions, "LaMP_5"))
    assert [q.id for q in read] == ["1", "2"]
    assert read[1].user == "ann" and read[0].user is None
    assert read[0].profile[0]["title"] == "Old title"
    golds = read_outputs(outputs, "LaMP_5")
    assert golds.task == "LaMP_5" and golds.outputs == {"1": "T1", "2": "T2"}
    spec, n = validate_split(questions, outputs)
    assert (spec.name, n) == ("LaMP_5", 2)
    assert [q.id for q in iter_questions(questions, limit=1)] == ["1"]


def test_questions_are_streamed_one_record_at_a_time(tmp_path: Path) -> None:
    # The second record is cut off: the first is still yielded before the error surfaces.
    text = "[" + json.dumps(_question("1")) + ', {"id": "2", "inp'
    records = iter_questions(_write(tmp_path / "q.json", text), "LaMP_5")
    assert next(records).id == "1"
    with pytest.raises(LampDataError, match="not valid JSON"):
        next(records)


def test_outputs_keep_numbers_as_strings_and_accept_task_after_golds(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "o.json",
        '{"golds": [{"id": 7, "output": 4.0}, {"id": "8", "output": 3}], "task": "LaMP_3"}',
    )
    assert read_outputs(path, "LaMP_3").outputs == {"7": "4", "8": "3"}


def test_lamp_2n_files_say_lamp_2(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "o.json", {"task": "LaMP_2", "golds": [{"id": "1", "output": "sports"}]}
    )
    assert read_outputs(path, "LaMP_2N").task == "LaMP_2"


def test_write_outputs_round_trips(tmp_path: Path) -> None:
    path = write_outputs(tmp_path / "sub" / "preds.json", "LaMP_2N", {"b": "sports", "a": "crime"})
    assert json.loads(path.read_text())["task"] == "LaMP_2"
    assert read_outputs(path, "LaMP_2N").outputs == {"b": "sports", "a": "crime"}
    assert [p.name for p in path.parent.iterdir()] == ["preds.json"]  # no temporary left


BAD_QUESTIONS = {
    "not json": ("[{]", "not valid JSON"),
    "empty file": ("", "the file is empty"),
    "top-level object": ({"id": "1"}, "expected an array of questions.*found a JSON map"),
    "record not an object": ([["1"]], r"record #0 is a JSON list, not an object"),
    "missing profile": (
        [_question("1"), {"id": "2", "input": "x"}],
        r"record #1 \(id '2'\) has no 'profile' key",
    ),
    "missing id": ([{"input": "x", "profile": []}], r"record #0 has no 'id' key"),
    "input not a string": ([_question("1", input=5)], r"'input' of type int"),
    "profile not a list": ([_question("1", profile={"a": 1})], r"'profile' of type dict"),
    "id wrong type": ([_question("1", id=1.5)], r"id of type float"),
    "profile item not an object": (
        [_question("1", profile=["text"])],
        r"profile item #0 is a JSON str",
    ),
    "profile item missing field": (
        [_question("1", profile=[{"id": "p", "title": "t"}])],
        r"profile item #0 has no 'abstract' key, which LaMP_5 profile items need",
    ),
    "profile field wrong type": (
        [_question("1", profile=[{"id": "p", "title": ["t"], "abstract": "a"}])],
        r"'title' of type list",
    ),
    "duplicate ids": ([_question("1"), _question("1")], r"record #1 \(id '1'\) repeats an id"),
}


@pytest.mark.parametrize("case", list(BAD_QUESTIONS))
def test_bad_questions_name_file_record_and_fix(tmp_path: Path, case: str) -> None:
    content, pattern = BAD_QUESTIONS[case]
    path = _write(tmp_path / "dev_questions.json", content)
    with pytest.raises(LampDataError, match=pattern) as info:
        list(iter_questions(path, "LaMP_5"))
    assert str(path) in str(info.value) and "Fix:" in str(info.value)


BAD_OUTPUTS = {
    "not json": ('{"task": "LaMP_5", "golds": [', "not valid JSON"),
    "top-level array": ([{"id": "1", "output": "x"}], "expected an object"),
    "no golds": ({"task": "LaMP_5"}, "no 'golds' key"),
    "golds not a list": ({"task": "LaMP_5", "golds": {"1": "x"}}, "'golds' must be a list"),
    "no task": ({"golds": [{"id": "1", "output": "x"}]}, "no 'task' key"),
    "unknown task": ({"task": "LaMP_9", "golds": []}, "unknown task 'LaMP_9'"),
    "task not a string": ({"task": 5, "golds": []}, "'task' must be a string"),
    "other task": (
        {"task": "LaMP_4", "golds": []},
        "the file is for task 'LaMP_4', but LaMP_5 was asked for",
    ),
    "record without output": (
        {"task": "LaMP_5", "golds": [{"id": "1"}]},
        r"golds record #0 \(id '1'\) is not an object with 'id' and 'output'",
    ),
    "output wrong type": (
        {"task": "LaMP_5", "golds": [{"id": "1", "output": ["x"]}]},
        r"'output' of type list",
    ),
    "duplicate ids": (
        {"task": "LaMP_5", "golds": [{"id": "1", "output": "x"}, {"id": "1", "output": "y"}]},
        r"record #1 \(id '1'\) repeats an id",
    ),
}


@pytest.mark.parametrize("case", list(BAD_OUTPUTS))
def test_bad_outputs_name_file_record_and_fix(tmp_path: Path, case: str) -> None:
    content, pattern = BAD_OUTPUTS[case]
    path = _write(tmp_path / "dev_outputs.json", content)
    with pytest.raises(LampDataError, match=pattern) as info:
        read_outputs(path, "LaMP_5")
    assert str(path) in str(info.value)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(LampDataError, match="no such file"):
        list(iter_questions(tmp_path / "nope.json"))
    with pytest.raises(LampDataError, match="no such file"):
        read_outputs(tmp_path / "nope.json")


def test_question_and_gold_ids_that_differ(split: tuple[Path, Path], tmp_path: Path) -> None:
    questions, _ = split
    outputs = _write(
        tmp_path / "other_outputs.json",
        {"task": "LaMP_5", "golds": [{"id": "1", "output": "T1"}, {"id": "9", "output": "T9"}]},
    )
    with pytest.raises(
        LampDataError,
        match=r"1 questions have no output \(e.g. \['2'\]\), 1 outputs have no question \(e.g. \['9'\]\)",
    ) as info:
        validate_split(questions, outputs)
    assert str(questions) in str(info.value) and str(outputs) in str(info.value)
    # A --limit run only needs its own questions to have golds.
    check_ids(["1"], read_outputs(outputs), questions, subset=True)


def test_unknown_task_is_refused(split: tuple[Path, Path]) -> None:
    questions, outputs = split
    with pytest.raises(ValueError, match="unknown task 'LaMP_0'"):
        validate_split(questions, outputs, "LaMP_0")
    with pytest.raises(ValueError, match="unknown task"):
        list(iter_questions(questions, "nope"))
