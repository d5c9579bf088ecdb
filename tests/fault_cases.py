"""Counting for the fault and bad-input suite (tests/reliability): cases tried and held per group.

``tests/conftest.py`` provides the ``fault_cases`` fixture and prints the summary at the end of
the run (this is a plain module, not a conftest, so it shares no module name with one).

A test records each case it tries with the ``fault_cases`` fixture::

    def test_bit_flips(fault_cases):
        for offset in offsets:
            ...
            fault_cases.record("store files: bit flips", held=outcome_is_right)
        fault_cases.check()  # fails the test if any case of this test did not hold

At the end of the run, pytest prints one line per group: cases tried and cases held.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

_TRIED: Counter[str] = Counter()
_HELD: Counter[str] = Counter()


@dataclass
class FaultCases:
    """The cases one test tried, and which did not hold (with what happened instead)."""

    failures: list[str] = field(default_factory=list)

    def record(self, group: str, held: bool, detail: str = "") -> None:
        """Count one case of ``group``; ``detail`` says what went wrong when it did not hold."""
        _TRIED[group] += 1
        if held:
            _HELD[group] += 1
        else:
            self.failures.append(f"{group}: {detail}" if detail else group)

    def check(self) -> None:
        """Fail the calling test when any case it recorded did not hold."""
        if self.failures:
            shown = "\n".join(self.failures[:20])
            more = len(self.failures) - 20
            pytest.fail(
                f"{len(self.failures)} case(s) did not hold:\n{shown}"
                + (f"\n... and {more} more" if more > 0 else "")
            )


def print_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the cases tried and held per group."""
    if not _TRIED:
        return
    terminalreporter.section("reliability: cases tried / held per group")
    width = max(len(group) for group in _TRIED)
    for group in sorted(_TRIED):
        terminalreporter.write_line(
            f"{group:<{width}}  {_HELD[group]:>5} / {_TRIED[group]:<5} held"
        )
    terminalreporter.write_line(
        f"{'all groups':<{width}}  {sum(_HELD.values()):>5} / {sum(_TRIED.values()):<5} held"
    )
