"""Store files: every damaged or crafted file raises HistoryFileError and loads nothing.

The outcome of loading a file is one of two: a ``HistoryFileError`` (a ``ValueError``), or, for
damage in a part of the zip that nothing reads (a timestamp, a comment length that is never
used), a store exactly equal to the one saved. Any other exception, or a store that differs, is a
failure.
"""

from __future__ import annotations

import fcntl
import json
import random
import re
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
from _store_helpers import (
    DIM,
    build_store,
    deflate_zeros,
    edit_json,
    raw_zip,
    read_members,
    snapshot,
    write_members,
)

from langchain_rpo import HistoryFileError
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_checks import MAX_METADATA_DEPTH
from langchain_rpo.history_file import MAX_COMPRESSION_RATIO, MAX_DOCSTORE_BYTES

HERE = Path(__file__).parent
MANIFEST = "manifest.json"
DOC0, INDEX0 = "users/000000/docstore.json", "users/000000/index.faiss"
DOC1, INDEX1 = "users/000001/docstore.json", "users/000001/index.faiss"
# Feedback entries are listed by user id: "events-only" (0), then "user1-ü" (1).
EVENTS0, EVENTS1 = "feedback/000000.jsonl", "feedback/000001.jsonl"


def _outcome(path: Path, expected: Any) -> tuple[bool, str]:
    """Load ``path``: held when it raises HistoryFileError or loads exactly ``expected``."""
    try:
        loaded = UserHistoryStore.load(path)
    except HistoryFileError:
        return True, ""
    except BaseException as exc:  # noqa: BLE001 - the case reports it
        return False, f"raised {type(exc).__name__}: {exc}"
    if snapshot(loaded) != expected:
        return False, "loaded without error into another state"
    return True, ""


def _refused(path: Path) -> tuple[bool, str]:
    """Load ``path``: held only when it raises HistoryFileError."""
    try:
        UserHistoryStore.load(path)
    except HistoryFileError as exc:
        return True, str(exc)
    except BaseException as exc:  # noqa: BLE001 - the case reports it
        return False, f"raised {type(exc).__name__}: {exc}"
    return False, "loaded without error"


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, Any]:
    store = build_store()
    path = tmp_path / "history.zip"
    store.save(path)
    return path, snapshot(store)


# ---------------------------------------------------------------- random damage


def test_bit_flips(fault_cases: Any, saved: tuple[Path, Any], tmp_path: Path) -> None:
    """One flipped bit at every byte offset of a saved store (about 3,000 offsets)."""
    path, expected = saved
    data = path.read_bytes()
    rng = random.Random(11)
    damaged = tmp_path / "damaged.zip"
    for offset in range(len(data)):
        bit = rng.randrange(8)
        flipped = bytearray(data)
        flipped[offset] ^= 1 << bit
        damaged.write_bytes(flipped)
        held, detail = _outcome(damaged, expected)
        fault_cases.record("store files: bit flips", held, f"offset {offset} bit {bit}: {detail}")
    fault_cases.check()


def test_truncations_and_garbage(fault_cases: Any, saved: tuple[Path, Any], tmp_path: Path) -> None:
    path, expected = saved
    data = path.read_bytes()
    damaged = tmp_path / "damaged.zip"
    rng = random.Random(12)
    for size in sorted({0, 1, 4, 21, 22, len(data) - 1, *rng.sample(range(len(data)), 100)}):
        damaged.write_bytes(data[:size])
        held, detail = _refused(damaged)
        fault_cases.record("store files: truncations", held, f"first {size} bytes: {detail}")
    for name, blob in [
        ("random bytes", rng.randbytes(4096)),
        ("html error page", b"<!doctype html><title>502 Bad Gateway</title>"),
        ("the save twice in a row (zipfile reads the last copy)", data + data),
        ("zeros over the middle", data[:1000] + bytes(500) + data[1500:]),
    ]:
        damaged.write_bytes(blob)
        held, detail = _outcome(damaged, expected)
        fault_cases.record("store files: truncations", held, f"{name}: {detail}")
    fault_cases.check()


