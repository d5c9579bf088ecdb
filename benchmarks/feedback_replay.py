"""Benchmark 9: the feedback loop, replayed on real users from a cold start.

Each dev user of the real LaMP-format sets starts with an **empty** history, asks for their items
in time order, and after each answer "edits" it into their real text (the gold), which is
recorded as feedback through the public API,
``RPORewriter.record_feedback(answer, edited=gold, config=...)``, on a real ``UserHistoryStore``:
what is measured is what a user of the library gets. Every answer is scored against the gold
(ROUGE-L, the harness's metric). Three variants answer the same items with the same drafts:

- ``no-loop``: the rewriter at ``k=0``. Feedback *is* recorded, into a history that is never read
  (k=0 recalls nothing): a user with no history at all gets the draft back unchanged
  (``no_history``), so recording keeps this variant "the adapter alone, without history" from the
  second item on, the baseline that isolates what the fed-back history adds.
- ``loop``: the same rewriter at the adapter's ``k``, the history fed by the feedback.
- ``loop+dpo``: ``loop``, plus a preference-training round (``training.build_preferences`` ->
  ``training.dpo``, ``--dpo-steps`` steps continuing from the current adapter) after every
  ``--every`` events pooled over all users and sets; later answers use the new adapter.

**The items** (``--timeline``). ``profile+dev`` (the default): a user's timeline is their profile
items, their earlier works with their real titles (oldest first, as the profiles are), each asked
as the LaMP question for it (:func:`timeline_question`) with an empty profile, then their dev
questions in file order (these carry no date; an author's earlier dev question is an item of their
later one's profile, and is asked once, as the dev question). ``dev``: the dev questions only, one
or two per author on the five sets, so a curve of two points. Each user replays the last
``--last`` items of their timeline (all of them when fewer), from an empty history at the first:
the history comes from the feedback only, never from the profile. ``--min-items`` keeps the users
with that many items on their timeline, ``--limit-users K`` the first K of them in each set (in
the file order of their first dev question). ``--plan`` counts what a run will do, without a
model.

**Order.** Step n answers the n-th item of every user who has one, then records all their
feedback, then step n+1 runs. Within a step the users are in one seeded shuffled
order (sets mixed) and go in chunks of ``--batch-size`` (one ``rewriter.batch`` each, a row
config per user); a DPO round can only start between chunks, so a round trains on answered items
only, never on the item it then scores (asserted as it runs).

At n=1 every variant returns the draft (an empty history), so the variants can only differ from
n=2 on; the gains are reported on all answers and on the answers at n >= 2. The ``draft`` column
is the base model's draft itself, scored the same way (what a user gets without RPO).

Drafts come from the harness cache (``training.data.zero_drafts`` on the items to replay,
written to ``OUT/drafts/NAME/timeline_questions.json`` and ``timeline_outputs.json``) under
``OUT/drafts/NAME``; the caches of an earlier ``rpo eval --out DIR`` (``--drafts-dir DIR``, its
``NAME/cache``) are copied there first, so its drafts (the dev questions') are reused and its
report is never overwritten, and a rerun drafts nothing again.

Run from the repository root::

    python -m benchmarks.feedback_replay --set pep,eip=../shared/data/eip --out runs/replay
    python -m benchmarks.feedback_replay --set pep --limit-users 4 --last 3 --dpo-steps 1 \\
        --out runs/replay_smoke                  # minutes
    python -m benchmarks.feedback_replay --set pep --out runs/x --plan   # the counts only

Writes to ``--out``: ``VARIANT/answers.jsonl`` (every answer), ``VARIANT/history.zip`` (the
store after the run), ``loop+dpo/rounds.json`` and ``loop+dpo/rounds/rI/`` (the preference
records and the adapter of each round), ``curve.md``, ``curve.png`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import string
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks._common import print_footer
from langchain_rpo.atomic import atomic_write
from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.lamp.bootstrap import Gain, paired_bootstrap
from langchain_rpo.lamp.data import iter_questions, read_outputs, write_outputs
from langchain_rpo.lamp.metrics import evaluate
from langchain_rpo.lamp.report import figure_class
from langchain_rpo.lamp.sets import BundledSet, parse_sets
from langchain_rpo.lamp.tasks import TaskSpec, get_task
from langchain_rpo.metadata import RPO_METADATA_KEY

__all__ = [
    "TIMELINES",
    "VARIANTS",
    "Item",
    "ReplayConfig",
    "draft_timelines",
    "main",
    "plan",
    "run",
    "timeline_question",
    "user_steps",
    "user_timelines",
]

VARIANTS = ("no-loop", "loop", "loop+dpo")
#: What a user's items are: their profile items (earlier works), then their dev questions; or
#: their dev questions only (one or two per author on the five sets).
TIMELINES = ("profile+dev", "dev")
METRIC = "rouge-L"
DPO_RECIPE = "training/recipes/dpo_smollm2_135m_cpu.yaml"
# The harness caches the zero-shot drafts in these files (training.data.zero_drafts reads them).
DRAFT_CACHES = ("zero.jsonl", "drafts.jsonl")
GAIN_PAIRS = (("no-loop", "loop"), ("no-loop", "loop+dpo"), ("loop", "loop+dpo"))


@dataclass(frozen=True)
class Item:
    """One question a user asks, with its draft and the text the user turns the answer into.

    Attributes:
        set: The set's name.
        user: The user id in the history store: ``SET/AUTHOR`` (authors recur across sets).
        n: Its position among the user's replayed items, in time order (1 = the first, asked
            from an empty history).
        id: The question id (a dev question's own; ``AUTHOR/ITEM`` for a profile item).
        input: The question's input (the request).
        gold: The user's real text.
        draft: The base model's zero-shot draft ("" until :func:`draft_timelines`).
        source: ``"dev"`` (a dev question) or ``"profile"`` (an earlier work from the profile).
    """

    set: str
    user: str
    n: int
    id: str
    input: str
    gold: str
    draft: str
    source: str = "dev"


@dataclass
class ReplayConfig:
    """The settings of one replay (each field is a command-line option of :func:`main`).

    Attributes:
        sets: The sets (``--set``, as ``rpo eval --set``), their dev split.
        out: The output folder.
        variants: The variants to run, from :data:`VARIANTS`.
        adapter: The reflection adapter (None: the bundled one).
        base_model: The reflection model's base (None: the packaged SmolLM2-135M-Instruct);
            also the model DPO trains.
        every: A DPO round after every this many events, pooled over all users.
        dpo_steps: Optimizer steps of each DPO round.
        dpo_recipe: The DPO recipe (None: TRL's defaults and ``dpo_args`` only).
        dpo_args: More ``training.dpo`` arguments, after the recipe's.
        batch_size: Users answered per ``rewriter.batch`` call (DPO rounds fall between calls),
            and questions per draft generation call.
        timeline: A user's items: ``profile+dev`` or ``dev`` (:data:`TIMELINES`).
        last: Replay each user's last N items of their timeline (None: all).
        min_items: Only the users with at least this many items on their timeline.
        limit_users: The first N such users of each set only (None: all).
        drafts_dir: An earlier ``rpo eval --out`` folder whose ``NAME/cache`` drafts are reused.
        device: ``cpu``, ``cuda``... (None: CUDA when available).
        seed: The users' order within a step, and the bootstrap's seed.
        resamples: Bootstrap resamples.
        progress: Show a progress bar.
    """

    sets: list[BundledSet]
    out: Path
    variants: tuple[str, ...] = VARIANTS
    adapter: str | None = None
    base_model: str | None = None
    every: int = 48
    dpo_steps: int = 6
    dpo_recipe: str | None = DPO_RECIPE
    dpo_args: list[str] = field(default_factory=list)
    batch_size: int = 16
    timeline: str = "profile+dev"
    last: int | None = 8
    min_items: int = 2
    limit_users: int | None = None
    drafts_dir: Path | None = Path("runs/five_sets")
    device: str | None = None
    seed: int = 0
    resamples: int = 2000
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"--variants must be among {', '.join(VARIANTS)}, got {unknown}")
        if self.timeline not in TIMELINES:
            raise ValueError(
                f"--timeline must be one of {', '.join(TIMELINES)}, got {self.timeline}"
            )
        for name in (
            "every", "dpo_steps", "batch_size", "last", "min_items", "limit_users", "resamples"
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


# ---------------------------------------------------------------------- the users


def timeline_question(spec: TaskSpec, item: Mapping[str, Any]) -> str:
    """Turn a profile item into the question the LaMP task asks for it.

    The task's input template has one field (the abstract, the article...), filled with the
    item's long field (``truncate_field``, the part of an item that is its request); the item's
    ``output_field`` (its title) is the gold. The package has no helper for this (the harness
    reads inputs already rendered), so it is built here from the spec's own fields; on the five
    sets it gives exactly the dev questions' inputs (every author's earlier dev question is an
    item of their later one's profile).

    Raises:
        ValueError: For a task whose items hold no request apart from their output (LaMP-7: the
            tweet is both), or a template with other than one field.

    >>> timeline_question(get_task("LaMP_5"), {"title": "T", "abstract": "An idea."})
    'Generate a title for the following abstract of a paper: An idea.'
    >>> timeline_question(get_task("LaMP_4"), {"title": "T", "text": "News."})
    'Generate a headline for the following article: News.'
    """
    fields = [name for _, name, _, _ in string.Formatter().parse(spec.input_template) if name]
    if len(fields) != 1 or spec.truncate_field == spec.output_field:
        raise ValueError(
            f"{spec.name}: a profile item holds no request of its own apart from its output "
            f"({spec.input_template!r}), so it cannot be asked as a question; use --timeline dev"
        )
    return spec.input_template.format_map({fields[0]: str(item[spec.truncate_field])})


def user_timelines(
    sets: Sequence[BundledSet],
    *,
    timeline: str = "profile+dev",
    last: int | None = 8,
    min_items: int = 2,
    limit_users: int | None = None,
) -> tuple[dict[str, list[Item]], dict[str, TaskSpec]]:
    """Each dev user's items in time order, cut to the ones to replay (their drafts still empty).

    A user's timeline (``profile+dev``) walks their dev questions in file order and puts before
    each one the items of its profile not seen yet, then the question itself: their earlier works
    with their real titles, then their dev questions. The profiles are in time order (oldest
    first, by their ``date``), each dev question's profile starts with the previous one's and holds
    the author's earlier dev question (which is then asked once, as the dev question); on the five
    sets this walk is in date order for all 231 users. ``dev``: the dev questions only.

    Args:
        sets: The sets (their dev split).
        timeline: ``"profile+dev"`` or ``"dev"``.
        last: Replay each user's last N items (None: all); n=1 is the first replayed item.
        min_items: Only the users with at least this many items on their timeline.
        limit_users: The first N such users of each set, in the order of their first dev
            question in the file (None: all).

    Returns:
        ``SET/AUTHOR`` to the items to replay (ids: the dev question's, or ``AUTHOR/ITEM`` for a
        profile item, which may sit in several authors' profiles), in set and file order; and
        each set's task.

    Raises:
        ValueError: For a set whose questions name no user, or whose task is not text generation.
    """
    if timeline not in TIMELINES:
        raise ValueError(f"--timeline must be one of {', '.join(TIMELINES)}, got {timeline!r}")
    users: dict[str, list[Item]] = {}
    specs: dict[str, TaskSpec] = {}
    for bundled in sets:
        questions, outputs = bundled.files("dev")
        golds = read_outputs(outputs)
        spec = get_task(golds.task)
        if spec.kind != "generation":
            raise ValueError(
                f"set {bundled.name}: {spec.name} is a {spec.kind} task; the replay scores "
                "ROUGE-L, so it takes text-generation sets (LaMP-4, -5, -7 formats) only"
            )
        specs[bundled.name] = spec
        walks: dict[str, list[tuple[str, str, str, str]]] = {}  # (id, input, gold, source)
        seen: dict[str, set[str]] = {}
        for q in iter_questions(questions, spec):
            if q.user is None:
                raise ValueError(
                    f"{questions}: question {q.id} names no user; the replay needs a 'user' "
                    "key on each question (the per-author sets in ../shared/data have one)"
                )
            walk = walks.setdefault(q.user, [])
            known = seen.setdefault(q.user, set())
            for item in q.profile if timeline == "profile+dev" else ():
                key = str(item["id"]) if "id" in item else spec.corpus_text(item)
                if key not in known:
                    known.add(key)
                    name = item["id"] if "id" in item else f"#{len(walk) + 1}"
                    walk.append(
                        (f"{q.user}/{name}", timeline_question(spec, item),
                         spec.item_output(item), "profile")
                    )  # fmt: skip
            if q.id not in known:
                known.add(q.id)
                walk.append((q.id, q.input, golds.outputs[q.id], "dev"))
        chosen = [author for author, walk in walks.items() if len(walk) >= min_items]
        for author in chosen[:limit_users]:
            user = f"{bundled.name}/{author}"
            kept = walks[author][-last:] if last is not None else walks[author]
            users[user] = [
                Item(bundled.name, user, n, qid, text, gold, "", source)
                for n, (qid, text, gold, source) in enumerate(kept, 1)
            ]
    return users, specs


def draft_timelines(
    users: Mapping[str, Sequence[Item]],
    specs: Mapping[str, TaskSpec],
    config: ReplayConfig,
    draft_model: Any | None = None,
) -> dict[str, list[Item]]:
    """Give every item its zero-shot draft, through the harness cache; return the users again.

    Per set, the items to replay (dev questions and profile items alike, each with an empty
    profile) are written to ``OUT/drafts/NAME/timeline_questions.json`` and
    ``timeline_outputs.json``, and ``training.data.zero_drafts`` drafts them with the harness's
    ``zero`` method into ``OUT/drafts/NAME/cache``, keyed by id: a rerun, or an item drafted by an
    earlier ``rpo eval`` whose caches ``--drafts-dir`` names (copied there first: that eval's
    report is never rewritten), is not drafted again.
    """
    from training.data import zero_drafts

    drafted: dict[str, list[Item]] = {user: list(items) for user, items in users.items()}
    for name, spec in specs.items():
        mine = [item for items in users.values() for item in items if item.set == name]
        if not mine:
            continue
        folder = config.out / "drafts" / name
        earlier = config.drafts_dir / name / "cache" if config.drafts_dir else None
        for cache in DRAFT_CACHES:
            source, target = (earlier / cache if earlier else None), folder / "cache" / cache
            if source is not None and source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        questions = folder / "timeline_questions.json"
        rows = [
            {"id": i.id, "user": i.user.split("/", 1)[1], "input": i.input, "profile": []}
            for i in mine
        ]
        with atomic_write(questions, "w", encoding="utf-8") as stream:
            json.dump(rows, stream, ensure_ascii=False, indent=1)
        outputs = write_outputs(
            folder / "timeline_outputs.json", spec, {i.id: i.gold for i in mine}
        )
        drafts = zero_drafts(
            questions, outputs, folder, task=spec.name, base_model=draft_model,
            batch_size=config.batch_size, device=config.device, progress=config.progress,
        )  # fmt: skip
        for user, items in drafted.items():
            drafted[user] = [replace(i, draft=drafts[i.id]) if i.set == name else i for i in items]
    return drafted


def user_steps(users: Mapping[str, Sequence[Item]], *, seed: int = 0) -> list[list[Item]]:
    """Group the users' items by step: ``steps[n - 1]`` holds every user's n-th item.

    The users go in one seeded shuffled order (sets mixed, so DPO rounds see every set early),
    the same at every step.
    """
    order = list(users)
    random.Random(seed).shuffle(order)
    depth = max((len(items) for items in users.values()), default=0)
    return [[users[u][n] for u in order if len(users[u]) > n] for n in range(depth)]


def _chunks(steps: Sequence[Sequence[Item]], size: int) -> Iterator[tuple[int, list[Item], int]]:
    """Yield ``(n, chunk, answers left after it)``: one ``rewriter.batch`` call each."""
    left = sum(len(items) for items in steps)
    for n, items in enumerate(steps, 1):
        for start in range(0, len(items), size):
            chunk = list(items[start : start + size])
            left -= len(chunk)
            yield n, chunk, left


def plan(steps: Sequence[Sequence[Item]], config: ReplayConfig) -> dict[str, Any]:
    """What a run will do, counted without a model: answers, reflections, DPO rounds.

    ``reflections``: the answers that run the reflection model (every answer from the user's
    second item on, in each variant; at n=1 the history is empty and the draft comes back).
    ``dpo_rounds``: the rounds ``loop+dpo`` starts (the first ones may find no record yet and
    train nothing).
    """
    answers = sum(len(items) for items in steps)
    rounds = since = 0
    for _, chunk, left in _chunks(steps, config.batch_size):
        since += len(chunk)
        if left and since >= config.every:
            rounds, since = rounds + 1, 0
    return {
        "users": len(steps[0]) if steps else 0,
        "answers": answers,
        "profile_items": sum(i.source == "profile" for s in steps for i in s),
        "reflections": (answers - (len(steps[0]) if steps else 0)) * len(config.variants),
        "dpo_rounds": rounds if "loop+dpo" in config.variants else 0,
    }


# ---------------------------------------------------------------------- one variant


def _score(spec: TaskSpec, item: Item, text: str) -> float:
    return evaluate(spec, {item.id: spec.parse_answer(text)}, {item.id: item.gold})[METRIC]


@dataclass
class _Run:
    """One variant in flight: its store, its rewriter, its events and what it answered."""

    name: str
    store: Any
    make_rewriter: Callable[[Any], Any]
    reflection: Any
    rewriter: Any = None
    events: list[tuple[Item, FeedbackEvent]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    trained_on: set[tuple[str, str]] = field(default_factory=set)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    since_round: int = 0

    def __post_init__(self) -> None:
        self.rewriter = self.make_rewriter(self.reflection)


def _answer_chunk(run: _Run, chunk: Sequence[Item], specs: Mapping[str, TaskSpec]) -> None:
    """Answer one chunk of users (one batch), score it, then record each user's edit."""
    from langchain_core.messages import AIMessage

    for item in chunk:  # a round never trains on what it then scores
        assert (item.set, item.id) not in run.trained_on, f"{item.id} was trained on"
    configs = [{"configurable": {"user_id": item.user}} for item in chunk]
    answers = run.rewriter.batch(
        [
            {
                "query": item.input,
                "recall_query": specs[item.set].query_text(item.input),
                "draft": AIMessage(content=item.draft),
            }
            for item in chunk
        ],
        config=configs,
    )
    for item, answer, config in zip(chunk, answers, configs, strict=True):
        meta = answer.response_metadata[RPO_METADATA_KEY]
        text = answer.content if isinstance(answer.content, str) else str(answer.content)
        spec = specs[item.set]
        run.answers.append(
            {
                "set": item.set, "user": item.user, "n": item.n, "id": item.id,
                "source": item.source,
                "draft": item.draft, "answer": text, "gold": item.gold,
                METRIC: _score(spec, item, text), "draft_" + METRIC: _score(spec, item, item.draft),
                "fallback_reason": meta.get("fallback_reason"),
                "recalled": len(meta.get("recalled_ids") or []),
            }
        )  # fmt: skip
        event = run.rewriter.record_feedback(answer, edited=item.gold, config=config)
        run.events.append((item, event))
    run.since_round += len(chunk)


def _dpo_round(
    run: _Run, config: ReplayConfig, specs: Mapping[str, TaskSpec], step: int
) -> str | None:
    """Train on the preference records of every event so far; return the new adapter, if any."""
    from training import dpo
    from training.build_preferences import preference_records

    number = len(run.rounds) + 1
    folder = config.out / run.name / "rounds" / f"r{number}"
    records: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    item_of = {event.event_id: item for item, event in run.events}
    for name, spec in specs.items():
        mine = [event for item, event in run.events if item.set == name]
        found, why = preference_records(mine, "dpo", spec)
        records += found
        skipped.update(why)
    answered = {(a["set"], a["id"]) for a in run.answers}
    used = {(item_of[r["event_id"]].set, item_of[r["event_id"]].id) for r in records}
    assert used <= answered, "a DPO round may only train on items already answered"
    entry: dict[str, Any] = {
        "round": number, "after_step": step, "events": len(run.events), "records": len(records),
        "answers_before": len(run.answers), "skipped": dict(skipped),
        "trained_on": sorted(f"{s}/{i}" for s, i in used),
    }  # fmt: skip
    run.rounds.append(entry)
    run.since_round = 0
    if not records:
        entry["trained"] = False  # no answer reached the reflection model yet (cold start)
        return None
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "preferences.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    current = run.reflection.adapter_name
    argv = ["--config", config.dpo_recipe] if config.dpo_recipe else []
    argv += [
        "--dataset", str(data), "--init_adapter", str(current),
        "--output_dir", str(folder / "adapter"), "--max_steps", str(config.dpo_steps),
    ]  # fmt: skip
    if config.base_model:
        argv += ["--model_name_or_path", config.base_model]
    started = time.perf_counter()
    metrics = dpo.main([*argv, *config.dpo_args])
    run.trained_on |= used
    entry.update(
        trained=True, init_adapter=str(current), adapter=str(folder / "adapter"),
        steps=metrics["global_step"], loss=metrics.get("train_loss"),
        seconds=round(time.perf_counter() - started, 1),
    )  # fmt: skip
    return str(folder / "adapter")


def _load_reflection(config: ReplayConfig, adapter: str | None) -> Any:
    from langchain_rpo.reflection import ReflectionModel

    return ReflectionModel.from_pretrained(
        config.base_model, adapter=adapter if adapter else None, device=config.device
    )


def _run_variant(
    name: str,
    steps: Sequence[Sequence[Item]],
    specs: Mapping[str, TaskSpec],
    reflection: Any,
    config: ReplayConfig,
    embeddings: Any | None,
    bar: Any,
) -> _Run:
    """Replay every step for one variant; return what it answered and trained."""
    from langchain_rpo import RPORewriter, UserHistoryStore

    def make_rewriter(model: Any) -> Any:
        if name != "no-loop":
            return RPORewriter(history=store, reflection=model)  # the adapter's k and cuts
        with warnings.catch_warnings():  # k=0 on purpose: no "differs from the adapter" warning
            warnings.filterwarnings("ignore", message=r"RPORewriter: k=0 ", category=UserWarning)
            return RPORewriter(history=store, reflection=model, k=0)

    store = UserHistoryStore(embeddings)  # every user starts empty: a cold start
    run = _Run(name, store, make_rewriter, reflection)
    for n, chunk, left in _chunks(steps, config.batch_size):
        _answer_chunk(run, chunk, specs)
        bar.update(len(chunk))
        # No round after the last answer: its adapter would answer nothing.
        if name == "loop+dpo" and left and run.since_round >= config.every:
            adapter = _dpo_round(run, config, specs, n)
            if adapter is not None:
                run.reflection = _load_reflection(config, adapter)
                run.rewriter = make_rewriter(run.reflection)
    return run


# ---------------------------------------------------------------------- the report


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def learning_curve(
    answers: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """Per n: how many users answered an n-th item, and each variant's mean score there.

    The first variant's answers also give the ``draft`` score (the drafts are shared).
    """
    first = next(iter(answers.values()))
    rows = []
    for n in sorted({a["n"] for a in first}):
        at_n = {v: [a for a in rows_ if a["n"] == n] for v, rows_ in answers.items()}
        row: dict[str, Any] = {
            "n": n,
            "users": len(at_n[next(iter(at_n))]),
            "draft": _mean([a["draft_" + METRIC] for a in at_n[next(iter(at_n))]]),
        }
        row.update({v: _mean([a[METRIC] for a in found]) for v, found in at_n.items()})
        rows.append(row)
    return rows


def _gains(
    answers: Mapping[str, Sequence[Mapping[str, Any]]], resamples: int, seed: int
) -> dict[str, dict[str, Gain]]:
    """The gain of each variant pair, on all answers and on those at n >= 2, stratified by set."""
    found: dict[str, dict[str, Gain]] = {}
    for a, b in GAIN_PAIRS:
        if a not in answers or b not in answers:
            continue
        by_key = {(r["set"], r["id"]): r for r in answers[b]}
        found[f"{a} -> {b}"] = {}
        for label, keep in (("all", lambda r: True), ("n>=2", lambda r: r["n"] >= 2)):
            rows = [r for r in answers[a] if keep(r)]
            if rows:
                found[f"{a} -> {b}"][label] = paired_bootstrap(
                    METRIC,
                    [r[METRIC] for r in rows],
                    [by_key[(r["set"], r["id"])][METRIC] for r in rows],
                    strata=[r["set"] for r in rows],
                    resamples=resamples,
                    seed=seed,
                )
    return found


def _markdown(
    curve: Sequence[Mapping[str, Any]],
    variants: Sequence[str],
    gains: Mapping[str, Mapping[str, Gain]],
    sets: Mapping[str, Mapping[str, int]],
    rounds: Sequence[Mapping[str, Any]],
    resamples: int,
    order: str,
) -> str:
    """``curve.md``: the learning curve, the gains, and the DPO rounds."""
    total = sum(s["items"] for s in sets.values())
    profile = sum(s["profile_items"] for s in sets.values())
    lines = [
        f"Feedback replay, cold start: {sum(s['users'] for s in sets.values())} users, {total} "
        f"answers per variant ({profile} of them profile items); "
        + ", ".join(f"{name} ({s['users']} users, {s['items']} items)" for name, s in sets.items()),
        "",
        f"Order: {order}.",
        "",
        f"### {METRIC} of the n-th answer, averaged over the users who have an n-th item",
        "",
        "| n | users at n | draft | " + " | ".join(variants) + " |",
        "|" + "---|" * (len(variants) + 3),
    ]
    for row in curve:
        cells = [str(row["n"]), str(row["users"]), f"{row['draft']:.4f}"]
        lines.append("| " + " | ".join(cells + [f"{row[v]:.4f}" for v in variants]) + " |")
    lines += [
        "",
        (
            "draft: the base model's draft itself. At n=1 every history is empty, so every "
            "variant returns the draft."
        ),
        "",
        (
            f"### gain on {METRIC} (B over A; [95% interval], paired bootstrap, {resamples} "
            "resamples within each set; B worse than A on: answers)"
        ),
        "",
        "| A -> B | all answers | answers at n >= 2 |",
        "|---|---|---|",
    ]
    for key, by_label in gains.items():
        cells = [
            f"{g.gain:+.1%} [{g.low:+.1%}, {g.high:+.1%}] (worse: {g.better[1]} of {sum(g.better)})"
            if (g := by_label.get(label)) is not None
            else "-"
            for label in ("all", "n>=2")
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if rounds:
        lines += [
            "",
            "### DPO rounds (loop+dpo)",
            "",
            "| round | after step | events so far | records | trained | steps | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rounds:
            lines.append(
                f"| {r['round']} | {r['after_step']} | {r['events']} | {r['records']} | "
                f"{'yes' if r['trained'] else 'no'} | {r.get('steps', '-')} | "
                f"{r.get('seconds', '-')} |"
            )
    return "\n".join(lines) + "\n"


def curve_chart(
    curve: Sequence[Mapping[str, Any]], variants: Sequence[str], path: Path, title: str
) -> Path:
    """Draw the learning curve per variant, with the users at each n as grey bars behind."""
    Figure = figure_class()  # a class, named as matplotlib names it
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    xs = [row["n"] for row in curve]
    users = ax.twinx()  # the users behind, so a point on few users reads as such
    bars = users.bar(xs, [row["users"] for row in curve], 0.5, color="0.85", label="users at n")
    users.bar_label(bars, fontsize=7, padding=2)
    users.set_ylabel("users at n")
    users.set_ylim(0, max(row["users"] for row in curve) * 2.2)
    ax.set_zorder(users.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(xs, [row["draft"] for row in curve], "k--", marker=".", label="draft", linewidth=1)
    for variant in variants:
        ax.plot(xs, [row[variant] for row in curve], marker="o", label=variant)
    ax.set_xticks(xs)
    ax.set_xlabel("n (the user's n-th item)")
    ax.set_ylabel(f"mean {METRIC} (higher is better)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------- the run


def _timelines(config: ReplayConfig) -> tuple[dict[str, list[Item]], dict[str, TaskSpec]]:
    users, specs = user_timelines(
        config.sets, timeline=config.timeline, last=config.last, min_items=config.min_items,
        limit_users=config.limit_users,
    )  # fmt: skip
    if not users:
        raise ValueError(
            f"no user has {config.min_items} items or more on their {config.timeline} timeline; "
            "check --set, --min-items and --limit-users"
        )
    return users, specs


def _order(config: ReplayConfig) -> str:
    cut = f"their last {config.last} items" if config.last else "all their items"
    what = (
        "profile items (earlier works, oldest first) then dev questions (file order)"
        if config.timeline == "profile+dev"
        else "dev questions in file order"
    )
    return f"each user's {what}, {cut}, n=1 from an empty history"


def run(
    config: ReplayConfig, *, embeddings: Any | None = None, draft_model: Any | None = None
) -> dict[str, Any]:
    """Replay the sets for each variant; write the answers, the curve, the chart, the summary.

    Args:
        config: The settings.
        embeddings: The history store's embeddings (None: the packaged all-MiniLM-L6-v2).
        draft_model: The base chat model for drafts not cached yet (None: load the default).

    Returns:
        The summary (also ``summary.json``).
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    users, specs = _timelines(config)
    users = draft_timelines(users, specs, config, draft_model)
    steps = user_steps(users, seed=config.seed)
    reflection = _load_reflection(config, config.adapter)
    if "loop+dpo" in config.variants and not reflection.adapter_name:
        raise ValueError(
            "loop+dpo continues the reflection adapter, and none was loaded; pass --adapter PATH "
            "(or leave --base-model out for the bundled one), or drop loop+dpo from --variants"
        )
    total = sum(len(items) for items in steps)
    runs: dict[str, _Run] = {}
    with tqdm(
        total=total * len(config.variants), desc="replay", unit="answer",
        disable=not config.progress,
    ) as bar:  # fmt: skip
        for name in config.variants:
            bar.set_postfix_str(name)
            runs[name] = _run_variant(name, steps, specs, reflection, config, embeddings, bar)
            _write_jsonl(config.out / name / "answers.jsonl", runs[name].answers)
            runs[name].store.save(config.out / name / "history.zip")
    answers = {name: r.answers for name, r in runs.items()}
    curve = learning_curve(answers)
    gains = _gains(answers, config.resamples, config.seed)
    rounds = runs["loop+dpo"].rounds if "loop+dpo" in runs else []
    if rounds:
        (config.out / "loop+dpo" / "rounds.json").write_text(json.dumps(rounds, indent=2) + "\n")
    items = [item for step in steps for item in step]
    sets = {
        s.name: {
            "task": specs[s.name].name,
            "users": len({i.user for i in items if i.set == s.name}),
            "items": sum(i.set == s.name for i in items),
            "profile_items": sum(i.set == s.name and i.source == "profile" for i in items),
        }
        for s in config.sets
    }
    (config.out / "curve.md").write_text(
        _markdown(curve, config.variants, gains, sets, rounds, config.resamples, _order(config)),
        encoding="utf-8",
    )
    curve_chart(
        curve, config.variants, config.out / "curve.png",
        f"Feedback replay from a cold start: {len({i.user for i in items})} users, "
        f"{len(sets)} set{'s' if len(sets) > 1 else ''}",
    )  # fmt: skip
    summary = {
        "sets": sets,
        "order": _order(config),
        "plan": plan(steps, config),
        "metric": METRIC,
        "curve": curve,
        "means": {name: _mean([a[METRIC] for a in found]) for name, found in answers.items()},
        "personalized": {
            name: sum(a["fallback_reason"] is None for a in found) / len(found)
            for name, found in answers.items()
        },
        "gains": {k: {lab: g.to_dict() for lab, g in v.items()} for k, v in gains.items()},
        "dpo_rounds": rounds,
        "config": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "sets": {s.name: str(s.folder()) for s in config.sets},
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    (config.out / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return summary


def _parser() -> argparse.ArgumentParser:
    d = ReplayConfig(sets=[], out=Path())
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.feedback_replay",
        description="Replay real users' feedback from a cold start: no loop, loop, loop + DPO.",
    )
    p.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="NAME|PATH|NAME=PATH",
        help="LaMP-format sets (their dev split), comma-separated or repeated",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants")
    p.add_argument("--adapter", help="reflection adapter (default: the bundled one)")
    p.add_argument("--base-model", help="reflection base model (default: packaged SmolLM2)")
    p.add_argument(
        "--every",
        type=int,
        default=d.every,
        metavar="M",
        help=f"a DPO round after every M events pooled over users ({d.every})",
    )
    p.add_argument(
        "--dpo-steps",
        type=int,
        default=d.dpo_steps,
        help=f"optimizer steps per DPO round ({d.dpo_steps})",
    )
    p.add_argument("--dpo-recipe", default=d.dpo_recipe, help=f"DPO recipe ({d.dpo_recipe})")
    p.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"users per rewriter.batch call ({d.batch_size})",
    )
    p.add_argument(
        "--timeline",
        choices=TIMELINES,
        default=d.timeline,
        help=f"a user's items: profile items then dev questions, or dev only ({d.timeline})",
    )
    p.add_argument(
        "--last",
        type=int,
        default=d.last,
        metavar="N",
        help=f"replay each user's last N items (fewer: all they have) ({d.last})",
    )
    p.add_argument(
        "--min-items",
        type=int,
        default=d.min_items,
        metavar="M",
        help=f"only users with at least M items on their timeline ({d.min_items})",
    )
    p.add_argument(
        "--limit-users",
        type=int,
        metavar="K",
        help="the first K such users of each set (file order of their first dev question)",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the users, answers, profile items, reflections and DPO rounds; run nothing",
    )
    p.add_argument(
        "--drafts-dir",
        type=Path,
        default=d.drafts_dir,
        help=f"an earlier `rpo eval --out` folder whose drafts are reused ({d.drafts_dir})",
    )
    p.add_argument("--device", help="cpu, cuda... (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--resamples", type=int, default=d.resamples, help="bootstrap resamples")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line, replay, print the curve."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = ReplayConfig(
            sets=parse_sets(args.set), out=args.out,
            variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
            adapter=args.adapter, base_model=args.base_model, every=args.every,
            dpo_steps=args.dpo_steps, dpo_recipe=args.dpo_recipe, batch_size=args.batch_size,
            timeline=args.timeline, last=args.last, min_items=args.min_items,
            limit_users=args.limit_users, drafts_dir=args.drafts_dir,
            device=args.device, seed=args.seed, resamples=args.resamples,
            progress=not args.no_progress,
        )  # fmt: skip
        users, _ = _timelines(config)  # a set or a cut that leaves no user: a usage error
    except ValueError as exc:
        parser.error(str(exc))
    if args.plan:
        steps = user_steps(users, seed=config.seed)
        found = plan(steps, config)
        at_n = ", ".join(f"n={n}: {len(step)}" for n, step in enumerate(steps, 1))
        print(json.dumps(found), f"\nusers at n: {at_n}")
        return found
    summary = run(config)
    print((config.out / "curve.md").read_text(encoding="utf-8"))
    print_footer()
    return summary


if __name__ == "__main__":
    main()
