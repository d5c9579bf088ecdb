"""Store soak: saves killed at random moments, and threads adding, deleting, searching, saving.

SIGKILL: a child process saves one state after another to the same path; the test kills it with
SIGKILL after a random delay. The file must then load exactly as the last state the child
reported saved, or the one it was saving (its rename may have landed just before the kill), and
the next save to the path must remove the temporary file the killed save left behind.

Threads: several threads add, replace, delete, search and save on shared users whose texts and
metadata carry their owner. No search may return another user's item; at the end every count
matches what the threads did, the store is internally consistent, and a save loads back equal.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _store_helpers import HashEmbeddings, check_invariants, snapshot
from _store_kill_worker import DIM as KILL_DIM
from _store_kill_worker import base_store, version_store

from langchain_rpo.history import UserHistoryStore

HERE = Path(__file__).parent
KILLS = 40


def _temp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def test_sigkill_mid_save_leaves_a_whole_save(fault_cases: Any, tmp_path: Path) -> None:
    group = "store soak: SIGKILL mid-save"
    path = tmp_path / "history.zip"
    base_store().save(path)
    on_disk = snapshot(base_store())
    rng = random.Random(2024)
    worker = subprocess.Popen(
        [sys.executable, str(HERE / "_store_kill_worker.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    assert worker.stdin is not None and worker.stdout is not None
    left_temp = saves = 0
    try:
        assert worker.stdout.readline().strip() == "ready"
        start = 0
        for kill in range(KILLS):
            worker.stdin.write(f"fork {path} {start}\n")
            worker.stdin.flush()
            pid = int(worker.stdout.readline().split()[1])
            assert worker.stdout.readline().strip() == "begin"
            time.sleep(rng.uniform(0.0, 0.05))  # a save takes 5 to 25 ms
            os.kill(pid, signal.SIGKILL)
            saved = []
            while (line := worker.stdout.readline().split())[0] != "dead":
                saved.append(int(line[1]))
            saves += len(saved)
            # The file is the last reported save, or the one in flight.
            candidates = {on_disk} if not saved else set()
            in_flight = saved[-1] + 1 if saved else start
            for version in [*saved[-1:], in_flight]:
                candidates.add(snapshot(version_store(start, version)))
            try:
                loaded = UserHistoryStore.load(path, HashEmbeddings(KILL_DIM))
                got = snapshot(loaded)
                held, detail = got in candidates, "loaded another state"
            except Exception as exc:  # noqa: BLE001 - the case reports it
                loaded, held, detail = None, False, f"raised {type(exc).__name__}: {exc}"
            fault_cases.record(
                group, held, f"kill {kill} after saves {saved[-3:]} of start {start}: {detail}"
            )
            if loaded is None:
                break
            # The next save to the path removes what the killed one left.
            left_temp += bool(_temp_files(path))
            loaded.save(path)
            fault_cases.record(
                group, not _temp_files(path), f"kill {kill}: temp files left after the next save"
            )
            on_disk, start = got, in_flight + 1
    finally:
        worker.stdin.close()
        worker.wait(timeout=30)
    print(f"\nSIGKILL: {KILLS} kills, {saves} completed saves, {left_temp} kills left a temp file")
    # Most kills land mid-save (the child does little else), so leftovers must have been seen;
    # otherwise the test did not exercise the cleanup it claims to.
    fault_cases.record(group, left_temp > 0, "no kill left a temporary file behind")
    fault_cases.check()


# ---------------------------------------------------------------- threads

USERS = [f"soak-user-{u}" for u in range(4)]
THREADS = 6
OPERATIONS = 700  # per thread


def test_thread_soak(fault_cases: Any, tmp_path: Path) -> None:
    group = "store soak: threads"
    store = UserHistoryStore(HashEmbeddings(16))
    path = tmp_path / "history.zip"
    store.save(path)  # so a load that comes before any thread's save finds a file
    # What each thread owns now: (user, id) -> text. Ids carry the thread, so the threads never
    # touch each other's items and the final state is the union of their books.
    books: list[dict[tuple[str, str], str]] = [{} for _ in range(THREADS)]
    problems: list[str] = []
    counts = {"searches": 0, "results": 0, "saves": 0, "loads": 0}
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()

    def work(t: int) -> None:
        rng = random.Random(t)
        book = books[t]
        serial = 0
        local = {"searches": 0, "results": 0, "saves": 0, "loads": 0}
        barrier.wait()
        try:
            for _ in range(OPERATIONS):
                op = rng.random()
                user = rng.choice(USERS)
                if op < 0.35:  # add a few, or replace one of ours
                    mine = [key for key in book if key[0] == user]
                    if mine and rng.random() < 0.3:
                        ids = [rng.choice(mine)[1]]
                    else:
                        ids = [f"t{t}-{serial + i}" for i in range(rng.randint(1, 3))]
                        serial += len(ids)
                    texts = [f"{user} owns {i} v{rng.random():.6f}" for i in ids]
                    store.add_texts(user, texts, metadatas=[{"owner": user}] * len(ids), ids=ids)
                    book.update({(user, i): text for i, text in zip(ids, texts)})
                elif op < 0.5:  # delete some of ours
                    mine = [key[1] for key in book if key[0] == user]
                    gone = rng.sample(mine, min(len(mine), rng.randint(1, 2)))
                    if store.delete(user, gone) != len(gone):
                        problems.append(f"t{t}: delete of {gone} from {user} missed some")
                    for i in gone:
                        del book[(user, i)]
                elif op < 0.95:  # search: only this user's items, ever
                    docs = store.search(user, f"{user} owns", k=rng.randint(0, 12))
                    local["searches"] += 1
                    local["results"] += len(docs)
                    for doc in docs:
                        if doc.metadata.get("owner") != user or not doc.page_content.startswith(
                            f"{user} "
                        ):
                            problems.append(f"t{t}: search of {user} returned {doc!r}")
                elif op < 0.99:  # save, concurrently with the others' saves to the same path
                    store.save(path)
                    local["saves"] += 1
                else:  # load what some thread saved: whole, and consistent in itself
                    loaded = UserHistoryStore.load(path, HashEmbeddings(16))
                    local["loads"] += 1
                    problems.extend(f"t{t} loaded: {p}" for p in check_invariants(loaded))
                    for user_id in loaded.users():
                        for doc in loaded.get(user_id, _ids(loaded, user_id)):
                            if doc.metadata["owner"] != user_id:
                                problems.append(f"t{t}: loaded {user_id} holds {doc!r}")
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            problems.append(f"t{t}: {type(exc).__name__}: {exc}")
        with lock:
            for key, value in local.items():
                counts[key] += value

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started

    fault_cases.record(group, not problems, "; ".join(problems[:5]))
    for _ in range(counts["searches"] - 1):  # one case per search, as tried
        fault_cases.record(group, True)
    expected: dict[tuple[str, str], str] = {}
    for book in books:
        expected.update(book)
    want_counts = {u: sum(1 for key in expected if key[0] == u) for u in USERS}
    want_counts = {u: n for u, n in want_counts.items() if n}
    fault_cases.record(group, store.counts() == want_counts,
                       f"counts {store.counts()} != {want_counts}")
    got = {(u, d.id): d.page_content for u in store.users() for d in store.get(u, _ids(store, u))}
    fault_cases.record(group, got == expected, "contents differ from what the threads did")
    fault_cases.record(group, not check_invariants(store), "; ".join(check_invariants(store)))
    store.save(path)
    fault_cases.record(group, snapshot(UserHistoryStore.load(path)) == snapshot(store),
                       "the final save did not load back equal")
    fault_cases.record(group, not _temp_files(path), "temp files left after the saves")
    fault_cases.record(group, counts["saves"] > 10 and counts["results"] > 0,
                       f"too little was exercised: {counts}")
    print(f"\nthread soak: {THREADS * OPERATIONS} operations in {seconds:.1f} s: {counts}")
    fault_cases.check()


def _ids(store: UserHistoryStore, user: str) -> list[str]:
    with store._lock:
        return list(store._users[user].docs) if user in store._users else []