# ---------------------------------------------------------------- crafted files


def _index_bytes(index: Any) -> bytes:
    return faiss.serialize_index(index).tobytes()


def _vectors_of(members: dict[str, bytes], name: str) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.deserialize_index(np.frombuffer(members[name], dtype=np.uint8))
    vectors = index.index.reconstruct_n(0, index.ntotal)
    return vectors, faiss.vector_to_array(index.id_map)


def _reindex(build: Callable[[int], Any], wrap: bool = True) -> Callable[[dict[str, bytes]], None]:
    """Replace user 0's index by another kind holding the same vectors and ids."""

    def craft(members: dict[str, bytes]) -> None:
        vectors, ids = _vectors_of(members, INDEX0)
        inner = build(vectors.shape[1])
        if wrap:
            index = faiss.IndexIDMap2(inner)
            index.add_with_ids(vectors, ids)
        else:
            inner.add(vectors)
            index = inner
        members[INDEX0] = _index_bytes(index)

    return craft


def _edit(name: str, edit: Callable[[Any], Any]) -> Callable[[dict[str, bytes]], None]:
    return lambda members: edit_json(members, name, edit)


def _set(name: str, path: tuple[Any, ...], value: Any) -> Callable[[dict[str, bytes]], None]:
    """Set the field at ``path`` (keys and indexes) of JSON member ``name`` to ``value``."""

    def edit(document: Any) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return _edit(name, edit)


def _drop(name: str, path: tuple[Any, ...]) -> Callable[[dict[str, bytes]], None]:
    def edit(document: Any) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return _edit(name, edit)


def _duplicate_user(members: dict[str, bytes]) -> None:
    """User 0 listed again as a fourth user, with its own copies of the members."""
    members["users/000003/docstore.json"] = members[DOC0]
    members["users/000003/index.faiss"] = members[INDEX0]
    edit_json(
        members,
        MANIFEST,
        lambda m: m["users"].append(
            {
                **m["users"][0],
                "docstore": "users/000003/docstore.json",
                "index": "users/000003/index.faiss",
            }
        ),
    )


def _shared_faiss_id(members: dict[str, bytes]) -> None:
    def edit(doc: Any) -> None:
        doc["items"][1]["faiss_id"] = doc["items"][0]["faiss_id"]

    edit_json(members, DOC1, edit)


def _index_with_repeated_id(members: dict[str, bytes]) -> None:
    vectors, ids = _vectors_of(members, INDEX1)
    ids[1] = ids[0]
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    members[INDEX1] = _index_bytes(index)


def _index_vectors(change: Callable[[np.ndarray], None]) -> Callable[[dict[str, bytes]], None]:
    def craft(members: dict[str, bytes]) -> None:
        vectors, ids = _vectors_of(members, INDEX1)
        change(vectors)
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        index.add_with_ids(vectors, ids)
        members[INDEX1] = _index_bytes(index)

    return craft


def _max_faiss_id(members: dict[str, bytes], name: str) -> int:
    return max(item["faiss_id"] for item in json.loads(members[name])["items"])


def _deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def _patch_index(
    name: str, offset: int, value: int, size: int = 4
) -> Callable[[dict[str, bytes]], None]:
    """Overwrite a little-endian int of an index member in place (its size is unchanged)."""

    def craft(members: dict[str, bytes]) -> None:
        data = bytearray(members[name])
        data[offset : offset + size] = value.to_bytes(size, "little", signed=True)
        members[name] = bytes(data)

    return craft


def _replace(name: str, old: bytes, new: bytes) -> Callable[[dict[str, bytes]], None]:
    """Replace the first ``old`` in the raw bytes of member ``name``."""

    def craft(members: dict[str, bytes]) -> None:
        assert old in members[name], (name, old)
        members[name] = members[name].replace(old, new, 1)

    return craft


def _raw_member(name: str, raw: bytes) -> Callable[[dict[str, bytes]], None]:
    def craft(members: dict[str, bytes]) -> None:
        members[name] = raw

    return craft


