"""Where the rewrite loses to the draft: how often, by how much, and whether it can be seen coming.

A personalization layer should rarely be worse than the model alone. This benchmark reads the
answers of an ``rpo eval`` run (``OUT/SET/zero_outputs.json`` and ``rpo_outputs.json``, with the
run's ``cache/rpo.jsonl`` for the recalled items) and reports, per set and pooled:

- the questions where the rewrite scores below the draft (the task's own metric, ROUGE-L for
  the title sets), how many of those rewrites score 0, how many lose by less than 0.1, and what
  the losses cost against what the wins bring;
- for each *gold-free* signal the rewriter could read at run time (the reflection model's
  confidence in its rewrite, the rewrite's length, its overlap with the draft, the request and
  the recalled items, its agreement with the same adapter at k=0), the AUC of "a loss has a lower
  value" (0.5: no better than chance) and what a gate would do that keeps the draft for the
  lowest-scoring share of the answers: the worst per-set loss rate and the pooled score, beside a
  random gate (each answer kept with the same probability) and the oracle (the draft kept exactly
  where the rewrite loses).

The confidence (``--confidence``) is the mean token log-probability of the rewrite under the run's
reflection model and adapter, teacher-forced on the prompt the rewriter built (rebuilt from the
cache: the draft, the recalled items in the task's template, the request) and the rewrite-only
answer ``<rewrite>...</rewrite>``, its closing tag included (the model's belief that the rewrite is
complete). For a rewrite-only adapter that is exactly the answer it generated; for a trajectory
adapter it scores the rewrite without the reasoning that preceded it.

Run from the repository root (after ``rpo eval --set $SETS --methods zero,rpo --out runs/eval``)::

    python -m benchmarks.draft_losses \\
        --set pep,eip=../shared/data/eip,bip=../shared/data/bip,swift=../shared/data/swift,goblog=../shared/data/goblog \\
        --run runs/eval --confidence --out benchmarks/lamp_five_sets_rewrite_only/draft_losses

It writes ``draft_losses.md``, ``draft_losses.json`` and ``draft_losses.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.messages import BaseMessage

from langchain_rpo.atomic import atomic_write
from langchain_rpo.lamp.bootstrap import MEAN_METRICS, per_question
from langchain_rpo.lamp.data import Question, iter_questions, read_outputs
from langchain_rpo.lamp.harness import JsonlCache
from langchain_rpo.lamp.sets import BundledSet, parse_sets
from langchain_rpo.lamp.tasks import TaskSpec, get_task
from langchain_rpo.selection import lcs_f1, tokens

if TYPE_CHECKING:
    from langchain_rpo.reflection import ReflectionModel

__all__ = [
    "ConfidenceScorer",
    "Row",
    "SetAnswers",
    "add_confidence",
    "auc",
    "gate",
    "headline_metric",
    "load_rows",
    "main",
    "rebuild_messages",
]

#: The shares of answers a gate hands back to the draft, in the table and the chart.
SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
#: The issue's bar: worse than the model alone on fewer than this share of each set's questions.
LOSS_BAR = 0.10


def headline_metric(task: TaskSpec) -> str:
    """The task's per-question metric compared here: ROUGE-L for text, else its first mean metric."""
    scored = [m for m in task.metrics if m in MEAN_METRICS]
    return "rouge-L" if "rouge-L" in scored else scored[0]


@dataclass
class Row:
    """One question: the draft's and the rewrite's scores, and the gold-free signals.

    Scores are higher-is-better (an error metric such as MAE is negated), so a loss is always
    ``rewrite < draft``.
    """

    set: str
    id: str
    draft: float
    rewrite: float
    signals: dict[str, float] = field(default_factory=dict)

    @property
    def loss(self) -> bool:
        """Whether the rewrite scores below the draft."""
        return self.rewrite < self.draft


def _share_in(words: Sequence[str], pool: set[str]) -> float:
    return sum(w in pool for w in words) / len(words) if words else 0.0


