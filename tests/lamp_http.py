"""A local HTTP server (127.0.0.1) that serves LaMP fixture files, for ``rpo lamp download`` tests.

Tests that use it need sockets for loopback only::

    pytestmark = [pytest.mark.local_http, pytest.mark.enable_socket,
                  pytest.mark.allow_hosts(["127.0.0.1"])]
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

__all__ = ["OUTPUTS", "QUESTIONS", "FixtureServer", "serve"]

QUESTIONS = json.dumps(
    [
        {
            "id": str(i),
            "input": f"Generate a title for the following abstract of a paper: abstract {i} "
            + "word " * 400,
            "profile": [{"id": f"{i}-0", "title": f"Old {i}", "abstract": "an older abstract"}],
        }
        for i in range(20)
    ]
).encode()
OUTPUTS = json.dumps(
    {"task": "LaMP_5", "golds": [{"id": str(i), "output": f"T{i}"} for i in range(20)]}
).encode()


class FixtureServer(ThreadingHTTPServer):
    """Serves ``files`` (URL path to bytes) with Range support, recording each Range header."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {
            "/LaMP_5/dev/dev_questions.json": QUESTIONS,
            "/LaMP_5/dev/dev_outputs.json": OUTPUTS,
        }
        self.ranges: list[tuple[str, str | None]] = []
        self.cut_next: set[str] = set()  # paths whose next response stops half way
        self.honour_range = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: FixtureServer

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        body = self.server.files.get(self.path)
        header = self.headers.get("Range")
        self.server.ranges.append((self.path, header))
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", header or "")
        if match and self.server.honour_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.path in self.server.cut_next:
            self.server.cut_next.discard(self.path)
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)


def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixtureServer]:
    """Run a :class:`FixtureServer` (proxies off); a fixture's body: ``yield from serve(mp)``."""
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    srv = FixtureServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
