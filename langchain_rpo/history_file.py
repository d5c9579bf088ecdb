"""The history file: one zip holding a whole store, written and read (and distrusted) here.

Layout of format ``langchain-rpo-history``, version 2:

- ``manifest.json``: ``{"format", "format_version", "dim", "embeddings", "users": [{"user_id",
  "count", "docstore", "index"}, ...], "feedback": [{"user_id", "count", "events"}, ...]}``;
  user ``n`` (from 0) names its members ``users/NNNNNN/docstore.json`` and
  ``users/NNNNNN/index.faiss``, ``NNNNNN`` being ``n`` in six digits; feedback entry ``m`` (from
  0) names ``feedback/MMMMMM.jsonl``. The feedback list is separate from the users list because
  a user may have feedback events and no items (they rejected every answer).
- ``users/NNNNNN/docstore.json``: ``{"next_int", "items": [{"id", "faiss_id", "page_content",
  "metadata"}, ...]}``; ``next_int`` is the next FAISS id the user's index hands out.
- ``users/NNNNNN/index.faiss``: the user's unit vectors and their int64 ids, in exactly the bytes
  ``faiss.serialize_index`` writes for ``IndexIDMap2(IndexFlatIP(dim))`` (little-endian), so
  ``faiss.deserialize_index`` reads it too. Stored uncompressed: float vectors barely compress,
  and storing keeps save and load fast.
- ``feedback/MMMMMM.jsonl``: one user's feedback events, one
  :meth:`~langchain_rpo.feedback.FeedbackEvent.to_json` line each (every line ends with a
  newline), in the order the store holds them; ``count`` lines, all of that user, no event id
  twice, every event checked by :meth:`~langchain_rpo.feedback.FeedbackEvent.from_json`.

Version 1 files (written before feedback events existed: no ``feedback`` key, no
``feedback/`` members) are still read, with no events; :func:`write` always writes version 2.

JSON members are deflated, except one that would compress more than
:data:`MAX_COMPRESSION_RATIO` times (it is stored instead), so that every file :func:`write`
produces is one :func:`read` accepts.

Nothing is pickled, and :func:`read` trusts nothing in the file: every damaged or crafted file
raises :class:`HistoryFileError` and returns nothing. It checks, before inflating a member, that
it is one of the expected members, not encrypted, stored or deflated, declares a size within
:data:`MAX_MANIFEST_BYTES` / :data:`MAX_DOCSTORE_BYTES` / :data:`MAX_FEEDBACK_BYTES` (an index member must have exactly the size
its count and width give) and a compression ratio within :data:`MAX_COMPRESSION_RATIO`; then it
reads each member fully with a read bounded by that size, so every CRC is checked; then it checks
every field's type, the users (no duplicates), the items (no duplicate ids or FAISS ids, counts
matching the manifest and the index, FAISS ids below ``next_int``), each index's exact layout
(flat, inner product, the manifest's width, finite unit vectors) and, with the rules of
:mod:`langchain_rpo.history_checks`, every string and metadata value.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from langchain_rpo.atomic import atomic_write
from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.history_checks import check_encodable, check_json_value

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_COMPRESSION_RATIO",
    "MAX_DOCSTORE_BYTES",
    "MAX_FEEDBACK_BYTES",
    "MAX_MANIFEST_BYTES",
    "HistoryFileError",
    "StoredHistory",
    "StoredItem",
    "StoredUser",
    "read",
    "write",
]

FORMAT_NAME = "langchain-rpo-history"
FORMAT_VERSION = 2
"""The version :func:`write` writes; :func:`read` reads it and every earlier one (1: no feedback)."""
_READABLE_VERSIONS = (1, 2)

MAX_MANIFEST_BYTES = 256 * 2**20
"""The largest ``manifest.json`` (inflated) a file may hold: about two million users."""

MAX_DOCSTORE_BYTES = 2 * 2**30
"""The largest docstore (one user's texts and metadata, inflated) a file may hold."""

MAX_FEEDBACK_BYTES = 2 * 2**30
"""The largest feedback member (one user's events, inflated) a file may hold."""

MAX_COMPRESSION_RATIO = 100
"""The most a member may inflate relative to its compressed size.

Real docstores compress 3 to 20 times; a member that claims more is a decompression bomb. The
writer stores (does not compress) a member that would exceed it, so its own files always load.
"""

_MANIFEST = "manifest.json"
_MANIFEST_KEYS_V1 = frozenset({"format", "format_version", "dim", "embeddings", "users"})
_MANIFEST_KEYS = _MANIFEST_KEYS_V1 | {"feedback"}
_FEEDBACK_ENTRY_KEYS = frozenset({"user_id", "count", "events"})
_ENTRY_KEYS = frozenset({"user_id", "count", "docstore", "index"})
_DOCSTORE_KEYS = frozenset({"next_int", "items"})
_ITEM_KEYS = frozenset({"id", "faiss_id", "page_content", "metadata"})
_INT64_MAX = 2**63 - 1
_FIX = (
    "Fix: restore the file from a backup, or rebuild the store from its source data; a file "
    "not written by langchain-rpo's UserHistoryStore.save cannot be loaded."
)

# The faiss.serialize_index layout of IndexIDMap2(IndexFlatIP(d)): a fourcc and an index header
# (d, ntotal, two unused int64s, is_trained, metric) for the map, the same for the flat index,
# then the vectors (count of floats, floats) and the ids (count, int64s).
_HEADER = struct.Struct("<iqqq?i")
_UNUSED = 1 << 20  # what faiss writes in the two unused header fields
_METRIC_INNER_PRODUCT = 0  # faiss.METRIC_INNER_PRODUCT
_COUNT = struct.Struct("<Q")
_INDEX_PREFIX_BYTES = 2 * (4 + _HEADER.size)


class HistoryFileError(ValueError):
    """A history file is damaged, crafted, or not a history file at all; nothing was loaded.

    A ``ValueError``, so code that caught the ``ValueError`` of earlier versions still does.
    """


@dataclass(frozen=True)
class StoredItem:
    """One history item as the file holds it."""

    id: str
    faiss_id: int
    page_content: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StoredUser:
    """One user's items, vectors and id allocator as the file holds them.

    Attributes:
        user_id: The user.
        next_int: The next FAISS id to hand out (above every id in use).
        items: The items, in the store's order.
        vectors: ``(len(items), dim)`` float32 unit rows, in index order.
        faiss_ids: ``(len(items),)`` int64, the FAISS id of each row of ``vectors``.
    """

    user_id: str
    next_int: int
    items: list[StoredItem]
    vectors: np.ndarray
    faiss_ids: np.ndarray


@dataclass(frozen=True)
class StoredHistory:
    """A whole store as the file holds it.

    Attributes:
        dim: The embedding width, ``None`` for a store that never held a vector.
        embeddings: The embeddings model's identifier.
        users: The users, each with at least one item.
        feedback: Per user with at least one event, the user's events in the store's order.
    """

    dim: int | None
    embeddings: str
    users: list[StoredUser]
    feedback: dict[str, list[FeedbackEvent]] = field(default_factory=dict)


def _member_names(n: int) -> tuple[str, str]:
    folder = f"users/{n:06d}"
    return f"{folder}/docstore.json", f"{folder}/index.faiss"


def _feedback_member_name(m: int) -> str:
    return f"feedback/{m:06d}.jsonl"


def _index_size(count: int, dim: int) -> int:
    return _INDEX_PREFIX_BYTES + _COUNT.size + 4 * count * dim + _COUNT.size + 8 * count


# ---------------------------------------------------------------------------------- writing


def write(path: str | os.PathLike[str], history: StoredHistory) -> None:
    """Write ``history`` to ``path`` atomically (see :func:`langchain_rpo.atomic.atomic_write`).

    Args:
        path: The file.
        history: What to write.

    Raises:
        ValueError: When the manifest or a user's docstore would exceed the format's limits
            (:data:`MAX_MANIFEST_BYTES`, :data:`MAX_DOCSTORE_BYTES`); ``path`` is untouched.
    """
    with atomic_write(path, private=True) as stream:  # users' texts: 0o600 when new
        too_compressed = _write_archive(stream, history, stored=frozenset())
        if too_compressed:  # rare: write it again with those members stored
            stream.seek(0)
            stream.truncate()
            _write_archive(stream, history, stored=too_compressed)


def _write_archive(
    stream: BinaryIO, history: StoredHistory, stored: frozenset[str]
) -> frozenset[str]:
    """Write the zip; return the deflated members that came out over the ratio limit."""
    with zipfile.ZipFile(stream, "w") as archive:
        for name, data, compressible in _members(history):
            if compressible and name not in stored:
                archive.writestr(name, data, zipfile.ZIP_DEFLATED)
            else:
                archive.writestr(name, data, zipfile.ZIP_STORED)
        return frozenset(
            info.filename
            for info in archive.infolist()
            if info.compress_type == zipfile.ZIP_DEFLATED and _too_compressed(info)
        )


def _members(history: StoredHistory) -> Iterator[tuple[str, bytes, bool]]:
    """Yield ``(name, bytes, compressible)`` per member, one user at a time (bounded memory)."""
    manifest: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "dim": history.dim,
        "embeddings": history.embeddings,
        "users": [],
        "feedback": [],
    }
    feedback = [(user, events) for user, events in history.feedback.items() if events]
    for m, (user_id, events) in enumerate(feedback):
        manifest["feedback"].append(
            {"user_id": user_id, "count": len(events), "events": _feedback_member_name(m)}
        )
    for n, user in enumerate(history.users):
        docstore_name, index_name = _member_names(n)
        manifest["users"].append(
            {
                "user_id": user.user_id,
                "count": len(user.items),
                "docstore": docstore_name,
                "index": index_name,
            }
        )
    data = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
    _check_writable_size(data, MAX_MANIFEST_BYTES, "The manifest", "MAX_MANIFEST_BYTES")
    yield _MANIFEST, data, True
    for n, user in enumerate(history.users):
        docstore_name, index_name = _member_names(n)
        docstore = {
            "next_int": user.next_int,
            "items": [
                {
                    "id": item.id,
                    "faiss_id": item.faiss_id,
                    "page_content": item.page_content,
                    "metadata": item.metadata,
                }
                for item in user.items
            ],
        }
        data = json.dumps(docstore, ensure_ascii=False).encode("utf-8")
        _check_writable_size(
            data, MAX_DOCSTORE_BYTES, f"The docstore of user {user.user_id!r}", "MAX_DOCSTORE_BYTES"
        )
        yield docstore_name, data, True
        yield index_name, _index_bytes(user.vectors, user.faiss_ids), False
    for m, (user_id, events) in enumerate(feedback):
        data = "".join(event.to_json() + "\n" for event in events).encode("utf-8")
        _check_writable_size(
            data, MAX_FEEDBACK_BYTES, f"The feedback of user {user_id!r}", "MAX_FEEDBACK_BYTES"
        )
        yield _feedback_member_name(m), data, True


