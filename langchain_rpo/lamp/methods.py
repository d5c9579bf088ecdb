"""The compared methods: one base ("black-box") chat model, five ways to answer a LaMP question.

- ``zero``: the base model alone, on the question's input (the non-personalized draft).
- ``rag``: context injection: the top-k profile items, in LaMP's per-task item templates, in the
  base model's prompt (``k=0`` is the zero-shot prompt).
- ``rpo``: the zero-shot draft, personalized after the fact by :class:`~langchain_rpo.rewriter.
  RPORewriter` with the reflection model (its bundled LoRA adapter when the package has one).
- ``rpo-base``: the same, the reflection model without an adapter.
- ``rpo-k0``: ``rpo`` with no history (k=0): the adapter alone, so that ``rpo`` against it
  measures what the user's history adds.
- ``nearest``: no model: the output (title, label, rating...) of the most similar profile item.

Every model answer is mapped to the task's output by :meth:`TaskSpec.parse_answer`. The base model
is any LangChain chat model; models are called through ``batch`` (one padded generate for the
local :class:`~langchain_rpo.reflection.ReflectionModel`). ``zero`` and ``rpo`` share their drafts
through :class:`Drafts`, so a draft is generated once.

A LaMP profile belongs to its question (a user-based split gives each question its own user), so
the question id names the "user" in the history store.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from langchain_rpo.adapter_settings import LAMP_ITEM_CHARS
from langchain_rpo.lamp.data import Question
from langchain_rpo.lamp.extras import optional_import
from langchain_rpo.lamp.tasks import TaskSpec

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings

    from langchain_rpo.history_backend import HistoryBackend

__all__ = [
    "DEFAULT_METHODS",
    "METHOD_NAMES",
    "RetrieverName",
    "Prediction",
    "Retriever",
    "BM25Retriever",
    "DenseRetriever",
    "make_retriever",
    "build_profile_store",
    "model_signature",
    "generate",
    "Drafts",
    "Method",
    "ZeroShot",
    "ContextInjection",
    "RPO",
    "Nearest",
]

#: The method names, in the order tables and charts show them.
METHOD_NAMES: tuple[str, ...] = ("zero", "rag", "rpo", "rpo-k0", "rpo-base", "nearest")
#: The methods ``rpo eval`` runs by default (``rpo-k0``, an ablation, when asked for).
DEFAULT_METHODS: tuple[str, ...] = ("zero", "rag", "rpo", "rpo-base", "nearest")

RetrieverName = Literal["bm25", "dense"]


@dataclass
class Prediction:
    """One method's answer to one question.

    Attributes:
        id: The question id.
        output: The answer mapped to the task's output (what is scored).
        raw: The model's raw text (the draft, the rewrite) before mapping; "" for ``nearest``.
        info: Method details worth keeping: retrieved profile item ids, the draft, RPO metadata.
    """

    id: str
    output: str
    raw: str = ""
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- retrieval


def _item_id(question: Question, index: int) -> str:
    item_id = question.profile[index].get("id")
    return str(item_id) if item_id is not None else f"{question.id}#{index}"


class Retriever(ABC):
    """Ranks a question's own profile items against its retrieval query (``spec.query_text``)."""

    name: ClassVar[str]

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @abstractmethod
    def top_k(self, questions: Sequence[Question], k: int) -> list[list[int]]:
        """Return, per question, the indexes of its ``k`` best profile items, best first."""


def bm25_class() -> type:
    """``rank_bm25.BM25Okapi``, or an error naming the extra that installs it."""
    module = optional_import("rank_bm25", extra="eval", needed_for="the BM25 retriever")
    return module.BM25Okapi


class BM25Retriever(Retriever):
    """BM25 (``rank_bm25.BM25Okapi``) over whitespace tokens, as the official LaMP code ranks."""

    name = "bm25"

    def top_k(self, questions: Sequence[Question], k: int) -> list[list[int]]:
        """Return the BM25 top ``k`` profile item indexes per question (ties keep profile order)."""
        BM25Okapi = bm25_class()  # a class, named as rank_bm25 names it
        ranked: list[list[int]] = []
        for question in questions:
            if k <= 0 or not question.profile:
                ranked.append([])
                continue
            corpus = [self.spec.corpus_text(item).split() for item in question.profile]
            scores = BM25Okapi(corpus).get_scores(self.spec.query_text(question.input).split())
            order = sorted(range(len(corpus)), key=lambda i: -scores[i])
            ranked.append(order[:k])
        return ranked


