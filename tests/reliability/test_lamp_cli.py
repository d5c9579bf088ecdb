"""LaMP input and the ``rpo`` command line under bad input (issue 11 item 8, issue 12 items 1, 7).

Promises proved here:

- ``lamp input``: the loader's memory stays bounded for any file: nesting past ``MAX_DEPTH`` or a
  key past ``MAX_KEY_CHARS`` is one clear error (file, depth, limit), in a process whose memory is
  capped and measured.
- ``cli errors``: every user error (bad values, paths that cannot be read or written, missing
  adapters and models) is exactly one ``rpo: error: ...`` line on stderr and exit status 1, and
  comes before any model loads; ``-v`` adds the traceback; help texts are plain.
- ``base install``: without the extras' packages, ``rpo --help`` works (quickly, without torch),
  and a command that needs one fails with one line naming ``langchain-rpo[eval]``.
- ``download``: a download that is not the LaMP file it should be (an HTML error page, the wrong
  file, a cut file) replaces nothing; a damaged file in place is repaired by the next download,
  without ``--force``.

In-process (``main(argv)``) wherever possible: only the memory and base-install cases need a
process of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from lamp_http import OUTPUTS, QUESTIONS, FixtureServer, serve

from langchain_rpo.cli import main
from langchain_rpo.lamp.data import MAX_DEPTH, MAX_KEY_CHARS, iter_questions

REPO = Path(__file__).resolve().parents[2]
EXTRA_HINT = 'pip install "langchain-rpo[eval]"'
OFFLINE_HINT = 'pip install "langchain-rpo[offline]"'
#: The packages of the extras that the base install lacks.
BLOCKED = ("ijson", "rouge_score", "rank_bm25", "matplotlib", "yaml")


def _run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(code: int, err: str, *expected: str) -> tuple[bool, str]:
    """Exit 1 and exactly one stderr line, ``rpo: error: ...``, holding each ``expected`` text."""
    lines = err.splitlines()
    held = (
        code == 1
        and len(lines) == 1
        and lines[0].startswith("rpo: error: ")
        and all(text in lines[0] for text in expected)
    )
    return held, f"exit {code}, stderr {err!r}"


def _child(script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
        cwd=REPO, env=env, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- lamp input


def _nested(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


_MEMORY_CHILD = """
import json, resource, sys
# A safety net: a regression fails here with MemoryError instead of taking the machine down.
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import contextlib, io
from langchain_rpo.cli import main

def peak_kb():
    # VmHWM, this process's own peak: ru_maxrss would start from the parent's at the fork.
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])

results = []
for questions, outputs in json.loads(sys.argv[1]):
    before = peak_kb()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["lamp", "validate", "--questions", questions, "--outputs", outputs])
    after = peak_kb()
    results.append({"code": code, "err": err.getvalue(), "grew_kb": after - before,
                    "peak_kb": after})
print(json.dumps(results))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM (Linux)")
def test_deep_nesting_is_refused_in_bounded_memory(tmp_path: Path, fault_cases) -> None:
    group = "lamp input: deep nesting, memory capped"
    good_outputs = tmp_path / "good_outputs.json"
    good_outputs.write_text(json.dumps({"task": "LaMP_5", "golds": [{"id": "1", "output": "t"}]}))
    good_questions = tmp_path / "good_questions.json"
    good_questions.write_text(json.dumps([{"id": "1", "input": "x", "profile": []}]))
    # ~200 kB each, as the file that took `rpo lamp validate` past 22 GB.
    cases = {
        "arrays.json": (_nested(100_000), "questions"),
        "objects.json": ("[" + '{"a":' * 40_000 + "1" + "}" * 40_000 + "]", "questions"),
        "in_a_record.json": (
            '[{"id": "1", "input": "x", "profile": [], "extra": ' + _nested(99_000) + "}]",
            "questions",
        ),
        "golds.json": (
            '{"task": "LaMP_5", "golds": ' + _nested(100_000) + "}",
            "outputs",
        ),
        "long_keys.json": (
            "[" + ('{"' + "k" * (MAX_KEY_CHARS + 1) + '":') * 190 + "1" + "}" * 190 + "]",
            "questions",
        ),
    }
    runs = []
    for name, (text, kind) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        assert 150_000 < path.stat().st_size < 260_000
        runs.append(
            (str(path), str(good_outputs))
            if kind == "questions"
            else (str(good_questions), str(path))
        )
    done = _child(_MEMORY_CHILD.replace("sys.argv[1]", repr(json.dumps(runs))))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.splitlines()[-1])
    for (name, _), result in zip(cases.items(), results, strict=True):
        expected = (
            ("past the limit", str(MAX_KEY_CHARS))
            if name == "long_keys.json"
            else ("levels deep", f"limit of {MAX_DEPTH}")
        )
        held, detail = _one_error_line(result["code"], result["err"], name, *expected)
        # Memory: the validation itself adds almost nothing (the unbounded loader took 22 GB).
        bounded = result["grew_kb"] < 64 * 1024 and result["peak_kb"] < 400 * 1024
        fault_cases.record(
            group,
            held and bounded,
            f"{name}: {detail}, grew {result['grew_kb']} kB, peak {result['peak_kb']} kB",
        )
    fault_cases.check()


