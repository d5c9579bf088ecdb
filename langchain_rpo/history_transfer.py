"""Moving history between backends: the JSON Lines transfer format, written and read here.

``rpo history export`` and ``rpo history import`` use this module; so can code
(:func:`export_history`, :func:`import_history`). Layout of format ``langchain-rpo-history-jsonl``,
version 2, one JSON object per line, UTF-8:

- line 1, the header: ``{"format": "langchain-rpo-history-jsonl", "version": 2, "embeddings":
  "<model identifier>", "dim": <width or null>, "vectors": <bool>}``;
- then one line per item: ``{"user_id", "id", "text", "metadata"}``, plus ``"vector"`` (the
  normalised embedding, a list of floats of width ``dim``) when the header says ``"vectors":
  true``; a user's items are on consecutive lines;
- after the items, one line per feedback event: ``{"feedback": <event>}``, the event's
  :meth:`~langchain_rpo.feedback.FeedbackEvent.to_dict` form (checked by ``from_dict``); a
  user's events are on consecutive lines, in time order;
- the last line closes the file: ``{"end": "langchain-rpo-history-jsonl", "records": <items>,
  "events": <events>}``, so a file cut short at a line boundary is told from a complete one.

Version 1 files (no feedback lines; the closing line has no ``"events"``) are still read.

Reading trusts nothing: every line is held to the rules every backend applies
(:mod:`langchain_rpo.history_checks`), and any damage raises :class:`HistoryTransferError`
naming the line. A file that can be read twice (a regular file) is checked whole before the
first item is added, so a damaged file imports nothing; a stream (standard input) is checked as
it is imported, and the error says how many items went in before the damage.

Both directions stream: one user's batch of items at a time, never the whole history. Importing
a file with vectors writes them as they are (no embedding), when the file's embeddings
identifier is the target's; otherwise, or with ``use_vectors=False``, the target embeds the
texts with its own model.

:func:`open_history` opens a backend from a short spec, for the command line: a path
(``history.zip``, the FAISS store's file), ``postgresql://...`` (PostgreSQL) or
``qdrant:PATH`` (a local Qdrant folder, collection ``rpo_history``; ``qdrant:PATH#NAME`` names
another).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.history_backend import HistoryBackend, HistoryRecord, embeddings_identifier
from langchain_rpo.history_checks import (
    check_encodable,
    check_metadata,
    check_user_id,
    normalised_vectors,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HistoryTransferError",
    "TransferHeader",
    "export_history",
    "import_history",
    "open_history",
    "read_records",
]

FORMAT_NAME = "langchain-rpo-history-jsonl"
FORMAT_VERSION = 2
"""The version :func:`export_history` writes; reading takes it and version 1 (no events)."""
_RECORD_KEYS = frozenset({"user_id", "id", "text", "metadata"})
DEFAULT_BATCH_SIZE = 256
"""Items added per backend call while importing (a user's items are never mixed with another's)."""

QDRANT_PREFIX = "qdrant:"
QDRANT_COLLECTION = "rpo_history"


class HistoryTransferError(ValueError):
    """A transfer file is damaged, of another format, or does not fit the target backend."""


@dataclass(frozen=True)
class TransferHeader:
    """The first line of a transfer file.

    Attributes:
        embeddings: The identifier of the embeddings model the items came from.
        dim: The vectors' width, or ``None`` (no vectors, or no items).
        vectors: Whether each record carries its vector.
        version: The file's format version (1: items only; 2: items and feedback events).
    """

    embeddings: str
    dim: int | None
    vectors: bool
    version: int = FORMAT_VERSION


def _dumps(value: object) -> str:
    # ensure_ascii=False: texts stay readable; the checks already refused what UTF-8 cannot hold.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# --------------------------------------------------------------------------- export


def export_history(
    backend: HistoryBackend,
    stream: TextIO,
    *,
    user_ids: Sequence[str] | None = None,
    with_vectors: bool = False,
    progress: bool = False,
) -> int:
    """Write a backend's items and feedback events (all users, or ``user_ids``) to ``stream``.

    Items stream from the backend one at a time (:meth:`HistoryBackend.export`); then each
    user's feedback events (:meth:`HistoryBackend.feedback`), one user in memory at a time. A
    backend that keeps no events (a third-party one) exports its items alone.

    Args:
        backend: The backend to read.
        stream: A text stream to write (opened with UTF-8).
        user_ids: The users to export (default: every user).
        with_vectors: Also write each item's normalised vector, so an import needs no model.
        progress: Show a progress bar on standard error.

    Returns:
        How many items were written (events are counted on the closing line).
    """
    from tqdm import tqdm

    users = backend.users() if user_ids is None else [check_user_id(u) for u in user_ids]
    total = sum(backend.count(user) for user in users)
    records = backend.export(users, with_vectors=with_vectors)
    first = next(records, None)
    dim = len(first.vector) if first is not None and first.vector is not None else None
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "embeddings": embeddings_identifier(backend.embeddings),
        "dim": dim,
        "vectors": with_vectors,
    }
    stream.write(_dumps(header) + "\n")
    written = 0
    with tqdm(
        total=total, unit="item", desc="export", file=sys.stderr, disable=not progress
    ) as bar:
        for record in _chain(first, records):
            line: dict[str, Any] = {
                "user_id": record.user_id,
                "id": record.id,
                "text": record.text,
                "metadata": record.metadata,
            }
            if with_vectors:
                line["vector"] = record.vector
            stream.write(_dumps(line) + "\n")
            written += 1
            bar.update(1)
    events = 0
    for user in _feedback_users(backend, None if user_ids is None else users):
        for event in backend.feedback(user):
            stream.write(_dumps({"feedback": event.to_dict()}) + "\n")
            events += 1
    stream.write(_dumps({"end": FORMAT_NAME, "records": written, "events": events}) + "\n")
    return written


def _feedback_users(backend: HistoryBackend, users: Sequence[str] | None) -> list[str]:
    """The users whose events to export: those asked for (None: all) that have events.

    A user with events and no items is exported too; a backend that keeps no events gives none.
    """
    try:
        with_events = backend.feedback_users()
    except NotImplementedError:
        return []
    return with_events if users is None else [u for u in users if u in set(with_events)]


def _chain(first: HistoryRecord | None, rest: Iterator[HistoryRecord]) -> Iterator[HistoryRecord]:
    if first is not None:
        yield first
        yield from rest


# --------------------------------------------------------------------------- reading


def _fail(name: str, lineno: int, problem: str) -> HistoryTransferError:
    return HistoryTransferError(f"{name}, line {lineno}: {problem}")


def _parse_json(line: str, name: str, lineno: int) -> dict[str, Any]:
    if not line.strip():
        raise _fail(name, lineno, "the line is empty; each line must hold one JSON object.")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _fail(name, lineno, f"not valid JSON ({exc.msg} at column {exc.colno}).") from None
    if not isinstance(value, dict):
        raise _fail(name, lineno, f"expected a JSON object, got {type(value).__name__}.")
    return value


def _parse_header(line: str, name: str) -> TransferHeader:
    if not line:
        raise _fail(name, 1, "the file is empty; expected the header line of a history export.")
    head = _parse_json(line, name, 1)
    if head.get("format") != FORMAT_NAME:
        raise _fail(
            name, 1,
            f"not a history export (format {head.get('format')!r}, expected {FORMAT_NAME!r}). "
            "Make one with 'rpo history export'.",
        )  # fmt: skip
    version = head.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(name, 1, f"the version must be a whole number, got {version!r}.")
    if version > FORMAT_VERSION:
        raise _fail(
            name, 1,
            f"written in format version {version}; this langchain-rpo reads version "
            f"{FORMAT_VERSION}. Fix: upgrade langchain-rpo.",
        )  # fmt: skip
    embeddings, dim, vectors = head.get("embeddings"), head.get("dim"), head.get("vectors")
    if not isinstance(embeddings, str):
        raise _fail(name, 1, f"'embeddings' must be a string, got {embeddings!r}.")
    if not isinstance(vectors, bool):
        raise _fail(name, 1, f"'vectors' must be true or false, got {vectors!r}.")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise _fail(name, 1, f"'dim' must be a positive whole number or null, got {dim!r}.")
    return TransferHeader(embeddings=embeddings, dim=dim, vectors=vectors, version=version)


def _parse_record(
    value: dict[str, Any], header: TransferHeader, name: str, lineno: int
) -> HistoryRecord:
    expected = _RECORD_KEYS | ({"vector"} if header.vectors else set())
    if set(value) != expected:
        missing, extra = sorted(expected - set(value)), sorted(set(value) - expected)
        raise _fail(
            name, lineno,
            "a record must have exactly the keys " + ", ".join(sorted(expected))
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "") + ".",
        )  # fmt: skip
    try:
        user_id = check_user_id(value["user_id"])
        item_id, text = value["id"], value["text"]
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"'id' must be a non-empty string, got {item_id!r}.")
        check_encodable(item_id, "'id'")
        if not isinstance(text, str):
            raise ValueError(f"'text' must be a string, got {type(text).__name__}.")
        check_encodable(text, "'text'")
        metadata = check_metadata(value["metadata"], "'metadata'")
        vector = None
        if header.vectors:
            raw = value["vector"]
            if not isinstance(raw, list):
                raise ValueError(f"'vector' must be a list of numbers, got {type(raw).__name__}.")
            if header.dim is None:
                raise ValueError("the header's 'dim' is null, yet this record has a vector.")
            rows = normalised_vectors(raw, header.dim, "'vector'")
            vector = rows[0].tolist()
    except ValueError as exc:
        raise _fail(name, lineno, str(exc)) from None
    return HistoryRecord(user_id, item_id, text, metadata, vector)


def _parse_event(
    value: dict[str, Any], header: TransferHeader, name: str, lineno: int
) -> FeedbackEvent:
    if header.version < 2:
        raise _fail(
            name, lineno,
            f"a feedback line in a version {header.version} file (feedback lines came in "
            "version 2): the file is damaged or its header was edited.",
        )  # fmt: skip
    if set(value) != {"feedback"}:
        extra = sorted(set(value) - {"feedback"})
        raise _fail(name, lineno, f"a feedback line has only the key feedback; unexpected {extra}.")
    try:
        return FeedbackEvent.from_dict(value["feedback"])
    except RecursionError:
        raise _fail(name, lineno, "the event nests deeper than any event does.") from None
    except ValueError as exc:
        raise _fail(name, lineno, str(exc)) from None


def _check_end(
    value: dict[str, Any], header: TransferHeader, records: int, events: int,
    name: str, lineno: int,
) -> None:  # fmt: skip
    expected: dict[str, Any] = {"end": FORMAT_NAME, "records": records}
    if header.version >= 2:
        expected["events"] = events
    if value != expected:
        said = f"{value.get('records')!r} records"
        came = f"{records}"
        if header.version >= 2:
            said += f" and {value.get('events')!r} events"
            came += f" records and {events} events"
        raise _fail(
            name, lineno,
            f"the closing line says {said}, but {came} came before it: the file is damaged.",
        )  # fmt: skip


def read_records(
    stream: TextIO, *, name: str = "<stream>"
) -> tuple[TransferHeader, Iterator[HistoryRecord | FeedbackEvent]]:
    """Read a transfer file's header, and return it with an iterator over its records.

    Every line is checked as it is read (:class:`HistoryTransferError` names it); the iterator
    yields items (:class:`HistoryRecord`) and then feedback events
    (:class:`~langchain_rpo.feedback.FeedbackEvent`), and ends after the closing line, whose
    counts must match.

    Args:
        stream: The text stream, at the start of the file.
        name: How errors name the file.

    Returns:
        ``(header, records)``.

    Raises:
        HistoryTransferError: When the header is missing or not this format (here), or when a
            later line is damaged (while iterating).
    """
    header = _parse_header(stream.readline(), name)

    def records() -> Iterator[HistoryRecord | FeedbackEvent]:
        count = events = 0
        lineno = 1
        for lineno, line in enumerate(stream, start=2):
            value = _parse_json(line, name, lineno)
            if "end" in value:
                _check_end(value, header, count, events, name, lineno)
                trailing = stream.readline()
                if trailing:
                    raise _fail(name, lineno + 1, "there is more after the closing line.")
                return
            if "feedback" in value:
                yield _parse_event(value, header, name, lineno)
                events += 1
                continue
            if events:
                raise _fail(
                    name, lineno,
                    "an item after the feedback lines; a file lists all items first.",
                )  # fmt: skip
            yield _parse_record(value, header, name, lineno)
            count += 1
        raise _fail(
            name, lineno + 1,
            "the file ends without its closing line: it was cut short. Export it again.",
        )  # fmt: skip

    return header, records()


# --------------------------------------------------------------------------- import


def _stream_name(stream: TextIO) -> str:
    return str(getattr(stream, "name", "<stream>"))


def import_history(
    backend: HistoryBackend,
    stream: TextIO,
    *,
    use_vectors: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    name: str | None = None,
) -> int:
    """Add every item and feedback event of a transfer file to ``backend``.

    An item or event whose id exists (for its user) is replaced, so importing twice doubles
    nothing. A seekable stream (a regular file) is checked whole first, so a damaged file adds
    nothing; a pipe is checked as it goes. Items are added one user's batch at a time, and
    events one user at a time (:meth:`HistoryBackend.add_feedback`).

    Args:
        backend: The backend to add to.
        stream: The transfer file, as text (UTF-8).
        use_vectors: Write the file's vectors as they are (when it has them). ``False``
            re-embeds the texts with the backend's model.
        batch_size: Items per backend call.
        progress: Show a progress bar on standard error.
        name: How errors name the file (default: the stream's name).

    Returns:
        How many items were added.

    Raises:
        HistoryTransferError: On a damaged file (naming the line), or vectors from another
            embeddings model than the backend's.
        ValueError: When ``batch_size`` is not a positive whole number.
        NotImplementedError: When the file holds feedback events and the backend keeps none.
    """
    from tqdm import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}.")
    name = name or _stream_name(stream)
    total: int | None = None
    seekable = _seekable(stream)
    if seekable:  # check the whole file before adding anything
        start = stream.tell()
        total = sum(1 for _ in read_records(stream, name=name)[1])
        stream.seek(start)
    header, records = read_records(stream, name=name)
    vectors = header.vectors and use_vectors
    if vectors:
        target = embeddings_identifier(backend.embeddings)
        if header.embeddings != target:
            raise HistoryTransferError(
                f"{name}: its vectors come from the embeddings {header.embeddings!r}, but the "
                f"target embeds with {target!r}; vectors of two models cannot be searched "
                "together. Fix: import without its vectors (rpo history import --reembed), "
                "which embeds the texts with the target's model."
            )
    added = 0
    batch: list[HistoryRecord] = []
    events: list[FeedbackEvent] = []

    def flush_events() -> None:
        if events:
            backend.add_feedback(events[0].user_id, list(events))
            events.clear()

    def flush() -> None:
        nonlocal added
        if not batch:
            return
        user, texts = batch[0].user_id, [r.text for r in batch]
        metas, ids = [r.metadata for r in batch], [r.id for r in batch]
        if vectors:
            backend.add_embeddings(user, texts, [r.vector for r in batch], metas, ids)  # type: ignore[misc]
        else:
            backend.add_texts(user, texts, metas, ids)
        added += len(batch)
        bar.update(len(batch))
        batch.clear()

    with tqdm(
        total=total, unit="item", desc="import", file=sys.stderr, disable=not progress
    ) as bar:
        try:
            seen: set[str] = set()
            seen_events: set[str] = set()
            for record in records:
                if isinstance(record, FeedbackEvent):
                    flush()  # every item is in before the first event
                    if events and (
                        record.user_id != events[0].user_id or len(events) >= batch_size
                        or record.event_id in seen_events
                    ):  # fmt: skip
                        flush_events()
                        seen_events.clear()
                    events.append(record)
                    seen_events.add(record.event_id)
                    continue
                # One user per call; an id seen again in this batch is a replace: flush first.
                if batch and (
                    record.user_id != batch[0].user_id
                    or len(batch) >= batch_size
                    or record.id in seen
                ):
                    flush()
                    seen.clear()
                batch.append(record)
                seen.add(record.id)
            flush()
            flush_events()
        except HistoryTransferError as exc:
            if added and not seekable:
                raise HistoryTransferError(
                    f"{exc} ({added} items before it were added to the target; fix the file and "
                    "import it again: items already there are replaced, not doubled)"
                ) from None
            raise
    return added


def _seekable(stream: TextIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


# --------------------------------------------------------------------------- backends by spec


@contextlib.contextmanager
def open_history(spec: str, *, create: bool) -> Iterator[HistoryBackend]:
    """Open the backend a command-line spec names, with the default embeddings model.

    - ``postgresql://...`` (or ``postgres://``): :class:`~langchain_rpo.history_postgres.
      PostgresHistory` on that server;
    - ``qdrant:PATH`` or ``qdrant:PATH#COLLECTION``: a local Qdrant folder (collection
      ``rpo_history`` by default) through :class:`~langchain_rpo.history_vectorstore.
      VectorStoreHistory`;
    - anything else: a FAISS store file (``history.zip``), saved atomically when the block ends
      without error.

    Args:
        spec: The spec.
        create: Whether a store that does not exist yet may be created (import) or must exist
            (export).

    Yields:
        The backend.

    Raises:
        ValueError: When the spec names nothing usable (the message says what to pass).
        MissingExtraError: When the backend's optional packages are not installed.
    """
    try:
        if spec.startswith(("postgresql://", "postgres://")):
            with _open_postgres(spec, create=create) as backend:
                yield backend
        elif spec.startswith(QDRANT_PREFIX):
            with _open_qdrant(spec[len(QDRANT_PREFIX) :], create=create) as backend:
                yield backend
        else:
            with _open_faiss(Path(spec), create=create) as backend:
                yield backend
    except Exception as exc:
        # A driver's own errors (the server is down, a login fails) are the user's to fix:
        # say which backend, in one line, without the password a URL may hold.
        if type(exc).__module__.split(".")[0] in _DRIVER_MODULES:
            raise ValueError(f"{_redacted(spec)}: {type(exc).__name__}: {exc}") from exc
        raise


_DRIVER_MODULES = frozenset({"psycopg", "psycopg_pool", "qdrant_client"})


def _redacted(spec: str) -> str:
    """The spec as an error may show it: a URL's password replaced by ``***``.

    >>> _redacted("postgresql://app:secret@db:5432/rpo")
    'postgresql://app:***@db:5432/rpo'
    >>> _redacted("history.zip")
    'history.zip'
    """
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in spec:
        return spec
    parts = urlsplit(spec)
    if parts.password is None:
        return spec
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.contextmanager
def _open_faiss(path: Path, *, create: bool) -> Iterator[HistoryBackend]:
    from langchain_rpo.history import UserHistoryStore

    if path.is_dir():
        raise ValueError(f"{path}: a folder; name a history file such as history.zip")
    if path.exists():
        store = UserHistoryStore.load(path)
    elif create:
        store = UserHistoryStore()
    else:
        raise ValueError(
            f"{path}: no such history file. Name a FAISS history file (history.zip), "
            "postgresql://..., or qdrant:PATH."
        )
    yield store
    if create:
        store.save(path)


@contextlib.contextmanager
def _open_postgres(url: str, *, create: bool) -> Iterator[HistoryBackend]:
    import importlib

    try:
        history_postgres = importlib.import_module("langchain_rpo.history_postgres")
    except ModuleNotFoundError as exc:
        if exc.name == "langchain_rpo.history_postgres":
            raise ValueError(
                "this langchain-rpo has no PostgreSQL backend (langchain_rpo.history_postgres "
                "is missing). Fix: upgrade langchain-rpo."
            ) from exc
        from langchain_rpo.lamp.extras import MissingExtraError

        raise MissingExtraError(
            f"the PostgreSQL backend needs the optional package {exc.name!r}, which is not "
            'installed. Fix: pip install "langchain-rpo[postgres]"'
        ) from exc
    # An export must find the schema; only an import may create it.
    backend = history_postgres.PostgresHistory(url, create=create)
    try:
        yield backend
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


@contextlib.contextmanager
def _open_qdrant(rest: str, *, create: bool) -> Iterator[HistoryBackend]:
    from langchain_rpo.embeddings import default_embeddings
    from langchain_rpo.history_vectorstore import VectorStoreHistory
    from langchain_rpo.lamp.extras import optional_import

    folder, _, collection = rest.partition("#")
    collection = collection or QDRANT_COLLECTION
    if not folder:
        raise ValueError("qdrant: needs a folder, as in qdrant:./history-qdrant")
    optional_import("qdrant_client", extra="qdrant", needed_for="a Qdrant history")
    langchain_qdrant = optional_import(
        "langchain_qdrant", extra="qdrant", needed_for="a Qdrant history"
    )
    from qdrant_client import QdrantClient, models

    if not create and not Path(folder).is_dir():
        raise ValueError(f"{folder}: no such Qdrant folder (qdrant:{rest})")
    try:
        client = QdrantClient(path=folder)
    except RuntimeError as exc:  # the folder is held by another process's client
        raise ValueError(f"qdrant:{rest}: {exc}") from exc
    try:
        embeddings = default_embeddings()
        if not client.collection_exists(collection):
            if not create:
                raise ValueError(f"qdrant:{rest}: the folder has no collection {collection!r}")
            client.create_collection(
                collection,
                vectors_config=models.VectorParams(
                    size=embeddings.dimension, distance=models.Distance.COSINE
                ),
            )
        store = langchain_qdrant.QdrantVectorStore(
            client, collection, embeddings, validate_collection_config=False
        )
        # Events are not vectors: they travel in a JSON Lines file beside the collection.
        yield VectorStoreHistory(store, feedback_path=Path(folder) / f"{collection}.feedback.jsonl")
    finally:
        client.close()
