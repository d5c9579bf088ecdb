"""``rpo eval``: run the methods side by side on a LaMP split, resumably, and report them.

What a run writes under ``--out``:

- ``{method}_outputs.json``: each method's predictions, in the official output format (score
  them again any time with ``rpo lamp score``);
- ``metrics.json``: the metrics per method, the run's settings and a few diagnostics;
- ``results.md`` (the markdown table, also printed) and ``results.png`` (a bar chart);
- ``cache/``: one JSON line per answered question and method, and the base model's drafts.

Resuming: answers are cached per question id the moment a batch is done, under a hash of
everything they depend on (task, method, models, k, retriever...). Run the same command again
and only the missing questions are answered; change a setting and the stale answers are ignored.
Methods whose settings hash the same (``rpo`` and ``rpo-base`` when no adapter is available) are
computed once. ``zero`` and ``rpo`` share the drafts. Models load only when something is left to
generate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from langchain_rpo.adapter_settings import (
    DEFAULT_K,
    DEFAULT_MAX_TOKENS,
    LAMP_ITEM_CHARS,
    AdapterSettings,
    warn_if_differs,
)
from langchain_rpo.cli_args import check_config, check_target, option
from langchain_rpo.lamp.data import Question, check_ids, iter_questions, read_outputs, write_outputs
from langchain_rpo.lamp.methods import (
    DEFAULT_METHODS,
    METHOD_NAMES,
    RPO,
    ContextInjection,
    Drafts,
    Method,
    Nearest,
    RetrieverName,
    ZeroShot,
    bm25_class,
    make_retriever,
    model_signature,
)
from langchain_rpo.lamp.metrics import evaluate, rouge_scorer_module
from langchain_rpo.lamp.report import bar_chart, figure_class, markdown_table
from langchain_rpo.lamp.tasks import TaskSpec, get_task
from langchain_rpo.selection import CANDIDATE_TEMPERATURE

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "EvalConfig",
    "EvalResult",
    "JsonlCache",
    "ModelSet",
    "check_paths",
    "parse_methods",
    "run_eval",
]

logger = logging.getLogger(__name__)

# Seeds torch before each rpo method that samples reflection candidates.
SAMPLING_SEED = 0

_DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (packaged default)"


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``"zero,rag,rpo"`` (or a list) into method names, checking each.

    Raises:
        ValueError: For an unknown or repeated method.
    """
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ValueError(f"no method given; choose from {', '.join(METHOD_NAMES)}")
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHOD_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a method is listed twice in {names}")
    return tuple(names)


