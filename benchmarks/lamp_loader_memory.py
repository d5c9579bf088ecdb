"""Benchmark: the LaMP loader reads a 300 MB questions file in memory that does not grow with it.

Run from the repository root::

    python -m benchmarks.lamp_loader_memory              # 300 MB, limit 500 MB
    python -m benchmarks.lamp_loader_memory --mb 1000    # any size
    python -m benchmarks.lamp_loader_memory --compare-json   # also show json.load's peak

It writes a LaMP-4-shaped ``dev_questions.json`` (news articles with long profiles) of the given
size into a temporary folder, streaming, then reads it in a fresh Python process with
:func:`langchain_rpo.lamp.data.iter_questions` (every record validated) and reports that
process's peak resident memory (``ru_maxrss``), next to its memory right after the imports.
It exits 1 when the peak passes ``--max-mb``.

A run on the 2-core development machine (ijson's yajl2_c backend)::

    wrote dev_questions.json: 300 MB, 1512 questions (2 s)
    iter_questions (streaming, validated): 1512 questions, 343582 profile items in 0.9 s;
      peak RSS 42 MB (after imports: 41 MB)
    json.load (whole file, for comparison): peak RSS 756 MB
    PASS: peak 42 MB < 500 MB
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WORDS = (
    "city council vote budget school river storm market police court health energy team season "
    "coach player film music museum festival science study climate water housing transit tax "
    "election senator governor mayor report data growth jobs strike fire rescue park bridge road"
).split()


def write_questions(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Write a LaMP-4-shaped questions file of about ``target_bytes``, streaming.

    Returns:
        The number of questions written.
    """
    rng = random.Random(seed)
    sentences = [
        " ".join(rng.choices(_WORDS, k=rng.randint(8, 24))).capitalize() + "." for _ in range(2000)
    ]

    def article(n: int) -> str:
        return " ".join(rng.choices(sentences, k=n))

    written = 0
    count = 0
    with path.open("w", encoding="utf-8") as stream:
        stream.write("[")
        while written < target_bytes:
            profile = [
                {
                    "id": f"{count}{j:04d}",
                    "title": article(1)[:80],
                    "text": article(rng.randint(3, 12)),
                }
                for j in range(rng.randint(50, 400))
            ]
            record = {
                "id": str(count),
                "input": "Generate a headline for the following article: " + article(10),
                "profile": profile,
            }
            text = ("," if count else "") + json.dumps(record)
            stream.write(text)
            written += len(text)
            count += 1
        stream.write("]")
    return count


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measure(path: Path, use_json: bool) -> None:
    """Child process: read the file, print a JSON line with the counts and memory figures."""
    from langchain_rpo.lamp.data import iter_questions

    after_imports = _peak_mb()
    started = time.perf_counter()
    if use_json:
        questions = json.loads(path.read_text(encoding="utf-8"))
        n, items = len(questions), sum(len(q["profile"]) for q in questions)
    else:
        n = items = 0
        for question in iter_questions(path, "LaMP_4"):
            n += 1
            items += len(question.profile)
    print(
        json.dumps(
            {
                "questions": n,
                "profile_items": items,
                "seconds": round(time.perf_counter() - started, 1),
                "rss_after_imports_mb": round(after_imports, 1),
                "peak_rss_mb": round(_peak_mb(), 1),
            }
        )
    )


def _run_child(path: Path, use_json: bool) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.lamp_loader_memory", "--measure", str(path)]
    if use_json:
        command.append("--json-load")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Generate the file, measure the streaming loader (and json.load if asked), report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=300, help="questions file size (default: 300)")
    parser.add_argument(
        "--max-mb", type=float, default=500, help="peak memory limit (default: 500)"
    )
    parser.add_argument("--compare-json", action="store_true", help="also measure json.load")
    parser.add_argument("--keep", type=Path, help="write the file here and keep it")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json-load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        _measure(args.measure, args.json_load)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "dev_questions.json"
        started = time.perf_counter()
        count = write_questions(path, int(args.mb * 1024 * 1024))
        size_mb = path.stat().st_size / 1024 / 1024
        print(
            f"wrote {path.name}: {size_mb:.0f} MB, {count} questions "
            f"({time.perf_counter() - started:.0f} s)"
        )
        stream = _run_child(path, use_json=False)
        print(
            f"iter_questions (streaming, validated): {stream['questions']} questions, "
            f"{stream['profile_items']} profile items in {stream['seconds']} s; "
            f"peak RSS {stream['peak_rss_mb']:.0f} MB "
            f"(after imports: {stream['rss_after_imports_mb']:.0f} MB)"
        )
        if args.compare_json:
            whole = _run_child(path, use_json=True)
            print(f"json.load (whole file, for comparison): peak RSS {whole['peak_rss_mb']:.0f} MB")
    ok = stream["peak_rss_mb"] < args.max_mb
    print(
        f"{'PASS' if ok else 'FAIL'}: peak {stream['peak_rss_mb']:.0f} MB "
        f"{'<' if ok else '>='} {args.max_mb:.0f} MB"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
