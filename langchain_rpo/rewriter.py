"""RPORewriter: the LCEL face of RPO (draft -> recall -> reflect -> answer).

Two ways to compose it:

- **post-hoc**: ``prompt | chat_model | rewriter`` personalizes whatever the chain answers. The
  input is the draft: an ``AIMessage``, a ``str``, or ``{"query": ..., "draft": ...}`` when the
  request is known too.
- **wrapping**: ``RPORewriter(llm=chat_model, ...)`` takes the model's own input, asks the model
  for the draft (the model never sees the user's history) and knows the query.

The user is named by ``config["configurable"]["user_id"]``. Output mirrors input: an
``AIMessage`` draft gives an ``AIMessage`` whose ``response_metadata["rpo"]`` holds the draft,
the trajectory, the recalled item ids and any fallback reason; a ``str`` gives a ``str``. Nothing
is ever lost: a user without history, an unusable reflection output or a failing reflection
model all return the draft unchanged, with the reason in the metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import ConfigDict, Field

from langchain_rpo.history import UserHistoryStore
from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.retriever import HistoryRetriever, user_id_spec
from langchain_rpo.trajectory import RewriteStreamExtractor, try_parse

__all__ = ["RPO_METADATA_KEY", "FallbackReason", "RPORewriter"]

RPO_METADATA_KEY = "rpo"


class FallbackReason:
    """Why a draft was returned unchanged (the ``fallback_reason`` in the metadata).

    Parse failures use the values of :class:`~langchain_rpo.trajectory.ParseFailure`.
    """

    NO_HISTORY = "no_history"
    RECALL_ERROR = "recall_error"
    REFLECTION_ERROR = "reflection_error"


def _text_of(value: Any) -> str:
    """Text of a message, a prompt value, a list of messages or a plain string."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return str(value.text)
    if isinstance(value, PromptValue):
        messages = value.to_messages()
        return str(messages[-1].text) if messages else ""
    if isinstance(value, Sequence) and value and isinstance(value[-1], BaseMessage):
        return str(value[-1].text)
    raise TypeError(f"cannot read text from a {type(value).__name__}")


