"""RPORewriter: the LCEL face of RPO (draft -> recall -> reflect -> answer).

Two ways to compose it:

- **post-hoc**: ``prompt | chat_model | rewriter`` personalizes whatever the chain answers. The
  input is the draft: an ``AIMessage``, a ``str``, or ``{"query": ..., "draft": ...}`` when the
  request is known too.
- **wrapping**: ``RPORewriter(llm=chat_model, ...)`` takes the model's own input, asks the model
  for the draft (the model never sees the user's history) and knows the query.

The user is named by ``config["configurable"]["user_id"]``. Output mirrors input, and carries
everything the input carried (:mod:`langchain_rpo.drafts`): a personalized answer replaces only
the draft's text; a draft with tool calls or without text passes through untouched; a user
without history, a failed recall and an unusable, failing or slow reflection model all return the
draft unchanged. ``response_metadata["rpo"]`` (:class:`~langchain_rpo.metadata.RPOMetadata`)
says which, and why.

Every entry point (invoke, batch, stream and their async twins) runs one pipeline,
:meth:`RPORewriter._prepare` then :meth:`RPORewriter._reflect`: generators that *yield* the
calls they need (drafts, recall, reflection) and receive the results, so the rules live in one
place and the sync and async drivers differ only in how they make a call. Each row has its own
fate: an invalid input, a missing user id or a failed draft call fails that row alone.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import ContextThreadPoolExecutor, patch_config
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from langchain_rpo.adapter_settings import (
    DEFAULT_ITEM_CHARS,
    DEFAULT_K,
    DEFAULT_QUERY_CHARS,
    AdapterSettings,
    warn_if_differs,
)
from langchain_rpo.cancellation import cancel_scope
from langchain_rpo.drafts import (
    Draft,
    DraftInput,
    RewriteOutput,
    read_draft,
    read_wrapped,
    text_of,
)
from langchain_rpo.feedback import FeedbackEvent
from langchain_rpo.feedback_recording import (
    DEFAULT_REMEMBERED_ANSWERS,
    RecentAnswers,
    answer_to_record,
    astore_feedback,
    build_feedback,
    feedback_target,
    store_feedback,
)
from langchain_rpo.history_backend import HistoryBackend
from langchain_rpo.metadata import RPO_METADATA_KEY, FallbackReason, RPOMetadata, rpo_metadata
from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.retriever import HistoryRetriever, user_id_spec
from langchain_rpo.trajectory import (
    RewriteStreamExtractor,
    Trajectory,
    close_cut_rewrite,
    try_parse,
)

__all__ = ["RPO_METADATA_KEY", "FallbackReason", "RPORewriter"]

logger = logging.getLogger(__name__)

# Fallbacks caused by an error are worth a warning; the others are the pipeline working.
_WARN = frozenset(
    {
        FallbackReason.RECALL_ERROR,
        FallbackReason.REFLECTION_ERROR,
        FallbackReason.REFLECTION_TIMEOUT,
        FallbackReason.REFLECTION_NOT_TEXT,
    }
)
_QUIET = frozenset({FallbackReason.NO_HISTORY, FallbackReason.NOT_PERSONALIZABLE})

# The reflection's tokens are reasoning, not the answer: chat UIs that show every chat-model
# token (LangGraph's stream_mode="messages", astream_events consumers that honour the tag) skip
# runs tagged so. LangGraph 1.x reads "nostream"; "langsmith:nostream" is the older spelling.
NOSTREAM_TAGS = ("nostream", "langsmith:nostream")


def _stopped_on_stop_sequence(out: Any) -> bool:
    """Whether a served model says it ended on a stop sequence (not on its token budget)."""
    meta = getattr(out, "response_metadata", None) or {}
    return meta.get("finish_reason") == "stop" or meta.get("stop_reason") == "stop_sequence"


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


@dataclass
class _Row:
    """One input in flight: what the pipeline knows about it so far."""

    value: Any
    config: RunnableConfig
    run_manager: Any
    user_id: str | None = None
    draft: Draft | None = None
    error: Exception | None = None  # the row fails: raised, or returned in its place
    reason: FallbackReason | None = None  # the draft is returned unchanged
    detail: str | None = None
    docs: list[Document] = field(default_factory=list)
    raw: str | None = None
    usage: UsageMetadata | None = None
    stopped: bool = False  # a served model said it ended on a stop sequence
    trajectory: Trajectory | None = None

    @property
    def open(self) -> bool:
        """Whether the row still goes on to the next step."""
        return self.error is None and self.reason is None

    def fall_back(self, reason: FallbackReason, err: BaseException | None = None) -> None:
        self.reason = reason
        self.detail = None if err is None else _describe(err)

    def child(self, tag: str, *more_tags: str) -> RunnableConfig:
        """This row's config for an inner call, its callbacks a child run tagged ``tag``."""
        callbacks = self.run_manager.get_child(tag)
        if more_tags:
            callbacks.add_tags(list(more_tags))
        return patch_config(self.config, callbacks=callbacks)


