"""Shared data plumbing of the training scripts: splits, cached drafts, recall and prompts.

Training sees exactly what inference sees: the drafts are the harness's ``zero`` answers (cached
through :func:`langchain_rpo.lamp.harness.run_eval`), the recall is the user's profile in a
real :class:`~langchain_rpo.history.UserHistoryStore` searched with the task's query text (as
:class:`~langchain_rpo.lamp.methods.RPO` does), each item is rendered with the task's LaMP item
template (``spec.render_item``, the harness's ``format_item``) and the prompt is
:func:`langchain_rpo.prompts.build_reflection_messages` with the rewriter's own limits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_rpo.adapter_settings import (
    DEFAULT_K,
    DEFAULT_MAX_TOKENS,
    LAMP_ITEM_CHARS,
    AdapterSettings,
)
from langchain_rpo.atomic import atomic_write
from langchain_rpo.lamp.data import Question, iter_questions, read_outputs
from langchain_rpo.lamp.tasks import TaskSpec, get_task
from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.reflection import to_chat_dicts

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "PromptArguments",
    "SettingsArguments",
    "DataArguments",
    "Split",
    "load_split",
    "zero_drafts",
    "Recall",
    "reflection_prompt",
    "rewriter_limits",
    "load_embeddings",
    "recall_cache_path",
    "recall_for",
]


@dataclass(kw_only=True)
class PromptArguments:
    """How the data's reflection prompts cut the recalled items.

    Keyword-only, so each script's own required fields may follow these defaulted ones.
    """

    max_item_chars: int = field(
        default=LAMP_ITEM_CHARS,
        metadata={
            "help": "Cut an item's long field (as rpo eval --max-item-chars; 0: no cut). "
            "Recorded in the adapter's rpo_settings.json: pass the value the records were "
            "built with."
        },
    )


@dataclass(kw_only=True)
class SettingsArguments(PromptArguments):
    """The prompt settings, and what a saved adapter records for inference.

    Every script that saves an adapter writes :meth:`adapter_settings` into its folder
    (``rpo_settings.json``, :mod:`langchain_rpo.adapter_settings`), so the adapter's users get
    these settings by default.
    """

    eval_k: int = field(
        default=DEFAULT_K,
        metadata={"help": "History items the adapter recalls at inference (recorded as k)."},
    )
    eval_max_new_tokens: int = field(
        default=DEFAULT_MAX_TOKENS,
        metadata={
            "help": "The reflection model's token budget at inference (recorded as max_new_tokens)."
        },
    )

    def adapter_settings(self) -> AdapterSettings:
        """The settings a saved adapter records: these, the prompt's query cut, recall by the
        request (:class:`Recall` searches with the task's query text)."""
        _, max_query_chars = rewriter_limits()
        return AdapterSettings(
            k=self.eval_k,
            max_item_chars=self.max_item_chars or None,
            max_query_chars=max_query_chars,
            max_new_tokens=self.eval_max_new_tokens,
            recall="request",
        )


@dataclass(kw_only=True)
class DataArguments(PromptArguments):
    """Data settings shared by ``build_trajectories`` and ``grpo``: where the drafts are cached,
    which task, how much of the split, and the models that draft and recall (the prompt's
    settings: :class:`PromptArguments`).
    """

    task: str | None = field(default=None, metadata={"help": "Task (default: the outputs file's)."})
    drafts_dir: str = field(
        default="runs/train_zero",
        metadata={"help": "Harness output folder caching the base model's zero-shot drafts."},
    )
    limit: int | None = field(default=None, metadata={"help": "First N questions only."})
    base_model: str | None = field(
        default=None, metadata={"help": "Base model of the drafts (default: packaged SmolLM2)."}
    )
    embedding_model: str | None = field(
        default=None, metadata={"help": "Store embeddings (default: all-MiniLM-L6-v2, offline)."}
    )


@dataclass
class Split:
    """A LaMP split in memory.

    Attributes:
        spec: The task.
        questions: The questions, in file order.
        golds: Question id to gold output.
    """

    spec: TaskSpec
    questions: list[Question]
    golds: dict[str, str]


def load_split(
    questions: str | Path, outputs: str | Path, task: str | None = None, limit: int | None = None
) -> Split:
    """Read a split's questions and golds (validated by :mod:`langchain_rpo.lamp.data`)."""
    golds = read_outputs(outputs, task)
    spec = get_task(task if task is not None else golds.task)
    qs = list(iter_questions(questions, spec, limit=limit))
    return Split(spec, qs, {q.id: golds.outputs[q.id] for q in qs})


def zero_drafts(
    questions: str | Path,
    outputs: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    limit: int | None = None,
    base_model: BaseChatModel | None = None,
    base_model_path: str | None = None,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Return the base model's drafts, generated and cached through the harness's ``zero`` method.

    ``rpo eval --methods zero`` on the same ``out`` folder writes (and reuses) the same cache, so
    the drafts of an earlier eval run are not generated again.

    Args:
        questions: The ``{split}_questions.json`` file.
        outputs: The ``{split}_outputs.json`` file.
        out: The harness output folder that caches the drafts.
        task: The task (None: the outputs file's task).
        limit: The first N questions only.
        base_model: A chat model in memory (tests); None loads ``base_model_path``.
        base_model_path: The base model (None: the packaged SmolLM2-135M-Instruct).
        batch_size: Questions per generate call.
        device: ``cpu``, ``cuda``...
        progress: Show a progress bar.

    Returns:
        Question id to the raw draft.
    """
    from langchain_rpo.lamp.harness import EvalConfig, JsonlCache, ModelSet, run_eval
    from langchain_rpo.lamp.methods import ZeroShot

    config = EvalConfig(
        questions=Path(questions), outputs=Path(outputs), out=Path(out), task=task,
        methods=("zero",), limit=limit, batch_size=batch_size, base_model=base_model_path,
        device=device,
    )  # fmt: skip
    result = run_eval(config, base_model=base_model, progress=progress)
    models = ModelSet(result.task, config, base_model, None, None, None)
    sig = ZeroShot(result.task, None, models.base_settings()).signature()  # type: ignore[arg-type]
    records = JsonlCache(Path(out) / "cache" / "zero.jsonl").load(sig)
    return {qid: record["raw"] for qid, record in records.items()}


def rewriter_limits() -> tuple[int | None, int | None]:
    """Return the harness's RPO prompt limits: ``(max_item_chars, max_query_chars)``.

    The harness renders each item with ``spec.render_item`` (which cuts the long field) and
    builds the rewriter with ``max_item_chars=None``; the query keeps the rewriter's default cut.
    """
    from langchain_rpo.rewriter import RPORewriter

    return None, RPORewriter.model_fields["max_query_chars"].default


def reflection_prompt(draft: str, items: Sequence[str], query: str | None) -> list[dict[str, str]]:
    """Return the reflection prompt as chat dicts: the one inference builds, with its limits."""
    max_item_chars, max_query_chars = rewriter_limits()
    messages = build_reflection_messages(
        draft, items, query, max_item_chars=max_item_chars, max_query_chars=max_query_chars
    )
    return to_chat_dicts(messages)


class Recall:
    """The users' profiles in one :class:`~langchain_rpo.history.UserHistoryStore`, searched as
    the harness's ``rpo`` method searches them.

    The store is built on first use; with ``cache`` the rankings (profile indexes, best first,
    at least ``min_k`` deep) are kept in a JSON file, so a later script skips the embedding.

    Args:
        spec: The task.
        questions: The questions whose profiles to index (the question id names the user).
        embeddings: The store's embeddings (None: the default all-MiniLM-L6-v2, offline).
        max_item_chars: Cut each item's long field in the prompt (the harness's
            ``--max-item-chars``; :data:`~langchain_rpo.adapter_settings.LAMP_ITEM_CHARS` by
            default).
        cache: A JSON file of rankings to read and update (None: no cache).
        min_k: Rank at least this deep per search, so later k up to it hit the cache.
    """

    def __init__(
        self,
        spec: TaskSpec,
        questions: Sequence[Question],
        embeddings: Embeddings | None = None,
        max_item_chars: int | None = LAMP_ITEM_CHARS,
        cache: str | Path | None = None,
        min_k: int = 8,
    ) -> None:
        self.spec = spec
        self.questions = list(questions)
        self.embeddings = embeddings
        self.max_item_chars = max_item_chars
        self.min_k = min_k
        self.cache = Path(cache) if cache is not None else None
        self._store: Any = None
        self._ranked: dict[str, list[int]] = {}
        if self.cache is not None and self.cache.is_file():
            self._ranked = json.loads(self.cache.read_text(encoding="utf-8"))

    @property
    def store(self) -> Any:
        """The profile store (built, and its items embedded, on first use)."""
        if self._store is None:
            from langchain_rpo.lamp.methods import build_profile_store

            self._store = build_profile_store(self.spec, self.questions, self.embeddings)
        return self._store

    def indexes(self, question: Question, k: int) -> list[int]:
        """Return the profile indexes of the ``k`` items recalled for ``question``, best first."""
        if k <= 0 or not question.profile:
            return []
        cached = self._ranked.get(question.id)
        if cached is None or (len(cached) < k and len(cached) < len(question.profile)):
            depth = max(k, self.min_k)
            docs = self.store.search(question.id, self.spec.query_text(question.input), depth)
            cached = [int(doc.metadata["index"]) for doc in docs]
            self._ranked[question.id] = cached
            if self.cache is not None:
                self.cache.parent.mkdir(parents=True, exist_ok=True)
                self.cache.write_text(json.dumps(self._ranked), encoding="utf-8")
        return cached[:k]

    def items(self, question: Question, k: int) -> list[dict[str, Any]]:
        """Return the recalled profile items themselves."""
        return [question.profile[i] for i in self.indexes(question, k)]

    def rendered(self, question: Question, k: int) -> list[str]:
        """Return the recalled items as the reflection prompt shows them."""
        return [
            self.spec.render_item(item, self.max_item_chars) for item in self.items(question, k)
        ]


def recall_cache_path(drafts_dir: str | Path, spec: TaskSpec, embedding_model: str | None) -> Path:
    """Return where a split's rankings are cached: beside the drafts, per task and embeddings."""
    name = (embedding_model or "default").replace("/", "_")
    return Path(drafts_dir) / "cache" / f"recall_{spec.name}_{name}.json"


def recall_for(args: DataArguments, split: Split, embeddings: Embeddings | None = None) -> Recall:
    """The :class:`Recall` a script's data settings ask for, on ``split``.

    With ``embeddings`` given (a test's tiny model), nothing is cached: the rankings would not be
    those of ``args.embedding_model``. Otherwise the rankings are cached beside the drafts.
    """
    return Recall(
        split.spec,
        split.questions,
        embeddings if embeddings is not None else load_embeddings(args.embedding_model),
        args.max_item_chars or None,
        cache=recall_cache_path(args.drafts_dir, split.spec, args.embedding_model)
        if embeddings is None
        else None,
    )


def load_embeddings(name: str | None) -> Embeddings:
    """Return the store's sentence embeddings (None: all-MiniLM-L6-v2, offline), as the harness."""
    from langchain_rpo.embeddings import SentenceTransformerEmbeddings

    return SentenceTransformerEmbeddings(name)


def write_records(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write training records as JSON lines, atomically (the parent folder is created).

    An interrupted build leaves the previous file whole (:func:`langchain_rpo.atomic.atomic_write`).
    """
    with atomic_write(path, "w") as stream:
        for record in records:
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
