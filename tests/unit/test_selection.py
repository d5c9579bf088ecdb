"""Minimum Bayes risk over sampled trajectories' rewrites (langchain_rpo.selection)."""

from __future__ import annotations

import doctest

import pytest

from langchain_rpo import selection
from langchain_rpo.selection import lcs_f1, lcs_length, mbr_index, mbr_scores


def test_doctests() -> None:
    result = doctest.testmod(selection)
    assert result.attempted > 0 and result.failed == 0


def test_lcs_f1_is_rouge_l_on_lowercased_whitespace_tokens() -> None:
    assert lcs_length(["a", "b", "c", "d", "e"], ["b", "d", "e", "a"]) == 3
    # The LCS is all 4 tokens of the first, 4 of the 5 of the second: P = 1, R = 4/5.
    assert lcs_f1("the quick brown fox", "The QUICK red brown fox") == pytest.approx(
        2 * 1 * 0.8 / 1.8
    )
    assert lcs_f1("a b", "c d") == 0.0
    assert lcs_f1("a b", "b a") == lcs_f1("b a", "a b") == 0.5  # symmetric
    assert lcs_f1("   ", "a") == 0.0


def test_mbr_picks_the_consensus_not_the_first_or_the_longest() -> None:
    rewrites = [
        "A completely different title about parsers",
        "Improving packaging wheels",
        "Improving wheels for packaging",
        "Improving packaging wheels today",
    ]
    assert mbr_index(rewrites) == 1  # it shares the most with each of the others


def test_an_unparsable_candidate_never_wins() -> None:
    # Three unparsed copies of one text would agree perfectly, but they never count.
    assert mbr_index([None, None, None, "a lone parsed rewrite"]) == 3
    assert mbr_index([None, "x y", "p q", None]) == 1  # parsed ones tie at 0: the first
    scores = mbr_scores([None, "a b", "a b c"])
    assert scores[0] is None and scores[1] == scores[2] == pytest.approx(0.8)


def test_ties_go_to_the_first_and_no_parse_gives_the_first() -> None:
    assert mbr_index(["same", "same", "same"]) == 0
    assert mbr_index(["a b", "c d", "a b", "c d"]) == 0
    assert mbr_index([None, None]) == 0
    assert mbr_index(["only one"]) == 0


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        mbr_index([])