# Wrong-typed values per kind of field: each is refused wherever it replaces a field of that kind.
NOT_INT = [None, "1", 1.5, True, [], {}]
NOT_STR = [None, 1, 1.5, False, [], {}]
NOT_LIST = [None, "x", 1, {}, True]
NOT_DICT = [None, "x", 1, [], True]

FIELDS: list[tuple[str, str, tuple[Any, ...], list[Any]]] = [
    ("manifest format", MANIFEST, ("format",), NOT_STR),
    # 1 is a readable version, but a version 1 manifest has no feedback list.
    ("manifest format_version", MANIFEST, ("format_version",), [*NOT_INT, 1.0, 1, 3, 0]),
    ("manifest dim", MANIFEST, ("dim",), [*NOT_INT, 0, -8, DIM + 1]),
    ("manifest embeddings", MANIFEST, ("embeddings",), NOT_STR),
    ("manifest users", MANIFEST, ("users",), NOT_LIST),
    ("manifest user entry", MANIFEST, ("users", 0), NOT_DICT),
    ("manifest user_id", MANIFEST, ("users", 0, "user_id"), [*NOT_STR, ""]),
    ("manifest count", MANIFEST, ("users", 0, "count"), [*NOT_INT, 0, -1, 999]),
    ("manifest docstore", MANIFEST, ("users", 0, "docstore"), [*NOT_STR, DOC1, "../x"]),
    ("manifest index", MANIFEST, ("users", 0, "index"), [*NOT_STR, INDEX1, "users/0/index.faiss"]),
    ("docstore", DOC1, (), NOT_DICT),
    ("docstore next_int", DOC1, ("next_int",), [*NOT_INT, -1, 2**63]),
    ("docstore items", DOC1, ("items",), NOT_LIST),
    ("docstore item", DOC1, ("items", 0), NOT_DICT),
    ("item id", DOC1, ("items", 0, "id"), [*NOT_STR, ""]),
    ("item faiss_id", DOC1, ("items", 0, "faiss_id"), [*NOT_INT, -1]),
    ("item page_content", DOC1, ("items", 0, "page_content"), NOT_STR),
    ("item metadata", DOC1, ("items", 0, "metadata"), NOT_DICT),
    ("manifest feedback", MANIFEST, ("feedback",), NOT_LIST),
    ("manifest feedback entry", MANIFEST, ("feedback", 1), NOT_DICT),
    ("feedback user_id", MANIFEST, ("feedback", 1, "user_id"), [*NOT_STR, "", "user0-ü"]),
    ("feedback count", MANIFEST, ("feedback", 1, "count"), [*NOT_INT, 0, -1, 1, 3]),
    ("feedback events", MANIFEST, ("feedback", 1, "events"), [*NOT_STR, EVENTS0, "../x"]),
]


def _event_line(
    n: int, change: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, bytes]], None]:
    """Change line ``n`` (from 0) of user 1's feedback member, as parsed JSON."""

    def craft(members: dict[str, bytes]) -> None:
        lines = members[EVENTS1].decode().splitlines()
        value = json.loads(lines[n])
        change(value)
        lines[n] = json.dumps(value, ensure_ascii=False)
        members[EVENTS1] = ("\n".join(lines) + "\n").encode()

    return craft


def _event_field(key: str, value: Any) -> Callable[[dict[str, bytes]], None]:
    return _event_line(0, lambda event: event.__setitem__(key, value))


