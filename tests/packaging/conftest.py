"""Packaging checks: the ``packaging`` tests run only when selected, and report their timings.

The wheel test builds the wheel and installs it into a fresh virtual environment, which takes
minutes; a plain ``pytest`` or ``make test`` skips it, ``make test-wheel`` (``pytest -m
packaging``, run by ``.ci/run``) selects it. Each step's wall time goes into a table printed
at the end of the run, so CI logs show where the minutes went.
"""

from __future__ import annotations

import pytest

_TIMINGS = pytest.StashKey[dict[str, float]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the ``packaging`` tests unless the ``-m`` expression names them."""
    if "packaging" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(
        reason="builds and installs the wheel (minutes): run `make test-wheel` "
        "(pytest -m packaging tests/packaging)"
    )
    for item in items:
        if item.get_closest_marker("packaging") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def timings(pytestconfig: pytest.Config) -> dict[str, float]:
    """Step name -> wall seconds, printed by :func:`pytest_terminal_summary`."""
    return pytestconfig.stash.setdefault(_TIMINGS, {})


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Print the packaging steps' wall times, when any ran."""
    measured = config.stash.get(_TIMINGS, {})
    if not measured:
        return
    terminalreporter.section("packaging timings (wall seconds)")
    for step, seconds in measured.items():
        terminalreporter.write_line(f"{step:<52} {seconds:8.2f}")