def build_profile_store(
    spec: TaskSpec,
    questions: Sequence[Question],
    embeddings: Embeddings | None = None,
    store: HistoryBackend | None = None,
) -> HistoryBackend:
    """Index the profiles of ``questions`` in a history backend (a fresh FAISS store by default).

    Each question's profile goes under the question id as the user id; a document's text is the
    item's corpus text, its metadata the item's ``index`` in the profile and the question id.

    Args:
        spec: The task.
        questions: The questions whose profiles to index.
        embeddings: The embeddings of the default store (None: all-MiniLM-L6-v2).
        store: Any :class:`~langchain_rpo.history_backend.HistoryBackend` to fill instead (a
            question's items replace those it already holds there, by id).

    Returns:
        The backend.
    """
    if store is None:
        from langchain_rpo.history import UserHistoryStore

        store = UserHistoryStore(embeddings=embeddings)
    for question in questions:
        if not question.profile:
            continue
        store.add_texts(
            question.id,
            [spec.corpus_text(item) for item in question.profile],
            metadatas=[{"index": j, "question": question.id} for j in range(len(question.profile))],
            ids=[f"{question.id}/{_item_id(question, j)}" for j in range(len(question.profile))],
        )
    return store


class DenseRetriever(Retriever):
    """Dense retrieval through the project's per-user FAISS store (sentence embeddings).

    Args:
        spec: The task.
        embeddings: Returns the embeddings on first use (None: the default all-MiniLM-L6-v2).
        history: Returns the backend to index the profiles in, given the embeddings (None: a
            fresh FAISS store); any :class:`~langchain_rpo.history_backend.HistoryBackend`.
    """

    name = "dense"

    def __init__(
        self,
        spec: TaskSpec,
        embeddings: Callable[[], Embeddings] | None = None,
        history: Callable[[Embeddings | None], HistoryBackend] | None = None,
    ) -> None:
        super().__init__(spec)
        self._embeddings = embeddings
        self._history = history

    def top_k(self, questions: Sequence[Question], k: int) -> list[list[int]]:
        """Return the nearest ``k`` profile item indexes per question, by embedding similarity."""
        if k <= 0:
            return [[] for _ in questions]
        embeddings = self._embeddings() if self._embeddings is not None else None
        backend = self._history(embeddings) if self._history is not None else None
        store = build_profile_store(self.spec, questions, embeddings, backend)
        ranked: list[list[int]] = []
        for question in questions:
            if not question.profile:
                ranked.append([])
                continue
            docs = store.search(question.id, self.spec.query_text(question.input), k)
            ranked.append([int(doc.metadata["index"]) for doc in docs])
        return ranked


def make_retriever(
    spec: TaskSpec, name: RetrieverName, embeddings: Callable[[], Embeddings] | None = None
) -> Retriever:
    """Return the retriever called ``name``: ``bm25``, or ``dense`` over ``embeddings``."""
    if name == "bm25":
        return BM25Retriever(spec)
    if name == "dense":
        return DenseRetriever(spec, embeddings)
    raise ValueError(f"unknown retriever {name!r}; use 'bm25' or 'dense'")


# --------------------------------------------------------------------------- models


def model_signature(model: Any) -> dict[str, Any]:
    """Return what identifies a chat model's answers (its type and identifying parameters)."""
    params = getattr(model, "_identifying_params", {}) or {}
    return {"type": type(model).__name__, **json.loads(json.dumps(params, default=str))}


def _message_text(message: BaseMessage) -> str:
    return str(message.text)  # the text blocks of any content shape


def generate(model: BaseChatModel, prompts: Sequence[str]) -> list[str]:
    """Answer each prompt as one human message, through the model's ``batch``."""
    if not prompts:
        return []
    messages = model.batch([[HumanMessage(content=prompt)] for prompt in prompts])
    return [_message_text(message) for message in messages]


