"""``rpo eval`` on several sets in one command: one run per set, then one combined report.

:func:`run_sets` runs :func:`~langchain_rpo.lamp.harness.run_eval` on each set into
``{out}/{set}/`` (each resumable as a single run is), then :func:`combine` writes beside them:

- ``combined.md``: per metric, each method's score on each set and pooled; then, for each pair
  of methods compared (:func:`method_pairs`), the relative gain of the second over the first on
  each set and pooled, with its paired-bootstrap 95% interval, and on how many questions the
  second is worse;
- ``combined.json``: the same figures, and each set's run folder;
- ``combined.png``: the methods' scores per set and pooled, on the sets' last shared metric.

**Pooled** figures are the mean over all questions of all sets: a set weighs as many questions
as it has. Their bootstrap is stratified by set (see :mod:`langchain_rpo.lamp.bootstrap`).
Pooling needs metrics that are means of per-question values (ROUGE, accuracy, MAE) and that all
the sets share (LaMP-4 and LaMP-5 sets share ROUGE-1 and ROUGE-L).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_rpo.lamp.bootstrap import MEAN_METRICS, Gain, paired_bootstrap, per_question
from langchain_rpo.lamp.harness import EvalConfig, EvalResult, check_paths, run_eval
from langchain_rpo.lamp.metrics import LOWER_IS_BETTER
from langchain_rpo.lamp.report import bar_chart
from langchain_rpo.lamp.sets import BundledSet

__all__ = ["POOLED", "CombinedResult", "combine", "method_pairs", "run_sets"]

#: The column name of the pooled figures.
POOLED = "pooled"


@dataclass
class CombinedResult:
    """What a multi-set run produced.

    Attributes:
        runs: Set name to its run.
        metrics: The pooled metrics (means of per-question values all sets share).
        scores: Metric to method to set name (and :data:`POOLED`) to the score.
        gains: ``"A -> B"`` to metric to set name (and :data:`POOLED`) to B's gain over A.
        table: The markdown report.
        out: The folder holding ``combined.md``, ``combined.json`` and ``combined.png``.
        pairs: The ``(A, B)`` pairs compared (:func:`method_pairs`).
    """

    runs: dict[str, EvalResult]
    metrics: tuple[str, ...]
    scores: dict[str, dict[str, dict[str, float]]]
    gains: dict[str, dict[str, dict[str, Gain]]]
    table: str
    out: Path
    pairs: list[tuple[str, str]] = field(default_factory=list)


def method_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs ``(A, B)`` whose gain of B over A the combined report shows.

    Each method against ``zero`` (the model alone); ``rpo`` against ``rpo-k0`` (what the user's
    history adds) and against ``rpo-base`` (what the adapter adds), when both ran.

    >>> method_pairs(["zero", "rag", "rpo", "rpo-k0"])
    [('zero', 'rag'), ('zero', 'rpo'), ('zero', 'rpo-k0'), ('rpo-k0', 'rpo')]
    """
    ran = set(methods)
    pairs = [("zero", m) for m in methods if m != "zero"] if "zero" in ran else []
    for a, b in (("rpo-k0", "rpo"), ("rpo-base", "rpo")):
        if a in ran and b in ran:
            pairs.append((a, b))
    return pairs


def run_sets(
    config: EvalConfig,
    sets: Sequence[BundledSet],
    split: str = "dev",
    *,
    run: Callable[..., EvalResult] = run_eval,
    progress: bool = True,
    **models: Any,
) -> CombinedResult:
    """Run ``config``'s methods on each set (into ``config.out / set``), then :func:`combine`.

    Args:
        config: The run's settings; its ``questions``, ``outputs`` and ``out`` are replaced per
            set (``out`` is the parent folder).
        sets: The sets (:func:`~langchain_rpo.lamp.sets.parse_sets`).
        split: The split of each set.
        run: The single-set runner (tests pass a wrapper).
        progress: Show progress bars.
        **models: Models in memory, passed to each run (``base_model``, ``reflection``...).

    Returns:
        The combined result.
    """
    configs = {}
    for one in sets:
        questions, outputs = one.files(split)
        configs[one.name] = dataclasses.replace(
            config, questions=questions, outputs=outputs, out=Path(config.out) / one.name
        )
        # Every set's files are checked before the first one runs: a typo in the last set
        # fails in a second, not after the others' answers.
        check_paths(
            configs[one.name],
            load_base=models.get("base_model") is None,
            load_reflection=models.get("reflection") is None,
        )
    runs = {name: run(c, progress=progress, **models) for name, c in configs.items()}
    return combine(runs, Path(config.out))


def _pooled_metrics(runs: Mapping[str, EvalResult]) -> tuple[str, ...]:
    shared = [m for m in next(iter(runs.values())).task.metrics if m in MEAN_METRICS]
    return tuple(m for m in shared if all(m in r.task.metrics for r in runs.values()))


