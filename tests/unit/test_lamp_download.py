"""``rpo lamp download`` end to end against a local HTTP server (127.0.0.1) serving a fixture."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from lamp_http import OUTPUTS, QUESTIONS, FixtureServer, serve

from langchain_rpo.cli import main
from langchain_rpo.lamp.download import BASE_URL_ENV, DownloadError, download_file, file_urls

# Sockets stay disabled (pytest-socket) except for connections to the local fixture server.
pytestmark = [
    pytest.mark.local_http,
    pytest.mark.enable_socket,
    pytest.mark.allow_hosts(["127.0.0.1"]),
]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixtureServer]:
    yield from serve(monkeypatch)


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