def _check_writable_size(data: bytes, limit: int, what: str, name: str) -> None:
    if len(data) > limit:
        raise ValueError(
            f"{what} would take {len(data)} bytes, over the history file's limit {name} "
            f"({limit} bytes), so no file could load it back; the previous save is untouched. "
            "Fix: split the history across several stores."
        )


def _index_bytes(vectors: np.ndarray, faiss_ids: np.ndarray) -> bytes:
    count, dim = vectors.shape
    header = _HEADER.pack(dim, count, _UNUSED, _UNUSED, True, _METRIC_INNER_PRODUCT)
    return b"".join(
        [
            b"IxM2",
            header,
            b"IxFI",
            header,
            _COUNT.pack(count * dim),
            np.ascontiguousarray(vectors, dtype="<f4").tobytes(),
            _COUNT.pack(count),
            np.ascontiguousarray(faiss_ids, dtype="<i8").tobytes(),
        ]
    )


def _too_compressed(info: zipfile.ZipInfo) -> bool:
    return info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)


# ---------------------------------------------------------------------------------- reading

# What zipfile and zlib raise on a damaged archive: a bad structure (BadZipFile, struct.error,
# EOFError, ValueError, OSError from a seek to a nonsense offset), a bad deflate stream
# (zlib.error), a method or feature zipfile lacks (NotImplementedError), a name in an odd encoding
# (UnicodeError), a number out of range (OverflowError).
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    ValueError,
    OSError,
    NotImplementedError,
    UnicodeError,
    OverflowError,
)


