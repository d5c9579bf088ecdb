"""Compare two runs on the same LaMP questions: the gain of one over the other, with its uncertainty.

A dev split of a hundred-odd questions measures a relative gain (RPO with history against the
same adapter without it, or one adapter against another) with a wide margin. This script reads
two prediction files in the official format (``rpo eval`` writes ``{method}_outputs.json``) and
the golds, scores each question with the task's own metric (:func:`langchain_rpo.lamp.metrics.evaluate`
on that question alone) and reports the relative gain of B over A with a paired bootstrap: the
questions are resampled with replacement, the same resample for both runs.

Only metrics whose corpus value is the mean of the per-question values are compared: ROUGE-1 and
ROUGE-L (text), accuracy (labels), MAE (ratings; lower is better, so the gain is A's error over
B's). Macro F1 and RMSE are not means of per-question values.

Run from the repository root::

    python -m benchmarks.compare_runs \\
        --a runs/eval_k0/rpo_outputs.json --b runs/eval_k4/rpo_outputs.json \\
        --golds langchain_rpo/data/pep_titles/dev_outputs.json --target 0.10
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks._common import percentile, print_footer, print_header, print_table
from langchain_rpo.lamp.data import read_outputs
from langchain_rpo.lamp.metrics import evaluate
from langchain_rpo.lamp.tasks import get_task

__all__ = ["MEAN_METRICS", "Gain", "main", "paired_bootstrap", "per_question"]

#: Metrics that are means of per-question values, and whether higher is better.
MEAN_METRICS: dict[str, bool] = {"rouge-1": True, "rouge-L": True, "accuracy": True, "MAE": False}


@dataclass(frozen=True)
class Gain:
    """The relative gain of run B over run A on one metric.

    Attributes:
        metric: The metric's official name.
        a: A's score on all questions.
        b: B's score on all questions.
        gain: ``b / a - 1`` (``a / b - 1`` for an error such as MAE): positive when B is better.
        low: The 2.5th percentile of the bootstrap gains.
        high: The 97.5th percentile.
        p_target: The fraction of bootstrap resamples whose gain reaches the target.
        better: The questions where B scores better than A, worse, and equal.
    """

    metric: str
    a: float
    b: float
    gain: float
    low: float
    high: float
    p_target: float
    better: tuple[int, int, int]


def per_question(
    task: str, predictions: Mapping[str, str], golds: Mapping[str, str]
) -> dict[str, list[float]]:
    """Score each question alone with the task's metrics; keep the mean-decomposable ones.

    Returns:
        Metric name to one score per question, in ``sorted(golds)`` order.

    Raises:
        ValueError: When the prediction ids and the gold ids differ (as :func:`evaluate`).
    """
    evaluate(task, predictions, golds)  # the id check, with the official error message
    scores: dict[str, list[float]] = {}
    for qid in sorted(golds):
        one = evaluate(task, {qid: predictions[qid]}, {qid: golds[qid]})
        for name, value in one.items():
            if name in MEAN_METRICS:
                scores.setdefault(name, []).append(value)
    return scores


def _gain(a: float, b: float, higher_is_better: bool) -> float:
    if higher_is_better:
        return b / a - 1 if a else float("inf")
    return a / b - 1 if b else float("inf")


def paired_bootstrap(
    metric: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    target: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
) -> Gain:
    """Bootstrap the relative gain of B over A, resampling the questions jointly.

    Args:
        metric: The metric (a key of :data:`MEAN_METRICS`).
        a: A's per-question scores.
        b: B's per-question scores, the same questions in the same order.
        target: The gain whose probability is reported (0.10 for "at least 10% better").
        resamples: Bootstrap resamples.
        seed: The resampling seed.

    Returns:
        The gain, its 95% percentile interval and the fraction of resamples at or above ``target``.

    >>> g = paired_bootstrap("rouge-L", [0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.6, 0.6], resamples=50)
    >>> round(g.gain, 3), round(g.low, 3), round(g.high, 3), g.p_target, g.better
    (0.2, 0.2, 0.2, 1.0, (4, 0, 0))
    """
    if len(a) != len(b) or not a:
        raise ValueError(
            f"need the same non-empty questions in both runs, got {len(a)} and {len(b)}"
        )
    higher = MEAN_METRICS[metric]
    n = len(a)
    rng = random.Random(seed)
    gains = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        gains.append(_gain(sum(a[i] for i in idx), sum(b[i] for i in idx), higher))
    sign = 1 if higher else -1
    better = sum(sign * (y - x) > 0 for x, y in zip(a, b, strict=True))
    worse = sum(sign * (y - x) < 0 for x, y in zip(a, b, strict=True))
    return Gain(
        metric=metric,
        a=sum(a) / n,
        b=sum(b) / n,
        gain=_gain(sum(a), sum(b), higher),
        low=percentile(gains, 2.5),
        high=percentile(gains, 97.5),
        p_target=sum(g >= target for g in gains) / resamples,
        better=(better, worse, n - better - worse),
    )


def main(argv: Sequence[str] | None = None) -> list[Gain]:
    """Parse the arguments, compare the two runs, print the table; return the gains."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="the reference run's {method}_outputs.json")
    parser.add_argument("--b", required=True, help="the compared run's {method}_outputs.json")
    parser.add_argument("--golds", required=True, help="the split's {split}_outputs.json")
    parser.add_argument("--target", type=float, default=0.10, help="gain to test (0.10: +10%%)")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    golds = read_outputs(args.golds)
    task = get_task(golds.task).name
    a = read_outputs(args.a, task).outputs
    b = read_outputs(args.b, task).outputs
    settings: dict[str, Any] = {
        "task": task, "questions": len(golds.outputs), "A": args.a, "B": args.b,
        "resamples": args.resamples, "seed": args.seed,
    }  # fmt: skip
    print_header("compare two runs: paired bootstrap of B's gain over A", settings)
    scores_a = per_question(task, a, golds.outputs)
    scores_b = per_question(task, b, golds.outputs)
    gains = [
        paired_bootstrap(
            name, scores_a[name], scores_b[name],
            target=args.target, resamples=args.resamples, seed=args.seed,
        )
        for name in scores_a
    ]  # fmt: skip
    headers = ["metric", "A", "B", "gain of B", "95% interval", f"P(gain >= {args.target:.0%})"]
    rows = [
        [
            g.metric, f"{g.a:.4f}", f"{g.b:.4f}", f"{g.gain:+.1%}",
            f"[{g.low:+.1%}, {g.high:+.1%}]", f"{g.p_target:.2f}", "{} / {} / {}".format(*g.better),
        ]
        for g in gains
    ]  # fmt: skip
    print_table([*headers, "B better / worse / equal"], rows)
    print_footer()
    return gains


if __name__ == "__main__":
    main(sys.argv[1:])