class Drafts:
    """The base model's zero-shot answers, generated once per question and shared.

    Args:
        model: The base chat model (None until first needed: see ``load``).
        cache: Question id to draft, for example read back from a previous run.
        on_new: Called with ``(id, draft)`` for each newly generated draft (to persist it).
        load: Builds the base model on first use, when ``model`` is None.
    """

    def __init__(
        self,
        model: BaseChatModel | None = None,
        cache: MutableMapping[str, str] | None = None,
        on_new: Callable[[str, str], None] | None = None,
        load: Callable[[], BaseChatModel] | None = None,
    ) -> None:
        if model is None and load is None:
            raise ValueError("Drafts needs a model or a load function")
        self._model = model
        self._load = load
        self.cache: MutableMapping[str, str] = {} if cache is None else cache
        self.on_new = on_new

    @property
    def model(self) -> BaseChatModel:
        """The base model (built on first use)."""
        if self._model is None:
            assert self._load is not None
            self._model = self._load()
        return self._model

    def __call__(self, questions: Sequence[Question]) -> list[str]:
        """Return the drafts of ``questions``, generating the missing ones in one batch."""
        missing = [q for q in questions if q.id not in self.cache]
        for question, draft in zip(
            missing, generate(self.model, [q.input for q in missing]), strict=True
        ):
            self.cache[question.id] = draft
            if self.on_new is not None:
                self.on_new(question.id, draft)
        return [self.cache[q.id] for q in questions]


# --------------------------------------------------------------------------- methods


class Method(ABC):
    """A way to answer LaMP questions; ``predict`` takes a batch and answers each question."""

    name: ClassVar[str]

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @abstractmethod
    def predict(self, questions: Sequence[Question]) -> list[Prediction]:
        """Answer a batch of questions."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Return everything the answers depend on (a change invalidates cached answers)."""

    def signature(self) -> str:
        """Return a short hash of :meth:`settings`, the task and the method's class name.

        The class name, not the display name: ``rpo`` and ``rpo-base`` with the same reflection
        model (no adapter available) hash the same, so a run computes them once.
        """
        blob = json.dumps(
            {"method": type(self).name, "task": self.spec.name, **self.settings()},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


class ZeroShot(Method):
    """The base model alone: its draft, mapped to the task's output."""

    name = "zero"

    def __init__(self, spec: TaskSpec, drafts: Drafts, model_settings: dict[str, Any]) -> None:
        super().__init__(spec)
        self.drafts = drafts
        self.model_settings = model_settings

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"base": self.model_settings}

    def predict(self, questions: Sequence[Question]) -> list[Prediction]:  # noqa: D102
        return [
            Prediction(q.id, self.spec.parse_answer(draft), draft)
            for q, draft in zip(questions, self.drafts(questions), strict=True)
        ]


class ContextInjection(Method):
    """RAG-style personalization: the top-k profile items in the base model's prompt."""

    name = "rag"

    def __init__(
        self,
        spec: TaskSpec,
        model: Callable[[], BaseChatModel],
        model_settings: dict[str, Any],
        retriever: Retriever,
        k: int = 4,
        max_item_chars: int | None = LAMP_ITEM_CHARS,
    ) -> None:
        super().__init__(spec)
        self._model = model
        self.model_settings = model_settings
        self.retriever = retriever
        self.k = k
        self.max_item_chars = max_item_chars

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {
            "base": self.model_settings,
            "retriever": self.retriever.name,
            "k": self.k,
            "max_item_chars": self.max_item_chars,
        }

    def prompts(self, questions: Sequence[Question]) -> tuple[list[str], list[list[int]]]:
        """Return the context-injection prompts and the retrieved item indexes per question."""
        ranked = self.retriever.top_k(questions, self.k)
        prompts = [
            self.spec.rag_prompt(q.input, [q.profile[i] for i in idx], self.max_item_chars)
            for q, idx in zip(questions, ranked, strict=True)
        ]
        return prompts, ranked

    def predict(self, questions: Sequence[Question]) -> list[Prediction]:  # noqa: D102
        prompts, ranked = self.prompts(questions)
        answers = generate(self._model(), prompts)
        return [
            Prediction(
                q.id,
                self.spec.parse_answer(answer),
                answer,
                {"retrieved": [_item_id(q, i) for i in idx]},
            )
            for q, answer, idx in zip(questions, answers, ranked, strict=True)
        ]


