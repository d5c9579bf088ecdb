"""``rpo demo``: personalize PEP titles for a few real authors, offline, side by side.

The base ("black-box") model drafts a title for a PEP abstract without any history; the
author's earlier PEPs are recalled from a :class:`~langchain_rpo.UserHistoryStore`; the
reflection model rewrites the draft; the author's real title is shown beside both. Everything
runs on the embedded defaults (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) with no network.
"""

from __future__ import annotations

import argparse
import os
import textwrap
import time
from collections.abc import Sequence
from operator import itemgetter

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser``."""
    parser.add_argument("--users", type=int, default=3, help="how many authors to show")
    parser.add_argument("--k", type=int, default=4, help="history items recalled per request")
    parser.add_argument(
        "--adapter",
        default=None,
        help="LoRA adapter of the reflection model: a path, 'none' for the bare model "
        "(default: the bundled adapter when the package ships one)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=96, help="reflection budget (a trajectory)"
    )
    parser.add_argument(
        "--max-item-chars",
        type=int,
        default=80,
        help="cut a recalled PEP's abstract to this many characters (the bundled adapter was "
        "trained and scored with 80)",
    )


def _pick(questions: Sequence, n: int, min_profile: int = 3) -> list:
    """The first ``n`` questions of distinct authors with at least ``min_profile`` past PEPs."""
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


def main(args: argparse.Namespace | None = None) -> int:
    """Run the demo and print drafts, rewrites and the real titles."""
    if args is None:
        parser = argparse.ArgumentParser(prog="rpo demo", description=__doc__)
        add_arguments(parser)
        args = parser.parse_args()
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
    store = UserHistoryStore()
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
    reflection = ReflectionModel.from_pretrained(
        adapter=adapter, max_new_tokens=args.max_new_tokens
    )
    t_load = time.perf_counter() - started

    def show_item(doc: Document) -> str:
        # The reflection model sees each recalled PEP as the LaMP-5 item template renders it,
        # cut as in the adapter's training data.
        return task.render_item(doc.metadata, args.max_item_chars or None)

    prompt = ChatPromptTemplate.from_messages([("human", "{input}")])
    rewriter = RPORewriter(history=store, reflection=reflection, k=args.k, format_item=show_item)
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
    print(f"  history store    : all-MiniLM-L6-v2 + FAISS, k={args.k}")
    width = 96
    drafts, rewrites, reals = [], [], []
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
            print(textwrap.fill(f"  preferences: {trajectory['preferences']}", width))
        print(f"  draft   : {meta['draft']}")
        status = "" if meta["personalized"] else f"   [draft kept: {meta['fallback_reason']}]"
        print(f"  rewrite : {answer.content}{status}")
        print(f"  real    : {real}")
    print("\n" + "=" * width)
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
    raise SystemExit(main())