@dataclass
class _Call:
    """An inner batch call the pipeline asks its driver to make."""

    runnable: Runnable
    inputs: list[Any]
    configs: list[RunnableConfig]
    timeout: float | None = None


_Plan = Generator[_Call, list[Any], None]


class RPORewriter(RunnableSerializable[Any, Any]):
    """Personalize a chat model's answer post hoc with a reflection model and the user's history.

    Example:
        .. code-block:: python

            from langchain_rpo import RPORewriter, ReflectionModel, UserHistoryStore

            store = UserHistoryStore()
            store.add_texts("alice", ["Announcing Rust 1.75.0", "Rust 1.74.1 released"])
            rewriter = RPORewriter(history=store, reflection=ReflectionModel.from_pretrained())
            chain = prompt | chat_model | rewriter
            chain.invoke({...}, config={"configurable": {"user_id": "alice"}})

    Attributes:
        history: The per-user history recalled from: any history backend (the embedded
            ``UserHistoryStore`` by default, PostgreSQL, a LangChain vector store).
        reflection: The reflection model: any chat model; usually a ``ReflectionModel``.
        llm: In the wrapping form, the model that writes the draft; None for post-hoc use.
        k: How many history items to recall (0 runs the reflection without history).
        format_item: Renders a recalled ``Document`` for the reflection prompt (default: its
            ``page_content``).
        max_item_chars: Each recalled item is cut to this many characters in the prompt (None:
            no cut).
        max_query_chars: The query is cut to this many characters in the prompt (None: no cut).
        reflection_timeout: Seconds the reflection may take (a whole batch, or a whole stream);
            past it the draft is returned with ``reflection_timeout`` and a local
            ``ReflectionModel`` stops generating. None: no limit.
        remembered_answers: How many of its last answers the rewriter remembers by run id, for
            ``record_feedback(run_id=...)`` (0: none). In this process only: they are lost on
            a restart, where recording with the answer's ``rpo`` metadata still works.

    ``k``, ``max_item_chars`` and ``max_query_chars`` default to the values the reflection
    model's adapter was trained with, when it records them (``reflection.adapter_settings``,
    :mod:`langchain_rpo.adapter_settings`); else to 4, 300 and 1000. A value passed that differs
    from the adapter's raises a ``UserWarning`` naming the setting (once per value). With a
    ``format_item``, ``max_item_chars`` keeps its own default: the adapter's item cut is that of
    an item's long field, which ``format_item`` applies as it renders the item (the LaMP
    harness and the demo pass it ``reflection.adapter_settings.max_item_chars``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    history: HistoryBackend
    reflection: Runnable
    llm: Runnable | None = None
    # k and the cuts default to what the reflection model's adapter was trained with
    # (_adapter_defaults); these values apply where it records nothing.
    k: int = Field(default=DEFAULT_K, ge=0)
    format_item: Callable[[Document], str] | None = None
    max_item_chars: int | None = Field(default=DEFAULT_ITEM_CHARS, ge=1)
    max_query_chars: int | None = Field(default=DEFAULT_QUERY_CHARS, ge=1)
    reflection_timeout: float | None = Field(default=None, gt=0)
    remembered_answers: int = Field(default=DEFAULT_REMEMBERED_ANSWERS, ge=0)
    name: str | None = "RPORewriter"

    _retriever: HistoryRetriever | None = PrivateAttr(default=None)
    # The rpo metadata of the last answers, by run id: what record_feedback(run_id=) reads.
    _recent: RecentAnswers = PrivateAttr(default_factory=RecentAnswers)

    @model_validator(mode="before")
    @classmethod
    def _adapter_defaults(cls, data: Any) -> Any:
        """Fill ``k`` and the cuts the caller left out from the adapter's recorded settings."""
        if not isinstance(data, dict):
            return data
        settings = getattr(data.get("reflection"), "adapter_settings", None)
        if not isinstance(settings, AdapterSettings):
            return data
        names = ["k", "max_query_chars"]
        if data.get("format_item") is None:
            # The adapter's item cut is that of an item's long field; a format_item renders
            # the item (a LaMP template, say) and applies that cut itself.
            names.append("max_item_chars")
        given = {name: data[name] for name in names if name in data}
        warn_if_differs(settings, "RPORewriter", stacklevel=5, **given)
        return {**{name: getattr(settings, name) for name in names}, **data}

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """Declare ``user_id``, as LangChain's own history runnables do."""
        return [user_id_spec()]

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        """Post-hoc: a draft (``str``, ``AIMessage``) or a :class:`RewriteRequest`; wrapping: the
        model's own input."""
        return self.llm.InputType if self.llm is not None else DraftInput

    @property
    def OutputType(self) -> Any:  # noqa: N802 - LangChain's name
        """The answer mirrors the draft: a ``str`` or a message."""
        return RewriteOutput

    @property
    def retriever(self) -> HistoryRetriever:
        """The retriever over :attr:`history` that recall goes through (built once)."""
        current = self._retriever
        if current is None or current.store is not self.history or current.k != self.k:
            self._retriever = HistoryRetriever(store=self.history, k=self.k)
        return self._retriever

    # ------------------------------------------------------------------ the pipeline

    def _rows(
        self, inputs: list[Any], configs: list[RunnableConfig], managers: list[Any]
    ) -> list[_Row]:
        rows = [
            _Row(value, cfg, rm) for value, cfg, rm in zip(inputs, configs, managers, strict=True)
        ]
        for row in rows:
            user_id = (row.config.get("configurable") or {}).get("user_id")
            if not isinstance(user_id, str) or not user_id:
                row.error = ValueError(
                    "RPORewriter needs to know whose history to use: pass "
                    "config={'configurable': {'user_id': '<user id>'}} to invoke/batch/stream, "
                    "or bind it once with rewriter.with_config(configurable={'user_id': "
                    f"'<user id>'}}); got user_id={user_id!r}."
                )
                continue
            row.user_id = user_id
            if self.llm is None:
                try:
                    row.draft = read_draft(row.value)
                except (TypeError, ValueError) as err:
                    row.error = err
        return rows

    def _prepare(self, rows: list[_Row]) -> _Plan:
        """Drafts (wrapping form), pass-through, then recall. Yields the calls it needs."""
        if self.llm is not None:
            todo = [row for row in rows if row.error is None]
            outs = yield _Call(
                self.llm, [r.value for r in todo], [r.child("rpo:draft") for r in todo]
            )
            for row, out in zip(todo, outs, strict=True):
                try:
                    if isinstance(out, Exception):
                        raise out
                    row.draft = read_wrapped(row.value, out)
                except Exception as err:  # noqa: BLE001 - no draft: this row fails alone
                    row.error = err
        for row in rows:
            if row.open and row.draft is not None and not row.draft.personalizable:
                row.fall_back(FallbackReason.NOT_PERSONALIZABLE)
        for row in rows:
            if not row.open:
                continue
            try:
                if self.history.count(row.user_id) == 0:
                    row.fall_back(FallbackReason.NO_HISTORY)
            except Exception as err:  # noqa: BLE001 - the draft is still a good answer
                row.fall_back(FallbackReason.RECALL_ERROR, err)
        if self.k == 0:
            return
        todo = [row for row in rows if row.open]
        outs = yield _Call(
            self.retriever,
            [row.draft.recall_query for row in todo],  # type: ignore[union-attr]
            [row.child("rpo:recall") for row in todo],
        )
        for row, out in zip(todo, outs, strict=True):
            if isinstance(out, Exception):
                row.fall_back(FallbackReason.RECALL_ERROR, out)
            else:
                row.docs = list(out)

    def _reflection_input(self, row: _Row) -> list[BaseMessage]:
        fmt = self.format_item or (lambda doc: doc.page_content)
        draft = row.draft
        assert draft is not None  # an open row has a draft
        return build_reflection_messages(
            draft.text,
            [fmt(doc) for doc in row.docs],
            draft.query,
            max_item_chars=self.max_item_chars,
            max_query_chars=self.max_query_chars,
        )

    def _reflect(self, rows: list[_Row]) -> _Plan:
        """The reflection of every open row, in one batch call."""
        prompts: dict[int, list[BaseMessage]] = {}
        for i, row in enumerate(rows):
            if not row.open:
                continue
            try:  # a format_item that fails on one item fails only its row
                prompts[i] = self._reflection_input(row)
            except Exception as err:  # noqa: BLE001 - the draft is still a good answer
                row.fall_back(FallbackReason.REFLECTION_ERROR, err)
        todo = [rows[i] for i in prompts]
        outs = yield _Call(
            self.reflection,
            list(prompts.values()),
            [row.child("rpo:reflect", *NOSTREAM_TAGS) for row in todo],
            self.reflection_timeout,
        )
        for row, out in zip(todo, outs, strict=True):
            if isinstance(out, TimeoutError):
                row.fall_back(FallbackReason.REFLECTION_TIMEOUT, out)
            elif isinstance(out, Exception):
                row.fall_back(FallbackReason.REFLECTION_ERROR, out)
            else:
                self._take_output(row, out)

    @staticmethod
    def _take_output(row: _Row, out: Any) -> None:
        """Read one reflection output (any chat model's message, or a string)."""
        try:
            row.raw = text_of(out)
        except TypeError as err:
            row.fall_back(FallbackReason.REFLECTION_NOT_TEXT, err)
            return
        row.stopped = _stopped_on_stop_sequence(out)
        usage = getattr(out, "usage_metadata", None)
        row.usage = dict(usage) if isinstance(usage, dict) else None  # type: ignore[assignment]

    def _answer(self, row: _Row) -> Any:
        """The row's output: its error, the rewrite, or the draft with the reason."""
        if row.error is not None:
            return row.error
        draft = row.draft
        assert draft is not None
        if row.open and row.trajectory is None:
            raw = row.raw or ""
            parsed, failure = try_parse(close_cut_rewrite(raw) if row.stopped else raw)
            if parsed is None:
                assert failure is not None
                row.fall_back(FallbackReason.from_parse_failure(failure))
            row.trajectory = parsed
        meta = self._metadata(row)
        # Every answer is remembered, a str one too: its run id is the only way to name it later.
        self._recent.remember(
            row.run_manager.run_id, row.run_manager.parent_run_id, meta, self.remembered_answers
        )
        if row.reason is not None:
            self._log(row)
            return draft.fallback(meta)
        assert row.trajectory is not None
        return draft.answer(row.trajectory.rewrite, meta)

    def _metadata(self, row: _Row) -> RPOMetadata:
        draft = row.draft
        assert draft is not None
        return rpo_metadata(
            user_id=row.user_id,
            draft=draft.text,
            k=self.k,
            query=draft.query,
            recalled=row.docs,
            trajectory=row.trajectory.to_dict() if row.reason is None and row.trajectory else None,
            raw_reflection=row.raw,
            reflection_usage=row.usage,
            reason=row.reason,
            detail=row.detail,
            run_id=str(row.run_manager.run_id),
        )

    @staticmethod
    def _log(row: _Row) -> None:
        reason = row.reason
        level = (
            logging.WARNING
            if reason in _WARN
            else logging.DEBUG
            if reason in _QUIET
            else logging.INFO
        )
        logger.log(
            level,
            "RPORewriter kept the draft for user %r: %s%s",
            row.user_id,
            reason,
            f" ({row.detail})" if row.detail else "",
        )

    # ------------------------------------------------------------------ drivers

    @staticmethod
    def _checked(call: _Call, outs: Any) -> list[Any]:
        if not isinstance(outs, list) or len(outs) != len(call.inputs):
            err = RuntimeError(
                f"{type(call.runnable).__name__}.batch returned "
                f"{len(outs) if isinstance(outs, list) else type(outs).__name__} results for "
                f"{len(call.inputs)} inputs"
            )
            return [err] * len(call.inputs)
        return outs

    @staticmethod
    def _timed_out(call: _Call) -> list[Any]:
        err = TimeoutError(f"no answer within reflection_timeout={call.timeout} s")
        return [err] * len(call.inputs)

    def _call(self, call: _Call) -> list[Any]:
        """Make a call, synchronously: per-row results, an exception in a failed row's place."""
        if not call.inputs:
            return []
        try:
            if call.timeout is None:
                return self._checked(
                    call, call.runnable.batch(call.inputs, call.configs, return_exceptions=True)
                )
            # The scope reaches the worker thread (the executor copies the context), so a local
            # ReflectionModel stops generating once the time is up.
            with cancel_scope() as cancel:
                executor = ContextThreadPoolExecutor(max_workers=1)
                future = executor.submit(
                    call.runnable.batch, call.inputs, call.configs, return_exceptions=True
                )
                executor.shutdown(wait=False)
                try:
                    return self._checked(call, future.result(timeout=call.timeout))
                except FutureTimeoutError:
                    cancel.set()
                    return self._timed_out(call)
        except Exception as err:  # noqa: BLE001 - a batch that ignores return_exceptions
            return [err] * len(call.inputs)

    async def _acall(self, call: _Call) -> list[Any]:
        """Async twin of :meth:`_call`: a timeout cancels the inner task."""
        if not call.inputs:
            return []
        try:
            outs = await asyncio.wait_for(
                call.runnable.abatch(call.inputs, call.configs, return_exceptions=True),
                call.timeout,
            )
        except TimeoutError:
            return self._timed_out(call)
        except Exception as err:  # noqa: BLE001 - every row falls back to its draft
            return [err] * len(call.inputs)
        return self._checked(call, outs)

    def _drive(self, plan: _Plan) -> None:
        try:
            call = next(plan)
            while True:
                call = plan.send(self._call(call))
        except StopIteration:
            return

    async def _adrive(self, plan: _Plan) -> None:
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._acall(call))
        except StopIteration:
            return

    # ------------------------------------------------------------------ invoke and batch

    def _run_batch(
        self,
        inputs: list[Any],
        run_manager: list[CallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[Any]:
        # LangChain passes these by name (run_manager=, config=): one per input.
        rows = self._rows(inputs, config, run_manager)
        self._drive(self._prepare(rows))
        self._drive(self._reflect(rows))
        return [self._answer(row) for row in rows]

    async def _arun_batch(
        self,
        inputs: list[Any],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[Any]:
        rows = self._rows(inputs, config, run_manager)
        await self._adrive(self._prepare(rows))
        await self._adrive(self._reflect(rows))
        return [self._answer(row) for row in rows]

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Personalize one draft (post-hoc) or one model input (wrapping)."""
        return self.batch([input], config, **kwargs)[0]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async twin of :meth:`invoke`."""
        return (await self.abatch([input], config, **kwargs))[0]

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Personalize many inputs: one draft batch, one recall batch, one reflection batch.

        With a :class:`~langchain_rpo.ReflectionModel` the reflection batch is decoded together.
        Each input may name its own user in its own config. Each row has its own fate: with
        ``return_exceptions=True`` a row whose input is invalid, whose user id is missing or
        whose draft call failed gives its exception, and the others their answers; without it,
        the first such error is raised.
        """
        if not inputs:
            return []
        return self._batch_with_config(
            self._run_batch, inputs, config, return_exceptions=return_exceptions
        )

    async def abatch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Async twin of :meth:`batch`."""
        if not inputs:
            return []
        return await self._abatch_with_config(
            self._arun_batch, inputs, config, return_exceptions=return_exceptions
        )

    # ------------------------------------------------------------------ streaming

    @staticmethod
    def _aggregate(final: Any, chunk: Any) -> Any:
        """Join upstream stream chunks (message chunks and strings add; others replace)."""
        if final is None:
            return chunk
        try:
            return final + chunk
        except TypeError:
            return chunk

    def _stream_reflection(self, row: _Row) -> Iterator[Any]:
        """The reflection's stream, cut off (and cancelled) at ``reflection_timeout``."""
        messages, cfg = self._reflection_input(row), row.child("rpo:reflect", *NOSTREAM_TAGS)
        if self.reflection_timeout is None:
            yield from self.reflection.stream(messages, cfg)
            return
        deadline = time.monotonic() + self.reflection_timeout
        pieces: queue.Queue[Any] = queue.Queue()
        done = object()

        def pump() -> None:
            try:
                for out in self.reflection.stream(messages, cfg):
                    pieces.put(out)
                pieces.put(done)
            except BaseException as err:  # noqa: BLE001 - re-raised in the consuming thread
                pieces.put(err)

        with cancel_scope() as cancel:
            executor = ContextThreadPoolExecutor(max_workers=1)
            executor.submit(pump)
            executor.shutdown(wait=False)
            try:
                while True:
                    try:
                        out = pieces.get(timeout=max(deadline - time.monotonic(), 0))
                    except queue.Empty:
                        raise TimeoutError(
                            f"the stream did not end within reflection_timeout="
                            f"{self.reflection_timeout} s"
                        ) from None
                    if out is done:
                        return
                    if isinstance(out, BaseException):
                        raise out
                    yield out
            finally:
                cancel.set()  # a no-op once the stream ended; else the generation stops

    async def _astream_reflection(self, row: _Row) -> AsyncIterator[Any]:
        """Async twin of :meth:`_stream_reflection`."""
        stream = self.reflection.astream(
            self._reflection_input(row), row.child("rpo:reflect", *NOSTREAM_TAGS)
        )
        if self.reflection_timeout is None:
            async for out in stream:
                yield out
            return
        deadline = asyncio.get_running_loop().time() + self.reflection_timeout
        iterator = stream.__aiter__()
        while True:
            remaining = max(deadline - asyncio.get_running_loop().time(), 0)
            try:
                out = await asyncio.wait_for(anext(iterator), remaining)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise TimeoutError(
                    f"the stream did not end within reflection_timeout={self.reflection_timeout} s"
                ) from None
            yield out

    def _transform(
        self,
        inputs: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[Any]:
        value = None
        for chunk in inputs:
            value = self._aggregate(value, chunk)
        rows = self._rows([value], [config], [run_manager])
        self._drive(self._prepare(rows))  # draft and recall are whole steps
        stream = _RewriteStream(self, rows[0])
        if stream.reflects:
            try:
                for out in self._stream_reflection(rows[0]):
                    yield from stream.feed(out)
                yield from stream.end()
            except Exception as err:  # noqa: BLE001 - the draft is still a good answer
                stream.fail(err)
        yield from stream.close()

    async def _atransform(
        self,
        inputs: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> AsyncIterator[Any]:
        value = None
        async for chunk in inputs:
            value = self._aggregate(value, chunk)
        rows = self._rows([value], [config], [run_manager])
        await self._adrive(self._prepare(rows))
        stream = _RewriteStream(self, rows[0])
        if stream.reflects:
            try:
                async for out in self._astream_reflection(rows[0]):
                    for piece in stream.feed(out):
                        yield piece
                for piece in stream.end():
                    yield piece
            except Exception as err:  # noqa: BLE001 - the draft is still a good answer
                stream.fail(err)
        for piece in stream.close():
            yield piece

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Stream the rewrite's text (never the reasoning) once the upstream input is complete."""
        yield from self._transform_stream_with_config(input, self._transform, config, **kwargs)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Stream the rewrite's text; the last chunk carries ``response_metadata["rpo"]``."""
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`transform`."""
        async for chunk in self._atransform_stream_with_config(
            input, self._atransform, config, **kwargs
        ):
            yield chunk

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`stream`."""

        async def once() -> AsyncIterator[Any]:
            yield input

        async for chunk in self.atransform(once(), config, **kwargs):
            yield chunk

    # ------------------------------------------------------------------ feedback

    def record_feedback(
        self,
        answer: BaseMessage | dict[str, Any] | None = None,
        *,
        run_id: UUID | str | None = None,
        edited: str | None = None,
        accepted: bool | None = None,
        rating: float | None = None,
        config: RunnableConfig | None = None,
    ) -> FeedbackEvent:
        """Record what the user did with an earlier answer, and learn from it at once.

        Stores a :class:`~langchain_rpo.feedback.FeedbackEvent` in :attr:`history`
        (``add_feedback``) and adds the user's final text (their edit, or the answer they
        accepted; nothing for a rejection) to their history, with metadata ``{"source":
        "feedback", "event_id", "verdict"}``, so the next answer can recall it. The event holds
        the recalled items' texts, looked up now (they are not in the answer's metadata, which
        reaches every trace), rendered with :attr:`format_item`, and this rewriter's cuts, so
        training rebuilds the prompt the reflection model read
        (``training/build_preferences.py``).

        Name the answer with exactly one of ``answer`` (the message, or its ``rpo`` metadata:
        works in any process) or ``run_id`` (the run that gave it: this rewriter remembers its
        last :attr:`remembered_answers` answers in this process). ``run_id`` is the only way to
        name a ``str`` answer, which carries no metadata.

        Example:
            ```python
            answer = rewriter.invoke(draft, config={"configurable": {"user_id": "alice"}})
            rewriter.record_feedback(answer, edited="Rust 1.76 is out")  # or accepted=True/False

            run_id = uuid.uuid4()  # or answer.response_metadata["rpo"]["run_id"]
            rewriter.invoke(draft, config={"run_id": run_id, "configurable": {"user_id": "alice"}})
            rewriter.record_feedback(run_id=run_id, accepted=True)
            ```

        Args:
            answer: The message this rewriter returned, or its ``response_metadata["rpo"]``
                dict (kept from an earlier request, say).
            run_id: Instead of ``answer``: the id of the run that gave it. Either the
                rewriter's own run (``response_metadata["rpo"]["run_id"]``; the
                ``config["run_id"]`` of a direct ``invoke``/``stream``; each row of a batch has
                its own), or the run directly around it (the ``config["run_id"]`` of a chain
                ``prompt | model | rewriter`` invoked with it), when that run gave one answer.
            edited: The text the user turned the answer into (an edit equal to the answer is
                recorded as accepted).
            accepted: True: kept as it was; False: discarded. Give it or ``edited``.
            rating: The user's rating, if any (any finite number).
            config: Optional; a ``configurable`` ``user_id`` in it must be the answer's user.

        Returns:
            The stored event.

        Raises:
            ValueError: On a malformed call (both or neither of ``answer`` and ``run_id``, a run
                id this rewriter does not remember, a ``str`` answer, no ``rpo`` metadata, no
                user, a user in ``config`` other than the answer's, no verdict, an empty edit,
                an edit with ``accepted=True``, a text the history refuses). Everything is
                checked before anything is written, so such a call changes nothing. When the
                history item cannot be added after the event was stored, the event is deleted
                again and the error raised: the call is all or nothing.
        """
        named = answer_to_record(answer, run_id, self._recent, self.remembered_answers)
        meta, user_id, ids = feedback_target(named, config)
        docs = self.history.get(user_id, ids) if ids else []
        event, entry = build_feedback(
            meta, docs, format_item=self.format_item, max_item_chars=self.max_item_chars,
            max_query_chars=self.max_query_chars, edited=edited, accepted=accepted,
            rating=rating,
        )  # fmt: skip
        return store_feedback(self.history, event, entry)

    async def arecord_feedback(
        self,
        answer: BaseMessage | dict[str, Any] | None = None,
        *,
        run_id: UUID | str | None = None,
        edited: str | None = None,
        accepted: bool | None = None,
        rating: float | None = None,
        config: RunnableConfig | None = None,
    ) -> FeedbackEvent:
        """Async twin of :meth:`record_feedback`."""
        named = answer_to_record(answer, run_id, self._recent, self.remembered_answers)
        meta, user_id, ids = feedback_target(named, config)
        docs = await self.history.aget(user_id, ids) if ids else []
        event, entry = build_feedback(
            meta, docs, format_item=self.format_item, max_item_chars=self.max_item_chars,
            max_query_chars=self.max_query_chars, edited=edited, accepted=accepted,
            rating=rating,
        )  # fmt: skip
        return await astore_feedback(self.history, event, entry)


class _RewriteStream:
    """The streamed side of one row: the rewrite's text as it comes, then the closing chunk.

    A failure after some rewrite text was streamed cannot take that text back: the closing
    chunk then carries the reason, and the draft in its metadata.
    """

    def __init__(self, rewriter: RPORewriter, row: _Row) -> None:
        if row.error is not None:
            raise row.error
        self._rewriter = rewriter
        self._row = row
        self._draft: Draft = row.draft  # type: ignore[assignment]
        self._pieces: list[str] = []
        self._extractor = RewriteStreamExtractor()
        self._emitted = False

    @property
    def reflects(self) -> bool:
        """Whether the row goes on to the reflection."""
        return self._row.open

    def _out(self, text: str) -> list[Any]:
        if not text:
            return []
        self._emitted = True
        return [self._draft.chunk(text)]

    def feed(self, out: Any) -> list[Any]:
        """Take one chunk of reflection output; return the rewrite chunks it makes certain."""
        try:
            piece = text_of(out)
        except TypeError as err:
            raise _NotText(err) from err
        self._pieces.append(piece)
        self._row.stopped = self._row.stopped or _stopped_on_stop_sequence(out)
        usage = getattr(out, "usage_metadata", None)
        if isinstance(usage, dict):  # chunks' usages add up, as LangChain sums chunks
            self._row.usage = add_usage(self._row.usage, usage)  # type: ignore[arg-type]
        return self._out(self._extractor.feed(piece))

    def end(self) -> list[Any]:
        """The reflection output is complete: release what was held back."""
        return self._out(self._extractor.flush())

    def fail(self, err: Exception) -> None:
        """The reflection model failed (or ran out of time) mid-stream."""
        if isinstance(err, _NotText):
            self._row.fall_back(FallbackReason.REFLECTION_NOT_TEXT, err.__cause__)
        elif isinstance(err, TimeoutError):
            self._row.fall_back(FallbackReason.REFLECTION_TIMEOUT, err)
        else:
            self._row.fall_back(FallbackReason.REFLECTION_ERROR, err)

    def close(self) -> list[Any]:
        """The closing chunk: the rest of the answer (the draft when nothing was streamed)."""
        row = self._row
        if row.open:
            row.raw = "".join(self._pieces)
        answer = self._rewriter._answer(row)
        meta: RPOMetadata = (
            answer.response_metadata[RPO_METADATA_KEY]
            if isinstance(answer, BaseMessage)
            else self._rewriter._metadata(row)
        )
        if isinstance(self._draft.original, str):
            return [answer] if answer and not self._emitted else []
        if not self._emitted and row.reason == FallbackReason.NOT_PERSONALIZABLE:
            return [answer]  # passed through exactly as it came (tool calls and all)
        if self._emitted and row.reason is None and not self._extractor.closed and not row.stopped:
            meta["stream_note"] = "the streamed rewrite was cut off before </rewrite>"
        text = "" if self._emitted else str(answer.text)
        return [self._draft.closing_chunk(text, meta)]


class _NotText(Exception):
    """A streamed reflection output that is not text."""
