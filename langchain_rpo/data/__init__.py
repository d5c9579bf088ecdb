"""Data that ships with the package.

``pep_titles/``: a real LaMP-5-format personalization set (PEP abstracts -> the titles their
authors gave them), public domain / CC0; see ``pep_titles/SOURCE.md``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["pep_titles_dir"]


def pep_titles_dir() -> Path:
    """Return the folder of the bundled PEP titles set (``{train,dev}_{questions,outputs}.json``)."""
    return Path(__file__).parent / "pep_titles"
