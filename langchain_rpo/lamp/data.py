"""Read and validate the official LaMP files, streaming, in memory that does not grow with the file.

Two files make a split (the PEP titles set in ``shared/data/pep_titles`` has the same schema):

- ``{split}_questions.json``: ``[{"id", "input", "profile": [{"id", ...task fields}]}, ...]``
  (extra keys, such as the PEP set's ``user`` and ``date``, are kept);
- ``{split}_outputs.json``: ``{"task": "LaMP_5", "golds": [{"id", "output"}, ...]}``; a
  predictions file has the same format.

Official questions files reach hundreds of MB, so both are parsed with ``ijson`` (the ``eval``
extra), one record at a time: memory holds one question (with its profile), never the file.
Nesting deeper than :data:`MAX_DEPTH` and keys longer than :data:`MAX_KEY_CHARS` are refused
before they cost memory (see :data:`MAX_DEPTH` for why). Every problem is raised as a
:class:`LampDataError` that names the file, the record and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from langchain_rpo.atomic import atomic_write
from langchain_rpo.lamp.extras import optional_import
from langchain_rpo.lamp.tasks import TaskSpec, UnknownTaskError, get_task

__all__ = [
    "MAX_DEPTH",
    "MAX_KEY_CHARS",
    "LampDataError",
    "Question",
    "Outputs",
    "iter_questions",
    "read_outputs",
    "check_ids",
    "validate_split",
    "write_outputs",
    "require_ijson",
]

_QUESTION_KEYS = ("id", "input", "profile")

#: The deepest nesting of arrays and objects a LaMP file may have. The official files nest four
#: levels (questions, a question, its profile, an item); 32 leaves room for extra keys. Why a
#: limit at all: ijson's prefixed events carry their whole path (``item.item.item...``) and its C
#: backend builds a 64 kB chunk of them at once, so memory grows with the square of the depth
#: (204 kB of ``[`` took 22 GB). The depth is checked on the path-less basic events, before any
#: prefix is built, so memory stays at one chunk of small events.
MAX_DEPTH = 32
#: The longest object key: every prefix below a key repeats it, so long keys multiply like depth.
MAX_KEY_CHARS = 1024

_OPENING = frozenset(("start_array", "start_map"))
_CLOSING = frozenset(("end_array", "end_map"))


class LampDataError(ValueError):
    """A LaMP file that cannot be used; the message names the file, the record and the fix."""


@dataclass(frozen=True)
class Question:
    """One LaMP question.

    Attributes:
        id: The question id (a string, as in the official files).
        input: The task input, already rendered from the task's template.
        profile: The user's history items (dicts with the task's profile fields).
        user: The user's name where the file has one (the PEP set does), else None.
    """

    id: str
    input: str
    profile: tuple[dict[str, Any], ...] = field(default=())
    user: str | None = None


@dataclass(frozen=True)
class Outputs:
    """A golds (or predictions) file: its task name and its outputs by question id.

    Attributes:
        task: The file's ``"task"`` value.
        outputs: Question id to output, in file order.
        path: Where it was read from.
    """

    task: str
    outputs: dict[str, str]
    path: Path


def _record_name(index: int, record: Any) -> str:
    rid = record.get("id") if isinstance(record, dict) else None
    return f"record #{index}" + (f" (id {rid!r})" if rid is not None else "")


def _normalize_id(value: Any, where: str, path: Path) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LampDataError(
            f"{path}: {where} has an id of type {type(value).__name__} ({value!r}). "
            "Fix: ids must be strings (as in the official files) or integers."
        )
    return str(value)


def require_ijson() -> ModuleType:
    """The ``ijson`` module, or an error naming the extra that installs it (``eval``)."""
    return optional_import("ijson", extra="eval", needed_for="reading LaMP files")


def _events(path: Path, stream: IO[bytes], expected: str) -> Iterator[tuple[str, str, Any]]:
    """Return ijson's prefixed events, parsed from basic events that passed the checks below."""
    ijson = require_ijson()
    return ijson.parse(_basic_events(ijson, path, stream, expected))


