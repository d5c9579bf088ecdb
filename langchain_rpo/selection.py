"""Choosing one trajectory among N sampled ones: minimum Bayes risk over their rewrites.

:class:`~langchain_rpo.ReflectionModel` with ``candidates=N`` samples N trajectories for one
prompt and answers with one of them. Minimum Bayes risk (MBR) picks the *consensus*: the
candidate whose rewrite agrees most, on average, with the other candidates' rewrites, so one
odd sample cannot win on its own. Agreement is ROUGE-L's F1 (the longest common subsequence of
lowercased whitespace tokens), written out here in a few lines: the ``rouge-score`` package is
an ``eval`` extra, not a dependency of the base package.

This module knows nothing of the trajectory format: its caller parses each candidate
(:mod:`langchain_rpo.trajectory`) and passes ``None`` for one that does not parse. Such a
candidate never wins over one that does.

>>> mbr_index(["PEP 8 style", "PEP 8 style guide", "a new parser", None])
0
>>> mbr_index([None, None])
0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypedDict

__all__ = [
    "CANDIDATE_TEMPERATURE",
    "SELECTION_METADATA_KEY",
    "SelectionInfo",
    "SelectionMethod",
    "lcs_f1",
    "lcs_length",
    "mbr_index",
    "mbr_scores",
    "tokens",
]

# Candidates must differ to be worth choosing among, so they are always sampled: at the
# model's temperature when it sets one above 0, else at this one (low enough that most samples
# stay well-formed trajectories, high enough that they are not all the greedy answer).
CANDIDATE_TEMPERATURE = 0.7

# Where a chosen answer's message says how it was chosen (``response_metadata``).
SELECTION_METADATA_KEY = "rpo_selection"

SelectionMethod = Literal["mbr"]


class SelectionInfo(TypedDict):
    """How an answer was chosen among sampled candidates (``response_metadata["rpo_selection"]``).

    Attributes:
        selection: The rule that chose (``"mbr"``).
        candidates: How many candidates were sampled.
        chosen: The index of the one answered with (0 to ``candidates - 1``).
        parsed: How many of them parsed as trajectories.
    """

    selection: SelectionMethod
    candidates: int
    chosen: int
    parsed: int


def tokens(text: str) -> list[str]:
    """Split text into lowercased whitespace tokens, the unit of :func:`lcs_f1`.

    >>> tokens("  PEP 8:  Style\\nGuide ")
    ['pep', '8:', 'style', 'guide']
    """
    return text.lower().split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    >>> lcs_length("a b c d".split(), "a c d e".split())
    3
    >>> lcs_length([], ["a"])
    0
    """
    if len(a) < len(b):
        a, b = b, a  # keep the row as short as the shorter list
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0  # row[j - 1] of the previous row
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(row[j], row[j - 1])
            diagonal = above
    return row[-1]


def lcs_f1(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts on :func:`tokens`; 0.0 when either has no tokens.

    Symmetric, so it serves as agreement between two candidates.

    >>> lcs_f1("PEP 8 style guide", "pep 8 style")
    0.8571428571428571
    >>> lcs_f1("same words", "Same  WORDS"), lcs_f1("", "")
    (1.0, 0.0)
    """
    ta, tb = tokens(a), tokens(b)
    if not ta or not tb:
        return 0.0
    common = lcs_length(ta, tb)
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def mbr_scores(rewrites: Sequence[str | None]) -> list[float | None]:
    """Each parsed candidate's mean agreement with the other parsed candidates.

    Args:
        rewrites: One rewrite per candidate; ``None`` for a candidate that did not parse.

    Returns:
        One score per candidate: the mean :func:`lcs_f1` with every *other* parsed rewrite
        (1.0 for a lone parsed candidate, which has nothing to disagree with), or ``None``
        for one that did not parse.

    >>> mbr_scores(["a b", "a b", None, "c"])
    [0.5, 0.5, None, 0.0]
    """
    parsed = [i for i, text in enumerate(rewrites) if text is not None]
    scores: list[float | None] = [None] * len(rewrites)
    if len(parsed) == 1:
        scores[parsed[0]] = 1.0
        return scores
    # The similarity is symmetric: compute each pair once.
    total = dict.fromkeys(parsed, 0.0)
    for n, i in enumerate(parsed):
        for j in parsed[n + 1 :]:
            agreement = lcs_f1(rewrites[i] or "", rewrites[j] or "")
            total[i] += agreement
            total[j] += agreement
    for i in parsed:
        scores[i] = total[i] / (len(parsed) - 1)
    return scores


def mbr_index(rewrites: Sequence[str | None]) -> int:
    """The minimum-Bayes-risk choice: the parsed candidate that agrees most with the others.

    A candidate that did not parse (``None``) never wins over one that did; when none parsed,
    the first candidate is chosen (its output then fails as the caller's parse says). Ties go
    to the earliest candidate.

    Args:
        rewrites: One rewrite per candidate; ``None`` for a candidate that did not parse.

    Returns:
        The chosen candidate's index.

    Raises:
        ValueError: If there are no candidates.

    >>> mbr_index(["x y", "a b", "a b c"])  # the pair that agrees wins, the first of it
    1
    """
    if not rewrites:
        raise ValueError("mbr_index needs at least one candidate")
    scores = mbr_scores(rewrites)
    best = 0
    for i, score in enumerate(scores):
        best_score = scores[best]
        if score is not None and (best_score is None or score > best_score):
            best = i
    return best
