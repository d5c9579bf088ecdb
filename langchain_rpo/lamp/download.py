"""``rpo lamp download``: fetch the official LaMP files, resumably and atomically.

Each file is streamed into a hidden ``.{name}.part`` beside its destination with a progress bar;
an interrupted download leaves the part file, and the next run asks the server for the rest
(an HTTP ``Range`` request; a server that ignores it sends the whole file again). Only a complete
file that is the LaMP file it should be (validated with :mod:`langchain_rpo.lamp.data`) is
renamed into place, so neither a half-written file nor a server's HTML error page ever replaces
a file. A file already in place is validated too, and downloaded again when it fails (no
``--force`` needed to repair it).

Where the files live (the one table of it, :data:`URL_PATHS`): under the base URL
``https://ciir.cs.umass.edu/downloads/LaMP/`` (override with ``--base-url`` or
``$RPO_LAMP_BASE_URL``), ``{path}/{split}/{split}_questions.json`` and ``..._outputs.json``,
with ``time/`` before the path for the time-based split. The test split's outputs are not public
(the leaderboard holds them): only its questions are fetched.

Uncertain, as the host has changed over releases: movie tagging (the current LaMP-2) sits under
``LaMP_2/new/`` in the releases we know of, and the older news categorization under ``LaMP_2/``;
the time-based release postdates the switch, so its LaMP-2 (``time/LaMP_2/``) is taken to be
movie tagging and LaMP-2N has no time-based files. Should the host move a file, pass the right
``--base-url`` or download by hand: the harness only needs the files.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from langchain_rpo.lamp.tasks import TaskSpec, get_task

__all__ = [
    "DEFAULT_BASE_URL",
    "BASE_URL_ENV",
    "SPLITS",
    "URL_PATHS",
    "TIME_URL_PATHS",
    "DownloadError",
    "file_urls",
    "download_file",
    "download_split",
]

DEFAULT_BASE_URL = "https://ciir.cs.umass.edu/downloads/LaMP/"
BASE_URL_ENV = "RPO_LAMP_BASE_URL"
SPLITS: tuple[str, ...] = ("train", "dev", "test")

#: Task name to its folder under the base URL, user-based split.
URL_PATHS: dict[str, str] = {
    "LaMP_1": "LaMP_1",
    "LaMP_2": "LaMP_2/new",
    "LaMP_2N": "LaMP_2",
    "LaMP_3": "LaMP_3",
    "LaMP_4": "LaMP_4",
    "LaMP_5": "LaMP_5",
    "LaMP_7": "LaMP_7",
}

#: Task name to its folder under the base URL, time-based split.
TIME_URL_PATHS: dict[str, str] = {
    "LaMP_1": "time/LaMP_1",
    "LaMP_2": "time/LaMP_2",
    "LaMP_3": "time/LaMP_3",
    "LaMP_4": "time/LaMP_4",
    "LaMP_5": "time/LaMP_5",
    "LaMP_7": "time/LaMP_7",
}

_CHUNK = 1 << 16

logger = logging.getLogger(__name__)


class DownloadError(RuntimeError):
    """A download that failed; the message says what to do (usually: run it again to resume)."""


def file_urls(
    task: str | TaskSpec, split: str, *, time_based: bool = False, base_url: str | None = None
) -> list[tuple[str, str]]:
    """Return ``(file name, URL)`` of a split's official files.

    Args:
        task: The task.
        split: ``train``, ``dev`` or ``test`` (test: questions only).
        time_based: The time-based split instead of the user-based one.
        base_url: The base URL (None: ``$RPO_LAMP_BASE_URL``, else the official host).

    Raises:
        ValueError: For an unknown split, a task without public data (LaMP-6) or without a
            time-based release (LaMP-2N).
    """
    spec = get_task(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if not spec.public_data:
        raise ValueError(
            f"{spec.name} has no public data: it is built from the licensed Avocado corpus with "
            "the LaMP repository's data/avocado/create_avocado_dataset.py; pass the files you "
            "build to rpo eval --questions/--outputs."
        )
    table = TIME_URL_PATHS if time_based else URL_PATHS
    if spec.name not in table:
        raise ValueError(
            f"{spec.name} has no {'time' if time_based else 'user'}-based files; "
            f"tasks that do: {', '.join(table)}"
        )
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    folder = f"{base.rstrip('/')}/{table[spec.name]}/{split}"
    kinds = ("questions",) if split == "test" else ("questions", "outputs")
    return [(f"{split}_{kind}.json", f"{folder}/{split}_{kind}.json") for kind in kinds]


def _part_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def download_file(
    url: str,
    dest: str | Path,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download, renaming atomically.

    Args:
        url: The file's URL.
        dest: Where the complete file goes.
        progress: Show a progress bar (bytes).
        timeout: Seconds to wait on the connection.
        check: Called with the complete download before it replaces ``dest``; a
            :class:`~langchain_rpo.lamp.data.LampDataError` (or ``ValueError``) from it refuses
            the download: ``dest`` is left as it was and the download is deleted.

    Returns:
        ``dest``.

    Raises:
        DownloadError: On an HTTP error or an interrupted transfer (the part file is kept, so
            running again resumes), or a download that ``check`` refuses.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(dest)
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "langchain-rpo"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left past our offset: the part is complete
            total = _total_from_content_range(err.headers.get("Content-Range"))
            if total == offset:
                return _finish(url, part, dest, check)
            part.unlink()
            return download_file(url, dest, progress=progress, timeout=timeout, check=check)
        raise DownloadError(
            f"{url}: HTTP {err.code} {err.reason}. Fix: check the task and split (the host may "
            f"have moved the file; see --base-url and ${BASE_URL_ENV})."
        ) from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(
            f"{url}: cannot connect ({getattr(err, 'reason', err)}). Fix: check the network, or "
            f"pass --base-url / ${BASE_URL_ENV}; run again to resume."
        ) from err
    with response:
        if offset and response.status == 206:
            start = _start_from_content_range(response.headers.get("Content-Range"))
            if start != offset:
                raise DownloadError(
                    f"{url}: asked for bytes from {offset}, the server sent from {start}. "
                    f"Fix: delete {part} and run again."
                )
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # a server that ignores Range sends it all again
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        try:
            with part.open(mode) as stream, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress,
            ) as bar:  # fmt: skip
                while chunk := response.read(_CHUNK):
                    stream.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                stream.flush()
                os.fsync(stream.fileno())
        except (http.client.HTTPException, OSError) as err:
            raise DownloadError(
                f"{url}: interrupted after {received} bytes ({err}). Fix: run the same command "
                f"again; it resumes from {part}."
            ) from err
    if total is not None and received != total:
        raise DownloadError(
            f"{url}: interrupted after {received} of {total} bytes. Fix: run the same command "
            f"again; it resumes from {part}."
        )
    return _finish(url, part, dest, check)


def _finish(url: str, part: Path, dest: Path, check: Callable[[Path], object] | None) -> Path:
    """Move a complete download into place, once ``check`` accepts it."""
    if check is not None:
        try:
            check(part)
        except ValueError as err:
            # A complete file that is wrong (an HTML error page, another file) cannot be
            # resumed into a right one: drop it, so the next run starts over.
            part.unlink(missing_ok=True)
            kept = f"{dest} was left as it was" if dest.exists() else f"nothing was saved as {dest}"
            raise DownloadError(
                f"{url}: the server sent a file that is not the expected LaMP file ({err}); "
                f"{kept}. Fix: check --task, --split and --base-url (a proxy or a moved file "
                "can answer with an HTML page), then run again."
            ) from err
    os.replace(part, dest)
    return dest


def _start_from_content_range(value: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


def _total_from_content_range(value: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", value or "")
    return int(match.group(1)) if match else None


def download_split(
    task: str | TaskSpec,
    split: str,
    dest: str | Path,
    *,
    time_based: bool = False,
    base_url: str | None = None,
    force: bool = False,
    validate: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Download a split's official files into ``dest``, each validated before it replaces a file.

    A file already in ``dest`` is kept when it passes the same check, and downloaded again when
    it does not (a damaged or wrong file is repaired without ``force``).

    Args:
        task: The task.
        split: ``train``, ``dev`` or ``test``.
        dest: The folder for ``{split}_questions.json`` (and ``{split}_outputs.json``).
        time_based: The time-based split.
        base_url: The base URL (None: ``$RPO_LAMP_BASE_URL``, else the official host).
        force: Download again files that are already complete.
        validate: Check each file with the task's LaMP schema, and the two files' ids against
            each other; False checks only that each is a JSON file of the right kind (an
            array of questions, an outputs object).
        progress: Show progress bars.

    Returns:
        The files' paths.

    Raises:
        DownloadError: For a failed or refused download (the message says what to do).
        LampDataError: When the two files, each valid, hold different ids.
    """
    from langchain_rpo.lamp.data import check_ids, read_outputs

    spec = get_task(task)
    paths = []
    question_ids: list[str] | None = None  # of the questions file, once validated
    for name, url in file_urls(spec, split, time_based=time_based, base_url=base_url):
        target = Path(dest) / name
        kind = "questions" if name.endswith("_questions.json") else "outputs"
        ids = _ensure_file(
            url, target, kind, spec, force=force, validate=validate, progress=progress
        )
        question_ids = ids if kind == "questions" else question_ids
        paths.append(target)
    if question_ids is not None and len(paths) == 2:
        check_ids(question_ids, read_outputs(paths[1], spec), paths[0])
    return paths


