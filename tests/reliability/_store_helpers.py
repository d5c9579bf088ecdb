"""Shared by the store reliability tests: a tiny deterministic embeddings model, stores built from
fixed random vectors, an exact snapshot of a store's contents, and zip surgery for crafted files.

Kept light on purpose (faiss, numpy and langchain_rpo.history only): the SIGKILL test's worker
processes import it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_file import MAX_COMPRESSION_RATIO

DIM = 8


class HashEmbeddings(Embeddings):
    """A vector per text from a hash of it: deterministic across processes, no model."""

    def __init__(self, size: int = DIM) -> None:
        self.size = size

    def _vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode("utf-8", "replace")).digest()
        seed = int.from_bytes(digest[:8], "little")
        return np.random.default_rng(seed).normal(size=self.size).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def build_store(users: int = 3, items: int = 6, dim: int = DIM, seed: int = 0) -> UserHistoryStore:
    """A store of ``users`` users with ``items`` items each (unicode texts, nested metadata)."""
    store = UserHistoryStore(HashEmbeddings(dim))
    rng = np.random.default_rng(seed)
    for u in range(users):
        user = f"user{u}-ü"
        store.add_embeddings(
            user,
            [f"{user} item {i} ✓ {'x' * i}" for i in range(items)],
            rng.normal(size=(items, dim)),
            metadatas=[
                {"owner": user, "i": i, "tags": ["a", {"b": 1.5, "c": None}]} for i in range(items)
            ],
            ids=[f"{user}/{i}" for i in range(items)],
        )
    # A delete and a replacement, so FAISS ids have a gap and next_int runs ahead of them.
    store.delete("user0-ü", ["user0-ü/1"])
    store.add_embeddings("user0-ü", ["replaced"], rng.normal(size=(1, dim)), ids=["user0-ü/2"])
    # Feedback events (file format 2): two of user 1, and one of a user with no items at all.
    if users > 1:
        store.add_feedback("user1-ü", [feedback_event("user1-ü", n) for n in (2, 1)])
        store.add_feedback(
            "events-only", [feedback_event("events-only", 1, verdict="rejected", final_text=None)]
        )
    return store


def feedback_event(user: str, n: int, **fields: Any) -> FeedbackEvent:
    """A feedback event of ``user`` with unicode texts and every field set."""
    values: dict[str, Any] = {
        "verdict": "edited",
        "draft": f"draft {n} ✓",
        "final_text": f"final {n} ü",
        "query": f"query {n}",
        "trajectory": {"preferences": "p", "gaps": "g", "rewrite": f"rewrite {n}"},
        "raw_reflection": f"<rewrite>rewrite {n}</rewrite>",
        "recalled_ids": [f"{user}/0"],
        "recalled_texts": [f"{user} item 0"],
        "rating": 4,
        **fields,
    }
    return FeedbackEvent(
        user_id=user, event_id=f"event-{n}", time=f"2026-12-02T19:00:0{n}Z", **values
    )


def snapshot(store: UserHistoryStore) -> tuple[Any, ...]:
    """Everything a store holds, exactly: width, users, items, FAISS ids, allocator, vectors."""
    with store._lock:
        users = []
        for user_id in sorted(store._users):
            stored = store._users[user_id].stored(user_id)
            users.append(
                (
                    user_id,
                    stored.next_int,
                    tuple(
                        (item.id, item.faiss_id, item.page_content, json.dumps(item.metadata))
                        for item in stored.items
                    ),
                    stored.vectors.tobytes(),
                    stored.faiss_ids.tobytes(),
                )
            )
        feedback = tuple(
            (user_id, tuple(event.to_json() for event in events))
            for user_id, events in store._feedback.stored().items()
        )
        return store.dim, tuple(users), feedback


def check_invariants(store: UserHistoryStore) -> list[str]:
    """What is inconsistent inside a store (empty when all holds)."""
    problems = []
    with store._lock:
        for user_id, user in store._users.items():
            ids = set(store._users[user_id].docs)
            if not ids:
                problems.append(f"{user_id}: kept with no items")
            if user.index.ntotal != len(ids):
                problems.append(f"{user_id}: {user.index.ntotal} vectors for {len(ids)} items")
            if set(user.str_to_int) != ids or set(user.int_to_str.values()) != ids:
                problems.append(f"{user_id}: id maps disagree with the docstore")
            if any(i >= user.next_int for i in user.int_to_str):
                problems.append(f"{user_id}: a FAISS id at or above next_int")
    return problems


# ---------------------------------------------------------------- zip surgery


def read_members(path: Path) -> dict[str, bytes]:
    """Every member of a zip, by name, in order."""
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_members(path: Path, members: dict[str, bytes]) -> None:
    """Write members the way save does: indexes stored, JSON deflated unless it compresses more
    than MAX_COMPRESSION_RATIO times (then stored), so a crafted member reaches the checks of
    its content rather than the ratio limit."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            deflate = not name.endswith(".faiss") and (
                len(data) <= MAX_COMPRESSION_RATIO * len(zlib.compress(data))
            )
            archive.writestr(name, data, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)


def edit_json(members: dict[str, bytes], name: str, edit: Callable[[Any], Any]) -> None:
    """Apply ``edit`` to the parsed JSON member ``name`` (it may mutate and return None)."""
    value = json.loads(members[name])
    result = edit(value)
    members[name] = json.dumps(value if result is None else result, ensure_ascii=False).encode()


def raw_zip(path: Path, members: list[tuple[str, int, int, bytes, int]]) -> None:
    """Write a zip by hand: ``(name, method, crc, compressed bytes, declared inflated size)``.

    zipfile cannot write a member whose declared size lies, or a precompressed stream; this can.
    Sizes above 4 GiB are not needed here (no zip64).
    """
    central = []
    with open(path, "wb") as out:
        for name, method, crc, data, size in members:
            offset = out.tell()
            encoded = name.encode()
            out.write(
                struct.pack(
                    "<4sHHHHHIIIHH",
                    b"PK\x03\x04",
                    20,
                    0,
                    method,
                    0,
                    0x21,
                    crc,
                    len(data),
                    size,
                    len(encoded),
                    0,
                )
            )
            out.write(encoded)
            out.write(data)
            central.append(
                struct.pack(
                    "<4sHHHHHHIIIHHHHHII",
                    b"PK\x01\x02",
                    20,
                    20,
                    0,
                    method,
                    0,
                    0x21,
                    crc,
                    len(data),
                    size,
                    len(encoded),
                    0,
                    0,
                    0,
                    0,
                    0,
                    offset,
                )
                + encoded
            )
        start = out.tell()
        for record in central:
            out.write(record)
        length = out.tell() - start
        out.write(
            struct.pack(
                "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(central), len(central), length, start, 0
            )
        )


def deflate_zeros(size: int, chunk: int = 1 << 20) -> tuple[bytes, int]:
    """A raw deflate stream of ``size`` zero bytes and their CRC, built without holding them.

    Deflate reaches a steady state on zeros: after a sync flush every further chunk compresses
    to the same bytes, so the stream is a head, one repeated block, and a tail.
    """
    assert size % chunk == 0 and size // chunk >= 4
    zeros = bytes(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    blocks = [compressor.compress(zeros) + compressor.flush(zlib.Z_SYNC_FLUSH) for _ in range(3)]
    assert blocks[1] == blocks[2], "deflate did not reach a steady state on zeros"
    tail = compressor.compress(zeros) + compressor.flush()
    stream = blocks[0] + blocks[1] * (size // chunk - 2) + tail
    crc = 0
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    return stream, crc
