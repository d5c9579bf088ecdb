"""The LaMP task specifications: the one place that knows what each task looks like.

Every other module of :mod:`langchain_rpo.lamp` (loading, retrieval, prompts, answer parsing,
metrics, download) reads the task from here, so a task's format is spelled exactly once.

What a :class:`TaskSpec` holds, following the official LaMP code (``LaMP/prompts/prompts.py``,
``LaMP/prompts/utils.py``, ``eval/evaluation.py`` of the LaMP-Benchmark repository):

- the input template (documentation: the questions file carries the rendered input);
- the profile item fields, and which field is the item's *output* (its label, rating, title or
  tweet, what the ``nearest`` baseline answers with);
- the label set of the classification tasks (the order of the official evaluation script);
- the retrieval query (the part of the input after a marker such as ``article:``) and the corpus
  text of a profile item;
- the LaMP per-item prompt template and how the items are joined into the input (``rag``);
- how a free-form model answer maps to a label, a rating or a one-line text;
- the metric names, as the official evaluation reports them.

LaMP-2 has two versions: movie tagging (``LaMP_2``, the current release) and the older news
categorization (``LaMP_2N`` here; its files also say ``"task": "LaMP_2"``). LaMP-6 (email
subjects, from the Avocado corpus) has no public data; its format is here so that users who
build it from their Avocado licence can run it. The PEP titles set of this project is LaMP-5.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_rpo.adapter_settings import LAMP_ITEM_CHARS
from langchain_rpo.prompts import truncate

__all__ = [
    "TaskKind",
    "TaskSpec",
    "TASKS",
    "UnknownTaskError",
    "get_task",
    "task_names",
    "MOVIE_TAGS",
    "NEWS_CATEGORIES",
]

TaskKind = Literal["classification", "rating", "generation"]

#: LaMP-2 (movie tagging) tags, in the order of the official ``get_all_labels``.
MOVIE_TAGS: tuple[str, ...] = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
    "classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary",
    "violence", "true story",
)  # fmt: skip

#: LaMP-2 (news categorization, the first release) categories, in the official evaluation's order.
NEWS_CATEGORIES: tuple[str, ...] = (
    "food & drink", "sports", "education", "parents", "religion", "travel", "business", "crime",
    "science & technology", "culture & arts", "entertainment", "politics", "women",
    "style & beauty", "healthy living",
)  # fmt: skip

_RATINGS: tuple[str, ...] = ("1", "2", "3", "4", "5")

# A label-like prefix a small model often writes before a one-line answer ("Title: ...").
_ANSWER_PREFIX = re.compile(
    r"^(?:title|headline|subject|tweet|paraphrase|paraphrased tweet|answer)\s*:\s*", re.IGNORECASE
)
_QUOTES = "\"'“”‘’`*"


class UnknownTaskError(ValueError):
    """Raised for a task name that is not in :data:`TASKS`."""


def _after(marker: str) -> Callable[[str], str]:
    """Return a query extractor: the text after the first ``marker`` (official ``extract_after_*``).

    Where the marker is missing (a hand-made input), the whole input is the query, rather than the
    official code's ``None``.
    """

    def extract(text: str) -> str:
        index = text.find(marker)
        return text[index + len(marker) :].strip() if index != -1 else text.strip()

    extract.__doc__ = f"The text after the first {marker!r}, else the whole input."
    return extract


def _quoted(text: str) -> list[str]:
    """Return the strings between double quotes, in order.

    The official ``extract_strings_between_quotes``.

    >>> _quoted('title "A", refs [1]: "B" [2]: "C"')
    ['A', 'B', 'C']
    """
    return re.findall(r'"([^"]*)"', text)


def _citation_query(text: str) -> str:
    """LaMP-1: the two candidate reference titles (the second and third quoted strings)."""
    quoted = _quoted(text)
    return " ".join(quoted[1:3]) if len(quoted) >= 3 else text.strip()


def _join_before(suffix: str = "") -> Callable[[str, Sequence[str]], str]:
    """Return a combiner: ``"{items joined by ', and '}. {suffix}{input}"`` (most LaMP tasks)."""

    def combine(text: str, items: Sequence[str]) -> str:
        return f"{', and '.join(items)}. {suffix}{text}" if items else text

    return combine


def _join_tweets(text: str, items: Sequence[str]) -> str:
    """LaMP-7: ``"{items} are written by a person. Following the given patterns {input}"``."""
    if not items:
        return text
    return f"{', and '.join(items)} are written by a person. Following the given patterns {text}"


def _after_title(text: str, items: Sequence[str]) -> str:
    """LaMP-1: insert ``", and " + items`` right after the word ``title``.

    The official ``add_string_after_title``.

    >>> _after_title('the paper with the title "X", which', ['"A"'])
    'the paper with the title, and "A" "X", which'
    """
    index = text.find("title")
    if not items or index == -1:
        return text
    end = index + len("title")
    return text[:end] + ", and " + ", and ".join(items) + text[end:]


@dataclass(frozen=True)
class TaskSpec:
    """One LaMP task's format, retrieval texts, prompts, answer mapping and metrics.

    Attributes:
        name: The registry name (``"LaMP_5"``, ``"LaMP_2N"``).
        file_task: The ``"task"`` value its official outputs files carry (``"LaMP_2"`` for both
            LaMP-2 versions).
        title: A human-readable name.
        kind: ``"classification"`` (a label set), ``"rating"`` (1 to 5) or ``"generation"``.
        input_template: What the official inputs look like (documentation only).
        profile_fields: The keys every profile item must have, besides its optional ``id``.
        output_field: The profile field that is the item's own output (label, rating, title,
            tweet), or None where items have none (LaMP-1).
        labels: The label set (classification and rating tasks), else empty.
        metrics: The metric names, as the official evaluation reports them.
        query_text: Maps a question's input to the retrieval query.
        corpus_fields: The profile fields whose text, space-joined, is an item's retrieval text.
        item_template: The LaMP per-item prompt template (``str.format`` over the item's fields).
        truncate_field: The long field of an item that is cut to fit a prompt.
        combine: Joins the rendered items into the input: the ``rag`` prompt.
        max_new_tokens: A generation budget that fits an answer of this task.
        public_data: Whether the official data can be downloaded (LaMP-6 cannot).
    """

    name: str
    file_task: str
    title: str
    kind: TaskKind
    input_template: str
    profile_fields: tuple[str, ...]
    output_field: str | None
    metrics: tuple[str, ...]
    query_text: Callable[[str], str] = field(repr=False)
    corpus_fields: tuple[str, ...]
    item_template: str
    truncate_field: str
    combine: Callable[[str, Sequence[str]], str] = field(repr=False)
    max_new_tokens: int
    labels: tuple[str, ...] = ()
    public_data: bool = True
    _by_lower: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_lower", {label.lower(): label for label in self.labels})

    # -- retrieval -------------------------------------------------------------------------
    def corpus_text(self, item: Mapping[str, Any]) -> str:
        """Return a profile item's retrieval text (its corpus fields, space-joined).

        >>> get_task("LaMP_5").corpus_text({"title": "T", "abstract": "A"})
        'T A'
        """
        return " ".join(str(item[name]) for name in self.corpus_fields)

    def item_output(self, item: Mapping[str, Any]) -> str:
        """Return a profile item's own output (what ``nearest`` answers with).

        Raises:
            ValueError: For a task whose items have no output (LaMP-1).
        """
        if self.output_field is None:
            raise ValueError(
                f"{self.name} profile items have no output of their own, so the 'nearest' "
                "baseline is not defined for it; leave 'nearest' out of --methods."
            )
        return str(item[self.output_field])

    # -- prompts ---------------------------------------------------------------------------
    def render_item(self, item: Mapping[str, Any], max_chars: int | None = LAMP_ITEM_CHARS) -> str:
        """Render one profile item with the LaMP per-item template, its long field cut.

        Args:
            item: The profile item.
            max_chars: Cut the item's long field to this many characters (None: no cut).

        >>> get_task("LaMP_5").render_item({"title": "T", "abstract": "A b"})
        '"T" is a title for "A b" '
        """
        values = {key: str(value) for key, value in item.items()}
        values[self.truncate_field] = truncate(values[self.truncate_field], max_chars)
        return self.item_template.format(**values)

    def rag_prompt(
        self,
        text: str,
        items: Sequence[Mapping[str, Any]],
        max_chars: int | None = LAMP_ITEM_CHARS,
    ) -> str:
        """Return the context-injection prompt: the retrieved items rendered into the input.

        With no items the input comes back unchanged (the zero-shot prompt).
        """
        return self.combine(text, [self.render_item(item, max_chars) for item in items])

    # -- answers ---------------------------------------------------------------------------
    def parse_answer(self, answer: str) -> str:
        """Map a free-form model answer to this task's output.

        - classification: an exact label (case-insensitive), else the label found earliest in
          the answer (the longest at one position, so ``dark comedy`` beats ``comedy``); LaMP-1
          also reads a bare ``1`` or ``2`` as ``[1]`` or ``[2]``;
        - rating: the first standalone digit 1 to 5;
        - generation: the first non-empty line, without quotes or a ``Title:``-like prefix.

        An answer that names no label or rating comes back stripped, and is scored as the
        official evaluation scores it (wrong for a label; the farther of 1 and 5 for a rating).

        >>> get_task("LaMP_2").parse_answer("I'd say Dark Comedy.")
        'dark comedy'
        >>> get_task("LaMP_1").parse_answer("Reference 2")
        '[2]'
        >>> get_task("LaMP_3").parse_answer("Score: 4 out of 5")
        '4'
        >>> get_task("LaMP_5").parse_answer('Title: "Copyable Iterators"\\nMore text')
        'Copyable Iterators'
        """
        text = answer.strip()
        if self.kind == "generation":
            return _first_line(text)
        if self.kind == "rating":
            match = re.search(r"(?<![\d.])([1-5])(?![\d])", text)
            return match.group(1) if match else text
        exact = self._by_lower.get(text.strip(_QUOTES + " .").lower())
        if exact is not None:
            return exact
        found = _earliest_label(text.lower(), self._by_lower)
        if found is not None:
            return found
        if self.name == "LaMP_1":
            match = re.search(r"(?<!\d)([12])(?!\d)", text)
            if match:
                return f"[{match.group(1)}]"
        return text


def _first_line(text: str) -> str:
    """Return the first non-empty line, without surrounding quotes or an answer prefix."""
    for line in text.splitlines():
        line = _ANSWER_PREFIX.sub("", line.strip()).strip().strip(_QUOTES).strip()
        if line:
            return line
    return ""


def _earliest_label(text: str, by_lower: Mapping[str, str]) -> str | None:
    """Return the label whose first (word-bounded) occurrence in ``text`` is earliest, or None."""
    best: tuple[int, int, str] | None = None
    for lower, label in by_lower.items():
        match = re.search(rf"(?<!\w){re.escape(lower)}(?!\w)", text)
        if match:
            key = (match.start(), -len(lower), label)
            if best is None or key < best:
                best = key
    return best[2] if best else None


_CLS_METRICS = ("accuracy", "f1")
_RATING_METRICS = ("MAE", "RMSE")
_GEN_METRICS = ("rouge-1", "rouge-L")

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            name="LaMP_1",
            file_task="LaMP_1",
            title="Personalized citation identification",
            kind="classification",
            input_template=(
                'For an author who has written the paper with the title "{title}", which '
                "reference is related? Just answer with [1] or [2] without explanation. "
                '[1]: "{reference_1}" [2]: "{reference_2}"'
            ),
            profile_fields=("title", "abstract"),
            output_field=None,
            labels=("[1]", "[2]"),
            metrics=_CLS_METRICS,
            query_text=_citation_query,
            corpus_fields=("title", "abstract"),
            item_template='"{title}"',
            truncate_field="title",
            combine=_after_title,
            max_new_tokens=8,
        ),
        TaskSpec(
            name="LaMP_2",
            file_task="LaMP_2",
            title="Personalized movie tagging",
            kind="classification",
            input_template=(
                "Which tag does this movie relate to among the following tags? Just answer with "
                "the tag name without further explanation. tags: [{tags}] description: "
                "{description}"
            ),
            profile_fields=("description", "tag"),
            output_field="tag",
            labels=MOVIE_TAGS,
            metrics=_CLS_METRICS,
            query_text=_after("description:"),
            corpus_fields=("description",),
            item_template='the tag for the movie: "{description}" is "{tag}" ',
            truncate_field="description",
            combine=_join_before(),
            max_new_tokens=12,
        ),
        TaskSpec(
            name="LaMP_2N",
            file_task="LaMP_2",
            title="Personalized news categorization (the first LaMP-2 release)",
            kind="classification",
            input_template=(
                "Which category does this article relate to among the following categories? Just "
                "answer with the category name without further explanation. categories: "
                "[{categories}] article: {article}"
            ),
            profile_fields=("title", "text", "category"),
            output_field="category",
            labels=NEWS_CATEGORIES,
            metrics=_CLS_METRICS,
            query_text=_after("article:"),
            corpus_fields=("title", "text"),
            item_template='the category for the article: "{text}" is "{category}" ',
            truncate_field="text",
            combine=_join_before(),
            max_new_tokens=12,
        ),
        TaskSpec(
            name="LaMP_3",
            file_task="LaMP_3",
            title="Personalized product rating",
            kind="rating",
            input_template=(
                "What is the score of the following review on a scale of 1 to 5? just answer with "
                "1, 2, 3, 4, or 5 without further explanation. review: {review}"
            ),
            profile_fields=("text", "score"),
            output_field="score",
            labels=_RATINGS,
            metrics=_RATING_METRICS,
            query_text=_after("review:"),
            corpus_fields=("text",),
            item_template='{score} is the score for "{text}" ',
            truncate_field="text",
            combine=_join_before(),
            max_new_tokens=4,
        ),
        TaskSpec(
            name="LaMP_4",
            file_task="LaMP_4",
            title="Personalized news headline generation",
            kind="generation",
            input_template="Generate a headline for the following article: {article}",
            profile_fields=("title", "text"),
            output_field="title",
            metrics=_GEN_METRICS,
            query_text=_after("article:"),
            corpus_fields=("title", "text"),
            item_template='"{title}" is the title for "{text}" ',
            truncate_field="text",
            combine=_join_before(),
            max_new_tokens=32,
        ),
        TaskSpec(
            name="LaMP_5",
            file_task="LaMP_5",
            title="Personalized scholarly title generation",
            kind="generation",
            input_template="Generate a title for the following abstract of a paper: {abstract}",
            profile_fields=("title", "abstract"),
            output_field="title",
            metrics=_GEN_METRICS,
            query_text=_after("paper:"),
            corpus_fields=("title", "abstract"),
            item_template='"{title}" is a title for "{abstract}" ',
            truncate_field="abstract",
            combine=_join_before("Following the given patterns "),
            max_new_tokens=32,
        ),
        TaskSpec(
            name="LaMP_6",
            file_task="LaMP_6",
            title="Personalized email subject generation (Avocado; no public data)",
            kind="generation",
            input_template="Generate a subject for the following email: {email}",
            profile_fields=("title", "text"),
            output_field="title",
            metrics=_GEN_METRICS,
            query_text=_after(":"),
            corpus_fields=("text",),
            item_template='"{title}" is the title for "{text}" ',
            truncate_field="text",
            combine=_join_before(),
            max_new_tokens=32,
            public_data=False,
        ),
        TaskSpec(
            name="LaMP_7",
            file_task="LaMP_7",
            title="Personalized tweet paraphrasing",
            kind="generation",
            input_template=(
                "Paraphrase the following tweet without any explanation before or after it: {tweet}"
            ),
            profile_fields=("text",),
            output_field="text",
            metrics=_GEN_METRICS,
            query_text=_after(":"),
            corpus_fields=("text",),
            item_template='"{text}" ',
            truncate_field="text",
            combine=_join_tweets,
            max_new_tokens=64,
        ),
    )
}


def task_names() -> list[str]:
    """Return the registered task names, in order."""
    return list(TASKS)


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Return the :class:`TaskSpec` for a name (``LaMP_5``, ``LaMP-5`` and ``lamp_5`` all work).

    Args:
        name: A task name, or a spec (returned as is).

    Raises:
        UnknownTaskError: For a name that is not a LaMP task, listing the known ones.
    """
    if isinstance(name, TaskSpec):
        return name
    key = str(name).strip().replace("-", "_").lower()
    for spec in TASKS.values():
        if spec.name.lower() == key:
            return spec
    raise UnknownTaskError(
        f"unknown task {name!r}; known tasks: {', '.join(TASKS)} "
        "(LaMP_2 is movie tagging, LaMP_2N the older news categorization)"
    )