FEEDBACK_CRAFTED: list[tuple[str, Callable[[dict[str, bytes]], None]]] = [
    ("an event of another user", _event_field("user_id", "user0-ü")),
    ("an event id twice", _event_line(1, lambda e: e.__setitem__("event_id", "event-2"))),
    ("an event of a newer version", _event_field("version", 2)),
    ("an event with an unknown key", _event_field("extra", 1)),
    ("an event without its draft", _event_line(0, lambda e: e.pop("draft"))),
    ("an event with verdict 'maybe'", _event_field("verdict", "maybe")),
    ("an edited event without final text", _event_field("final_text", None)),
    ("an event with a NaN rating", _replace(EVENTS1, b'"rating": 4', b'"rating": NaN')),
    ("an event with a time without zone", _event_field("time", "2026-12-02T19:00:01")),
    ("an event with more texts than ids", _event_field("recalled_texts", ["a", "b"])),
    ("an event with a bad trajectory", _event_field("trajectory", {"gaps": "g"})),
    ("an event that is a list", lambda m: m.__setitem__(EVENTS1, b"[1]\n[2]\n")),
    ("events without the last newline", lambda m: m.__setitem__(EVENTS1, m[EVENTS1][:-1])),
    ("a blank line among events", lambda m: m.__setitem__(EVENTS1, b"\n" + m[EVENTS1])),
    ("an event cut mid-line", lambda m: m.__setitem__(EVENTS1, m[EVENTS1][:-20] + b"\n")),
    ("events nested 100000 levels",
     _raw_member(EVENTS1, b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"\n")),
    ("invalid UTF-8 in an event", _replace(EVENTS1, b"final 1", b"final \xff")),
    ("a lone surrogate in an event", _replace(EVENTS1, b"final 1", b"final \\ud800")),
    ("a feedback member missing", lambda m: m.pop(EVENTS1)),
    ("an extra feedback member", lambda m: m.__setitem__("feedback/000009.jsonl", b"")),
    ("a feedback entry listed twice",
     lambda m: _set(MANIFEST, ("feedback", 0, "user_id"), "user1-ü")(m)),
    ("two entries swapping members",
     lambda m: m.update({EVENTS0: m[EVENTS1], EVENTS1: m[EVENTS0]})),
]  # fmt: skip


def _whole(name: str, value: Any) -> Callable[[dict[str, bytes]], None]:
    return lambda members: members.__setitem__(name, json.dumps(value).encode())


def _field_cases() -> list[tuple[str, Callable[[dict[str, bytes]], None]]]:
    cases = []
    for label, name, path, values in FIELDS:
        for value in values:
            craft = _whole(name, value) if not path else _set(name, path, value)
            cases.append((f"{label} = {value!r}", craft))
        if path and isinstance(path[-1], str):
            cases.append((f"{label} missing", _drop(name, path)))
    for name, path in [(MANIFEST, ()), (MANIFEST, ("users", 0)), (DOC1, ()), (DOC1, ("items", 0))]:
        cases.append((f"unknown field in {name} {path}", _set(name, (*path, "extra"), 1)))
    return cases