def test_nesting_within_the_limit_is_read(tmp_path: Path, fault_cases) -> None:
    # Extra keys may nest: a question at the top level plus an extra value nested to the limit.
    path = tmp_path / "q.json"
    extra = _nested(MAX_DEPTH - 2)  # the array of questions and the question take two levels
    path.write_text('[{"id": "1", "input": "x", "profile": [], "extra": ' + extra + "}]")
    (question,) = iter_questions(path, "LaMP_5")
    fault_cases.record("lamp input: nesting at the limit is read", question.id == "1")
    fault_cases.check()


# --------------------------------------------------------------------------- cli errors


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail any model load: user errors must come before one (returns the loads tried)."""
    from langchain_rpo.embeddings import SentenceTransformerEmbeddings
    from langchain_rpo.reflection import ReflectionModel

    loads: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        loads.append(f"{args} {kwargs}")
        raise RuntimeError("a model load was tried before the user error was reported")

    monkeypatch.setattr(ReflectionModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(SentenceTransformerEmbeddings, "__init__", refuse)
    return loads


@pytest.fixture
def files(tmp_path: Path, pep_dir: Path) -> dict[str, Path]:
    """Paths for the cases: a regular file, a folder, the PEP dev split, a small golds file."""
    regular = tmp_path / "regular_file"
    regular.write_text("not a folder")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    golds = tmp_path / "golds.json"  # a small file: scoring it takes no time
    golds.write_text(json.dumps({"task": "LaMP_5", "golds": [{"id": "1", "output": "A title"}]}))
    return {
        "file": regular,
        "folder": folder,
        "golds": golds,
        "questions": pep_dir / "dev_questions.json",
        "outputs": pep_dir / "dev_outputs.json",
        "out": tmp_path / "run",
    }


def _cli_error_cases(f: dict[str, Path]) -> list[tuple[str, list[str], tuple[str, ...]]]:
    """(name, argv, texts the error line must hold) for each user error of the command line."""
    pep = ["--set", "pep", "--out", str(f["out"])]
    split = ["--questions", str(f["questions"]), "--outputs", str(f["outputs"])]
    golds = ["--golds", str(f["golds"]), "--preds", str(f["golds"])]
    download = ["lamp", "download", "--task", "LaMP_5", "--split", "dev", "--no-progress",
                "--base-url", "http://127.0.0.1:9/"]  # fmt: skip
    return [
        # values, in plain words
        ("--limit abc", ["eval", *pep, "--limit", "abc"],
         ("--limit must be a positive whole number, got 'abc'",)),
        ("--limit 0", ["eval", *pep, "--limit", "0"], ("--limit must be a positive",)),
        ("--limit -1", ["eval", *pep, "--limit", "-1"], ("--limit must be a positive",)),
        ("--limit without a value", ["eval", *pep, "--limit"], ("--limit needs a value",)),
        ("--batch-size 0", ["eval", *pep, "--batch-size", "0"],
         ("--batch-size must be a positive whole number, got '0'",)),
        ("--batch-size 2.5", ["eval", *pep, "--batch-size", "2.5"], ("--batch-size must be",)),
        ("--k -1", ["eval", *pep, "--k", "-1"], ("--k must be a whole number of 0 or more",)),
        ("--max-item-chars -5", ["eval", *pep, "--max-item-chars", "-5"],
         ("--max-item-chars must be",)),
        ("--reflection-max-new-tokens 0", ["eval", *pep, "--reflection-max-new-tokens", "0"],
         ("--reflection-max-new-tokens must be a positive",)),
        ("--retriever tfidf", ["eval", *pep, "--retriever", "tfidf"],
         ("--retriever must be one of bm25, dense, got 'tfidf'",)),
        ("--methods zero,best", ["eval", *pep, "--methods", "zero,best"],
         ("--methods", "unknown methods ['best']")),
        ("--methods empty", ["eval", *pep, "--methods", ","], ("--methods", "no method given")),
        ("--set unknown", ["eval", "--set", "nope", "--out", str(f["out"])],
         ("--set must be one of pep",)),
        ("--set with --questions", ["eval", *pep, "--questions", str(f["questions"])],
         ("--set and --questions both name the split",)),
        ("--split without --set", ["eval", *split, "--split", "dev", "--out", str(f["out"])],
         ("--split goes with --set",)),
        ("no split named", ["eval", "--out", str(f["out"])], ("name the split",)),
        ("--split val", [*download, "--split", "val"], ("--split must be one of train, dev, test",)),
        ("unknown task", ["lamp", "validate", "--task", "LaMP_9", *split], ("unknown task",)),
        ("unknown command", ["frob"], ("unknown command 'frob'",)),
        ("no lamp command", ["lamp"], ("name a command: download, score, validate",)),
        ("unknown option", ["lamp", "validate", *split, "--frob"], ("unrecognized arguments",)),
        ("demo --users 0", ["demo", "--users", "0"],
         ("--users must be a positive whole number or 'all', got '0'",)),
        ("demo --users abc", ["demo", "--users", "abc"], ("--users must be",)),
        ("demo --k -1", ["demo", "--k", "-1"], ("--k must be",)),
        ("demo --max-new-tokens 0", ["demo", "--max-new-tokens", "0"], ("--max-new-tokens must",)),
        ("demo --max-item-chars x", ["demo", "--max-item-chars", "x"], ("--max-item-chars must",)),
        # paths, before any model loads
        ("--out names a file", ["eval", *pep[:2], "--out", str(f["file"])],
         ("--out names a file",)),
        ("--out under a file", ["eval", *pep[:2], "--out", str(f["file"] / "run")],
         ("is a file, not a folder",)),
        ("--questions missing", ["eval", "--questions", str(f["folder"] / "missing.json"),
                                 "--outputs", str(f["outputs"]), "--out", str(f["out"])],
         ("missing.json: no such file", "--questions")),
        ("--outputs is a folder", ["eval", "--questions", str(f["questions"]),
                                   "--outputs", str(f["folder"]), "--out", str(f["out"])],
         ("is a folder, not a file", "--outputs")),
        ("eval --adapter missing", ["eval", *pep, "--adapter", "/missing/adapter"],
         ("/missing/adapter: no LoRA adapter there",)),
        ("eval --adapter without config", ["eval", *pep, "--adapter", str(f["folder"])],
         ("adapter_config.json is missing",)),
        ("eval --base-model missing", ["eval", *pep, "--base-model", "/missing/model"],
         ("/missing/model: no such model folder", "--base-model")),
        ("eval --reflection-model missing",
         ["eval", *pep, "--reflection-model", "./missing-model"],
         ("no such model folder", "--reflection-model")),
        ("demo --adapter missing", ["demo", "--adapter", "/missing/adapter"],
         ("/missing/adapter: no LoRA adapter there",)),
        ("score --json under a file", ["lamp", "score", *golds, "--json",
                                       str(f["file"] / "m.json")],
         ("is a file, not a folder",)),
        ("score --json names a folder", ["lamp", "score", *golds, "--json", str(f["folder"])],
         ("--json names a folder",)),
        ("score --preds missing", ["lamp", "score", "--golds", str(f["outputs"]),
                                   "--preds", str(f["folder"] / "p.json")], ("no such file",)),
        ("validate --questions is a folder", ["lamp", "validate", "--questions",
                                              str(f["folder"]), "--outputs", str(f["outputs"])],
         ("a_folder",)),
        ("download --dest names a file", [*download, "--dest", str(f["file"])],
         ("--dest names a file",)),
        ("download --dest under a file", [*download, "--dest", str(f["file"] / "d")],
         ("is a file, not a folder",)),
    ]  # fmt: skip


def test_every_cli_user_error_is_one_line_and_status_1(
    files: dict[str, Path], no_model_loads: list[str], capsys: pytest.CaptureFixture[str],
    fault_cases,
) -> None:  # fmt: skip
    for name, argv, expected in _cli_error_cases(files):
        try:
            code, _, err = _run_cli(argv, capsys)
        except BaseException as exc:  # noqa: BLE001 (an escaped exception is the failure)
            fault_cases.record("cli errors: one line, status 1", False, f"{name}: raised {exc!r}")
            continue
        held, detail = _one_error_line(code, err, *expected)
        fault_cases.record("cli errors: one line, status 1", held, f"{name}: {detail}")
    fault_cases.record(
        "cli errors: one line, status 1", not no_model_loads, f"models loaded: {no_model_loads}"
    )
    assert not (files["out"]).exists(), "a failed command left an output folder"
    fault_cases.check()


def test_an_oserror_deep_in_a_command_is_one_line(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    fault_cases,
) -> None:  # fmt: skip
    # Errors the up-front checks cannot foresee (a full disk, a folder made read-only meanwhile).
    import errno

    from langchain_rpo.lamp import score

    group = "cli errors: OSError mid-command"
    for number, text in ((errno.ENOSPC, "free some disk space"), (errno.EACCES, "permission")):

        def fail(*args: object, number: int = number) -> None:
            raise OSError(number, os.strerror(number), str(files["folder"] / "m.json"))

        monkeypatch.setattr(score, "write_metrics", fail)
        argv = ["lamp", "score", "--golds", str(files["golds"]), "--preds", str(files["golds"]),
                "--json", str(files["folder"] / "m.json")]  # fmt: skip
        code, _, err = _run_cli(argv, capsys)
        held, detail = _one_error_line(code, err, "m.json", text)
        fault_cases.record(group, held, detail)
    fault_cases.check()


def test_verbose_adds_the_traceback(files: dict[str, Path], capsys, fault_cases) -> None:
    group = "cli errors: -v shows the traceback"
    missing = str(files["folder"] / "missing.json")
    for argv in (
        ["-v", "lamp", "validate", "--questions", missing, "--outputs", str(files["outputs"])],
        ["lamp", "validate", "--questions", missing, "--outputs", str(files["outputs"]), "-v"],
    ):
        code, _, err = _run_cli(argv, capsys)
        lines = err.strip().splitlines()
        held = code == 1 and "Traceback" in err and lines[-1].startswith("rpo: error: ")
        fault_cases.record(group, held, f"{argv}: exit {code}, stderr {err[-300:]!r}")
    fault_cases.check()


def test_help_texts_are_plain_and_name_the_bundled_set(capsys, fault_cases) -> None:
    group = "cli help: plain, exit 0"
    for argv in (["--help"], ["eval", "--help"], ["demo", "--help"], ["lamp", "--help"],
                 ["lamp", "download", "--help"], ["lamp", "score", "--help"]):  # fmt: skip
        code, out, _ = _run_cli(argv, capsys)
        raw_rest = [mark for mark in (":class:", ":mod:", ":func:", "``") if mark in out]
        fault_cases.record(group, code == 0 and not raw_rest, f"{argv}: exit {code}, {raw_rest}")
    _, out, _ = _run_cli(["eval", "--help"], capsys)
    from langchain_rpo.data import pep_titles_dir

    fault_cases.record(
        group, "--set pep" in out and str(pep_titles_dir()) in out, "eval --help: no --set pep"
    )
    fault_cases.check()


def test_documented_values_parse(fault_cases) -> None:
    from langchain_rpo.cli import build_parser

    parser = build_parser()
    group = "cli values: documented forms accepted"
    args = parser.parse_args(["demo", "--users", "all", "--max-item-chars", "0"])
    # 0: no cut (None: not given, so the adapter's cut applies)
    fault_cases.record(group, args.users is None and args.max_item_chars == 0, str(args))
    args = parser.parse_args(["eval", "--set", "pep", "--out", "r"])
    fault_cases.record(
        group,
        args.batch_size == 8 and args.limit is None and args.methods[0] == "zero",
        str(args),
    )
    args = parser.parse_args(["eval", "--set", "pep", "--out", "r", "--max-item-chars", "0"])
    fault_cases.record(group, args.max_item_chars == 0, str(args))
    fault_cases.check()


# --------------------------------------------------------------------------- base install

_BLOCKER = f"""
import sys