def _cached_infos(path: Path, outputs: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The harness cache's ``info`` of each answer in ``outputs`` (the newest matching record).

    Matched on the answer rather than the method's signature, which the run does not record.
    """
    return {
        record["id"]: record.get("info") or {}
        for record in JsonlCache(path).records()
        if record.get("id") in outputs and record.get("output") == outputs[record["id"]]
    }


@dataclass
class SetAnswers:
    """One set's answers in a run: the scored rows and what rebuilding its prompts needs."""

    rows: list[Row]
    task: TaskSpec
    questions: dict[str, Question]
    infos: dict[str, dict[str, Any]]  # the harness cache's info by id (draft, recalled ids)
    rewrites: dict[str, str]


def load_rows(
    one: BundledSet, split: str, run: Path, *, draft_method: str = "zero", method: str = "rpo"
) -> SetAnswers:
    """Score one set's answers and compute the text signals.

    Returns:
        The rows (in gold-id order) with everything :func:`add_confidence` needs.

    Raises:
        FileNotFoundError: When the run has no answers of ``draft_method`` or ``method``.
    """
    questions_path, outputs_path = one.files(split)
    golds = read_outputs(outputs_path)
    task = get_task(golds.task)
    folder = run / one.name
    drafts = read_outputs(folder / f"{draft_method}_outputs.json", task).outputs
    rewrites = read_outputs(folder / f"{method}_outputs.json", task).outputs
    k0_path = folder / f"{method}-k0_outputs.json"
    k0 = read_outputs(k0_path, task).outputs if k0_path.exists() else None
    metric = headline_metric(task)
    sign = 1.0 if MEAN_METRICS[metric] else -1.0
    draft_scores = [sign * v for v in per_question(task.name, drafts, golds.outputs)[metric]]
    rewrite_scores = [sign * v for v in per_question(task.name, rewrites, golds.outputs)[metric]]
    questions = {q.id: q for q in iter_questions(questions_path, task)}
    infos = _cached_infos(folder / "cache" / f"{method}.jsonl", rewrites)
    rows = []
    for qid, a, b in zip(sorted(golds.outputs), draft_scores, rewrite_scores, strict=True):
        question, rewrite, info = questions[qid], rewrites[qid], infos.get(qid, {})
        words = tokens(rewrite)
        recalled = info.get("retrieved")
        items = (
            [item for item in question.profile if str(item.get("id")) in set(recalled)]
            if recalled is not None
            else question.profile  # no cache: the whole history
        )
        history = {w for item in items for w in tokens(task.render_item(item, None))}
        signals = {
            "length": float(len(words)),
            "draft_overlap": lcs_f1(rewrite, info.get("draft", drafts[qid])),
            "request_overlap": _share_in(words, set(tokens(question.input))),
            "history_overlap": _share_in(words, history),
        }
        if k0 is not None:
            signals["k0_agreement"] = lcs_f1(rewrite, k0[qid])
        rows.append(Row(one.name, qid, a, b, signals))
    return SetAnswers(rows, task, questions, infos, rewrites)


class ConfidenceScorer:
    """The mean token log-probability of a rewrite under a run's reflection model and adapter."""

    def __init__(self, model: ReflectionModel) -> None:
        """Score with ``model`` (loaded)."""
        self.model = model

    @classmethod
    def for_run(cls, run_settings: Mapping[str, Any]) -> ConfidenceScorer:
        """Load the reflection model and adapter that a run's ``metrics.json`` settings name."""
        from langchain_rpo.reflection import ReflectionModel

        # rpo eval's --reflection-model, else its --base-model, else the packaged default (None)
        name = run_settings.get("reflection_model") or run_settings.get("base_model")
        adapter = run_settings.get("reflection", {}).get("adapter")
        return cls(
            ReflectionModel(
                model_name=name, adapter_name=adapter or False, device=run_settings.get("device")
            )
        )

    def __call__(self, messages: Sequence[BaseMessage], rewrite: str) -> float:
        """Score ``<rewrite>{rewrite}</`` after the prompt of ``messages``, teacher-forced.

        The rewrite's tokens and the first token of its closing tag: the model's belief in the
        words and in stopping there.
        """
        import torch

        from langchain_rpo.trajectory import REWRITE_CLOSE, REWRITE_OPEN, escape

        tok, lm = self.model.tokenizer, self.model.model
        prompt = self.model.render_prompt(messages) + REWRITE_OPEN
        body = prompt + escape(rewrite)

        def ids(text: str) -> list[int]:
            return tok(text, add_special_tokens=False)["input_ids"]

        start, close = len(ids(prompt)), len(ids(body))
        full = ids(body + REWRITE_CLOSE)[: close + 1]
        with torch.inference_mode():
            logits = lm(torch.tensor([full], device=lm.device)).logits[0, start - 1 : -1].float()
        chosen = torch.tensor(full[start:], device=logits.device)
        return float(torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None]).mean())


