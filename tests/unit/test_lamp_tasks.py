"""Task specs: registry, retrieval texts, LaMP item templates, answer mapping."""

from __future__ import annotations

import pytest

from langchain_rpo.lamp.tasks import MOVIE_TAGS, NEWS_CATEGORIES, TASKS, UnknownTaskError, get_task


def test_registry_has_every_task_with_consistent_metrics() -> None:
    assert list(TASKS) == [
        "LaMP_1",
        "LaMP_2",
        "LaMP_2N",
        "LaMP_3",
        "LaMP_4",
        "LaMP_5",
        "LaMP_6",
        "LaMP_7",
    ]
    for spec in TASKS.values():
        expected = {
            "classification": ("accuracy", "f1"),
            "rating": ("MAE", "RMSE"),
            "generation": ("rouge-1", "rouge-L"),
        }[spec.kind]
        assert spec.metrics == expected
        assert spec.truncate_field in spec.profile_fields
        assert set(spec.corpus_fields) <= set(spec.profile_fields)
    assert TASKS["LaMP_2N"].file_task == "LaMP_2"
    assert len(MOVIE_TAGS) == len(NEWS_CATEGORIES) == 15
    assert not TASKS["LaMP_6"].public_data


@pytest.mark.parametrize("name", ["LaMP_5", "LaMP-5", "lamp_5", " LAMP-5 "])
def test_get_task_accepts_spellings(name: str) -> None:
    assert get_task(name).name == "LaMP_5"


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(UnknownTaskError, match="LaMP_8.*known tasks: LaMP_1, LaMP_2"):
        get_task("LaMP_8")


def test_query_text_follows_the_official_markers() -> None:
    citation = (
        'For an author who has written the paper with the title "Own paper", which reference is '
        'related? Just answer with [1] or [2] without explanation. [1]: "Ref one" [2]: "Ref two"'
    )
    assert get_task("LaMP_1").query_text(citation) == "Ref one Ref two"
    assert get_task("LaMP_2").query_text("tags: [a, b] description: A heist.") == "A heist."
    assert get_task("LaMP_2N").query_text("categories: [x] article: Storm hits.") == "Storm hits."
    assert get_task("LaMP_3").query_text("1 to 5? review: Great pan.") == "Great pan."
    assert (
        get_task("LaMP_5").query_text(
            "Generate a title for the following abstract of a paper: Abs."
        )
        == "Abs."
    )
    assert get_task("LaMP_7").query_text("Paraphrase the following tweet: hi there") == "hi there"
    assert get_task("LaMP_4").query_text("no marker here") == "no marker here"


def test_corpus_text_and_item_output() -> None:
    item = {"id": "1", "title": "T", "text": "body", "category": "sports"}
    assert get_task("LaMP_2N").corpus_text(item) == "T body"
    assert get_task("LaMP_2N").item_output(item) == "sports"
    assert get_task("LaMP_3").item_output({"text": "x", "score": 4}) == "4"
    with pytest.raises(ValueError, match="nearest"):
        get_task("LaMP_1").item_output(item)


def test_rag_prompts_use_lamp_item_templates() -> None:
    lamp5 = get_task("LaMP_5")
    items = [{"title": "A", "abstract": "first abstract"}, {"title": "B", "abstract": "second"}]
    prompt = lamp5.rag_prompt("Generate a title for the following abstract of a paper: X", items)
    assert prompt == (
        '"A" is a title for "first abstract" , and "B" is a title for "second" . Following the '
        "given patterns Generate a title for the following abstract of a paper: X"
    )
    assert lamp5.rag_prompt("input", []) == "input"
    lamp3 = get_task("LaMP_3").rag_prompt("review: ok", [{"text": "meh", "score": "2"}])
    assert lamp3 == '2 is the score for "meh" . review: ok'
    lamp7 = get_task("LaMP_7").rag_prompt("Paraphrase: x", [{"text": "t1"}])
    assert lamp7 == '"t1"  are written by a person. Following the given patterns Paraphrase: x'
    lamp1 = get_task("LaMP_1").rag_prompt(
        'with the title "Own", which', [{"title": "P", "abstract": ""}]
    )
    assert lamp1 == 'with the title, and "P" "Own", which'


def test_render_item_cuts_the_long_field_only() -> None:
    item = {"title": "Keep The Title", "abstract": "word " * 200}
    text = get_task("LaMP_5").render_item(item, max_chars=30)
    assert text.startswith('"Keep The Title" is a title for "word')
    assert "…" in text and len(text) < 80


@pytest.mark.parametrize(
    ("task", "answer", "expected"),
    [
        ("LaMP_1", "[2]", "[2]"),
        ("LaMP_1", "The answer is [1].", "[1]"),
        ("LaMP_1", "2", "[2]"),
        ("LaMP_1", "neither", "neither"),
        ("LaMP_2", "Sci-Fi", "sci-fi"),
        ("LaMP_2", "tag: dark comedy", "dark comedy"),
        ("LaMP_2", "comedy, maybe dark comedy", "comedy"),
        ("LaMP_2", "  western ", "western"),
        ("LaMP_2N", '"Food & Drink"', "food & drink"),
        ("LaMP_2N", "This is about science & technology.", "science & technology"),
        ("LaMP_3", "5", "5"),
        ("LaMP_3", "I would give it 4 stars out of 5", "4"),
        ("LaMP_3", "rating: 3.5", "3"),
        ("LaMP_3", "great", "great"),
        ("LaMP_3", "10", "10"),
        ("LaMP_5", "  Title: A Better Title  \nexplanation", "A Better Title"),
        ("LaMP_5", '\n\n"Quoted"\n', "Quoted"),
        ("LaMP_4", "Headline: **Storm Hits Coast**", "Storm Hits Coast"),
        ("LaMP_7", "", ""),
    ],
)
def test_parse_answer(task: str, answer: str, expected: str) -> None:
    assert get_task(task).parse_answer(answer) == expected