def _ensure_file(
    url: str, target: Path, kind: str, spec: TaskSpec, *, force: bool, validate: bool,
    progress: bool,
) -> list[str] | None:  # fmt: skip
    """Keep ``target`` when it passes the check (and not ``force``), else download it, checked.

    Returns:
        The question ids of a validated questions file, else None.
    """
    from langchain_rpo.lamp.data import LampDataError

    if target.is_file() and not force:
        try:
            return _check_file(target, kind, spec, validate)
        except LampDataError as err:
            logger.warning("%s fails validation, so it is downloaded again: %s", target, err)
    found: list[list[str] | None] = []
    download_file(
        url, target, progress=progress,
        check=lambda part: found.append(_check_file(part, kind, spec, validate)),
    )  # fmt: skip
    return found[-1]


def _check_file(path: Path, kind: str, spec: TaskSpec, validate: bool) -> list[str] | None:
    """Check a questions or outputs file; return the question ids of a validated questions file.

    Raises:
        LampDataError: Naming what is wrong.
    """
    from langchain_rpo.lamp.data import LampDataError, iter_questions, read_outputs

    if not validate:
        first = _first_byte(path)
        expected = b"[" if kind == "questions" else b"{"
        if first != expected:
            found = "nothing" if first is None else repr(first.decode("latin-1"))
            raise LampDataError(
                f"{path}: a LaMP {kind} file starts with {expected.decode()!r}, this one with "
                f"{found} (an HTML page?)."
            )
        return None
    if kind == "questions":
        return [question.id for question in iter_questions(path, spec)]
    read_outputs(path, spec)
    return None


def _first_byte(path: Path) -> bytes | None:
    """The first byte that is not JSON whitespace (None for an empty or blank file)."""
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            stripped = chunk.lstrip(b" \t\r\n")
            if stripped:
                return stripped[:1]
    return None