class _NoExtras:
    # The base install: the extras' packages are missing (here: refused on import).
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _NoExtras())
"""


def test_base_install_runs_help_and_names_the_extra(
    files: dict[str, Path], tmp_path: Path, fault_cases
) -> None:
    group = "base install: no extras"
    script = _BLOCKER + (
        "import runpy\nsys.argv = ['rpo', '--help']\n"
        "try:\n    runpy.run_module('langchain_rpo.cli', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as done:\n    code = done.code\n"
        "heavy = [m for m in ('torch', 'transformers', *"
        + repr(BLOCKED)
        + ") if m in sys.modules]\n"
        "print('EXIT', code, 'HEAVY', heavy)\n"
    )
    seconds = []
    for _ in range(2):  # a second try only when the first was slow (a busy 2-core machine)
        started = time.perf_counter()
        done = _child(script)
        seconds.append(time.perf_counter() - started)
        if seconds[-1] < 3.0:
            break
    held = done.returncode == 0 and "EXIT 0 HEAVY []" in done.stdout and "eval" in done.stdout
    fault_cases.record(group, held, f"rpo --help: {done.stdout[-300:]!r} {done.stderr[-1500:]!r}")
    fault_cases.record(group, min(seconds) < 3.0, f"rpo --help took {seconds} s")

    q, o = str(files["questions"]), str(files["outputs"])
    commands = [
        ["lamp", "validate", "--questions", q, "--outputs", o],
        ["lamp", "score", "--golds", str(files["golds"]), "--preds", str(files["golds"])],
        ["eval", "--set", "pep", "--out", str(tmp_path / "run"), "--methods", "nearest"],
        ["demo"],
    ]
    script = _BLOCKER + (
        "import contextlib, io, json\nfrom langchain_rpo.cli import main\nresults = []\n"
        f"for argv in {commands!r}:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        code = main(argv)\n"
        "    results.append([argv, code, err.getvalue()])\n"
        "print(json.dumps(results))\n"
    )
    done = _child(script)
    if done.returncode != 0:
        fault_cases.record(group, False, f"child failed: {done.stderr[-2000:]}")
    else:
        for argv, code, err in json.loads(done.stdout.splitlines()[-1]):
            # The demo names the extra the README installs it with; both bring the packages.
            hint = OFFLINE_HINT if argv == ["demo"] else EXTRA_HINT
            held, detail = _one_error_line(code, err, hint)
            fault_cases.record(group, held, f"{argv}: {detail}")
    fault_cases.check()


# --------------------------------------------------------------------------- download

HTML = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>\n"
QUESTIONS_PATH = "/LaMP_5/dev/dev_questions.json"
OUTPUTS_PATH = "/LaMP_5/dev/dev_outputs.json"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FixtureServer]:
    yield from serve(monkeypatch)


def _download(server: FixtureServer, dest: Path, capsys, *extra: str) -> tuple[int, str, str]:
    argv = ["lamp", "download", "--task", "LaMP_5", "--split", "dev", "--base-url", server.url,
            "--dest", str(dest), "--no-progress", *extra]  # fmt: skip
    return _run_cli(argv, capsys)


def _only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


#: Bad bodies a server may send with status 200: (name, served path, body).
BAD_DOWNLOADS: list[tuple[str, str, bytes]] = [
    ("html page as questions", QUESTIONS_PATH, HTML),
    ("html page as outputs", OUTPUTS_PATH, HTML),
    ("outputs served as questions", QUESTIONS_PATH, OUTPUTS),
    ("questions cut short", QUESTIONS_PATH, QUESTIONS[: len(QUESTIONS) // 2]),
    ("golds of another task", OUTPUTS_PATH, OUTPUTS.replace(b"LaMP_5", b"LaMP_4")),
    ("empty body", QUESTIONS_PATH, b""),
]


# The download tests need sockets, for loopback only (pytest-socket keeps the rest disabled).
@pytest.mark.local_http
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_bad_download_replaces_nothing(
    server: FixtureServer, tmp_path: Path, capsys, fault_cases
) -> None:
    group = "download: bad body refused, old file kept"
    for name, path, body in BAD_DOWNLOADS:
        for validate in ([], ["--no-validate"]):
            if validate and name in ("questions cut short", "golds of another task"):
                continue  # only the schema check sees these
            dest = tmp_path / f"{name.replace(' ', '_')}{'_nv' if validate else ''}"
            dest.mkdir()
            (dest / "dev_questions.json").write_bytes(QUESTIONS)
            (dest / "dev_outputs.json").write_bytes(OUTPUTS)
            server.files[path] = body
            code, _, err = _download(server, dest, capsys, "--force", *validate)
            server.files.update({QUESTIONS_PATH: QUESTIONS, OUTPUTS_PATH: OUTPUTS})
            held, detail = _one_error_line(
                code, err, "not the expected LaMP file", "left as it was"
            )
            kept = (
                (dest / "dev_questions.json").read_bytes() == QUESTIONS
                and (dest / "dev_outputs.json").read_bytes() == OUTPUTS
                and _only_files(dest) == ["dev_outputs.json", "dev_questions.json"]
            )
            fault_cases.record(
                group, held and kept, f"{name} {validate}: {detail}, files {_only_files(dest)}"
            )
    # Nothing in place yet: nothing is saved.
    dest = tmp_path / "fresh"
    server.files[QUESTIONS_PATH] = HTML
    code, _, err = _download(server, dest, capsys)
    held, detail = _one_error_line(code, err, "nothing was saved")
    fault_cases.record(group, held and _only_files(dest) == [], f"fresh: {detail}")
    fault_cases.check()


#: Damaged files left in place by an earlier download or by hand: (name, file, bytes).
DAMAGED: list[tuple[str, str, bytes]] = [
    ("html page saved as questions", "dev_questions.json", HTML),
    ("html page saved as outputs", "dev_outputs.json", HTML),
    ("questions cut short", "dev_questions.json", QUESTIONS[:1000]),
    ("empty questions", "dev_questions.json", b""),
    ("golds of another task", "dev_outputs.json", OUTPUTS.replace(b"LaMP_5", b"LaMP_4")),
    ("deeply nested questions", "dev_questions.json", _nested(50_000).encode()),
]


@pytest.mark.local_http
@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_later_download_repairs_a_damaged_file_without_force(
    server: FixtureServer, tmp_path: Path, capsys, fault_cases
) -> None:
    group = "download: damaged file repaired without --force"
    for name, file, damaged in DAMAGED:
        dest = tmp_path / name.replace(" ", "_")
        dest.mkdir()
        (dest / "dev_questions.json").write_bytes(QUESTIONS)
        (dest / "dev_outputs.json").write_bytes(OUTPUTS)
        (dest / file).write_bytes(damaged)
        requests = len(server.ranges)
        code, _, err = _download(server, dest, capsys)
        fetched = [path for path, _ in server.ranges[requests:]]
        repaired = (
            code == 0
            and (dest / "dev_questions.json").read_bytes() == QUESTIONS
            and (dest / "dev_outputs.json").read_bytes() == OUTPUTS
            and fetched == [f"/LaMP_5/dev/{file}"]  # only the damaged file is fetched again
            and _only_files(dest) == ["dev_outputs.json", "dev_questions.json"]
        )
        fault_cases.record(group, repaired, f"{name}: exit {code}, fetched {fetched}, {err!r}")
    # --no-validate still repairs a file that is not JSON of the right kind.
    dest = tmp_path / "no_validate"
    dest.mkdir()
    (dest / "dev_questions.json").write_bytes(HTML)
    (dest / "dev_outputs.json").write_bytes(OUTPUTS)
    code, _, err = _download(server, dest, capsys, "--no-validate")
    fault_cases.record(
        group, code == 0 and (dest / "dev_questions.json").read_bytes() == QUESTIONS,
        f"--no-validate: exit {code}, {err!r}",
    )  # fmt: skip
    fault_cases.check()