@dataclass
class EvalConfig:
    """The settings of one ``rpo eval`` run: each field is also its command-line option.

    ``rpo eval`` builds its options from these fields (``batch_size`` is ``--batch-size``), so
    each default and help text is written here once. Whole numbers and choices are checked on
    construction.

    Attributes:
        questions: The ``{split}_questions.json`` file.
        outputs: The ``{split}_outputs.json`` file (the golds).
        out: The output folder (created; reused to resume).
        task: The task (None: the outputs file's task).
        methods: The methods to run, from ``zero, rag, rpo, rpo-k0, rpo-base, nearest``.
        k: History items per question for ``rag`` and ``rpo`` (0 allowed). None: for ``rpo`` and
            ``rpo-base`` the adapter's (its ``rpo_settings.json``), else 4; for ``rag`` 4.
        retriever: ``bm25`` or ``dense`` (the project's store), for ``rag`` and ``nearest``.
        limit: Answer only the first N questions (None: all).
        batch_size: Questions per model ``batch`` call.
        max_item_chars: Cut each history item's long field to this many characters (0: no cut).
            None: for ``rpo`` and ``rpo-base`` the adapter's, else 400; for ``rag`` 400.
        base_model: The base model's path or hub name (None: the packaged SmolLM2-135M-Instruct).
        reflection_model: The reflection model's base (None: the same as ``base_model``).
        adapter: The LoRA adapter of ``rpo`` (None: the bundled one, if the package has one).
        reflection_max_new_tokens: The reflection model's generation budget (a trajectory).
            None: the adapter's, else 256.
        reflection_candidates: Trajectories the rpo methods' reflection model samples per
            question, answering with the minimum-Bayes-risk one (``ReflectionModel.candidates``;
            :mod:`langchain_rpo.selection`), torch seeded with ``SAMPLING_SEED`` before each
            rpo method. 1: one greedy trajectory.
        device: ``cpu``, ``cuda``... (None: CUDA when available).
        embedding_model: The sentence-transformers model of the dense store (None: default).
        fresh: Ignore (and overwrite) the cached answers.

    Raises:
        ValueError: For a whole number out of range, an unknown retriever or method.
    """

    questions: Path = field(metadata=option("the split's questions file, {split}_questions.json"))
    outputs: Path = field(metadata=option("the split's golds, {split}_outputs.json"))
    out: Path = field(metadata=option("output folder (run the same command again to resume)"))
    task: str | None = field(
        default=None,
        metadata=option("LaMP_1 ... LaMP_7, LaMP_2N (default: the outputs file's task)"),
    )
    methods: tuple[str, ...] = field(
        default=DEFAULT_METHODS,
        metadata=option(
            "comma-separated methods (default: %(default)s)", parse=parse_methods, metavar="M1,M2"
        ),
    )
    k: int | None = field(
        default=None,
        metadata=option(
            f"history items for rag and rpo (default: the adapter's for rpo, else {DEFAULT_K})",
            minimum=0,
        ),
    )
    retriever: RetrieverName = field(
        default="bm25", metadata=option("retriever of rag and nearest (default: %(default)s)")
    )
    limit: int | None = field(
        default=None, metadata=option("answer the first N questions only (default: all)", minimum=1)
    )
    batch_size: int = field(
        default=8, metadata=option("questions per model batch (default: %(default)s)", minimum=1)
    )
    max_item_chars: int | None = field(
        default=None,
        metadata=option(
            "cut a history item's long field to N characters (0: no cut; default: the "
            f"adapter's for rpo, else {LAMP_ITEM_CHARS})",
            minimum=0,
        ),
    )
    base_model: str | None = field(
        default=None,
        metadata=option(
            "base model folder or hub name (default: the packaged SmolLM2-135M-Instruct)",
            metavar="PATH|NAME",
        ),
    )
    reflection_model: str | None = field(
        default=None,
        metadata=option("reflection base model (default: the base model)", metavar="PATH|NAME"),
    )
    adapter: str | None = field(
        default=None,
        metadata=option(
            "LoRA adapter folder of rpo, or 'trajectory' for the shipped trajectory adapter "
            "(default: the bundled one, if any)",
            metavar="PATH|trajectory",
        ),
    )
    reflection_max_new_tokens: int | None = field(
        default=None,
        metadata=option(
            "reflection generation budget in tokens (default: the adapter's, else "
            f"{DEFAULT_MAX_TOKENS})",
            minimum=1,
        ),
    )
    reflection_candidates: int = field(
        default=1,
        metadata=option(
            "reflection trajectories sampled per question (torch seeded with 0), the "
            "minimum-Bayes-risk one kept (default: %(default)s, one greedy trajectory)",
            minimum=1,
        ),
    )
    device: str | None = field(
        default=None,
        metadata=option("cpu, cuda, ... (default: cuda when available)", metavar="DEVICE"),
    )
    embedding_model: str | None = field(
        default=None,
        metadata=option(
            "embeddings of the dense store (default: all-MiniLM-L6-v2)", metavar="PATH|NAME"
        ),
    )
    fresh: bool = field(default=False, metadata=option("ignore cached predictions and start over"))

    def __post_init__(self) -> None:
        self.methods = parse_methods(self.methods)
        if self.adapter:
            from langchain_rpo.assets import shipped_adapter

            self.adapter = shipped_adapter(self.adapter)
        check_config(self)


@dataclass
class EvalResult:
    """What a run produced.

    Attributes:
        task: The task spec.
        n: The number of questions scored.
        metrics: Method name to its metrics.
        table: The markdown table.
        out: The output folder.
        diagnostics: Per-method extras (for RPO: how often the rewrite was used, and why not).
        generated: How many answers each method generated in this run (0: all from the cache).
        predictions: Method name to its outputs by question id (what ``{method}_outputs.json``
            holds).
        golds: The gold output of each question answered, by id.
    """

    task: TaskSpec
    n: int
    metrics: dict[str, dict[str, float]]
    table: str
    out: Path
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)
    generated: dict[str, int] = field(default_factory=dict)
    predictions: dict[str, dict[str, str]] = field(default_factory=dict)
    golds: dict[str, str] = field(default_factory=dict)