@dataclass
class _Job:
    """One rewrite in flight: what the pipeline knows about a single input."""

    draft: str
    query: str | None
    recall_query: str
    mirror: Literal["message", "str"]
    draft_message: BaseMessage | None = None
    user_id: str = ""
    docs: list[Document] = field(default_factory=list)
    reason: str | None = None  # set when the draft must be returned unchanged

    def metadata(self, k: int, raw: str | None, trajectory: dict[str, str] | None) -> dict:
        return {
            "user_id": self.user_id,
            "k": k,
            "query": self.query,
            "draft": self.draft,
            "recalled_ids": [doc.id for doc in self.docs],
            "recalled_scores": [doc.metadata.get("score") for doc in self.docs],
            "trajectory": trajectory,
            "raw_reflection": raw,
            "personalized": self.reason is None,
            "fallback_reason": self.reason,
        }


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
        history: The per-user history store recalled from.
        reflection: The reflection model: any chat model; usually a ``ReflectionModel``.
        llm: In the wrapping form, the model that writes the draft; None for post-hoc use.
        k: How many history items to recall (0 runs the reflection without history).
        format_item: Renders a recalled ``Document`` for the reflection prompt (default: its
            ``page_content``).
        max_item_chars: Each recalled item is cut to this many characters in the prompt.
        max_query_chars: The query is cut to this many characters in the prompt.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    history: UserHistoryStore
    reflection: Runnable
    llm: Runnable | None = None
    k: int = Field(default=4, ge=0)
    format_item: Callable[[Document], str] | None = None
    max_item_chars: int | None = 300
    max_query_chars: int | None = 1000
    name: str | None = "RPORewriter"

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """Declare ``user_id``, as LangChain's own history runnables do."""
        return [user_id_spec()]

    # ------------------------------------------------------------------ pure steps

    @staticmethod
    def _user_id(config: RunnableConfig) -> str:
        user_id = (config.get("configurable") or {}).get("user_id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(
                "RPORewriter needs to know whose history to use: pass "
                "config={'configurable': {'user_id': '<user id>'}} to invoke/batch/stream, or "
                "bind it once with rewriter.with_config(configurable={'user_id': '<user id>'})."
            )
        return user_id

    @staticmethod
    def _post_hoc_job(value: Any) -> _Job:
        """Read a post-hoc input: a message, a string, or {"query", "draft"}."""
        query = recall_query = None
        if isinstance(value, dict):
            if "draft" not in value:
                raise ValueError(
                    "A dict input to RPORewriter needs a 'draft' key (and optionally 'query' and "
                    f"'recall_query'); got keys {sorted(value)}."
                )
            query, recall_query, value = (
                value.get("query"),
                value.get("recall_query"),
                value["draft"],
            )
        if isinstance(value, BaseMessage):
            draft, mirror, message = str(value.text), "message", value
        elif isinstance(value, str):
            draft, mirror, message = value, "str", None
        else:
            raise TypeError(
                "RPORewriter personalizes a draft: pass an AIMessage, a str, or "
                f"{{'query': ..., 'draft': ...}}; got a {type(value).__name__}. To have it call "
                "the model itself, build it as RPORewriter(llm=chat_model, ...)."
            )
        return _Job(
            draft=draft,
            query=query,
            recall_query=recall_query or query or draft,
            mirror=mirror,
            draft_message=message,
        )

    @staticmethod
    def _wrapped_job(model_input: Any, draft: Any) -> _Job:
        """Build a job from the wrapped model's input (the query) and its output (the draft)."""
        try:
            query: str | None = _text_of(model_input) or None
        except TypeError:  # an input we cannot read as text: recall from the draft instead
            query = None
        job = RPORewriter._post_hoc_job(draft)
        job.query = query
        job.recall_query = query or job.draft
        return job

    def _reflection_input(self, job: _Job) -> list[BaseMessage]:
        fmt = self.format_item or (lambda doc: doc.page_content)
        return build_reflection_messages(
            job.draft,
            [fmt(doc) for doc in job.docs],
            job.query,
            max_item_chars=self.max_item_chars,
            max_query_chars=self.max_query_chars,
        )

    def _finish(self, job: _Job, raw: str | None) -> Any:
        """Turn a reflection output (or a fallback) into the mirrored output."""
        answer, trajectory = job.draft, None
        if job.reason is None:
            parsed, failure = try_parse(raw or "")
            if parsed is None:
                job.reason = failure.value if failure else "unparsable"
            else:
                answer, trajectory = parsed.rewrite, parsed.to_dict()
        if job.mirror == "str":
            return answer
        meta = job.metadata(self.k, raw, trajectory)
        return self._message(job, answer, meta)

    @staticmethod
    def _message(job: _Job, content: str, meta: dict, cls: type = AIMessage) -> BaseMessage:
        base = job.draft_message
        response_metadata = dict(getattr(base, "response_metadata", {}) or {})
        response_metadata[RPO_METADATA_KEY] = meta
        extra = {"id": base.id} if base is not None and base.id else {}
        return cls(content=content, response_metadata=response_metadata, **extra)

    def _retriever(self) -> HistoryRetriever:
        return HistoryRetriever(store=self.history, k=self.k)

    @staticmethod
    def _children(
        configs: list[RunnableConfig], run_managers: list[Any], tag: str, rows: list[int]
    ) -> list[RunnableConfig]:
        """Child configs (callbacks tagged with the step) for the given rows."""
        return [patch_config(configs[i], callbacks=run_managers[i].get_child(tag)) for i in rows]

    # ------------------------------------------------------------------ pipeline steps
    # Each step is split into a pure "plan" and a pure "take", so the sync and async paths
    # differ only in how they call the draft model, the retriever and the reflection model.

    def _make_jobs(
        self, inputs: list[Any], drafts: list[Any] | None, configs: list[RunnableConfig]
    ) -> list[_Job]:
        """Read each input (post-hoc) or each model input and its draft (wrapping)."""
        user_ids = [self._user_id(cfg) for cfg in configs]
        if drafts is None:
            jobs = [self._post_hoc_job(value) for value in inputs]
        else:
            jobs = [self._wrapped_job(i, d) for i, d in zip(inputs, drafts, strict=True)]
        for job, user_id in zip(jobs, user_ids, strict=True):
            job.user_id = user_id
        return jobs

    def _recall_rows(self, jobs: list[_Job]) -> list[int]:
        """Rows that need a recall; users without history fall back to their draft here."""
        rows = []
        for i, job in enumerate(jobs):
            if self.history.count(job.user_id) == 0:
                job.reason = FallbackReason.NO_HISTORY
            elif self.k > 0:
                rows.append(i)
        return rows

    @staticmethod
    def _take_recall(jobs: list[_Job], rows: list[int], found: list[Any] | Exception) -> None:
        for i, docs in zip(rows, found if isinstance(found, list) else [found] * len(rows)):
            if isinstance(docs, Exception):  # the draft is still a good answer
                jobs[i].reason = f"{FallbackReason.RECALL_ERROR}: {type(docs).__name__}: {docs}"
            else:
                jobs[i].docs = list(docs)

    @staticmethod
    def _reflect_rows(jobs: list[_Job]) -> list[int]:
        return [i for i, job in enumerate(jobs) if job.reason is None]

    @staticmethod
    def _take_reflection(
        jobs: list[_Job], rows: list[int], outputs: list[Any] | Exception
    ) -> list[str | None]:
        raws: list[str | None] = [None] * len(jobs)
        for i, out in zip(rows, outputs if isinstance(outputs, list) else [outputs] * len(rows)):
            if isinstance(out, Exception):
                jobs[i].reason = f"{FallbackReason.REFLECTION_ERROR}: {type(out).__name__}: {out}"
            else:
                raws[i] = _text_of(out)
        return raws

    # ------------------------------------------------------------------ sync

    def _run_batch(
        self,
        inputs: list[Any],
        run_manager: list[CallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[Any]:
        # LangChain passes these by name (run_manager=, config=): one per input.
        rms, cfgs, every = run_manager, config, list(range(len(inputs)))
        drafts = None
        if self.llm is not None:
            drafts = self.llm.batch(inputs, self._children(cfgs, rms, "rpo:draft", every))
        jobs = self._make_jobs(inputs, drafts, cfgs)
        rows = self._recall_rows(jobs)
        if rows:
            try:
                found: list[Any] | Exception = self._retriever().batch(
                    [jobs[i].recall_query for i in rows],
                    self._children(cfgs, rms, "rpo:recall", rows),
                    return_exceptions=True,
                )
            except Exception as err:
                found = err
            self._take_recall(jobs, rows, found)
        rows = self._reflect_rows(jobs)
        outputs: list[Any] | Exception = []
        if rows:
            try:
                outputs = self.reflection.batch(
                    [self._reflection_input(jobs[i]) for i in rows],
                    self._children(cfgs, rms, "rpo:reflect", rows),
                    return_exceptions=True,
                )
            except Exception as err:  # a model whose batch ignores return_exceptions
                outputs = err
        raws = self._take_reflection(jobs, rows, outputs)
        return [self._finish(job, raw) for job, raw in zip(jobs, raws, strict=True)]

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Personalize one draft (post-hoc) or one model input (wrapping)."""
        return self.batch([input], config, **kwargs)[0]

    def batch(
        self,
        inputs: list[Any],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Personalize many inputs: one draft batch, one recall batch, one reflection batch.

        With a :class:`~langchain_rpo.ReflectionModel` the reflection batch is one padded
        ``generate`` call. Each input may name its own user in its own config.
        """
        if not inputs:
            return []
        return self._batch_with_config(
            self._run_batch, inputs, config, return_exceptions=return_exceptions
        )

    # ------------------------------------------------------------------ async

    async def _arun_batch(
        self,
        inputs: list[Any],
        run_manager: list[AsyncCallbackManagerForChainRun],
        config: list[RunnableConfig],
    ) -> list[Any]:
        rms, cfgs, every = run_manager, config, list(range(len(inputs)))
        drafts = None
        if self.llm is not None:
            drafts = await self.llm.abatch(inputs, self._children(cfgs, rms, "rpo:draft", every))
        jobs = self._make_jobs(inputs, drafts, cfgs)
        rows = self._recall_rows(jobs)
        if rows:
            try:
                found: list[Any] | Exception = await self._retriever().abatch(
                    [jobs[i].recall_query for i in rows],
                    self._children(cfgs, rms, "rpo:recall", rows),
                    return_exceptions=True,
                )
            except Exception as err:
                found = err
            self._take_recall(jobs, rows, found)
        rows = self._reflect_rows(jobs)
        outputs: list[Any] | Exception = []
        if rows:
            try:
                outputs = await self.reflection.abatch(
                    [self._reflection_input(jobs[i]) for i in rows],
                    self._children(cfgs, rms, "rpo:reflect", rows),
                    return_exceptions=True,
                )
            except Exception as err:  # a model whose abatch ignores return_exceptions
                outputs = err
        raws = self._take_reflection(jobs, rows, outputs)
        return [self._finish(job, raw) for job, raw in zip(jobs, raws, strict=True)]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async twin of :meth:`invoke`."""
        return (await self.abatch([input], config, **kwargs))[0]

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

    def _transform(
        self,
        inputs: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
    ) -> Iterator[Any]:
        value = None
        for chunk in inputs:
            value = self._aggregate(value, chunk)
        # Draft and recall are whole steps: only the reflection streams.
        drafts = None
        if self.llm is not None:
            drafts = [
                self.llm.invoke(value, self._children([config], [run_manager], "rpo:draft", [0])[0])
            ]
        (job,) = self._make_jobs([value], drafts, [config])
        if self._recall_rows([job]):
            try:
                found: list[Any] | Exception = [
                    self._retriever().invoke(
                        job.recall_query,
                        self._children([config], [run_manager], "rpo:recall", [0])[0],
                    )
                ]
            except Exception as err:
                found = err
            self._take_recall([job], [0], found)
        stream = _RewriteStream(self, job)
        if job.reason is None:
            try:
                for out in self.reflection.stream(
                    self._reflection_input(job),
                    self._children([config], [run_manager], "rpo:reflect", [0])[0],
                ):
                    yield from stream.feed(out)
                yield from stream.end()
            except Exception as err:
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
        drafts = None
        if self.llm is not None:
            drafts = [
                await self.llm.ainvoke(
                    value, self._children([config], [run_manager], "rpo:draft", [0])[0]
                )
            ]
        (job,) = self._make_jobs([value], drafts, [config])
        if self._recall_rows([job]):
            try:
                found: list[Any] | Exception = [
                    await self._retriever().ainvoke(
                        job.recall_query,
                        self._children([config], [run_manager], "rpo:recall", [0])[0],
                    )
                ]
            except Exception as err:
                found = err
            self._take_recall([job], [0], found)
        stream = _RewriteStream(self, job)
        if job.reason is None:
            try:
                async for out in self.reflection.astream(
                    self._reflection_input(job),
                    self._children([config], [run_manager], "rpo:reflect", [0])[0],
                ):
                    for chunk in stream.feed(out):
                        yield chunk
                for chunk in stream.end():
                    yield chunk
            except Exception as err:
                stream.fail(err)
        for chunk in stream.close():
            yield chunk

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


class _RewriteStream:
    """The streamed side of one rewrite: rewrite text as it comes, then the closing chunk."""

    def __init__(self, rewriter: RPORewriter, job: _Job) -> None:
        self._rewriter = rewriter
        self._job = job
        self._pieces: list[str] = []
        self._extractor = RewriteStreamExtractor()
        self._emitted = False

    def _chunk(self, text: str, meta: dict | None = None) -> Any:
        if self._job.mirror == "str":
            return text
        if meta is None:
            return AIMessageChunk(content=text)
        return self._rewriter._message(self._job, text, meta, cls=AIMessageChunk)

    def _out(self, text: str) -> list[Any]:
        if not text:
            return []
        self._emitted = True
        return [self._chunk(text)]

    def feed(self, out: Any) -> list[Any]:
        """Take one chunk of reflection output; return the rewrite chunks it makes certain."""
        self._pieces.append(_text_of(out))
        return self._out(self._extractor.feed(self._pieces[-1]))

    def end(self) -> list[Any]:
        """The reflection output is complete: release what was held back."""
        return self._out(self._extractor.flush())

    def fail(self, err: Exception) -> None:
        """The reflection model failed mid-stream."""
        self._job.reason = f"{FallbackReason.REFLECTION_ERROR}: {type(err).__name__}: {err}"

    def close(self) -> list[Any]:
        """The closing chunk: the draft when nothing was streamed, and the metadata."""
        job = self._job
        raw = "".join(self._pieces) if job.reason is None else None
        answer = self._rewriter._finish(job, raw)
        if self._emitted:
            text = ""
        else:
            text = answer if isinstance(answer, str) else str(answer.content)
        if job.mirror == "str":
            return [text] if text else []
        meta = answer.response_metadata[RPO_METADATA_KEY]
        if self._emitted and not self._extractor.closed:
            meta["stream_note"] = "the streamed rewrite was cut off before </rewrite>"
        return [self._chunk(text, meta)]