def rebuild_messages(
    task: TaskSpec,
    question: Question,
    info: Mapping[str, Any],
    run_settings: Mapping[str, Any],
) -> list[BaseMessage]:
    """The reflection prompt the run's rewriter built for ``question``, from its cached ``info``.

    The recalled items in the task's template cut as the run cut them, the request cut to the
    adapter's query cut, and the draft: what :class:`~langchain_rpo.lamp.methods.RPO` hands to
    :func:`~langchain_rpo.prompts.build_reflection_messages`.
    """
    from langchain_rpo.adapter_settings import DEFAULT_QUERY_CHARS
    from langchain_rpo.prompts import build_reflection_messages

    rpo = run_settings.get("rpo", {})
    query_chars = (rpo.get("adapter_settings") or {}).get("max_query_chars", DEFAULT_QUERY_CHARS)
    profile = {str(item.get("id")): item for item in question.profile}
    items = [task.render_item(profile[i], rpo.get("max_item_chars")) for i in info["retrieved"]]
    return build_reflection_messages(
        info["draft"], items, question.input, max_item_chars=None, max_query_chars=query_chars
    )


def add_confidence(
    answers: SetAnswers, run_settings: Mapping[str, Any], score: ConfidenceScorer
) -> int:
    """Add the ``confidence`` signal to each row whose prompt the cache lets us rebuild.

    A row whose draft the rewriter kept (a fallback) holds the draft already: it gets ``inf``,
    so no gate picks it.

    Returns:
        How many rows the model scored.
    """
    done = 0
    for row in answers.rows:
        info = answers.infos.get(row.id)
        if info and info.get("fallback_reason"):
            row.signals["confidence"] = float("inf")
            continue
        if not info or info.get("retrieved") is None:
            continue  # no cached prompt to rebuild
        messages = rebuild_messages(answers.task, answers.questions[row.id], info, run_settings)
        row.signals["confidence"] = score(messages, answers.rewrites[row.id])
        done += 1
    return done


def auc(rows: Sequence[Row], signal: str) -> float:
    """P(a loss has a lower value than a non-loss), ties half (Mann-Whitney); 0.5 is chance."""
    losses = [r.signals[signal] for r in rows if r.loss]
    others = [r.signals[signal] for r in rows if not r.loss]
    if not losses or not others:
        return float("nan")
    wins = sum((a < b) + 0.5 * (a == b) for a in losses for b in others)
    return wins / (len(losses) * len(others))