class JsonlCache:
    """An append-only JSON-lines cache of records keyed by ``(sig, id)``.

    Args:
        path: The ``.jsonl`` file (created on first append).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> Iterator[dict[str, Any]]:
        """Yield every record, in the order written, under any signature.

        A torn last line (an interrupted write) is skipped.
        """
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as stream:
            for line in stream:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption

    def load(self, sig: str) -> dict[str, dict[str, Any]]:
        """Return the records written under ``sig``, by id (the last one wins)."""
        return {record["id"]: record for record in self.records() if record.get("sig") == sig}

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records (each with ``sig`` and ``id``) and flush them to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as stream:
            for record in records:
                stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            stream.flush()


class ModelSet:
    """The models of a run, each built once and only when first needed.

    Models passed in are used as they are (any LangChain chat model as the base); the others are
    loaded from the config: the base model and ``rpo-base``'s reflection model share one copy of
    the weights when they are the same model.

    Args:
        spec: The task (its ``max_new_tokens`` is the base model's budget).
        config: The run's settings.
        base: A ready base chat model.
        reflection: A ready reflection model for ``rpo``.
        reflection_base: A ready reflection model without adapter for ``rpo-base``.
        embeddings: Ready embeddings for the dense store.
    """

    def __init__(
        self,
        spec: TaskSpec,
        config: EvalConfig,
        base: BaseChatModel | None = None,
        reflection: BaseChatModel | None = None,
        reflection_base: BaseChatModel | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        reflection = _with_candidates(reflection, config.reflection_candidates)
        reflection_base = _with_candidates(reflection_base, config.reflection_candidates)
        self._base = base
        self._reflection = reflection
        self._reflection_base = reflection_base
        self._embeddings = embeddings
        # Settings name the models given in, else the config: the same before and after loading.
        self._given = {
            "base": base,
            "reflection": reflection,
            "reflection_base": reflection_base,
            "embeddings": embeddings,
        }
        self.adapter = self._resolve_adapter()
        self.trained = self._trained_settings()

    def _resolve_adapter(self) -> str | None:
        if self._reflection is not None:
            return getattr(self._reflection, "adapter_name", None) or "(given model)"
        if self.config.adapter:
            return self.config.adapter
        if self.config.reflection_model is None:
            from langchain_rpo.assets import bundled_adapter_path

            bundled = bundled_adapter_path()
            return str(bundled) if bundled else None
        return None

    def _trained_settings(self) -> AdapterSettings | None:
        """The settings ``rpo``'s adapter was trained with (None: it records none)."""
        if self._reflection is not None:
            found = getattr(self._reflection, "adapter_settings", None)
            return found if isinstance(found, AdapterSettings) else None
        return AdapterSettings.read(self.adapter) if self.adapter else None

    # -- the settings the rpo methods run with: given, else the adapter's, else the defaults ---
    def rpo_k(self) -> int:
        """History items recalled by ``rpo`` and ``rpo-base``."""
        if self.config.k is not None:
            return self.config.k
        return self.trained.k if self.trained else DEFAULT_K

    def rpo_item_chars(self) -> int | None:
        """The cut of an item's long field for ``rpo`` and ``rpo-base`` (None: no cut)."""
        if self.config.max_item_chars is not None:
            return self.config.max_item_chars or None
        return self.trained.max_item_chars if self.trained else LAMP_ITEM_CHARS

    def reflection_budget(self) -> int:
        """The reflection models' generation budget."""
        if self.config.reflection_max_new_tokens is not None:
            return self.config.reflection_max_new_tokens
        return self.trained.max_new_tokens if self.trained else DEFAULT_MAX_TOKENS

    # -- what the answers depend on (computed without loading anything) ----------------------
    def base_settings(self) -> dict[str, Any]:
        """The base model's identity and budget."""
        if self._given["base"] is not None:
            return model_signature(self._given["base"])
        return {
            "model": self.config.base_model or _DEFAULT_MODEL_NAME,
            "max_new_tokens": self.spec.max_new_tokens,
        }

    def reflection_settings(self, with_adapter: bool) -> dict[str, Any]:
        """The reflection model's identity (with or without the adapter) and budget."""
        if with_adapter and self._given["reflection"] is not None:
            return model_signature(self._given["reflection"])
        adapter = self.adapter if with_adapter else None
        if adapter is None and self._given["reflection_base"] is not None:
            return model_signature(self._given["reflection_base"])
        model = self.config.reflection_model or self.config.base_model or _DEFAULT_MODEL_NAME
        settings: dict[str, Any] = {
            "model": model,
            "adapter": adapter,
            "max_new_tokens": self.reflection_budget(),
        }
        if self.config.reflection_candidates > 1:
            # Added only when sampling, so the keys of greedy runs' caches stay as they were.
            settings |= {
                "candidates": self.config.reflection_candidates,
                "selection": "mbr",
                "temperature": CANDIDATE_TEMPERATURE,
            }
        return settings

    def embedding_settings(self) -> str:
        """The dense store's embedding model name."""
        if self._given["embeddings"] is not None:
            return type(self._given["embeddings"]).__name__
        return self.config.embedding_model or "all-MiniLM-L6-v2 (packaged default)"

    # -- the models ------------------------------------------------------------------------
    def base(self) -> BaseChatModel:
        """The base ("black-box") model: the local default, without adapter."""
        if self._base is None:
            from langchain_rpo.reflection import ReflectionModel

            logger.info("loading the base model %s", self.config.base_model or _DEFAULT_MODEL_NAME)
            self._base = ReflectionModel.from_pretrained(
                self.config.base_model,
                adapter=False,
                device=self.config.device,
                max_new_tokens=self.spec.max_new_tokens,
            )
        return self._base

    def reflection_base(self) -> BaseChatModel:
        """The reflection model without adapter (``rpo-base``; ``rpo`` too when there is none)."""
        if self._reflection_base is None:
            from langchain_rpo.reflection import ReflectionModel

            budget = self.reflection_budget()
            same = self.config.reflection_model in (None, self.config.base_model)
            base = self.base() if same else None
            if isinstance(base, ReflectionModel):  # the same model: share the weights
                self._reflection_base = ReflectionModel.from_model(
                    base.model,
                    base.tokenizer,
                    model_name=base.model_name,
                    max_new_tokens=budget,
                    candidates=self.config.reflection_candidates,
                )
            else:
                self._reflection_base = ReflectionModel.from_pretrained(
                    self.config.reflection_model or self.config.base_model,
                    adapter=False,
                    device=self.config.device,
                    max_new_tokens=budget,
                    candidates=self.config.reflection_candidates,
                )
        return self._reflection_base

    def reflection(self) -> BaseChatModel:
        """The reflection model of ``rpo``: with the adapter, when there is one."""
        if self._reflection is None:
            if self.adapter is None:
                return self.reflection_base()
            from langchain_rpo.reflection import ReflectionModel

            self._reflection = ReflectionModel.from_pretrained(
                self.config.reflection_model or self.config.base_model,
                adapter=self.adapter,
                device=self.config.device,
                max_new_tokens=self.reflection_budget(),
                candidates=self.config.reflection_candidates,
            )
        return self._reflection

    def embeddings(self) -> Embeddings:
        """The dense store's embeddings (all-MiniLM-L6-v2 by default)."""
        if self._embeddings is None:
            from langchain_rpo.embeddings import SentenceTransformerEmbeddings

            self._embeddings = SentenceTransformerEmbeddings(self.config.embedding_model)
        return self._embeddings


def _with_candidates(model: BaseChatModel | None, candidates: int) -> BaseChatModel | None:
    """The given reflection model, set to sample ``candidates`` trajectories per prompt.

    Raises:
        ValueError: If more than one candidate is asked of a model that cannot sample and
            choose them (only a local :class:`~langchain_rpo.reflection.ReflectionModel` can).
    """
    from langchain_rpo.reflection import ReflectionModel

    if isinstance(model, ReflectionModel):
        if model.candidates == candidates:
            return model
        # A copy shares the weights; the caller's model keeps its own setting.
        return model.model_copy(update={"candidates": candidates})
    if model is not None and candidates > 1:
        raise ValueError(
            f"reflection_candidates={candidates} needs a local ReflectionModel as the reflection "
            f"model, and {type(model).__name__} is not one; pass reflection_candidates=1."
        )
    return model


def check_paths(
    config: EvalConfig, *, load_base: bool = True, load_reflection: bool = True
) -> None:
    """Check the run's paths before anything loads, so a typo fails in a second, not after minutes.

    Checks that the questions and outputs files exist, that ``out`` is (or can be made) a writable
    folder, that ``adapter`` is an adapter folder, and that model names written as local paths
    (absolute, or starting with ``.`` or ``~``) exist.

    Args:
        config: The run's settings.
        load_base: The base model will be loaded from ``config.base_model``.
        load_reflection: The reflection model will be loaded (with ``config.adapter``).

    Raises:
        ValueError: Naming the path, the option and the fix.
    """
    for flag, path, name in (
        ("--questions", config.questions, "{split}_questions.json"),
        ("--outputs", config.outputs, "{split}_outputs.json"),
    ):
        if not Path(path).is_file():
            what = "is a folder, not a file" if Path(path).is_dir() else "no such file"
            raise ValueError(f"{path}: {what}. Fix: pass the split's {name} as {flag}.")
    check_target(Path(config.out), "--out", folder=True)
    wants_adapter = load_reflection and config.adapter and "rpo" in config.methods
    if wants_adapter and not (Path(config.adapter) / "adapter_config.json").is_file():
        raise ValueError(
            f"{config.adapter}: no LoRA adapter there (adapter_config.json is missing). "
            "Fix: pass as --adapter the folder that training/sft.py or training/grpo.py saved."
        )
    models = [("--reflection-model", config.reflection_model)] if load_reflection else []
    if load_base:
        models.append(("--base-model", config.base_model))
    for flag, model in models:
        if model and _looks_local(model) and not Path(model).expanduser().exists():
            raise ValueError(
                f"{model}: no such model folder. Fix: pass an existing folder or a hub name "
                f"(org/name) as {flag}."
            )


def _looks_local(name: str) -> bool:
    """A model name written as a path rather than a hub name (``org/name``)."""
    return name.startswith((".", "~")) or Path(name).is_absolute()


def _check_extras(spec: TaskSpec, config: EvalConfig) -> None:
    """Import the ``eval`` extra's packages this run needs now, not after its answers."""
    if spec.kind == "generation":
        rouge_scorer_module()
    if config.retriever == "bm25" and {"rag", "nearest"} & set(config.methods):
        bm25_class()
    figure_class()


def _batches(items: Iterable[Question], size: int) -> Iterator[list[Question]]:
    batch: list[Question] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _rag_k(config: EvalConfig) -> int:
    """History items of ``rag`` (the adapter's settings are ``rpo``'s, not the base model's)."""
    return DEFAULT_K if config.k is None else config.k


def _rag_item_chars(config: EvalConfig) -> int | None:
    """The cut of an item's long field for ``rag`` (None: no cut)."""
    return LAMP_ITEM_CHARS if config.max_item_chars is None else config.max_item_chars or None


def _settings_line(config: EvalConfig, models: ModelSet) -> str:
    """The run's k and item cut, per method family when they differ."""
    rpo = any(m.startswith("rpo") for m in config.methods)
    rag = "rag" in config.methods
    parts = []
    for name, rag_value, rpo_value in (
        ("k", _rag_k(config), models.rpo_k()),
        ("max_item_chars", _rag_item_chars(config), models.rpo_item_chars()),
    ):
        if rpo and rag and rag_value != rpo_value:
            parts.append(f"{name}={rag_value} (rag), {rpo_value} (rpo)")
        else:
            parts.append(f"{name}={rpo_value if rpo else rag_value}")
    if rpo and config.reflection_candidates > 1:
        parts.append(f"reflection_candidates={config.reflection_candidates} (mbr)")
    return ", ".join(parts)


def _build_methods(
    spec: TaskSpec, config: EvalConfig, models: ModelSet, drafts: Drafts
) -> list[Method]:
    retriever = make_retriever(spec, config.retriever, models.embeddings)
    built: list[Method] = []
    for name in config.methods:
        if name == "zero":
            built.append(ZeroShot(spec, drafts, models.base_settings()))
        elif name == "rag":
            built.append(
                ContextInjection(
                    spec,
                    models.base,
                    models.base_settings(),
                    retriever,
                    _rag_k(config),
                    _rag_item_chars(config),
                )
            )
        elif name in ("rpo", "rpo-k0", "rpo-base"):
            with_adapter = name != "rpo-base"
            settings = {
                "base": models.base_settings(),
                "reflection": models.reflection_settings(with_adapter),
                "embeddings": models.embedding_settings(),
            }
            reflection = models.reflection if with_adapter else models.reflection_base
            built.append(
                RPO(
                    spec,
                    drafts,
                    reflection,
                    settings,
                    0 if name == "rpo-k0" else models.rpo_k(),
                    models.rpo_item_chars(),
                    models.embeddings,
                    name=name,
                )
            )
        elif name == "nearest":
            built.append(Nearest(spec, retriever))
    return built


def run_eval(
    config: EvalConfig,
    *,
    base_model: BaseChatModel | None = None,
    reflection: BaseChatModel | None = None,
    reflection_base: BaseChatModel | None = None,
    embeddings: Embeddings | None = None,
    progress: bool = True,
) -> EvalResult:
    """Run the methods on a LaMP split, write predictions, metrics, table and chart, resumably.

    Args:
        config: The run's settings.
        base_model: Any LangChain chat model as the base model (None: load ``config.base_model``).
        reflection: The reflection model of ``rpo`` (None: load it, with the adapter).
        reflection_base: The reflection model of ``rpo-base`` (None: load it, without adapter).
        embeddings: The dense store's embeddings (None: load ``config.embedding_model``).
        progress: Show progress bars.

    Returns:
        The metrics and the table.

    Raises:
        LampDataError: For bad input files (named, with the fix).
        ValueError: For an output folder, adapter or model path that cannot be used, checked
            before any model loads.
        MissingExtraError: When a package of the ``eval`` extra that the run needs is missing.
    """
    out = Path(config.out)
    check_paths(config, load_base=base_model is None, load_reflection=reflection is None)
    golds = read_outputs(config.outputs, config.task)
    spec = get_task(config.task if config.task is not None else golds.task)
    ids = [q.id for q in iter_questions(config.questions, spec, limit=config.limit)]
    if not ids:
        raise ValueError(f"{config.questions}: no questions to answer (limit={config.limit})")
    check_ids(ids, golds, config.questions, subset=config.limit is not None)
    _check_extras(spec, config)
    models = ModelSet(spec, config, base_model, reflection, reflection_base, embeddings)
    if "rpo" in config.methods and config.max_item_chars is not None:
        # The reflection model and the rewriter warn about k and the budget themselves; the
        # item cut is applied here, in the LaMP item template.
        warn_if_differs(models.trained, "rpo eval", max_item_chars=models.rpo_item_chars())

    cache_dir = out / "cache"
    draft_cache = JsonlCache(cache_dir / "drafts.jsonl")
    draft_sig = hashlib.sha1(
        json.dumps(models.base_settings(), sort_keys=True).encode()
    ).hexdigest()[:12]
    cached_drafts = (
        {} if config.fresh else {i: r["draft"] for i, r in draft_cache.load(draft_sig).items()}
    )
    drafts = Drafts(
        cache=cached_drafts,
        on_new=lambda qid, draft: draft_cache.append(
            [{"sig": draft_sig, "id": qid, "draft": draft}]
        ),
        load=models.base,
    )
    methods = _build_methods(spec, config, models, drafts)

    started = time.perf_counter()
    records: dict[str, dict[str, dict[str, Any]]] = {}
    generated: dict[str, int] = {}
    by_signature: dict[str, dict[str, dict[str, Any]]] = {}
    for method in methods:
        if isinstance(method, RPO) and config.reflection_candidates > 1:
            # Sampled candidates: a fresh run draws the same ones each time (a resumed run
            # draws the rest from where this seed puts them, so it may differ).
            import torch

            torch.manual_seed(SAMPLING_SEED)
        records[method.name], generated[method.name] = _run_method(
            method, config, spec, ids, cache_dir, by_signature, progress
        )
    predictions = {
        name: {qid: recs[qid]["output"] for qid in ids} for name, recs in records.items()
    }
    for name, preds in predictions.items():
        write_outputs(out / f"{name}_outputs.json", spec, preds)

    gold_subset = {qid: golds.outputs[qid] for qid in ids}
    metrics = {name: evaluate(spec, preds, gold_subset) for name, preds in predictions.items()}
    diagnostics = _diagnostics(records, ids)
    notes = {}
    if "rpo" in records and models.adapter is None:
        notes["rpo"] = "reflection model + adapter: no adapter found, so the same as rpo-base"
    table = (
        f"{spec.name} ({spec.title}): {len(ids)} questions from {Path(config.questions).name}; "
        f"{_settings_line(config, models)}, retriever={config.retriever}\n\n"
        + markdown_table(metrics, spec.metrics, notes)
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table, encoding="utf-8")
    bar_chart(metrics, spec.metrics, out / "results.png", f"{spec.name}, {len(ids)} questions")
    summary = {
        "task": spec.name,
        "n": len(ids),
        "metrics": metrics,
        "diagnostics": diagnostics,
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            "methods": list(config.methods),
            "base": models.base_settings(),
            "reflection": models.reflection_settings(True),
            "reflection_base": models.reflection_settings(False),
            # What the rpo methods ran with: given, else the adapter's, else the defaults.
            "rpo": {
                "k": models.rpo_k(),
                "max_item_chars": models.rpo_item_chars(),
                "max_new_tokens": models.reflection_budget(),
                "candidates": config.reflection_candidates,
                "sampling_seed": SAMPLING_SEED if config.reflection_candidates > 1 else None,
                "adapter_settings": models.trained.to_dict() if models.trained else None,
            },
        },
        "generated_this_run": generated,
        "seconds_this_run": round(time.perf_counter() - started, 1),
    }
    (out / "metrics.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return EvalResult(
        spec, len(ids), metrics, table, out, diagnostics, generated, predictions, gold_subset
    )