CRAFTED: list[tuple[str, Callable[[dict[str, bytes]], None]]] = [
    ("a user listed twice", _duplicate_user),
    ("two items sharing a FAISS id", _shared_faiss_id),
    ("two items sharing an id", _set(DOC1, ("items", 1, "id"), "user1-ü/0")),
    ("an index holding one id twice", _index_with_repeated_id),
    (
        "next_int equal to a FAISS id in use",
        lambda m: _set(DOC1, ("next_int",), _max_faiss_id(m, DOC1))(m),
    ),
    ("next_int 0", _set(DOC1, ("next_int",), 0)),
    (
        "a FAISS id the index does not hold",
        lambda m: _set(DOC1, ("items", 0, "faiss_id"), _max_faiss_id(m, DOC1) + 1)(m),
    ),
    ("user 0 pointing at user 1's index", _set(MANIFEST, ("users", 0, "index"), INDEX1)),
    ("user 0 pointing at user 1's docstore", _set(MANIFEST, ("users", 0, "docstore"), DOC1)),
    ("users 0 and 1 swapping members", lambda m: m.update({INDEX0: m[INDEX1], INDEX1: m[INDEX0]})),
    ("count not matching the docstore", _set(MANIFEST, ("users", 1, "count"), 5)),
    ("IndexHNSWFlat in IndexIDMap2", _reindex(lambda d: faiss.IndexHNSWFlat(d, 8))),
    ("IndexFlatL2 in IndexIDMap2", _reindex(faiss.IndexFlatL2)),
    (
        "IndexFlat with L1 metric in IndexIDMap2",
        _reindex(lambda d: faiss.IndexFlat(d, faiss.METRIC_L1)),
    ),
    ("IndexFlatIP without an id map", _reindex(faiss.IndexFlatIP, wrap=False)),
    (
        "IndexIDMap (not 2) over IndexFlatIP",
        lambda m: m.__setitem__(INDEX0, _index_bytes(_idmap1(m))),
    ),
    (
        "IndexIDMap2 over IndexFlatIP of another width",
        lambda m: m.__setitem__(INDEX0, _narrow_index(m)),
    ),
    # Index header offsets: "IxM2" 0, d 4, ntotal 8, metric 33; "IxFI" 37, d 41, metric 70;
    # then the float count at 74.
    ("the flat index's metric set to L2 (same size)", _patch_index(INDEX0, 70, 1)),
    ("the map's metric set to L2 (same size)", _patch_index(INDEX0, 33, 1)),
    ("the map's header saying another count", _patch_index(INDEX0, 8, 4, size=8)),
    ("the flat header saying another width", _patch_index(INDEX0, 41, DIM - 1)),
    ("the vector count saying another count", _patch_index(INDEX0, 74, 3, size=8)),
    ("a NaN vector in an index", _index_vectors(lambda v: v.__setitem__((0, 0), np.nan))),
    ("a vector that is not unit length", _index_vectors(lambda v: v.__setitem__(0, v[0] * 3))),
    ("index bytes cut short", lambda m: m.__setitem__(INDEX0, m[INDEX0][:-8])),
    ("index bytes with garbage appended", lambda m: m.__setitem__(INDEX0, m[INDEX0] + b"\0" * 8)),
    ("an index of random bytes", _raw_member(INDEX0, random.Random(3).randbytes(200))),
    ("manifest nested 100000 levels", _raw_member(MANIFEST, b"[" * 100_000 + b"]" * 100_000)),
    (
        "docstore nested 100000 levels",
        _raw_member(DOC1, b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ),
    (
        "manifest users nested 2000 levels",
        _replace(MANIFEST, b'"users": [', b'"users": [' + b"[" * 2000 + b"]" * 2000 + b", "),
    ),
    (
        f"metadata nested {MAX_METADATA_DEPTH + 1} levels",
        _set(DOC1, ("items", 0, "metadata"), {"a": _deep(MAX_METADATA_DEPTH)}),
    ),
    ("NaN in metadata", _replace(DOC1, b'"i": 0', b'"i": NaN')),
    ("Infinity in metadata", _replace(DOC1, b'"i": 0', b'"i": -Infinity')),
    ("1e400 in metadata", _replace(DOC1, b'"i": 0', b'"i": 1e400')),
    ("a lone surrogate escaped in a text", _replace(DOC1, b"item 0", b"item \\ud800")),
    ("a lone surrogate escaped in a user id", _replace(MANIFEST, b'"user1-', b'"\\udc00user1-')),
    ("invalid UTF-8 in a text", _replace(DOC1, b"item 0", b"item \xff")),
    (
        "a manifest in UTF-16",
        lambda m: m.__setitem__(MANIFEST, m[MANIFEST].decode().encode("utf-16")),
    ),
    ("an int of 5000 digits", _raw_member(MANIFEST, b'{"format": 1' + b"0" * 5000 + b"}")),
    ("the manifest missing", lambda m: m.pop(MANIFEST)),
    ("a user's index missing", lambda m: m.pop(INDEX1)),
    ("an extra member", lambda m: m.__setitem__("users/000009/docstore.json", b"{}")),
    ("format of another program", _set(MANIFEST, ("format",), "something-else")),
    ("dim null with users", _set(MANIFEST, ("dim",), None)),
    (
        "a user with no items",
        lambda m: (_set(DOC1, ("items",), [])(m), _set(MANIFEST, ("users", 1, "count"), 0)(m)),
    ),
    ("a manifest that is a list", _whole(MANIFEST, [])),
]


def _idmap1(members: dict[str, bytes]) -> Any:
    vectors, ids = _vectors_of(members, INDEX0)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(vectors, ids)
    return index


def _narrow_index(members: dict[str, bytes]) -> bytes:
    vectors, ids = _vectors_of(members, INDEX0)
    narrow = np.ascontiguousarray(vectors[:, :-1])
    faiss.normalize_L2(narrow)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(narrow.shape[1]))
    index.add_with_ids(narrow, ids)
    return _index_bytes(index)