def gate(rows: Sequence[Row], keep: Callable[[Row], bool]) -> dict[str, Any]:
    """Score the answers with the draft kept where ``keep`` says so.

    Returns:
        ``pooled`` (the mean over all questions), ``sets`` (per set: ``score``, ``loss_rate``,
        ``kept``), ``worst_loss_rate`` and ``kept`` (the pooled share of drafts kept).
    """
    decided = [(r, keep(r)) for r in rows]

    def summary(part: Sequence[tuple[Row, bool]]) -> dict[str, float]:
        return {
            "score": sum(r.draft if kept else r.rewrite for r, kept in part) / len(part),
            "loss_rate": sum(r.loss and not kept for r, kept in part) / len(part),
            "kept": sum(kept for _, kept in part) / len(part),
        }

    sets = {
        name: summary([(r, kept) for r, kept in decided if r.set == name])
        for name in dict.fromkeys(r.set for r in rows)
    }
    pooled = summary(decided)
    return {
        "pooled": pooled["score"],
        "sets": sets,
        "worst_loss_rate": max(v["loss_rate"] for v in sets.values()),
        "kept": pooled["kept"],
    }


def signal_gate(rows: Sequence[Row], signal: str, share: float) -> dict[str, Any]:
    """Keep the draft for the ``share`` of answers with the lowest ``signal`` (pooled ranking)."""
    ranked = sorted(rows, key=lambda r: r.signals[signal])
    low = {(r.set, r.id) for r in ranked[: round(share * len(rows))]}
    return gate(rows, lambda r: (r.set, r.id) in low)


def random_gate(
    rows: Sequence[Row], share: float, draws: int = 200, seed: int = 0
) -> dict[str, Any]:
    """The mean of ``draws`` gates that keep a random ``share`` of the drafts."""
    rng = random.Random(seed)
    count = round(share * len(rows))
    results = []
    for _ in range(draws):
        low = {(r.set, r.id) for r in rng.sample(list(rows), count)}
        results.append(gate(rows, lambda r, low=low: (r.set, r.id) in low))
    return {
        "pooled": sum(g["pooled"] for g in results) / draws,
        "worst_loss_rate": sum(g["worst_loss_rate"] for g in results) / draws,
        "kept": count / len(rows),
    }


def loss_summary(rows: Sequence[Row]) -> dict[str, Any]:
    """Counts and costs of the losses (and wins) of ``rows``."""
    losses = [r for r in rows if r.loss]
    wins = [r for r in rows if r.rewrite > r.draft]
    return {
        "questions": len(rows),
        "worse": len(losses),
        "worse_rate": len(losses) / len(rows),
        "worse_scoring_0": sum(r.rewrite == 0 for r in losses),
        "worse_by_under_0.1": sum(r.draft - r.rewrite < 0.1 for r in losses),
        "equal": sum(r.rewrite == r.draft for r in rows),
        "better": len(wins),
        "lost_per_question": sum(r.draft - r.rewrite for r in losses) / len(rows),
        "won_per_question": sum(r.rewrite - r.draft for r in wins) / len(rows),
    }


