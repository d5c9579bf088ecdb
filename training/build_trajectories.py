"""Build SFT records in the trajectory format from LaMP-format train files.

Each record is a conversational prompt-completion example, so TRL's SFTTrainer puts the loss on
the completion only::

    {"id", "user", "k", "source", "gold",
     "prompt": [system, user],            # build_reflection_messages(draft, recalled items, query)
     "completion": [{"role": "assistant", "content": render(Trajectory(...))}]}

The draft is the base model's answer (the harness's ``zero`` method, cached under
``--drafts_dir``); the recalled items are the user's profile searched as ``rpo eval`` searches it
(see :mod:`training.data`). Two sources of trajectories:

- ``offline`` (no teacher): the preferences and gaps state only measurable evidence: the
  recalled items' observable traits (length, casing, punctuation, recurring words, label or
  rating distribution, and the series template they follow, see :func:`find_template`) set
  against the draft's; the rewrite is the gold. Nothing is invented that the data does not show,
  and the gold is never read to describe it.
- ``teacher``: any LangChain chat model is shown the query, the draft, the recalled items and the
  gold, and asked for the trajectory; a record is kept only when its parsed rewrite scores at
  least ``--threshold`` against the gold with the task metric.

Usage (the bundled adapter's data)::

    OMP_NUM_THREADS=1 python -m training.build_trajectories \\
        --questions langchain_rpo/data/pep_titles/train_questions.json \\
        --outputs langchain_rpo/data/pep_titles/train_outputs.json \\
        --drafts_dir runs/pep_train_zero --out runs/pep_train_trajectories.jsonl --k 4
"""

from __future__ import annotations

import importlib
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from langchain_rpo.lamp.data import Question
from langchain_rpo.lamp.tasks import TaskKind, TaskSpec
from langchain_rpo.trajectory import Trajectory, parse, render, try_parse
from training.data import (
    DataArguments,
    Recall,
    Split,
    load_split,
    recall_for,
    reflection_prompt,
    write_records,
    zero_drafts,
)
from training.rewards import task_score

__all__ = [
    "BuildConfig",
    "text_traits",
    "label_traits",
    "Template",
    "find_template",
    "describe_preferences",
    "describe_gaps",
    "evidence_trajectory",
    "offline_trajectory",
    "teacher_messages",
    "build_records",
    "rewrite_only",
    "main",
]

