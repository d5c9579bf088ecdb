"""The trajectory format: render/parse round trips, named failures, the streaming extractor."""

from __future__ import annotations

import re

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langchain_rpo.trajectory import (
    ParseFailure,
    RewriteStreamExtractor,
    Trajectory,
    TrajectoryParseError,
    parse,
    render,
    try_parse,
)

TAGGY = st.sampled_from(
    ["<rewrite>", "</rewrite>", "<gaps>", "</preferences>", "&lt;", "&amp;", "&", "<", ">", "\n"]
)
FIELD = st.lists(st.one_of(st.text(max_size=8), TAGGY), max_size=8).map("".join)
# A usable rewrite is more than whitespace and the prompt's "..." placeholder.
REWRITE = FIELD.filter(lambda s: not re.fullmatch(r"[.\u2026\s]*", s))


@given(rewrite=REWRITE, preferences=FIELD, gaps=FIELD)
def test_round_trip_survives_tag_like_text(rewrite: str, preferences: str, gaps: str) -> None:
    parsed = parse(render(Trajectory(rewrite=rewrite, preferences=preferences, gaps=gaps)))
    assert parsed == Trajectory(
        rewrite=rewrite.strip(), preferences=preferences.strip(), gaps=gaps.strip()
    )


@given(rewrite=REWRITE, preferences=FIELD)
def test_rewrite_only_render_round_trips(rewrite: str, preferences: str) -> None:
    text = render(Trajectory(rewrite=rewrite, preferences=preferences), fields=("rewrite",))
    assert text.startswith("<rewrite>") and text.count("</rewrite>") == 1
    assert parse(text) == Trajectory(rewrite=rewrite.strip())


@pytest.mark.parametrize("fields", [("preferences", "gaps"), ("rewrite", "answer"), ()])
def test_render_refuses_unknown_fields_and_a_missing_rewrite(fields: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="always the rewrite"):
        render(Trajectory(rewrite="x"), fields=fields)


@given(rewrite=REWRITE, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_stream_extractor_matches_parse_for_any_split(rewrite: str, cuts: list[int]) -> None:
    text = render(Trajectory(rewrite=rewrite, preferences="p <rewrite>", gaps="g"))
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    extractor = RewriteStreamExtractor()
    streamed = "".join(extractor.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
    streamed += extractor.flush()
    assert streamed == parse(text).rewrite
    assert extractor.closed


def test_the_last_complete_rewrite_block_is_the_answer() -> None:
    text = "<rewrite>first</rewrite> thinking... <rewrite> second </rewrite><rewrite>cut"
    assert parse(text).rewrite == "second"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", ParseFailure.EMPTY_OUTPUT),
        ("   \n", ParseFailure.EMPTY_OUTPUT),
        ("<preferences>x</preferences> Just a title", ParseFailure.NO_REWRITE),
        ("<preferences>x</preferences><rewrite>a title cut off", ParseFailure.UNCLOSED_REWRITE),
        ("<rewrite>  </rewrite>", ParseFailure.EMPTY_REWRITE),
        (
            "<preferences>...</preferences><gaps>...</gaps><rewrite>...</rewrite>",
            ParseFailure.PLACEHOLDER_REWRITE,
        ),
        ("<rewrite> \u2026 </rewrite>", ParseFailure.PLACEHOLDER_REWRITE),
    ],
)
def test_unusable_outputs_fail_with_a_named_reason(text: str, reason: ParseFailure) -> None:
    with pytest.raises(TrajectoryParseError) as err:
        parse(text)
    assert err.value.reason is reason
    assert try_parse(text) == (None, reason)


def test_missing_reasoning_fields_parse_as_empty() -> None:
    assert parse("<rewrite>PEP 8</rewrite>") == Trajectory(rewrite="PEP 8")


def test_extractor_flushes_an_unclosed_block_and_ignores_text_after_close() -> None:
    extractor = RewriteStreamExtractor()
    assert extractor.feed("<rewrite> half a ") == "half a"
    assert extractor.flush() == ""
    assert not extractor.closed
    done = RewriteStreamExtractor()
    assert done.feed("<rewrite>a</rewrite><rewrite>b</rewrite>") == "a"
    assert done.feed("more") == ""


def test_extractor_never_streams_a_placeholder_but_keeps_leading_dots_of_real_text() -> None:
    echo = RewriteStreamExtractor()
    assert echo.feed("<rewrite>..") + echo.feed(".</rewrite>") + echo.flush() == ""
    real = RewriteStreamExtractor()
    assert real.feed("<rewrite>...") == ""
    assert real.feed("and more</rewrite>") == "...and more"