class RPO(Method):
    """The zero-shot draft, personalized by :class:`~langchain_rpo.rewriter.RPORewriter`.

    The profile of each batch is indexed in a fresh dense store (the question id as the user;
    ``history`` returns any other backend to index it in), and each recalled item is shown to
    the reflection model in the task's LaMP item template.
    """

    name = "rpo"

    def __init__(
        self,
        spec: TaskSpec,
        drafts: Drafts,
        reflection: Callable[[], BaseChatModel],
        settings: dict[str, Any],
        k: int = 4,
        max_item_chars: int | None = LAMP_ITEM_CHARS,
        embeddings: Callable[[], Embeddings] | None = None,
        name: str = "rpo",
        history: Callable[[Embeddings | None], HistoryBackend] | None = None,
    ) -> None:
        super().__init__(spec)
        self._history = history
        self.drafts = drafts
        self._reflection = reflection
        self._settings = settings
        self.k = k
        self.max_item_chars = max_item_chars
        self._embeddings = embeddings
        self.name = name  # type: ignore[misc]  # "rpo", "rpo-k0" or "rpo-base"

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {**self._settings, "k": self.k, "max_item_chars": self.max_item_chars}

    def predict(self, questions: Sequence[Question]) -> list[Prediction]:  # noqa: D102
        from langchain_rpo.rewriter import RPO_METADATA_KEY, RPORewriter

        drafts = self.drafts(questions)
        embeddings = self._embeddings() if self._embeddings is not None else None
        backend = self._history(embeddings) if self._history is not None else None
        store = build_profile_store(self.spec, questions, embeddings, backend)
        profiles = {q.id: q.profile for q in questions}

        def format_item(doc: Document) -> str:
            item = profiles[doc.metadata["question"]][int(doc.metadata["index"])]
            return self.spec.render_item(item, self.max_item_chars)

        with warnings.catch_warnings():
            if self.name == "rpo-k0":  # the ablation asks for k=0 on purpose: no warning
                warnings.filterwarnings(
                    "ignore", message=r"RPORewriter: k=0 ", category=UserWarning
                )
            rewriter = RPORewriter(
                history=store,
                reflection=self._reflection(),
                k=self.k,
                format_item=format_item,
                max_item_chars=None,  # format_item already cut the item's long field
            )
        # An AIMessage draft brings the rewriter's metadata back (recalled ids, fallback reason);
        # the recall query is the task's retrieval text, as for rag and nearest.
        answers = rewriter.batch(
            [
                {
                    "query": q.input,
                    "recall_query": self.spec.query_text(q.input),
                    "draft": AIMessage(content=draft),
                }
                for q, draft in zip(questions, drafts, strict=True)
            ],
            config=[{"configurable": {"user_id": q.id}} for q in questions],
        )
        predictions = []
        for q, draft, answer in zip(questions, drafts, answers, strict=True):
            meta = answer.response_metadata.get(RPO_METADATA_KEY, {})
            rewrite = _message_text(answer)
            info = {
                "draft": draft,
                "retrieved": [i.split("/", 1)[-1] for i in meta.get("recalled_ids", [])],
                "fallback_reason": meta.get("fallback_reason"),
            }
            predictions.append(Prediction(q.id, self.spec.parse_answer(rewrite), rewrite, info))
        return predictions


class Nearest(Method):
    """No model: the output of the profile item most similar to the question ("" for no profile)."""

    name = "nearest"

    def __init__(self, spec: TaskSpec, retriever: Retriever) -> None:
        super().__init__(spec)
        if spec.output_field is None:
            spec.item_output({})  # raises: this task's items have no output to copy (LaMP-1)
        self.retriever = retriever

    def settings(self) -> dict[str, Any]:  # noqa: D102
        return {"retriever": self.retriever.name}

    def predict(self, questions: Sequence[Question]) -> list[Prediction]:  # noqa: D102
        ranked = self.retriever.top_k(questions, 1)
        out = []
        for q, idx in zip(questions, ranked, strict=True):
            output = self.spec.item_output(q.profile[idx[0]]) if idx else ""
            out.append(Prediction(q.id, output, "", {"retrieved": [_item_id(q, i) for i in idx]}))
        return out
