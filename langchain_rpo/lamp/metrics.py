"""The LaMP metrics, with the semantics of the official evaluation (``eval/evaluation.py``).

- LaMP-1, LaMP-2: accuracy and macro-F1 over the task's label set. Predictions and golds are
  stripped and compared exactly; a prediction outside the label set is wrong for accuracy and
  counts as a false negative of its gold label for F1. The macro average runs over *every*
  label of the set (``labels=`` in scikit-learn's ``f1_score``), so a label that appears in
  neither the golds nor the predictions adds an F1 of 0 (scikit-learn's ``zero_division``
  default). F1 is computed by hand here (per label ``2TP / (2TP + FP + FN)``, which equals
  scikit-learn's value in every case, the ill-defined ones included), so no scikit-learn.
- LaMP-3: MAE and RMSE of the ratings. A prediction that is not a number is replaced by
  whichever of 1 and 5 is farther from its gold (5 when the gold is 3).
- LaMP-4 to LaMP-7: ROUGE-1 and ROUGE-L F1 of ``rouge_score`` (no stemmer, its default
  tokenizer), averaged over the examples.

:func:`evaluate` scores a whole prediction set for a task; the functions below it are the pieces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import ModuleType

from langchain_rpo.lamp.extras import optional_import
from langchain_rpo.lamp.tasks import TaskSpec, get_task

__all__ = [
    "LOWER_IS_BETTER",
    "accuracy",
    "macro_f1",
    "rating_value",
    "mae_rmse",
    "rouge",
    "evaluate",
]

#: Metrics where a smaller value is better (all others: larger is better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"MAE", "RMSE"})


def _check_lengths(predictions: Sequence[str], golds: Sequence[str]) -> None:
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} golds")
    if not golds:
        raise ValueError("no examples to score")


def accuracy(predictions: Sequence[str], golds: Sequence[str]) -> float:
    """Return the fraction of stripped predictions equal to their stripped gold.

    >>> accuracy(["[1]", " [2] ", "x"], ["[1]", "[2]", "[1]"])
    0.6666666666666666
    """
    _check_lengths(predictions, golds)
    hits = sum(str(p).strip() == str(g).strip() for p, g in zip(predictions, golds, strict=True))
    return hits / len(golds)


def macro_f1(predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str]) -> float:
    """Return the F1 averaged over every label of ``labels`` (the official LaMP-1/2 F1).

    A prediction outside ``labels`` is a false negative for its gold label and no label's false
    positive; a label absent from both golds and predictions contributes an F1 of 0.

    >>> macro_f1(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    0.6666666666666666
    """
    _check_lengths(predictions, golds)
    if not labels:
        raise ValueError("macro_f1 needs the label set")
    index = {label: i for i, label in enumerate(labels)}
    tp = [0] * len(labels)
    fp = [0] * len(labels)
    fn = [0] * len(labels)
    for pred, gold in zip(predictions, golds, strict=True):
        p, g = index.get(str(pred).strip()), index.get(str(gold).strip())
        if p is not None and p == g:
            tp[p] += 1
            continue
        if p is not None:
            fp[p] += 1
        if g is not None:
            fn[g] += 1
    scores = [
        2 * t / (2 * t + f_p + f_n) if (2 * t + f_p + f_n) else 0.0
        for t, f_p, f_n in zip(tp, fp, fn, strict=True)
    ]
    return sum(scores) / len(labels)


def rating_value(prediction: str, gold: str) -> float:
    """Return a prediction's rating, or the farther of 1 and 5 from ``gold`` when it is no number.

    >>> rating_value(" 4 ", "2"), rating_value("four", "2"), rating_value("n/a", "3")
    (4.0, 5.0, 5.0)
    """
    target = float(str(gold).strip())
    try:
        value = float(str(prediction).strip())
    except ValueError:
        value = math.nan
    if math.isnan(value):
        return 1.0 if abs(1 - target) > abs(5 - target) else 5.0
    return value


def mae_rmse(predictions: Sequence[str], golds: Sequence[str]) -> tuple[float, float]:
    """Return (MAE, RMSE) of the ratings; unparsable predictions count as :func:`rating_value` says.

    >>> mae_rmse(["1", "5"], ["2", "2"])
    (2.0, 2.23606797749979)
    """
    _check_lengths(predictions, golds)
    errors = [
        rating_value(p, g) - float(str(g).strip()) for p, g in zip(predictions, golds, strict=True)
    ]
    mae = sum(abs(e) for e in errors) / len(errors)
    rmse = math.sqrt(sum(e * e for e in errors) / len(errors))
    return mae, rmse


def rouge_scorer_module() -> ModuleType:
    """``rouge_score.rouge_scorer``, or an error naming the extra that installs it."""
    return optional_import("rouge_score.rouge_scorer", extra="eval", needed_for="ROUGE scoring")


def rouge(predictions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """Return the mean ROUGE-1 and ROUGE-L F1 (``rouge_score``, no stemmer).

    The keys are ``rouge-1`` and ``rouge-L``, as the official evaluation names them.

    >>> rouge(["a b c"], ["a b d"])["rouge-1"]
    0.6666666666666666
    """
    rouge_scorer = rouge_scorer_module()
    _check_lengths(predictions, golds)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    r1 = rl = 0.0
    for pred, gold in zip(predictions, golds, strict=True):
        scores = scorer.score(str(gold).strip(), str(pred).strip())
        r1 += scores["rouge1"].fmeasure
        rl += scores["rougeL"].fmeasure
    return {"rouge-1": r1 / len(golds), "rouge-L": rl / len(golds)}


def evaluate(
    task: str | TaskSpec, predictions: Mapping[str, str], golds: Mapping[str, str]
) -> dict[str, float]:
    """Score predictions against golds, both keyed by question id, with the task's metrics.

    Args:
        task: The task name or spec.
        predictions: Question id to predicted output.
        golds: Question id to gold output.

    Returns:
        The metrics by their official names (``accuracy``/``f1``, ``MAE``/``RMSE``, or
        ``rouge-1``/``rouge-L``).

    Raises:
        ValueError: When the id sets differ (as the official script asserts), naming some ids.
    """
    spec = get_task(task)
    if set(predictions) != set(golds):
        missing = sorted(set(golds) - set(predictions))
        extra = sorted(set(predictions) - set(golds))
        raise ValueError(
            f"prediction ids and gold ids differ: {len(missing)} gold ids have no prediction "
            f"(e.g. {missing[:3]}), {len(extra)} predictions have no gold (e.g. {extra[:3]})"
        )
    ids = sorted(golds)
    preds = [predictions[i] for i in ids]
    gold = [golds[i] for i in ids]
    if spec.kind == "classification":
        return {"accuracy": accuracy(preds, gold), "f1": macro_f1(preds, gold, spec.labels)}
    if spec.kind == "rating":
        mae, rmse = mae_rmse(preds, gold)
        return {"MAE": mae, "RMSE": rmse}
    return rouge(preds, gold)