def combine(
    runs: Mapping[str, EvalResult],
    out: str | Path,
    *,
    resamples: int = 2000,
    seed: int = 0,
    target: float = 0.10,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> CombinedResult:
    """Write the combined table (markdown and JSON) and chart of several sets' runs.

    Args:
        runs: Set name to its run (the same methods in each).
        out: The folder to write ``combined.*`` into.
        resamples: Bootstrap resamples per gain.
        seed: The resampling seed.
        target: The gain whose probability the JSON reports (``p_target``).
        pairs: The ``(A, B)`` method pairs whose gain of B over A to report (None:
            :func:`method_pairs`).

    Returns:
        The figures and the table.

    Raises:
        ValueError: When the runs ran different methods, share no pooled metric, or a pair names
            a method that did not run.
    """
    if not runs:
        raise ValueError("no runs to combine")
    methods = list(next(iter(runs.values())).predictions)
    for name, result in runs.items():
        if list(result.predictions) != methods:
            raise ValueError(
                f"the runs ran different methods ({name}: {list(result.predictions)}, "
                f"expected {methods}); run the same --methods on every set"
            )
    metrics = _pooled_metrics(runs)
    if not metrics:
        raise ValueError(
            "the sets share no metric that is a mean of per-question values (ROUGE, accuracy, "
            "MAE), so they cannot be pooled; run them separately"
        )
    # Per-question scores: method -> metric -> one list, sets one after the other.
    per_q: dict[str, dict[str, list[float]]] = {m: {x: [] for x in metrics} for m in methods}
    strata: list[str] = []
    for name, result in runs.items():
        strata += [name] * len(result.golds)
        for method in methods:
            scored = per_question(result.task.name, result.predictions[method], result.golds)
            for metric in metrics:
                per_q[method][metric] += scored[metric]
    columns = [*runs, POOLED]
    spans = _spans(strata)
    scores = {
        metric: {
            method: {col: _mean(per_q[method][metric][spans[col]]) for col in columns}
            for method in methods
        }
        for metric in metrics
    }
    pairs = method_pairs(methods) if pairs is None else list(pairs)
    unknown = sorted({m for pair in pairs for m in pair} - set(methods))
    if unknown:
        raise ValueError(f"pairs name methods that did not run: {unknown}; the runs have {methods}")
    gains: dict[str, dict[str, dict[str, Gain]]] = {}
    for a, b in pairs:
        key = f"{a} -> {b}"
        gains[key] = {}
        for metric in metrics:
            xa, xb = per_q[a][metric], per_q[b][metric]
            found = {}
            for col in columns:
                span = spans[col]
                found[col] = paired_bootstrap(
                    metric,
                    xa[span],
                    xb[span],
                    strata=strata[span] if col == POOLED else None,
                    target=target,
                    resamples=resamples,
                    seed=seed,
                )
            gains[key][metric] = found
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {name: len(result.golds) for name, result in runs.items()}
    table = _markdown(runs, sizes, metrics, methods, scores, gains, resamples)
    (out / "combined.md").write_text(table, encoding="utf-8")
    summary = {
        "sets": {
            name: {"task": r.task.name, "n": sizes[name], "out": str(r.out)}
            for name, r in runs.items()
        },
        "pooled": "the mean over all questions of all sets; bootstrap stratified by set",
        "metrics": list(metrics),
        "methods": methods,
        "scores": scores,
        "gains": {
            key: {
                metric: {col: g.to_dict() for col, g in by_col.items()}
                for metric, by_col in by_metric.items()
            }
            for key, by_metric in gains.items()
        },
        "bootstrap": {"resamples": resamples, "seed": seed, "target": target},
    }
    (out / "combined.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    shown = metrics[-1]
    bar_chart(
        {m: scores[shown][m] for m in methods},
        tuple(columns),
        out / "combined.png",
        f"{shown} ({'lower' if shown in LOWER_IS_BETTER else 'higher'} is better), "
        f"{len(runs)} sets, {len(strata)} questions",
        labels=[f"{c} ({len(strata) if c == POOLED else sizes[c]})" for c in columns],
    )
    return CombinedResult(dict(runs), metrics, scores, gains, table, out, pairs)


def _spans(strata: Sequence[str]) -> dict[str, slice]:
    """Each set's slice of the concatenated questions, and the pooled one (all of them)."""
    spans: dict[str, slice] = {}
    start = 0
    for i in range(1, len(strata) + 1):
        if i == len(strata) or strata[i] != strata[start]:
            spans[strata[start]] = slice(start, i)
            start = i
    spans[POOLED] = slice(0, len(strata))
    return spans


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _markdown(
    runs: Mapping[str, EvalResult],
    sizes: Mapping[str, int],
    metrics: Sequence[str],
    methods: Sequence[str],
    scores: Mapping[str, Mapping[str, Mapping[str, float]]],
    gains: Mapping[str, Mapping[str, Mapping[str, Gain]]],
    resamples: int,
) -> str:
    """The combined report: a score table per metric, then a gain table per metric."""
    columns = [*runs, POOLED]
    header = [f"{c} ({sum(sizes.values()) if c == POOLED else sizes[c]})" for c in columns]
    lines = [
        f"{len(runs)} sets, {sum(sizes.values())} questions: "
        + ", ".join(f"{n} ({runs[n].task.name}, {sizes[n]})" for n in runs),
        "",
        (
            f"{POOLED}: the mean over all questions of all sets (a set weighs its number of "
            f"questions). Gains: B over A, relative; [95% interval] from a paired bootstrap "
            f"({resamples} resamples of the questions, within each set for {POOLED})."
        ),
    ]
    for metric in metrics:
        arrow = "↓" if metric in LOWER_IS_BETTER else "↑"
        lines += ["", f"### {metric} {arrow}", "", "| method | " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * (len(columns) + 1))
        for method in methods:
            row = scores[metric][method]
            lines.append(f"| {method} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")
    if not gains:
        lines += ["", "No gains: run zero (or rpo with rpo-k0 or rpo-base) to compare methods."]
    for metric in metrics if gains else ():
        lines += ["", f"### gain on {metric} (B worse than A on: questions)", ""]
        lines.append("| A -> B | " + " | ".join(header) + " |")
        lines.append("|" + "---|" * (len(columns) + 1))
        for key, by_metric in gains.items():
            cells = []
            for col in columns:
                g = by_metric[metric][col]
                cells.append(f"{g.gain:+.1%} [{g.low:+.1%}, {g.high:+.1%}] (worse: {g.better[1]})")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
