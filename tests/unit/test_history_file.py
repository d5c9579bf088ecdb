"""Unit tests for the history file format (langchain_rpo.history_file) and atomic_write."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import zipfile
from pathlib import Path

import faiss
import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

import langchain_rpo
from langchain_rpo import history_file
from langchain_rpo.atomic import atomic_write, remove_abandoned_temp_files
from langchain_rpo.history import UserHistoryStore
from langchain_rpo.history_file import HistoryFileError

DIM = 8


@pytest.fixture
def store() -> UserHistoryStore:
    store = UserHistoryStore(DeterministicFakeEmbedding(size=DIM))
    store.add_texts("alice", ["a", "b", "c"], metadatas=[{"n": 1}, {}, {"l": [1, {"x": None}]}])
    store.add_texts("bob", ["ünï ✓"], ids=["b1"])
    store.delete("alice", [store.search("alice", "b", k=1)[0].id])
    return store


def test_history_file_error_is_an_exported_value_error() -> None:
    assert issubclass(HistoryFileError, ValueError)
    assert langchain_rpo.HistoryFileError is HistoryFileError
    assert "HistoryFileError" in langchain_rpo.__all__


def test_index_members_are_faiss_bytes(store: UserHistoryStore, tmp_path: Path) -> None:
    """The format is faiss.serialize_index's: faiss reads our members, and writes the same."""
    store.save(tmp_path / "h.zip")
    with zipfile.ZipFile(tmp_path / "h.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
        for entry in manifest["users"]:
            data = archive.read(entry["index"])
            assert archive.getinfo(entry["index"]).compress_type == zipfile.ZIP_STORED
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            assert isinstance(index, faiss.IndexIDMap2)
            assert index.metric_type == faiss.METRIC_INNER_PRODUCT and index.d == DIM
            assert faiss.serialize_index(store._users[entry["user_id"]].index).tobytes() == data


def test_a_file_written_by_the_earlier_writer_loads(
    store: UserHistoryStore, tmp_path: Path
) -> None:
    """Files of format version 1 written before the format had its own module still load."""
    path = tmp_path / "old.zip"
    users = []
    with zipfile.ZipFile(path, "w") as archive:
        for n, (uid, user) in enumerate(sorted(store._users.items())):
            folder = f"users/{n:06d}"
            items = [
                {"id": i, "faiss_id": user.str_to_int[i], **doc} for i, doc in user.docs.items()
            ]
            archive.writestr(f"{folder}/docstore.json",
                             json.dumps({"next_int": user.next_int, "items": items}),
                             zipfile.ZIP_DEFLATED)
            archive.writestr(f"{folder}/index.faiss",
                             faiss.serialize_index(user.index).tobytes(), zipfile.ZIP_STORED)
            users.append({"user_id": uid, "count": len(items),
                          "docstore": f"{folder}/docstore.json", "index": f"{folder}/index.faiss"})
        manifest = {"format": "langchain-rpo-history", "format_version": 1, "dim": DIM,
                    "embeddings": "DeterministicFakeEmbedding", "users": users}
        archive.writestr("manifest.json", json.dumps(manifest, indent=2), zipfile.ZIP_DEFLATED)
    loaded = UserHistoryStore.load(path, DeterministicFakeEmbedding(size=DIM))
    assert loaded.counts() == store.counts()
    for query in ("a", "c"):
        assert loaded.search_with_scores("alice", query, k=5) == store.search_with_scores(
            "alice", query, k=5
        )


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        UserHistoryStore.load(tmp_path / "nope.zip")


def test_save_refuses_a_docstore_over_the_limit_and_keeps_the_previous_file(
    store: UserHistoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.zip"
    store.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(history_file, "MAX_DOCSTORE_BYTES", 10)
    with pytest.raises(ValueError, match=r"docstore of user 'alice' would take \d+ bytes.*"
                                         r"MAX_DOCSTORE_BYTES \(10 bytes\)"):
        store.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.zip"]


def test_loaded_store_keeps_allocating_above_its_ids(
    store: UserHistoryStore, tmp_path: Path
) -> None:
    store.save(tmp_path / "h.zip")
    loaded = UserHistoryStore.load(tmp_path / "h.zip", DeterministicFakeEmbedding(size=DIM))
    assert loaded._users["alice"].next_int == store._users["alice"].next_int
    loaded.add_texts("alice", ["d"], ids=["d"])
    assert loaded._users["alice"].str_to_int["d"] == store._users["alice"].next_int


# ---------------------------------------------------------------- atomic_write


def test_atomic_write_binary_and_text(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    with atomic_write(target, "w") as stream:
        stream.write("ünï")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_text(encoding="utf-8") == "ünï"
    with atomic_write(target) as stream:
        stream.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as stream:
        stream.write(b"new, half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_gives_a_new_file_the_permissions_open_would(tmp_path: Path) -> None:
    umask = os.umask(0o027)  # a team umask: group may read, others nothing
    try:
        with atomic_write(tmp_path / "new.json", "w") as stream:
            stream.write("{}")
        with open(tmp_path / "plain.json", "w") as stream:
            stream.write("{}")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "new.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o640


def test_private_files_are_new_owner_only_and_keep_a_mode_their_owner_chose(
    store: UserHistoryStore, tmp_path: Path
) -> None:
    umask = os.umask(0o022)
    try:
        store.save(tmp_path / "h.zip")  # users' texts: atomic_write(private=True)
        with atomic_write(tmp_path / "x.bin", private=True) as stream:
            stream.write(b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "h.zip").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o600
    (tmp_path / "h.zip").chmod(0o640)  # the owner shares it with their group
    store.save(tmp_path / "h.zip")
    assert stat.S_IMODE((tmp_path / "h.zip").stat().st_mode) == 0o640


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o664])
def test_atomic_write_keeps_the_permissions_of_the_file_it_replaces(
    tmp_path: Path, mode: int
) -> None:
    target = tmp_path / "h.zip"
    target.write_bytes(b"old")
    target.chmod(mode)
    with atomic_write(target) as stream:
        stream.write(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_atomic_write_refuses_other_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"):
        atomic_write(tmp_path / "f", "a")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="encoding applies to mode 'w'"):
        atomic_write(tmp_path / "f", "wb", encoding="utf-8")  # type: ignore[call-overload]


def test_abandoned_temp_files_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "h.zip"
    dead = tmp_path / ".h.zip.k3j_x9a1.tmp"
    dead.write_bytes(b"half")
    live = tmp_path / ".h.zip.abcdefgh.tmp"
    unrelated = [tmp_path / ".h.zip.bak.abcdefgh.tmp", tmp_path / "h.zip.tmp", tmp_path / ".h.zip"]
    for path in unrelated:
        path.write_bytes(b"")
    with open(live, "wb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        assert remove_abandoned_temp_files(target) == 1
        assert not dead.exists() and live.exists()
    assert remove_abandoned_temp_files(target) == 1
    assert all(path.exists() for path in unrelated)
    assert remove_abandoned_temp_files(tmp_path / "missing" / "h.zip") == 0


def test_atomic_write_holds_its_temp_file_locked(tmp_path: Path) -> None:
    """A cleaner running while a write is in progress keeps that write's temp file."""
    target = tmp_path / "h.zip"
    with atomic_write(target) as stream:
        stream.write(b"x")
        assert remove_abandoned_temp_files(target) == 0
        [temp] = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        fd = os.open(temp, os.O_RDONLY)
        try:
            with pytest.raises(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert target.read_bytes() == b"x"