def _basic_events(
    ijson: ModuleType, path: Path, stream: IO[bytes], expected: str
) -> Iterator[tuple[str, Any]]:
    """Yield ijson's basic events after the top-level, depth and key checks; JSON errors as ours."""
    if path.stat().st_size == 0:
        raise LampDataError(
            f"{path}: the file is empty. Fix: download it again (rpo lamp download)."
        )
    events = ijson.basic_parse(stream, use_float=True)
    try:
        first = next(events, None)
        if first is None or first[0] != expected:
            found = "nothing" if first is None else f"a JSON {first[0].replace('start_', '')}"
            shape = (
                "an array of questions"
                if expected == "start_array"
                else ('an object {"task": ..., "golds": [...]}')
            )
            raise LampDataError(
                f"{path}: expected {shape} at the top level, found {found}. "
                "Fix: pass the official file (questions: {split}_questions.json, golds or "
                "predictions: {split}_outputs.json)."
            )
        yield first
        depth = 1
        for event, value in events:
            if event in _OPENING:
                depth += 1
                if depth > MAX_DEPTH:
                    raise LampDataError(
                        f"{path}: arrays and objects nest at least {depth} levels deep, past the "
                        f"limit of {MAX_DEPTH} (LaMP files nest 4). Fix: this is not a LaMP file "
                        "or it is damaged; pass the right file, or download it again "
                        "(rpo lamp download)."
                    )
            elif event in _CLOSING:
                depth -= 1
            elif event == "map_key" and len(value) > MAX_KEY_CHARS:
                raise LampDataError(
                    f"{path}: an object key of {len(value)} characters, past the limit of "
                    f"{MAX_KEY_CHARS} (LaMP keys are field names such as 'profile'). Fix: this "
                    "is not a LaMP file or it is damaged; pass the right file."
                )
            yield event, value
    except ijson.JSONError as err:
        raise LampDataError(
            f"{path}: not valid JSON ({err}). Fix: the file may be truncated or corrupt; "
            "download it again (rpo lamp download)."
        ) from err


def _check_question(record: Any, index: int, spec: TaskSpec | None, path: Path) -> Question:
    where = _record_name(index, record)
    if not isinstance(record, dict):
        raise LampDataError(
            f"{path}: {where} is a JSON {type(record).__name__}, not an object. "
            f"Fix: each question is an object with the keys {', '.join(_QUESTION_KEYS)}."
        )
    for key in _QUESTION_KEYS:
        if key not in record:
            raise LampDataError(
                f"{path}: {where} has no {key!r} key. Fix: each question needs "
                f"{', '.join(_QUESTION_KEYS)}; is this a questions file of the LaMP format?"
            )
    qid = _normalize_id(record["id"], where, path)
    if not isinstance(record["input"], str):
        raise LampDataError(
            f"{path}: {where} has an 'input' of type {type(record['input']).__name__}. "
            "Fix: 'input' must be the question text (a string)."
        )
    profile = record["profile"]
    if not isinstance(profile, list):
        raise LampDataError(
            f"{path}: {where} has a 'profile' of type {type(profile).__name__}. "
            "Fix: 'profile' must be a list of the user's history items."
        )
    items = tuple(_check_item(item, j, where, spec, path) for j, item in enumerate(profile))
    user = record.get("user")
    return Question(
        id=qid, input=record["input"], profile=items, user=None if user is None else str(user)
    )


def _check_item(item: Any, j: int, where: str, spec: TaskSpec | None, path: Path) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise LampDataError(
            f"{path}: {where}, profile item #{j} is a JSON {type(item).__name__}, not an object. "
            "Fix: profile items are objects with the task's fields."
        )
    if spec is None:
        return item
    for key in spec.profile_fields:
        if key not in item:
            raise LampDataError(
                f"{path}: {where}, profile item #{j} has no {key!r} key, which {spec.name} "
                f"profile items need ({', '.join(spec.profile_fields)}). Fix: check --task "
                f"(the items have {', '.join(sorted(item)) or 'no keys'}), or the file."
            )
        value = item[key]
        numeric_ok = key == spec.output_field and spec.kind == "rating"
        if not (isinstance(value, str) or (numeric_ok and isinstance(value, int | float))):
            raise LampDataError(
                f"{path}: {where}, profile item #{j} has a {key!r} of type "
                f"{type(value).__name__}. Fix: {key!r} must be a string"
                + (" or a number." if numeric_ok else ".")
            )
    return item


