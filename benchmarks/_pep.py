"""Shared set-up of the model benchmarks: the bundled PEP titles set, its store, SmolLM2, drafts.

The PEP set (``langchain_rpo/data/pep_titles``) is LaMP-5-shaped: each question is an abstract
to title, with its author's earlier PEPs as the profile. As in the LaMP harness, each question's
profile is indexed under the question id as the user, each item rendered in the task's LaMP
item template (``"<title>" is a title for "<abstract>"``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage

from langchain_rpo.history import UserHistoryStore

PEP_DIR = Path(__file__).resolve().parents[1] / "langchain_rpo" / "data" / "pep_titles"


def pep_questions(split: str = "dev", n: int | None = None, min_profile: int = 1) -> list[dict]:
    """The first ``n`` questions of a split that have at least ``min_profile`` profile items."""
    questions = json.loads((PEP_DIR / f"{split}_questions.json").read_text(encoding="utf-8"))
    questions = [q for q in questions if len(q.get("profile") or []) >= min_profile]
    return questions[:n] if n is not None else questions


def _task() -> Any:
    from langchain_rpo.lamp.tasks import get_task

    return get_task("LaMP_5")


def item_text(item: dict, max_chars: int | None = 300) -> str:
    """One profile item as the reflection model reads it (the LaMP-5 item template)."""
    return _task().render_item(item, max_chars)


def query_text(question: dict) -> str:
    """The retrieval text of a question (the abstract)."""
    return _task().query_text(question["input"])


def pep_store(
    questions: list[dict], embeddings: Any = None, max_item_chars: int | None = 300
) -> UserHistoryStore:
    """A store holding each question's profile under the question id (MiniLM by default).

    Each item is stored rendered in the LaMP-5 item template, its abstract cut at
    ``max_item_chars`` (what ``rpo eval`` shows an adapter is its ``rpo_settings.json`` cut).
    """
    store = UserHistoryStore(embeddings)
    for q in questions:
        store.add_texts(
            q["id"],
            [item_text(item, max_item_chars) for item in q["profile"]],
            ids=[f"{q['id']}/{item['id']}" for item in q["profile"]],
        )
    return store


def load_smollm2(
    adapter: bool | str | None, max_new_tokens: int, batch_size: int = 16
) -> tuple[Any, str]:
    """SmolLM2-135M-Instruct (offline), with the bundled adapter when asked and shipped.

    Args:
        adapter: False: the base model. None: the bundled adapter when the package ships one.
            A path: that LoRA adapter.

    Returns:
        The model and a description of which weights it holds.
    """
    from langchain_rpo import assets
    from langchain_rpo.reflection import ReflectionModel

    if isinstance(adapter, str):
        model = ReflectionModel.from_pretrained(
            adapter=adapter, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        return model, f"SmolLM2-135M-Instruct + adapter {adapter}"
    bundled = assets.bundled_adapter_path()
    use = adapter is not False and bundled is not None
    model = ReflectionModel.from_pretrained(
        adapter=None if use else False, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    which = (
        f"SmolLM2-135M-Instruct + bundled adapter ({bundled})"
        if use
        else (
            "SmolLM2-135M-Instruct, base (no adapter"
            + (")" if adapter is False else "; none is bundled yet)")
        )
    )
    return model, which


def base_drafts(model: Any, questions: list[dict], max_new_tokens: int = 24) -> list[str]:
    """Drafts of the base model: its answer to each question with no history (one batch)."""
    from langchain_rpo.reflection import ReflectionModel

    drafter = ReflectionModel.from_model(
        model.model, model.tokenizer, max_new_tokens=max_new_tokens, stop_strings=["\n"]
    )
    outs = drafter.batch([q["input"] for q in questions])
    return [" ".join(str(o.content).split()) or "Untitled" for o in outs]


def rewriter_inputs(questions: list[dict], drafts: list[str]) -> tuple[list[dict], list[dict]]:
    """Post-hoc rewriter inputs (query, recall query, AIMessage draft) and their configs."""
    inputs = [
        {"query": q["input"], "recall_query": query_text(q), "draft": AIMessage(content=d)}
        for q, d in zip(questions, drafts, strict=True)
    ]
    configs = [{"configurable": {"user_id": q["id"]}} for q in questions]
    return inputs, configs


def torch_settings() -> dict[str, str]:
    """The torch thread settings, for the header."""
    import torch

    return {
        "torch threads": str(torch.get_num_threads()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "(unset)"),
    }


class Stopwatch:
    """Seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