def _run_method(
    method: Method,
    config: EvalConfig,
    spec: TaskSpec,
    ids: Sequence[str],
    cache_dir: Path,
    by_signature: dict[str, dict[str, dict[str, Any]]],
    progress: bool,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Answer every question of the run with ``method``, batch by batch, caching each batch.

    Answers already cached under the method's signature, or computed earlier in this run by a
    method with the same signature (``by_signature``, updated here), are reused.

    Returns:
        The records by question id, and how many were generated now.
    """
    sig = method.signature()
    cache = JsonlCache(cache_dir / f"{method.name}.jsonl")
    records = {} if config.fresh else cache.load(sig)
    shared = [r for qid, r in by_signature.get(sig, {}).items() if qid not in records]
    cache.append(shared)
    records.update({r["id"]: r for r in shared})
    generated = 0
    done = len(set(ids) & set(records))
    with tqdm(
        total=len(ids), initial=done, desc=method.name, unit="q", disable=not progress
    ) as bar:
        questions = iter_questions(config.questions, spec, limit=config.limit)
        for batch in _batches(questions, config.batch_size):
            pending = [q for q in batch if q.id not in records]
            if not pending:
                continue
            new = [
                {"sig": sig, "id": p.id, "output": p.output, "raw": p.raw, "info": p.info}
                for p in method.predict(pending)
            ]
            cache.append(new)
            records.update({r["id"]: r for r in new})
            generated += len(new)
            bar.update(len(new))
    by_signature[sig] = records
    return records, generated


def _diagnostics(
    records_by_method: dict[str, dict[str, dict[str, Any]]], ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """For each RPO method: how often the rewrite was used, and why the draft was kept otherwise."""
    found: dict[str, dict[str, Any]] = {}
    for name, records in records_by_method.items():
        if not name.startswith("rpo"):
            continue
        reasons = [records[qid]["info"].get("fallback_reason") for qid in ids]
        kept: dict[str, int] = {}
        for reason in reasons:
            if reason is not None:
                key = str(reason).split(":", 1)[0]
                kept[key] = kept.get(key, 0) + 1
        changed = sum(
            records[qid]["raw"].strip() != str(records[qid]["info"].get("draft", "")).strip()
            for qid in ids
        )
        found[name] = {
            "personalized_fraction": reasons.count(None) / len(ids),
            "changed_from_draft_fraction": changed / len(ids),
            "draft_kept_because": kept,
        }
    return found