def iter_questions(
    path: str | Path, task: str | TaskSpec | None = None, *, limit: int | None = None
) -> Iterator[Question]:
    """Stream the questions of a ``{split}_questions.json`` file, validating each one.

    Memory holds one question at a time. Duplicate ids are an error (ids are collected, a few
    bytes each).

    Args:
        path: The questions file.
        task: The task whose profile fields each item must have (None: no field check).
        limit: Stop after this many questions (None: all).

    Yields:
        :class:`Question` records, in file order.

    Raises:
        LampDataError: For a missing or malformed file or record, naming it and the fix.
    """
    path = Path(path)
    spec = get_task(task) if task is not None else None
    if not path.is_file():
        raise LampDataError(
            f"{path}: no such file. Fix: pass the path of a {{split}}_questions.json."
        )
    seen: set[str] = set()
    with path.open("rb") as stream:
        records = require_ijson().items(_events(path, stream, "start_array"), "item")
        for index, record in enumerate(records):
            if limit is not None and index >= limit:
                return
            question = _check_question(record, index, spec, path)
            if question.id in seen:
                raise LampDataError(
                    f"{path}: {_record_name(index, record)} repeats an id seen earlier. "
                    "Fix: question ids must be unique."
                )
            seen.add(question.id)
            yield question


def read_outputs(path: str | Path, task: str | TaskSpec | None = None) -> Outputs:
    """Read a golds or predictions file (``{"task", "golds": [{"id", "output"}]}``), streaming.

    Args:
        path: The file.
        task: The expected task: the file's ``"task"`` must be its ``file_task`` (None: any
            known task).

    Returns:
        The file's task and its outputs by id.

    Raises:
        LampDataError: For a missing or malformed file, a bad or duplicate record, a missing or
            unknown task, or a task other than ``task``.
    """
    path = Path(path)
    spec = get_task(task) if task is not None else None
    if not path.is_file():
        raise LampDataError(
            f"{path}: no such file. Fix: pass the path of a {{split}}_outputs.json."
        )
    file_task: str | None = None
    outputs: dict[str, str] = {}
    saw_golds = False
    with path.open("rb") as stream:
        events = _events(path, stream, "start_map")
        for prefix, event, value in events:
            if prefix == "task" and event not in ("map_key",):
                if not isinstance(value, str):
                    raise LampDataError(
                        f"{path}: 'task' must be a string such as \"LaMP_5\", not {value!r}."
                    )
                file_task = value
            elif prefix == "golds" and event == "start_array":
                saw_golds = True
                golds = require_ijson().items(_golds_events(events), "item")
                for index, record in enumerate(golds):
                    qid, output = _check_gold(record, index, path)
                    if qid in outputs:
                        raise LampDataError(
                            f"{path}: {_record_name(index, record)} repeats an id seen earlier. "
                            "Fix: each id must appear once in 'golds'."
                        )
                    outputs[qid] = output
            elif prefix == "golds" and event != "map_key":
                raise LampDataError(
                    f'{path}: \'golds\' must be a list of {{"id", "output"}} records.'
                )
    if not saw_golds:
        raise LampDataError(
            f'{path}: no \'golds\' key. Fix: the file must be {{"task": ..., "golds": '
            '[{"id": ..., "output": ...}]}} (predictions use the same format).'
        )
    if file_task is None:
        raise LampDataError(
            f'{path}: no \'task\' key. Fix: add "task": "LaMP_N" naming the task of the outputs.'
        )
    try:
        file_spec = get_task(file_task)
    except UnknownTaskError as err:
        raise LampDataError(
            f"{path}: {err}. Fix: set 'task' to one of the LaMP task names."
        ) from err
    if spec is not None and file_task != spec.file_task:
        raise LampDataError(
            f"{path}: the file is for task {file_task!r}, but {spec.name} was asked for "
            f"(its files say {spec.file_task!r}). Fix: pass --task {file_spec.name}, or the "
            "right file."
        )
    return Outputs(task=file_task, outputs=outputs, path=path)


