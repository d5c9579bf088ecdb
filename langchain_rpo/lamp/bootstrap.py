"""The gain of one method over another on the same questions, with a paired-bootstrap interval.

A dev split of a hundred-odd questions measures a relative gain (RPO with history against the
same adapter without it, or RPO against the model alone) with a wide margin. Here each question
is scored alone with the task's own metric (:func:`per_question`), and the relative gain of B
over A is bootstrapped (:func:`paired_bootstrap`): the questions are resampled with replacement,
the same resample for both methods, so what the two share (an easy question, a hard one) cancels.

Only metrics whose corpus value is the mean of the per-question values are compared
(:data:`MEAN_METRICS`): ROUGE-1 and ROUGE-L (text), accuracy (labels), MAE (ratings; lower is
better, so the gain is A's error over B's). Macro F1 and RMSE are not means of per-question values.

Several sets at once (``rpo eval --set a,b,c``): the pooled gain is that of the pooled means, the
mean over all questions of all sets, so a set weighs as many questions as it has. Its bootstrap
is **stratified**: each resample draws every set's questions from that set, as many as it has
(``strata``), so each set keeps its weight in every resample, as in the figure it brackets;
resampling the pooled questions instead would let a resample hold more of one set than the
evaluation did.

``benchmarks/compare_runs.py`` is the command-line face of this module for two runs on disk.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from langchain_rpo.lamp.metrics import evaluate

__all__ = ["MEAN_METRICS", "Gain", "paired_bootstrap", "per_question", "percentile"]

#: Metrics that are means of per-question values, and whether higher is better.
MEAN_METRICS: dict[str, bool] = {"rouge-1": True, "rouge-L": True, "accuracy": True, "MAE": False}


@dataclass(frozen=True)
class Gain:
    """The relative gain of B over A on one metric.

    Attributes:
        metric: The metric's official name.
        a: A's score on all questions (the mean of its per-question scores).
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

    def to_dict(self) -> dict[str, object]:
        """The gain as JSON-ready values."""
        return {
            "metric": self.metric, "a": self.a, "b": self.b, "gain": self.gain,
            "low": self.low, "high": self.high, "p_target": self.p_target,
            "better": self.better[0], "worse": self.better[1], "equal": self.better[2],
        }  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0..100) of ``values``.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([5.0], 95)
    5.0
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


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
    strata: Sequence[Hashable] | None = None,
    target: float = 0.0,
    resamples: int = 2000,
    seed: int = 0,
) -> Gain:
    """Bootstrap the relative gain of B over A, resampling the questions jointly.

    Args:
        metric: The metric (a key of :data:`MEAN_METRICS`).
        a: A's per-question scores.
        b: B's per-question scores, the same questions in the same order.
        strata: Each question's group (its set): a resample draws each group's questions from
            that group, as many as it has. None: one group.
        target: The gain whose probability is reported (0.10 for "at least 10% better").
        resamples: Bootstrap resamples.
        seed: The resampling seed.

    Returns:
        The gain, its 95% percentile interval and the fraction of resamples at or above ``target``.

    Raises:
        ValueError: For runs of different lengths, no questions, or ``strata`` of another length.

    >>> g = paired_bootstrap("rouge-L", [0.5, 0.5, 0.5, 0.5], [0.6, 0.6, 0.6, 0.6], resamples=50)
    >>> round(g.gain, 3), round(g.low, 3), round(g.high, 3), g.p_target, g.better
    (0.2, 0.2, 0.2, 1.0, (4, 0, 0))
    """
    if len(a) != len(b) or not a:
        raise ValueError(
            f"need the same non-empty questions in both runs, got {len(a)} and {len(b)}"
        )
    if strata is not None and len(strata) != len(a):
        raise ValueError(f"need one stratum per question, got {len(strata)} for {len(a)}")
    higher = MEAN_METRICS[metric]
    n = len(a)
    groups: dict[Hashable, list[int]] = {}
    for i, group in enumerate(strata if strata is not None else [None] * n):
        groups.setdefault(group, []).append(i)
    rng = random.Random(seed)
    gains = []
    for _ in range(resamples):
        idx = [members[rng.randrange(len(members))] for members in groups.values() for _ in members]
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
