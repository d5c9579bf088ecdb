"""``rpo lamp download`` end to end against a local HTTP server (127.0.0.1) serving a fixture."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from langchain_rpo.cli import main
from langchain_rpo.lamp.download import BASE_URL_ENV, DownloadError, download_file, file_urls

# Sockets stay disabled (pytest-socket) except for connections to the local fixture server.
pytestmark = [
    pytest.mark.local_http,
    pytest.mark.enable_socket,
    pytest.mark.allow_hosts(["127.0.0.1"]),
]

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
    """Serves ``files`` (URL path to bytes) with Range support, recording each request's Range header."""

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


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixtureServer]:
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


def _download(server: FixtureServer, dest: Path, *extra: str) -> int:
    return main(
        ["lamp", "download", "--task", "LaMP_5", "--split", "dev", "--base-url", server.url,
         "--dest", str(dest), "--no-progress", *extra]
    )  # fmt: skip


def test_download_fetches_and_validates_both_files(
    server: FixtureServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _download(server, tmp_path) == 0
    assert (tmp_path / "dev_questions.json").read_bytes() == QUESTIONS
    assert (tmp_path / "dev_outputs.json").read_bytes() == OUTPUTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev_outputs.json", "dev_questions.json"]
    assert capsys.readouterr().out.splitlines() == [
        str(tmp_path / "dev_questions.json"),
        str(tmp_path / "dev_outputs.json"),
    ]
    # Complete files are not fetched again.
    requests = len(server.ranges)
    assert _download(server, tmp_path) == 0
    assert len(server.ranges) == requests


def test_interrupted_download_resumes_with_a_range_request(
    server: FixtureServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = "/LaMP_5/dev/dev_questions.json"
    server.cut_next.add(path)
    assert _download(server, tmp_path) == 1
    err = capsys.readouterr().err
    assert "interrupted after" in err and "run the same command again" in err
    part = tmp_path / ".dev_questions.json.part"
    assert not (tmp_path / "dev_questions.json").exists()  # nothing half-written in place
    half = part.stat().st_size
    assert 0 < half < len(QUESTIONS)
    assert QUESTIONS.startswith(part.read_bytes())

    assert _download(server, tmp_path) == 0
    assert (path, f"bytes={half}-") in server.ranges
    assert (tmp_path / "dev_questions.json").read_bytes() == QUESTIONS
    assert not part.exists()


def test_server_ignoring_range_gets_the_whole_file_again(
    server: FixtureServer, tmp_path: Path
) -> None:
    server.honour_range = False
    dest = tmp_path / "dev_outputs.json"
    (tmp_path / ".dev_outputs.json.part").write_bytes(b"garbage that is not a prefix")
    download_file(server.url + "LaMP_5/dev/dev_outputs.json", dest, progress=False)
    assert dest.read_bytes() == OUTPUTS


def test_complete_part_file_is_finished_on_416(server: FixtureServer, tmp_path: Path) -> None:
    dest = tmp_path / "dev_outputs.json"
    (tmp_path / ".dev_outputs.json.part").write_bytes(OUTPUTS)
    download_file(server.url + "LaMP_5/dev/dev_outputs.json", dest, progress=False)
    assert dest.read_bytes() == OUTPUTS


def test_missing_file_is_a_clear_error(server: FixtureServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404.*--base-url"):
        download_file(
            server.url + "LaMP_9/dev/dev_outputs.json", tmp_path / "x.json", progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_downloaded_files_are_validated(
    server: FixtureServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.files["/LaMP_5/dev/dev_outputs.json"] = json.dumps(
        {"task": "LaMP_4", "golds": []}
    ).encode()
    assert _download(server, tmp_path) == 1
    assert "the file is for task 'LaMP_4'" in capsys.readouterr().err


def test_url_table(monkeypatch: pytest.MonkeyPatch) -> None:
    base = "https://ciir.cs.umass.edu/downloads/LaMP"
    assert file_urls("LaMP_4", "dev") == [
        ("dev_questions.json", f"{base}/LaMP_4/dev/dev_questions.json"),
        ("dev_outputs.json", f"{base}/LaMP_4/dev/dev_outputs.json"),
    ]
    assert file_urls("LaMP_2", "train")[0][1] == f"{base}/LaMP_2/new/train/train_questions.json"
    assert file_urls("LaMP_2N", "train")[0][1] == f"{base}/LaMP_2/train/train_questions.json"
    assert (
        file_urls("LaMP_3", "dev", time_based=True)[1][1]
        == f"{base}/time/LaMP_3/dev/dev_outputs.json"
    )
    assert file_urls("LaMP_7", "test") == [
        ("test_questions.json", f"{base}/LaMP_7/test/test_questions.json")
    ]
    monkeypatch.setenv(BASE_URL_ENV, "http://mirror.example/lamp/")
    assert (
        file_urls("LaMP_1", "dev")[0][1]
        == "http://mirror.example/lamp/LaMP_1/dev/dev_questions.json"
    )
    with pytest.raises(ValueError, match="Avocado"):
        file_urls("LaMP_6", "dev")
    with pytest.raises(ValueError, match="no time-based files"):
        file_urls("LaMP_2N", "dev", time_based=True)
    with pytest.raises(ValueError, match="unknown split"):
        file_urls("LaMP_5", "val")