def _golds_events(events: Iterator[tuple[str, str, Any]]) -> Iterator[tuple[str, str, Any]]:
    """Re-root the events inside ``golds`` (``golds.item`` becomes ``item``) up to its end."""
    yield ("", "start_array", None)
    depth = 1
    for prefix, event, value in events:
        if event in ("start_array", "start_map"):
            depth += 1
        elif event in ("end_array", "end_map"):
            depth -= 1
        if depth == 0:
            yield ("", "end_array", None)
            return
        yield (prefix[len("golds.") :] if prefix.startswith("golds.") else prefix, event, value)


def _check_gold(record: Any, index: int, path: Path) -> tuple[str, str]:
    where = _record_name(index, record)
    if not isinstance(record, dict) or "id" not in record or "output" not in record:
        raise LampDataError(
            f"{path}: golds {where} is not an object with 'id' and 'output' (found "
            f'{record!r:.80}). Fix: each record is {{"id": ..., "output": ...}}.'
        )
    qid = _normalize_id(record["id"], f"golds {where}", path)
    output = record["output"]
    if isinstance(output, bool) or not isinstance(output, str | int | float):
        raise LampDataError(
            f"{path}: golds {where} has an 'output' of type {type(output).__name__}. "
            "Fix: 'output' must be a string (a label, a rating or a text)."
        )
    if isinstance(output, float) and output.is_integer():
        output = int(output)
    return qid, str(output)


def check_ids(
    question_ids: Iterable[str],
    outputs: Outputs,
    questions_path: str | Path,
    *,
    subset: bool = False,
) -> None:
    """Check that the question ids and the output ids are the same set (or a subset of them).

    Args:
        question_ids: The ids of the questions read.
        outputs: The golds (or predictions).
        questions_path: The questions file, for the message.
        subset: Only require every question to have an output (a ``--limit`` run).

    Raises:
        LampDataError: Naming both files, how many ids differ and some of them.
    """
    qids = set(question_ids)
    oids = set(outputs.outputs)
    no_output = sorted(qids - oids)
    no_question = [] if subset else sorted(oids - qids)
    if no_output or no_question:
        raise LampDataError(
            f"{questions_path} and {outputs.path} hold different ids: {len(no_output)} questions "
            f"have no output (e.g. {no_output[:3]}), {len(no_question)} outputs have no question "
            f"(e.g. {no_question[:3]}). Fix: pass the questions and outputs of the same split."
        )


def validate_split(
    questions: str | Path, outputs: str | Path, task: str | TaskSpec | None = None
) -> tuple[TaskSpec, int]:
    """Validate a whole split: every question and gold record, the task, and the id sets.

    Args:
        questions: The ``{split}_questions.json`` file.
        outputs: The ``{split}_outputs.json`` file.
        task: The expected task (None: the outputs file's task; ``LaMP_2`` files are read as
            movie tagging unless ``LaMP_2N`` is given).

    Returns:
        The task spec and the number of questions.
    """
    golds = read_outputs(outputs, task)
    spec = get_task(task if task is not None else golds.task)
    ids = [question.id for question in iter_questions(questions, spec)]
    check_ids(ids, golds, questions)
    return spec, len(ids)


def write_outputs(path: str | Path, task: str | TaskSpec, outputs: Mapping[str, str]) -> Path:
    """Write outputs in the official format (``{"task", "golds": [{"id", "output"}]}``), atomically.

    Written with :func:`langchain_rpo.atomic.atomic_write` (a temporary file beside ``path``,
    fsynced and renamed into place), so a reader never sees half a file and a crash leaves the
    previous file intact.

    Args:
        path: The file to write (its folder is created).
        task: The task; the file carries its ``file_task``.
        outputs: Question id to output, in the order to write.

    Returns:
        ``path``.
    """
    path = Path(path)
    document = {
        "task": get_task(task).file_task,
        "golds": [{"id": qid, "output": output} for qid, output in outputs.items()],
    }
    with atomic_write(path, "w") as stream:
        json.dump(document, stream, ensure_ascii=False, indent=1)
    return path