@pytest.mark.parametrize(
    ("group", "cases"),
    [
        ("store files: crafted", CRAFTED),
        ("store files: wrong field types", _field_cases()),
        ("store files: crafted feedback", FEEDBACK_CRAFTED),
    ],
    ids=["crafted", "field-types", "feedback"],
)
def test_crafted_files_are_refused(
    fault_cases: Any,
    saved: tuple[Path, Any],
    tmp_path: Path,
    group: str,
    cases: list[tuple[str, Callable[[dict[str, bytes]], None]]],
) -> None:
    path, _ = saved
    original = read_members(path)
    crafted = tmp_path / "crafted.zip"
    for name, craft in cases:
        members = dict(original)
        craft(members)
        write_members(crafted, members)
        held, detail = _refused(crafted)
        fault_cases.record(group, held, f"{name}: {detail}")
    fault_cases.check()


def test_zip_level_tricks_are_refused(
    fault_cases: Any, saved: tuple[Path, Any], tmp_path: Path
) -> None:
    path, _ = saved
    members = read_members(path)
    crafted = tmp_path / "crafted.zip"
    group = "store files: crafted"

    def check(name: str) -> None:
        held, detail = _refused(crafted)
        fault_cases.record(group, held, f"{name}: {detail}")

    with zipfile.ZipFile(crafted, "w") as archive:  # a member name twice (zipfile warns)
        for name, data in members.items():
            archive.writestr(name, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr(DOC1, members[DOC0])
    check("a member name twice")

    with zipfile.ZipFile(crafted, "w") as archive:
        for name, data in members.items():
            method = zipfile.ZIP_BZIP2 if name == DOC1 else zipfile.ZIP_STORED
            archive.writestr(name, data, method)
    check("a member compressed with bzip2")

    with zipfile.ZipFile(crafted, "w") as archive:
        for name, data in members.items():
            method = zipfile.ZIP_DEFLATED  # an index deflated, as save never writes it
            archive.writestr(name, data, method)
    check("an index member deflated")

    write_members(crafted, members)  # the encryption flag set on one member
    data = bytearray(crafted.read_bytes())
    with zipfile.ZipFile(crafted) as archive:
        info = archive.getinfo(DOC1)
    offset = _central_record(bytes(data), DOC1)
    data[offset + 8] |= 0x1
    data[info.header_offset + 6] |= 0x1
    crafted.write_bytes(data)
    check("a member flagged encrypted")

    # Stored member whose two sizes disagree: compress_size says more than file_size.
    data = bytearray(path.read_bytes())
    offset = _central_record(bytes(data), INDEX0)
    compress_size = int.from_bytes(data[offset + 20 : offset + 24], "little")
    data[offset + 20 : offset + 24] = (compress_size + 4).to_bytes(4, "little")
    crafted.write_bytes(data)
    check("a stored member with two different sizes")
    fault_cases.check()


def _central_record(data: bytes, name: str) -> int:
    """Offset of the central directory record of member ``name``."""
    start = 0
    while True:
        offset = data.index(b"PK\x01\x02", start)
        length = int.from_bytes(data[offset + 28 : offset + 30], "little")
        if data[offset + 46 : offset + 46 + length] == name.encode():
            return offset
        start = offset + 4


# ---------------------------------------------------------------- decompression bombs

BOMB_SCRIPT = r"""
import resource, sys, time
sys.path.insert(0, sys.argv[1])
from langchain_rpo import HistoryFileError
from langchain_rpo.history import UserHistoryStore

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

baseline = peak_mb()
for path in sys.argv[2:]:
    start = time.perf_counter()
    try:
        UserHistoryStore.load(path)
        outcome = "loaded"
    except HistoryFileError as exc:
        outcome = "refused: " + str(exc).split(". Fix:")[0]
    except BaseException as exc:
        outcome = f"raised {type(exc).__name__}: {exc}"
    print(f"{path}\t{outcome}\t{time.perf_counter() - start:.3f}\t{peak_mb() - baseline:.1f}")
"""


def test_size_bombs_are_refused_without_inflating(
    fault_cases: Any, saved: tuple[Path, Any], tmp_path: Path
) -> None:
    """A 1 MB member that inflates to 1 GiB, told truthfully and with a lying header."""
    path, _ = saved
    members = read_members(path)
    stream, crc = deflate_zeros(1 << 30)
    assert len(stream) < 1.1e6

    def bomb_file(name: str, target: str, declared: int) -> Path:
        entries = []
        for member, data in members.items():
            if member == target:
                entries.append((member, zipfile.ZIP_DEFLATED, crc, stream, declared))
            else:
                entries.append((member, zipfile.ZIP_STORED, zlib.crc32(data), data, len(data)))
        bomb = tmp_path / f"{name}.zip"
        raw_zip(bomb, entries)
        return bomb

    bombs = {
        bomb_file("docstore-told", DOC1, 1 << 30): "MAX_COMPRESSION_RATIO",
        bomb_file("docstore-lying", DOC1, len(members[DOC1])): "holds|CRC|Bad|damaged|JSON",
        bomb_file("manifest-told", MANIFEST, 1 << 30): "MAX_MANIFEST_BYTES",
        bomb_file("manifest-lying", MANIFEST, 1000): "holds|CRC|Bad|damaged|JSON",
        bomb_file("docstore-over-cap", DOC1, MAX_DOCSTORE_BYTES + 1): "MAX_DOCSTORE_BYTES",
    }
    result = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, str(HERE), *map(str, bombs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(bombs), result.stdout + result.stderr
    print("\nsize bombs (file, outcome, seconds, peak RSS growth in MB):", *lines, sep="\n")
    for line, (bomb, pattern) in zip(lines, bombs.items()):
        name, outcome, seconds, grown_mb = line.split("\t")
        held = (
            outcome.startswith("refused")
            and re.search(pattern, outcome) is not None
            and float(grown_mb) < 50
            and float(seconds) < 2
        )
        fault_cases.record(
            "store files: size bombs",
            held,
            f"{bomb.name}: {outcome} in {seconds} s, peak memory +{grown_mb} MB",
        )
    fault_cases.check()


def test_writer_stores_a_member_that_compresses_too_well(tmp_path: Path) -> None:
    """The ratio limit never refuses the writer's own files: it stores such members instead."""
    store = build_store(users=1)
    store.add_texts("user0-ü", ["z" * 5_000_000], ids=["long"])
    store.save(tmp_path / "h.zip")
    with zipfile.ZipFile(tmp_path / "h.zip") as archive:
        info = archive.getinfo(DOC0)
    assert info.compress_type == zipfile.ZIP_STORED
    assert info.file_size > MAX_COMPRESSION_RATIO * 1000
    assert snapshot(UserHistoryStore.load(tmp_path / "h.zip")) == snapshot(store)


# ---------------------------------------------------------------- temp files


def test_next_save_removes_abandoned_temp_files_only(
    fault_cases: Any, saved: tuple[Path, Any], tmp_path: Path
) -> None:
    path, _ = saved
    group = "store files: temp files"
    abandoned = [tmp_path / f".{path.name}.{suffix}.tmp" for suffix in ("abcd_123", "zz9")]
    for leftover in abandoned:
        leftover.write_bytes(b"half a zip")
    live = tmp_path / f".{path.name}.live0001.tmp"  # a save in progress elsewhere holds its lock
    other = tmp_path / f".{path.name}.bak.x1.tmp"  # belongs to "history.zip.bak", not to us
    other.write_bytes(b"")
    with open(live, "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        build_store().save(path)
        for leftover in abandoned:
            fault_cases.record(group, not leftover.exists(), f"{leftover.name} was left")
        fault_cases.record(group, live.exists(), "a live save's temp file was removed")
        fault_cases.record(group, other.exists(), "another file's temp file was removed")
    build_store().save(path)
    fault_cases.record(group, not live.exists(), "an unlocked temp file was left")
    fault_cases.check()
