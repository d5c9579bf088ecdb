"""``rpo lamp score``: score a predictions file (official output format) against the golds."""

from __future__ import annotations

import json
from pathlib import Path

from langchain_rpo.lamp.data import LampDataError, read_outputs
from langchain_rpo.lamp.metrics import LOWER_IS_BETTER, evaluate
from langchain_rpo.lamp.tasks import TaskSpec, get_task

__all__ = ["score_files", "format_metrics", "write_metrics"]


def score_files(
    golds: str | Path, predictions: str | Path, task: str | TaskSpec | None = None
) -> tuple[TaskSpec, dict[str, float]]:
    """Score a predictions file against a golds file, as the official evaluation does.

    Both files are ``{"task", "golds": [{"id", "output"}]}``; their tasks must agree and their
    id sets must be equal.

    Args:
        golds: The ``{split}_outputs.json`` file.
        predictions: The predictions file.
        task: The task (None: the golds file's task).

    Returns:
        The task and its metrics (by their official names).

    Raises:
        LampDataError: For a bad file, a task mismatch or different id sets (named, with the fix).
    """
    gold = read_outputs(golds, task)
    spec = get_task(task if task is not None else gold.task)
    pred = read_outputs(predictions, spec)
    missing = sorted(set(gold.outputs) - set(pred.outputs))
    extra = sorted(set(pred.outputs) - set(gold.outputs))
    if missing or extra:
        raise LampDataError(
            f"{pred.path} and {gold.path} hold different ids: {len(missing)} golds have no "
            f"prediction (e.g. {missing[:3]}), {len(extra)} predictions have no gold (e.g. "
            f"{extra[:3]}). Fix: predict every question of the split the golds come from."
        )
    return spec, evaluate(spec, pred.outputs, gold.outputs)


def format_metrics(spec: TaskSpec, metrics: dict[str, float], n: int | None = None) -> str:
    """Render metrics as ``name: value`` lines, with the direction of each.

    >>> print(format_metrics(get_task("LaMP_3"), {"MAE": 0.5, "RMSE": 1.0}))
    LaMP_3
      MAE: 0.5000 (lower is better)
      RMSE: 1.0000 (lower is better)
    """
    head = spec.name + (f" ({n} predictions)" if n is not None else "")
    lines = [head]
    for name, value in metrics.items():
        direction = "lower" if name in LOWER_IS_BETTER else "higher"
        lines.append(f"  {name}: {value:.4f} ({direction} is better)")
    return "\n".join(lines)


def write_metrics(path: str | Path, spec: TaskSpec, metrics: dict[str, float]) -> Path:
    """Write ``{"task": ..., "metrics": {...}}`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"task": spec.name, "metrics": metrics}, indent=2) + "\n", encoding="utf-8"
    )
    return path
