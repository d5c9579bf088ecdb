"""Shared helpers of the benchmarks: timing, percentiles, machine description, tables.

Every benchmark prints a header (the machine and the settings) and one or more tables, and
computes its ratios from variants timed in the same process, interleaved (ABAB...), so a noisy
shared machine slows the compared variants alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Any

from langchain_rpo.lamp.bootstrap import percentile  # one definition, with the harness

_STARTED = time.perf_counter()

__all__ = [
    "Timer",
    "add_common_args",
    "fmt_ms",
    "fmt_s",
    "interleave",
    "machine_info",
    "p50",
    "p95",
    "percentile",
    "print_footer",
    "print_header",
    "print_table",
    "rss_mb",
    "timed",
]


def p50(values: Sequence[float]) -> float:
    """Median."""
    return percentile(values, 50)


def p95(values: Sequence[float]) -> float:
    """95th percentile."""
    return percentile(values, 95)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (NaN for no values)."""
    return statistics.fmean(values) if values else float("nan")


@contextmanager
def timed(into: list[float]):
    """Append the wall time of the ``with`` body, in seconds, to ``into``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        into.append(time.perf_counter() - start)


class Timer:
    """Accumulates wall time over many intervals (for timing a function inside a call)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``fn`` timed into this timer."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start
                self.calls += 1

        return wrapper

    def reset(self) -> None:
        self.total = 0.0
        self.calls = 0


def interleave(
    variants: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time each variant ``repeats`` times, interleaved (A B A B ...), after ``warmup`` rounds.

    The order alternates every round (A B, B A, ...), so neither variant always runs first.

    Returns:
        Seconds per run, per variant.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            with timed(times[name]):
                variants[name]()
    return times


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # Linux fallback
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def machine_info(packages: Iterable[str] = ()) -> dict[str, str]:
    """The machine, the thread settings and the versions that matter for the numbers."""
    info = {
        "cpu": _cpu_model(),
        "cores (os.cpu_count)": str(os.cpu_count()),
        "usable cores (affinity)": str(len(os.sched_getaffinity(0)))
        if hasattr(os, "sched_getaffinity")
        else "-",
        "load average (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if "torch" in sys.modules or "torch" in packages:
        import torch

        info["torch threads"] = str(torch.get_num_threads())
    for dist in packages:
        info[dist] = _version(dist)
    return info


def print_header(title: str, settings: dict[str, Any], packages: Iterable[str] = ()) -> None:
    """Print the benchmark's title, the machine and the settings."""
    print(f"## {title}\n")
    print(f"command: {command_line()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    rows = [[k, v] for k, v in machine_info(packages).items()]
    rows += [[k, str(v)] for k, v in settings.items()]
    print_table(["machine / setting", "value"], rows)


def command_line() -> str:
    """The command that started this process, as ``python -m benchmarks.x ...`` when run so."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:
        return " ".join(["python -m", spec.name, *sys.argv[1:]])
    return " ".join(["python", *sys.argv])


def print_footer() -> None:
    """Print the wall time of the whole benchmark process so far."""
    minutes, seconds = divmod(time.perf_counter() - _STARTED, 60)
    print(f"wall time of the whole command: {int(minutes)} min {seconds:.0f} s", flush=True)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table (pipes aligned, so it also reads well in a terminal)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    print(flush=True)


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds, with sensible precision."""
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def fmt_s(seconds: float) -> str:
    """Seconds with two decimals."""
    return f"{seconds:.2f}"


def verdict(ok: bool) -> str:
    """A table cell for a target check."""
    return "met" if ok else "MISSED"


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Arguments every benchmark takes."""
    parser.add_argument("--seed", type=int, default=0, help="Random seed.")