_STOPWORDS = frozenset(
    "a an and are as at be by for from in into is it its of on or the to with without via "
    "this that these those new use using add adding support python pep".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_']*")


# --------------------------------------------------------------------------- evidence


def _words(text: str) -> list[str]:
    return text.split()


def _casing(text: str) -> str:
    """Classify a short text's casing: ``Title Case``, ``sentence case`` or ``lower case``.

    Only words of four letters or more count (short function words vary in title case).

    >>> _casing("Copyable Iterators for Python"), _casing("Copyable iterators"), _casing("x y")
    ('Title Case', 'sentence case', 'lower case')
    """
    words = _WORD.findall(text)
    if not words:
        return "lower case"
    first = words[0][0].isupper()
    rest = [w[0].isupper() for w in words[1:] if len(w) >= 4]
    if first and all(rest):
        return "Title Case"
    if first or any(rest):
        return "sentence case"
    return "lower case"


@dataclass(frozen=True)
class TextTraits:
    """The observable traits of a few short texts (the user's titles, or one draft).

    Attributes:
        n: How many texts.
        words_min: The fewest words.
        words_max: The most words.
        words_median: The median word count.
        casing: The most common casing.
        final_period: How many end with a period.
        colon: How many contain a colon.
        quotes: How many contain quotes or backticks.
        recurring: Content words found in at least two texts, most frequent first (at most 3).
    """

    n: int
    words_min: int
    words_max: int
    words_median: float
    casing: str
    final_period: int
    colon: int
    quotes: int
    recurring: tuple[str, ...] = field(default=())


def text_traits(texts: Sequence[str]) -> TextTraits:
    """Measure the traits of ``texts``.

    >>> t = text_traits(["Import Hooks", "Import Path Hooks: Redux", "Lazy Imports."])
    >>> (t.words_min, t.words_max, t.words_median, t.casing, t.final_period, t.colon)
    (2, 4, 2, 'Title Case', 1, 1)
    >>> t.recurring
    ('hooks', 'import')
    """
    counts = [len(_words(t)) for t in texts]
    casings = Counter(_casing(t) for t in texts)
    seen: Counter[str] = Counter()
    for text in texts:
        seen.update({w.lower() for w in _WORD.findall(text)} - _STOPWORDS)
    recurring = tuple(
        w for w, c in sorted(seen.items(), key=lambda wc: (-wc[1], wc[0])) if c >= 2 and len(w) > 2
    )[:3]
    return TextTraits(
        n=len(texts),
        words_min=min(counts, default=0),
        words_max=max(counts, default=0),
        words_median=statistics.median(counts) if counts else 0,
        casing=casings.most_common(1)[0][0] if casings else "lower case",
        final_period=sum(t.rstrip().endswith(".") for t in texts),
        colon=sum(":" in t for t in texts),
        quotes=sum(any(q in t for q in "\"'`") for t in texts),
        recurring=recurring,
    )


# A number or version (2020, 1.16, 3.0.1) inside a token; the template states it as "#".
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A dotted version (1.16, v2.0): the one kind of number strong enough to make a lone title a
# template (a year or a count in one title is usually not a series).
_VERSION = re.compile(r"v?\d+(?:\.\d+)+")
# Trailing punctuation that does not break a series ("Go 1.20 is released!" is "Go # is released").
_TRAILING = ".,;!?"
# Tokens that end a series label before the varying part: "EOF - Code Validation".
_SEPARATORS = frozenset(("-", "--", "\u2013", "\u2014"))
# Long templates cost the reflection model's generation budget and are rarely series.
_MAX_TEMPLATE_TOKENS = 8
# The varying part of a template, as it is stated ("<...>" would be escaped to "&lt;...>").
TEMPLATE_GAP = "..."


def _shape(token: str) -> str:
    return _NUMBER.sub("#", token)


def _key(token: str) -> str:
    """What two tokens must share to be the same template slot (numbers, case, end marks aside)."""
    return _shape(token).rstrip(_TRAILING).casefold()


def _content_words(tokens: Sequence[str]) -> int:
    """Count the tokens that carry meaning: a number slot, or a word that is not a stopword.

    Stopwords alone make no series: "The ... of Go" is not one, "Adds `baseFee` to ..." is.
    """
    return sum(
        key == "#" or (len(key) > 1 and key not in _STOPWORDS and any(map(str.isalnum, key)))
        for key in map(_key, tokens)
    )


@dataclass(frozen=True)
class Template:
    """A title pattern the recalled items follow: a fixed head, a varying part, a fixed tail.

    Numbers and versions are slots (``#``): ``Go # is released`` fits ``Go 1.25 is released``.

    Attributes:
        head: The fixed leading tokens (numbers shown as ``#``).
        tail: The fixed trailing tokens (empty when the template has no varying part or ends
            with it).
        gap: Whether one or more free tokens sit between the head and the tail.
        strong: False for a template too plain to state unless three items share it (two fixed
            words, no separator, no number slot: ``Package Manager ...``).
    """

    head: tuple[str, ...]
    tail: tuple[str, ...] = ()
    gap: bool = False
    strong: bool = True

    def __str__(self) -> str:
        return " ".join((*self.head, TEMPLATE_GAP, *self.tail) if self.gap else self.head)

    @property
    def fixed(self) -> int:
        """How many tokens the template fixes."""
        return len(self.head) + len(self.tail)

    def fits(self, text: str) -> bool:
        """Whether ``text`` follows the template (numbers fill ``#``, the gap takes 1+ tokens).

        >>> t = Template(("Hardfork", "Meta:"), gap=True)
        >>> t.fits("Hardfork Meta: Petersburg"), t.fits("Hardfork Meta:"), t.fits("Meta: Berlin")
        (True, False, False)
        >>> Template(("Go", "#", "is", "released")).fits("Go 1.22 is released!")
        True
        """
        keys = [_key(t) for t in text.split()]
        head, tail = [_key(t) for t in self.head], [_key(t) for t in self.tail]
        if not self.gap:
            return keys == head
        return (
            len(keys) > self.fixed
            and keys[: len(head)] == head
            and keys[len(keys) - len(tail) :] == tail
        )


def _pair_template(first: str, second: str) -> Template | None:
    """The template two titles share, if it says something (shapes are taken from ``first``)."""
    a, b = first.split(), second.split()
    ka, kb = [_key(t) for t in a], [_key(t) for t in b]
    shapes = tuple(_shape(t) for t in a)
    if ka == kb:  # the same title but for its numbers: "Go 1.16 is released", "Go 1.23 is released"
        return Template(shapes) if len(a) >= 2 and _content_words(shapes) >= 2 else None
    room = min(len(ka), len(kb)) - 1  # leave each title at least one token in the gap
    p = 0
    while p < room and ka[p] == kb[p]:
        p += 1
    s = 0
    while s < room - p and ka[-1 - s] == kb[-1 - s]:
        s += 1
    head, tail = shapes[:p], shapes[len(shapes) - s :] if s else ()
    separated = p > 0 and (head[-1].endswith(":") or head[-1] in _SEPARATORS)
    numbered = "#" in map(_key, head + tail)
    if _content_words(head + tail) < (1 if separated else 2):
        return None
    strong = separated or numbered or len(head + tail) >= 3
    return Template(head, tail, gap=True, strong=strong)


def _own_template(title: str) -> Template | None:
    """The template a lone title shows when strongly patterned: a series label or a version."""
    tokens = title.split()
    shapes = tuple(_shape(t) for t in tokens)
    for i, token in enumerate(tokens[:4]):  # "Hardfork Meta: Istanbul", "EOF - Code Validation"
        label = token.endswith(":") or (i > 0 and token in _SEPARATORS)
        if label and 1 <= len(tokens) - i - 1 <= 2:  # a short name after it, not a sentence
            head = shapes[: i + 1]
            return Template(head, gap=True) if _content_words(head) else None
    if 2 <= len(tokens) <= 6 and any(_VERSION.fullmatch(t.rstrip(_TRAILING)) for t in tokens):
        return Template(shapes)  # "Go 1.16 is released" -> "Go # is released"
    return None


def find_template(outputs: Sequence[str]) -> Template | None:
    """Find the series template the recalled outputs follow, best first; None when there is none.

    A template shared by two or more items comes first: their tokens with numbers as ``#``, or a
    shared head (two words or more, or a label before a colon or dash) and tail around a varying
    part. The one that fixes the most tokens over the most items wins, then the one of the best
    recalled items. Without one, the top item's own shape counts when it is strongly patterned (a
    short name after a label, or a version). Built from the recalled outputs only.

    Args:
        outputs: The recalled items' outputs (titles), best first.

    >>> str(find_template(["Go 1.16 is released", "Go 1.23 is released"]))
    'Go # is released'
    >>> str(find_template(["Go 1.21 Release Candidate", "Go 1.21 is released!"]))
    'Go # ...'
    >>> str(find_template(["Hardfork Meta: Istanbul", "Reduced gas cost for call to self"]))
    'Hardfork Meta: ...'
    >>> str(find_template(["Segwit Output Script Descriptors", "tr() Output Script Descriptors"]))
    '... Output Script Descriptors'
    >>> find_template(["Import Hooks", "Lazy Import Hooks"]) is None
    True
    """
    titles = [t for t in outputs if t.strip()]
    best: Template | None = None
    best_rank: tuple[int, int, int] | None = None
    for i, first in enumerate(titles):
        for j in range(i + 1, len(titles)):
            template = _pair_template(first, titles[j])
            if template is None or len(str(template).split()) > _MAX_TEMPLATE_TOKENS:
                continue
            support = sum(template.fits(t) for t in titles)
            if not template.strong and support < 3:
                continue
            rank = (support * template.fixed, support, -(i + j))
            if best_rank is None or rank > best_rank:
                best, best_rank = template, rank
    if best is None and titles:
        best = _own_template(titles[0])
    return best


def label_traits(labels: Sequence[str]) -> list[tuple[str, int]]:
    """Return the label (or rating) distribution, most common first.

    >>> label_traits(["4", "5", "4"])
    [('4', 2), ('5', 1)]
    """
    return Counter(labels).most_common()


def _fmt_number(x: float) -> str:
    return f"{x:g}"


def _kind(spec: TaskSpec | TaskKind) -> TaskKind:
    return spec if isinstance(spec, str) else spec.kind


def describe_preferences(spec: TaskSpec | TaskKind, outputs: Sequence[str]) -> str:
    """State what the recalled items' outputs show, in one to three short points.

    Args:
        spec: The task, or only its kind (``"generation"`` for free text).
        outputs: The recalled items' own outputs (titles, labels, ratings), best first.

    >>> from langchain_rpo.lamp.tasks import get_task
    >>> describe_preferences(get_task("LaMP_5"), ["Import Hooks", "Lazy Import Hooks"])
    '2-3 words (median 2.5), Title Case, no final period; recurring: hooks, import'
    >>> describe_preferences(get_task("LaMP_3"), ["4", "5", "4"])
    'ratings: 4 (2 of 3), 5 (1 of 3)'
    >>> describe_preferences(get_task("LaMP_5"), [])
    'no past items'
    >>> describe_preferences("generation", ["Go 1.16 is released", "Go 1.23 is released"])
    '4 words (median 4), sentence case, no final period; template: Go # is released'
    """
    if not outputs:
        return "no past items"
    if _kind(spec) != "generation":
        name = "ratings" if _kind(spec) == "rating" else "labels"
        dist = ", ".join(f"{label} ({c} of {len(outputs)})" for label, c in label_traits(outputs))
        return f"{name}: {dist}"
    t = text_traits(outputs)
    span = f"{t.words_min}" if t.words_min == t.words_max else f"{t.words_min}-{t.words_max}"
    points = [f"{span} words (median {_fmt_number(t.words_median)}), {t.casing}"]
    if t.final_period == 0:
        points[0] += ", no final period"
    elif t.final_period == t.n:
        points[0] += ", final period"
    template = find_template(outputs)
    if t.colon * 2 > t.n and template is None:  # a template states its colon
        points.append("colon in most")
    if template is not None:  # its fixed words are the recurring ones, said more precisely
        points.append(f"template: {template}")
    elif t.recurring:
        points.append("recurring: " + ", ".join(t.recurring))
    return "; ".join(points)


def describe_gaps(spec: TaskSpec | TaskKind, outputs: Sequence[str], draft: str) -> str:
    """State where the draft departs, measurably, from the recalled items' outputs.

    Args:
        spec: The task, or only its kind (``"generation"`` for free text).
        outputs: The recalled items' own outputs.
        draft: The draft, mapped by ``spec.parse_answer`` (what would be scored).

    >>> from langchain_rpo.lamp.tasks import get_task
    >>> spec = get_task("LaMP_5")
    >>> describe_gaps(spec, ["Import Hooks", "Lazy Import Hooks"], "This PEP adds a way to hook.")
    '7 words, longer; sentence case; final period'
    >>> describe_gaps(spec, ["Import Hooks"], "Import Hook")
    'none measured'
    >>> describe_gaps(get_task("LaMP_3"), ["4", "5", "4"], "2")
    'draft 2, past mostly 4'
    >>> describe_gaps(spec, ["Hardfork Meta: Istanbul"], "Ethereum Hardfork Protocol")
    'not in the template'
    """
    if not outputs:
        return "no evidence"
    if _kind(spec) != "generation":
        top, _ = label_traits(outputs)[0]
        return (
            "none measured" if draft.strip() == top else f"draft {draft.strip()}, past mostly {top}"
        )
    t = text_traits(outputs)
    d = text_traits([draft])
    gaps = []
    if d.words_max > t.words_max:
        gaps.append(f"{d.words_max} words, longer")
    elif d.words_max < t.words_min:
        gaps.append(f"{d.words_max} words, shorter")
    if d.casing != t.casing:
        gaps.append(d.casing)
    if d.final_period and t.final_period * 2 < t.n:
        gaps.append("final period")
    if d.colon and t.colon == 0:
        gaps.append("colon")
    template = find_template(outputs)
    if template is not None and not template.fits(draft):
        gaps.append("not in the template")
    return "; ".join(gaps) or "none measured"


def evidence_trajectory(
    spec: TaskSpec | TaskKind, outputs: Sequence[str], draft: str, rewrite: str
) -> Trajectory:
    """The evidence-only trajectory over texts in hand: measured preferences and gaps, a rewrite.

    What :func:`offline_trajectory` builds from LaMP items, for any texts: the user's past outputs
    (their history items, for example) and a draft already mapped to what would be scored.

    >>> t = evidence_trajectory("generation", ["Rust 1.75 released", "Rust 1.74 released"],
    ...                         "Here is a summary of the new Rust release.", "Rust 1.76 released")
    >>> t.preferences
    '3 words (median 3), sentence case, no final period; template: Rust # released'
    >>> t.gaps
    '9 words, longer; final period; not in the template'
    """
    return Trajectory(
        rewrite=rewrite,
        preferences=describe_preferences(spec, outputs),
        gaps=describe_gaps(spec, outputs, draft),
    )


def offline_trajectory(
    spec: TaskSpec, items: Sequence[dict[str, Any]], draft: str, gold: str
) -> Trajectory:
    """The teacher-free trajectory: measured preferences and gaps, and the gold as the rewrite.

    >>> from langchain_rpo.lamp.tasks import get_task
    >>> t = offline_trajectory(get_task("LaMP_5"), [{"title": "Import Hooks", "abstract": "a"}],
    ...                        "A long generic title for hooks.", "Lazy Imports")
    >>> t.preferences, t.gaps, t.rewrite
    ('2 words (median 2), Title Case, no final period', '6 words, longer; sentence case; final period', 'Lazy Imports')
    """
    outputs = [spec.item_output(item) for item in items] if spec.output_field else []
    if spec.output_field is None:  # LaMP-1: items carry no output; describe their texts
        outputs = [spec.corpus_text(item) for item in items]
    return evidence_trajectory(spec, outputs, spec.parse_answer(draft), gold)


# --------------------------------------------------------------------------- teacher

TEACHER_INSTRUCTIONS = (
    "You write training data for a personalization model. Given a request, a generic draft "
    "answer, the user's past items and the answer this user actually gave (the gold), write "
    "what the past items show about the user (one to three short points), where the draft "
    "departs from it, and a rewrite of the draft that matches the gold. State only what the "
    "items show. Reply in the format of the example:\n"
)


def teacher_messages(
    query: str, draft: str, items: Sequence[str], gold: str
) -> list[tuple[str, str]]:
    """Return the teacher's prompt as ``(role, content)`` pairs (any LangChain chat model)."""
    example = render(Trajectory(rewrite="...", preferences="...", gaps="..."))
    history = "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1)) or "(none)"
    return [
        ("system", TEACHER_INSTRUCTIONS + example),
        (
            "human",
            f"Request:\n{query}\n\nDraft:\n{draft}\n\nPast items:\n{history}\n\nGold:\n{gold}",
        ),
    ]


def _load_object(path: str) -> Any:
    """Import ``package.module:attribute`` (called if it is a factory)."""
    module, _, attr = path.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if callable(obj) and not hasattr(obj, "invoke") else obj


# --------------------------------------------------------------------------- records


@dataclass
class BuildConfig(DataArguments):
    """Settings of ``build_trajectories`` (the shared data settings: :class:`DataArguments`)."""

    questions: str = field(metadata={"help": "LaMP {split}_questions.json (a train split)."})
    outputs: str = field(metadata={"help": "LaMP {split}_outputs.json (the golds)."})
    out: str = field(metadata={"help": "Output JSONL of SFT records."})
    rewrite_only_out: str | None = field(
        default=None,
        metadata={
            "help": "Also write the rewrite-only control here: the same records (same prompts, "
            "same golds) whose completion is the <rewrite> block alone (the trajectory ablation)."
        },
    )
    source: str = field(
        default="offline", metadata={"help": "offline (measured evidence) or teacher."}
    )
    teacher: str | None = field(
        default=None,
        metadata={"help": "The teacher chat model as module:attribute (an instance or factory)."},
    )
    threshold: float = field(
        default=0.5,
        metadata={"help": "Teacher records are kept when their rewrite scores >= this."},
    )
    k: list[int] = field(
        default_factory=lambda: [4],
        metadata={"help": "Items recalled per record; one record per question and k."},
    )
    batch_size: int = field(default=8, metadata={"help": "Questions per draft/teacher batch."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda... for the drafts."})


def build_records(
    split: Split,
    drafts: dict[str, str],
    recall: Recall,
    ks: Iterable[int],
    source: str = "offline",
    teacher: Any = None,
    threshold: float = 0.5,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Build the SFT records of a split.

    Args:
        split: The questions and golds.
        drafts: Question id to the base model's draft.
        recall: The users' profile store.
        ks: Items recalled per record (one record per question and k).
        source: ``offline`` or ``teacher``.
        teacher: A LangChain chat model (``teacher`` source).
        threshold: The teacher rewrite's minimum task score.
        progress: Show a progress bar.

    Returns:
        The records and a counter of rejects by reason.
    """
    if source not in ("offline", "teacher"):
        raise ValueError(f"source must be 'offline' or 'teacher', got {source!r}")
    if source == "teacher" and teacher is None:
        raise ValueError("the teacher source needs a teacher chat model (--teacher module:attr)")
    spec = split.spec
    rejects: Counter[str] = Counter()
    jobs: list[tuple[Question, int]] = [(q, k) for k in ks for q in split.questions]
    records: list[dict[str, Any]] = []
    answers: list[str] = []
    if source == "teacher":
        prompts = [
            teacher_messages(q.input, drafts[q.id], recall.rendered(q, k), split.golds[q.id])
            for q, k in jobs
        ]
        answers = [str(m.text) for m in teacher.batch(prompts)]
    for n, (question, k) in enumerate(tqdm(jobs, desc="records", disable=not progress)):
        gold, draft = split.golds[question.id], drafts[question.id]
        if not gold.strip():
            rejects["empty_gold"] += 1
            continue
        if source == "offline":
            trajectory = offline_trajectory(spec, recall.items(question, k), draft, gold)
        else:
            trajectory, failure = try_parse(answers[n])
            if trajectory is None:
                rejects[f"unparsable:{failure.value}"] += 1
                continue
            if task_score(spec, spec.parse_answer(trajectory.rewrite), gold) < threshold:
                rejects["below_threshold"] += 1
                continue
        records.append(
            {
                "id": question.id,
                "user": question.user,
                "k": k,
                "source": source,
                "gold": gold,
                "prompt": reflection_prompt(draft, recall.rendered(question, k), question.input),
                "completion": [{"role": "assistant", "content": render(trajectory)}],
            }
        )
    return records, rejects


def rewrite_only(record: dict[str, Any]) -> dict[str, Any]:
    """Return the rewrite-only control of an SFT record: the same prompt, the rewrite alone.

    The ablation of the trajectory (issue 14): an adapter trained on these records sees the same
    prompts and golds as the trajectory adapter and learns to answer without the preferences and
    gaps; the product prompt and :func:`~langchain_rpo.trajectory.parse` serve both unchanged.

    >>> rec = {"k": 1, "completion": [{"role": "assistant",
    ...        "content": "<preferences>p</preferences>\\n<gaps>g</gaps>\\n<rewrite>T</rewrite>"}]}
    >>> rewrite_only(rec)["completion"][0]["content"]
    '<rewrite>T</rewrite>'
    """
    trajectory = parse(record["completion"][0]["content"])
    content = render(trajectory, fields=("rewrite",))
    return {**record, "completion": [{"role": "assistant", "content": content}]}


def run(config: BuildConfig, *, base_model: Any = None, embeddings: Any = None,
        teacher: Any = None, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Build and write the records of ``config``; return the summary it also writes."""
    started = time.perf_counter()
    split = load_split(config.questions, config.outputs, config.task, config.limit)
    drafts = zero_drafts(
        config.questions, config.outputs, config.drafts_dir, task=config.task, limit=config.limit,
        base_model=base_model, base_model_path=config.base_model, batch_size=config.batch_size,
        device=config.device, progress=progress,
    )  # fmt: skip
    drafted = time.perf_counter()
    recall = recall_for(config, split, embeddings)
    if config.source == "teacher" and teacher is None:
        teacher = _load_object(config.teacher) if config.teacher else None
    records, rejects = build_records(
        split, drafts, recall, config.k, config.source, teacher, config.threshold, progress
    )
    out = Path(config.out)
    write_records(records, out)
    if config.rewrite_only_out:
        write_records([rewrite_only(record) for record in records], Path(config.rewrite_only_out))
    summary = {
        "task": split.spec.name,
        "questions": len(split.questions),
        "candidates": len(split.questions) * len(config.k),
        "records": len(records),
        "rejects": dict(rejects),
        "by_k": dict(Counter(r["k"] for r in records)),
        "seconds_drafts": round(drafted - started, 1),
        "seconds_total": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the arguments (or a YAML ``--config``), build the records, print the counts."""
    from trl import TrlParser

    parser = TrlParser((BuildConfig,))
    (config,) = parser.parse_args_and_config(args=argv)
    summary = run(config)
    print(
        f"{summary['records']} records from {summary['candidates']} candidates "
        f"({summary['questions']} questions x k={config.k}); rejects: {summary['rejects'] or 0}; "
        f"wrote {config.out} in {summary['seconds_total']} s",
        file=sys.stderr,
    )
    return summary


if __name__ == "__main__":
    main()