def _markdown(report: Mapping[str, Any], metric: str) -> str:
    lines = [f"# Where the rewrite loses to the draft ({metric})", ""]
    lines += [
        (
            "| set | questions | worse | of which score 0 | lose by < 0.1 | equal | better "
            "| lost / question | won / question |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["losses"].items():
        lines.append(
            f"| {name} | {s['questions']} | {s['worse']} ({s['worse_rate']:.0%}) "
            f"| {s['worse_scoring_0']} | {s['worse_by_under_0.1']} | {s['equal']} | {s['better']} "
            f"| {s['lost_per_question']:.3f} | {s['won_per_question']:.3f} |"
        )
    signals = (
        'Gold-free signals: AUC of "a loss has a lower value" (0.5: chance), and gates that keep '
        "the draft for the lowest-valued share of the answers (pooled ranking): the worst per-set "
        f"loss rate (the bar: under {LOSS_BAR:.0%}) / the pooled score."
    )
    lines += ["", signals, ""]
    head = " | ".join(f"keep {s:.0%}" for s in SHARES)
    lines += [f"| gate | AUC | {head} |", "|---" * (len(SHARES) + 2) + "|"]
    for name, g in report["gates"].items():
        cells = " | ".join(f"{c['worst_loss_rate']:.0%} / {c['pooled']:.4f}" for c in g["curve"])
        auc_text = f"{g['auc']:.3f}" if g.get("auc") is not None else "-"
        lines.append(f"| {name} | {auc_text} | {cells} |")
    oracle = report["oracle"]
    lines += [
        "",
        (
            "Oracle (the draft kept exactly where the rewrite loses; needs the gold): "
            f"keeps {oracle['kept']:.0%}, worst loss rate 0%, pooled {oracle['pooled']:.4f}."
        ),
    ]
    return "\n".join(lines) + "\n"


def _chart(report: Mapping[str, Any], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, g in report["gates"].items():
        xs = [c["kept"] for c in g["curve"]]
        style = {"color": "black", "linestyle": "--"} if name == "random" else {"marker": "o"}
        label = name if g.get("auc") is None else f"{name} (AUC {g['auc']:.2f})"
        left.plot(xs, [c["worst_loss_rate"] for c in g["curve"]], label=label, **style)
        right.plot(xs, [c["pooled"] for c in g["curve"]], label=label, **style)
    left.axhline(LOSS_BAR, color="red", linewidth=0.8)
    left.set(xlabel="share of answers handed back to the draft",
             ylabel="worst per-set share worse than the draft", title="Losses")  # fmt: skip
    right.set(xlabel="share of answers handed back to the draft",
              ylabel=f"pooled {metric}", title="Quality")  # fmt: skip
    right.axhline(report["oracle"]["pooled"], color="green", linewidth=0.8, label="oracle gate")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the arguments, analyse the run, write and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", required=True,
                        help="The sets, as rpo eval --set takes them (NAME, PATH or NAME=PATH).")  # fmt: skip
    parser.add_argument("--split", default="dev", help="The split the run answered.")
    parser.add_argument("--run", required=True, type=Path, help="The rpo eval --out folder.")
    parser.add_argument("--draft-method", default="zero", help="The draft's method (zero).")
    parser.add_argument("--method", default="rpo", help="The rewrite's method (rpo).")
    parser.add_argument("--confidence", action="store_true",
                        help="Also score each rewrite with the run's reflection model (a forward "
                             "pass per question).")  # fmt: skip
    parser.add_argument("--out", required=True, type=Path, help="Where draft_losses.* go.")
    args = parser.parse_args(argv)

    rows: list[Row] = []
    metric = ""
    score: ConfidenceScorer | None = None
    losses: dict[str, Any] = {}
    for one in parse_sets(args.set):
        answers = load_rows(
            one, args.split, args.run, draft_method=args.draft_method, method=args.method
        )
        metric = headline_metric(answers.task)
        if args.confidence:
            settings = json.loads((args.run / one.name / "metrics.json").read_text())["settings"]
            score = score or ConfidenceScorer.for_run(settings)
            got = add_confidence(answers, settings, score)
            print(f"{one.name}: confidence of {got}/{len(answers.rows)} rewrites", file=sys.stderr)
        rows += answers.rows
        losses[one.name] = loss_summary(answers.rows)
    losses["pooled"] = loss_summary(rows)
    # A signal that some rows lack (confidence, where the cache could not rebuild the prompt)
    # is left out rather than ranked on part of the questions.
    names = [s for s in rows[0].signals if all(s in r.signals for r in rows)]
    gates: dict[str, Any] = {
        name: {"auc": auc(rows, name), "curve": [signal_gate(rows, name, s) for s in SHARES]}
        for name in names
    }
    gates["random"] = {"auc": None, "curve": [random_gate(rows, s) for s in SHARES]}
    report = {
        "metric": metric,
        "run": str(args.run),
        "losses": losses,
        "gates": gates,
        "oracle": gate(rows, lambda r: r.loss),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    table = _markdown(report, metric)
    with atomic_write(args.out / "draft_losses.md", "w") as stream:
        stream.write(table)
    with atomic_write(args.out / "draft_losses.json", "w") as stream:
        json.dump(report, stream, indent=1)
    _chart(report, args.out / "draft_losses.png", metric)
    print(table)
    print(f"wrote {args.out}/draft_losses.md, draft_losses.json, draft_losses.png", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