def read(path: str | os.PathLike[str]) -> StoredHistory:
    """Read and check a history file.

    Args:
        path: The file.

    Returns:
        Its contents, every rule of the module docstring checked.

    Raises:
        HistoryFileError: When the file is damaged, crafted, or not a history file.
        OSError: When the file cannot be opened (it does not exist, for example).
    """
    path = Path(path)
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        try:
            with zipfile.ZipFile(stream) as archive:
                return _Reader(path, archive, size).read()
        except HistoryFileError:
            raise
        except zipfile.BadZipFile as exc:
            if "File is not a zip file" in str(exc):
                raise HistoryFileError(
                    f"{path} is not a langchain-rpo history file (not a zip). {_FIX}"
                ) from exc
            raise HistoryFileError(f"{path} is damaged: {exc}. {_FIX}") from exc
        except _ARCHIVE_ERRORS as exc:
            raise HistoryFileError(
                f"{path} is damaged: {type(exc).__name__}: {exc}. {_FIX}"
            ) from exc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"JSON holds {name}, which a history file never does")


class _Reader:
    """Reads one open archive; every method raises :class:`HistoryFileError` on a fault."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, size: int) -> None:
        self.path = path
        self.archive = archive
        self.size = size

    def fail(self, problem: str) -> HistoryFileError:
        return HistoryFileError(f"{self.path}: {problem.rstrip('.')}. {_FIX}")

    def read(self) -> StoredHistory:
        infos = {}
        for info in self.archive.infolist():
            if info.filename in infos:
                raise self.fail(f"the member {info.filename!r} appears twice")
            infos[info.filename] = info
        if _MANIFEST not in infos:
            raise HistoryFileError(
                f"{self.path} is not a langchain-rpo history file (no manifest). {_FIX}"
            )
        if sum(info.compress_size for info in infos.values()) > self.size:
            raise self.fail("its members declare more bytes than the file holds")
        manifest = self.json_member(infos[_MANIFEST], MAX_MANIFEST_BYTES, "MAX_MANIFEST_BYTES")
        dim, embeddings, entries = self.check_manifest(manifest)
        feedback_entries = self.check_feedback_entries(manifest)
        expected = {_MANIFEST}
        for n in range(len(entries)):
            expected.update(_member_names(n))
        expected.update(entry["events"] for entry in feedback_entries)
        if set(infos) != expected:
            missing, extra = sorted(expected - set(infos)), sorted(set(infos) - expected)
            raise self.fail(
                f"its members do not match its manifest (missing {missing[:3]}, unexpected "
                f"{extra[:3]})"
            )
        users = [self.read_user(entry, infos, dim) for entry in entries]
        feedback = {
            entry["user_id"]: self.read_feedback(entry, infos[entry["events"]])
            for entry in feedback_entries
        }
        return StoredHistory(dim=dim, embeddings=embeddings, users=users, feedback=feedback)

    # ------------------------------------------------------------------ members

    def member(self, info: zipfile.ZipInfo, limit: int, limit_name: str) -> bytes:
        """Read one member fully (CRC checked), refusing it first if its header is suspect."""
        name = info.filename
        if info.flag_bits & 0x1:
            raise self.fail(f"the member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self.fail(
                f"the member {name!r} uses compression method {info.compress_type}, not stored "
                "or deflated"
            )
        if info.file_size > limit:
            raise self.fail(
                f"the member {name!r} declares {info.file_size} bytes, over the limit of "
                f"{limit} ({limit_name})"
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise self.fail(f"the stored member {name!r} declares two different sizes")
        if _too_compressed(info):
            raise self.fail(
                f"the member {name!r} would inflate {info.compress_size} bytes to "
                f"{info.file_size}, more than MAX_COMPRESSION_RATIO ({MAX_COMPRESSION_RATIO}) "
                "times (a decompression bomb)"
            )
        with self.archive.open(info) as member:
            # Bounded even if the declared size lies; reading to the end checks the CRC.
            data = member.read(info.file_size + 1)
        if len(data) != info.file_size:
            raise self.fail(
                f"the member {name!r} holds {len(data)} bytes, its header says {info.file_size}"
            )
        return data

    def json_member(self, info: zipfile.ZipInfo, limit: int, limit_name: str) -> Any:
        data = self.member(info, limit, limit_name)
        try:
            return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
        except RecursionError:
            raise self.fail(
                f"the member {info.filename!r} nests JSON deeper than the parser can follow"
            ) from None
        except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, too many int digits
            raise self.fail(f"the member {info.filename!r} is not valid JSON: {exc}") from exc

    # ------------------------------------------------------------------ manifest

    def check_manifest(self, manifest: Any) -> tuple[int | None, str, list[dict[str, Any]]]:
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise HistoryFileError(
                f"{self.path} is not a langchain-rpo history file (format {found!r}, expected "
                f"{FORMAT_NAME!r}). {_FIX}"
            )
        version = manifest.get("format_version")
        if not _is_int(version):
            raise self.fail(f"the manifest's format_version is {version!r}, not an int")
        if version not in _READABLE_VERSIONS:
            raise HistoryFileError(
                f"{self.path} has history format version {version!r}; this langchain-rpo reads "
                f"versions {', '.join(map(str, _READABLE_VERSIONS))}. Upgrade langchain-rpo to "
                "load it."
            )
        self.check_keys(manifest, _MANIFEST_KEYS if version >= 2 else _MANIFEST_KEYS_V1,
                        "the manifest")  # fmt: skip
        dim = manifest["dim"]
        if dim is not None and (not _is_int(dim) or dim <= 0):
            raise self.fail(f"the manifest has an invalid embedding dimension {dim!r}")
        embeddings = manifest["embeddings"]
        if not isinstance(embeddings, str):
            raise self.fail(f"the manifest's embeddings is {embeddings!r}, not a string")
        entries = manifest["users"]
        if not isinstance(entries, list):
            raise self.fail(f"the manifest's users is of type {type(entries).__name__}, not a list")
        if entries and dim is None:
            raise self.fail("the manifest lists users but no embedding dimension")
        seen: set[str] = set()
        for n, entry in enumerate(entries):
            where = f"the manifest's users[{n}]"
            user_id = self.check_entry(entry, _ENTRY_KEYS, where)
            if user_id in seen:
                raise self.fail(f"the user {user_id!r} is listed twice")
            seen.add(user_id)
            docstore_name, index_name = _member_names(n)
            if entry["docstore"] != docstore_name or entry["index"] != index_name:
                raise self.fail(
                    f"{where} (user {user_id!r}) names the members {entry['docstore']!r} and "
                    f"{entry['index']!r}, not its own {docstore_name!r} and {index_name!r}"
                )
        return dim, embeddings, entries

    def check_feedback_entries(self, manifest: dict[str, Any]) -> list[dict[str, Any]]:
        """The manifest's feedback entries (none in a version 1 file), each field checked."""
        entries = manifest.get("feedback", [])
        if not isinstance(entries, list):
            raise self.fail(
                f"the manifest's feedback is of type {type(entries).__name__}, not a list"
            )
        seen: set[str] = set()
        for m, entry in enumerate(entries):
            where = f"the manifest's feedback[{m}]"
            user_id = self.check_entry(entry, _FEEDBACK_ENTRY_KEYS, where)
            if user_id in seen:
                raise self.fail(f"the feedback of user {user_id!r} is listed twice")
            seen.add(user_id)
            if entry["events"] != _feedback_member_name(m):
                raise self.fail(
                    f"{where} (user {user_id!r}) names the member {entry['events']!r}, not its "
                    f"own {_feedback_member_name(m)!r}"
                )
        return entries

    def read_feedback(self, entry: dict[str, Any], info: zipfile.ZipInfo) -> list[FeedbackEvent]:
        """Parse one user's feedback member: ``count`` checked events of that user, ids unique."""
        user_id, count = entry["user_id"], entry["count"]
        where = f"the feedback of user {user_id!r}"
        data = self.member(info, MAX_FEEDBACK_BYTES, "MAX_FEEDBACK_BYTES")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{where} is not UTF-8: {exc}") from None
        if not text.endswith("\n"):
            raise self.fail(f"{where} does not end with a newline (it was cut short)")
        lines = text[:-1].split("\n")
        if len(lines) != count:
            raise self.fail(f"{where} holds {len(lines)} lines, the manifest says {count}")
        events: list[FeedbackEvent] = []
        ids: set[str] = set()
        for i, line in enumerate(lines):
            try:
                event = FeedbackEvent.from_json(line)
            except RecursionError:
                raise self.fail(
                    f"{where}, line {i + 1} nests JSON deeper than the parser can follow"
                ) from None
            except ValueError as exc:
                raise self.fail(f"{where}, line {i + 1}: {exc}") from None
            if event.user_id != user_id:
                raise self.fail(f"{where}, line {i + 1} is an event of user {event.user_id!r}")
            if event.event_id in ids:
                raise self.fail(f"{where}, line {i + 1} repeats the event id {event.event_id!r}")
            ids.add(event.event_id)
            events.append(event)
        return events

    def check_entry(self, entry: Any, keys: frozenset[str], where: str) -> str:
        """Check a manifest entry's keys, its user id and its ``count``; return the user id."""
        self.check_keys(entry, keys, where)
        user_id = entry["user_id"]
        if not isinstance(user_id, str) or not user_id:
            raise self.fail(f"{where} has the user id {user_id!r}, not a non-empty string")
        try:
            check_encodable(user_id, "its user id")
        except ValueError as exc:
            raise self.fail(f"{where}: {exc}") from None
        count = entry["count"]
        if not _is_int(count) or count < 1:
            raise self.fail(f"{where} has count {count!r}, not an int of at least 1")
        return user_id

    def check_keys(self, value: Any, keys: frozenset[str], where: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(f"{where} is of type {type(value).__name__}, not an object")
        if value.keys() != keys:
            missing, extra = sorted(keys - value.keys()), sorted(value.keys() - keys)
            raise self.fail(f"{where} lacks the fields {missing} or has unknown ones {extra}")

    # ------------------------------------------------------------------ users

    def read_user(
        self, entry: dict[str, Any], infos: dict[str, zipfile.ZipInfo], dim: int
    ) -> StoredUser:
        user_id, count = entry["user_id"], entry["count"]
        docstore = self.json_member(
            infos[entry["docstore"]], MAX_DOCSTORE_BYTES, "MAX_DOCSTORE_BYTES"
        )
        next_int, items = self.check_docstore(docstore, user_id, count)
        vectors, faiss_ids = self.index_member(infos[entry["index"]], user_id, count, dim)
        if len(np.unique(faiss_ids)) != count:
            raise self.fail(f"the index of user {user_id!r} holds one FAISS id twice")
        if set(faiss_ids.tolist()) != {item.faiss_id for item in items}:
            raise self.fail(
                f"the index of user {user_id!r} holds other FAISS ids than its docstore"
            )
        return StoredUser(user_id, next_int, items, vectors, faiss_ids)

    def check_docstore(
        self, docstore: Any, user_id: str, count: int
    ) -> tuple[int, list[StoredItem]]:
        where = f"the docstore of user {user_id!r}"
        self.check_keys(docstore, _DOCSTORE_KEYS, where)
        next_int, raw_items = docstore["next_int"], docstore["items"]
        if not _is_int(next_int) or not 0 <= next_int <= _INT64_MAX:
            raise self.fail(f"{where} has next_int {next_int!r}, not an int64 of 0 or more")
        if not isinstance(raw_items, list) or len(raw_items) != count:
            found = len(raw_items) if isinstance(raw_items, list) else type(raw_items).__name__
            raise self.fail(f"{where} holds {found} items, the manifest says {count}")
        items: list[StoredItem] = []
        ids: set[str] = set()
        faiss_ids: set[int] = set()
        for i, item in enumerate(raw_items):
            at = f"{where}, items[{i}]"
            self.check_keys(item, _ITEM_KEYS, at)
            item_id, faiss_id, text = item["id"], item["faiss_id"], item["page_content"]
            if not isinstance(item_id, str) or not item_id:
                raise self.fail(f"{at} has the id {item_id!r}, not a non-empty string")
            if item_id in ids:
                raise self.fail(f"{at} repeats the item id {item_id!r}")
            if not _is_int(faiss_id) or faiss_id < 0:
                raise self.fail(f"{at} has the FAISS id {faiss_id!r}, not an int of 0 or more")
            if faiss_id >= next_int:
                raise self.fail(
                    f"{at} has the FAISS id {faiss_id}, not below next_int {next_int} (new items "
                    "would reuse it)"
                )
            if faiss_id in faiss_ids:
                raise self.fail(f"{at} repeats the FAISS id {faiss_id}")
            if not isinstance(text, str):
                raise self.fail(f"{at} has page_content of type {type(text).__name__}")
            if not isinstance(item["metadata"], dict):
                raise self.fail(f"{at} has metadata of type {type(item['metadata']).__name__}")
            try:
                check_encodable(item_id, "its id")
                check_encodable(text, "its page_content")
                check_json_value(item["metadata"], "its metadata")
            except ValueError as exc:
                raise self.fail(f"{at}: {exc}") from None
            ids.add(item_id)
            faiss_ids.add(faiss_id)
            items.append(StoredItem(item_id, faiss_id, text, item["metadata"]))
        return next_int, items

    def index_member(
        self, info: zipfile.ZipInfo, user_id: str, count: int, dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Parse an index member, accepting exactly IndexIDMap2(IndexFlatIP(dim)) of ``count``."""
        where = f"the index of user {user_id!r}"
        if info.compress_type != zipfile.ZIP_STORED:
            raise self.fail(f"{where} is compressed; save stores indexes uncompressed")
        size = _index_size(count, dim)
        if info.file_size != size:
            raise self.fail(
                f"{where} declares {info.file_size} bytes; {count} vectors of width {dim} take "
                f"exactly {size}"
            )
        data = self.member(info, size, f"{count} vectors of width {dim}")
        if data[:4] != b"IxM2":
            raise self.fail(f"{where} is not an IndexIDMap2 (it starts {data[:4]!r})")
        if data[4 + _HEADER.size : 8 + _HEADER.size] != b"IxFI":
            kind = data[4 + _HEADER.size : 8 + _HEADER.size]
            raise self.fail(
                f"{where} wraps a {kind!r} index, not an exact inner-product IndexFlatIP"
            )
        for offset in (4, 8 + _HEADER.size):
            d, ntotal, _, _, _, metric = _HEADER.unpack_from(data, offset)
            if metric != _METRIC_INNER_PRODUCT:
                raise self.fail(f"{where} uses metric {metric}, not inner product")
            if d != dim or ntotal != count:
                raise self.fail(
                    f"{where} holds {ntotal} vectors of width {d}; the manifest says {count} of "
                    f"width {dim}"
                )
        offset = _INDEX_PREFIX_BYTES
        (n_floats,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        vectors = np.frombuffer(data, dtype="<f4", count=count * dim, offset=offset)
        offset += 4 * count * dim
        (n_ids,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        faiss_ids = np.frombuffer(data, dtype="<i8", count=count, offset=offset)
        if n_floats != count * dim or n_ids != count:
            raise self.fail(f"{where} has inconsistent vector or id counts")
        vectors = vectors.astype(np.float32).reshape(count, dim)  # native order, writable
        if not np.isfinite(vectors).all():
            raise self.fail(f"{where} holds a vector that is not finite")
        norms = np.linalg.norm(vectors, axis=1)
        if np.abs(norms - 1.0).max(initial=0.0) > 1e-3:
            raise self.fail(f"{where} holds a vector that is not of unit length")
        return vectors, faiss_ids.astype(np.int64)
