"""Present a run's metrics: a markdown table and a bar chart (PNG, matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from langchain_rpo.lamp.extras import optional_import
from langchain_rpo.lamp.metrics import LOWER_IS_BETTER

__all__ = ["METHOD_DESCRIPTIONS", "markdown_table", "bar_chart"]

#: What each method is, and whether the user's history reaches the black-box (base) model.
METHOD_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "zero": ("base model alone (no history)", "no"),
    "rag": ("context injection: top-k history items in the base model's prompt", "yes"),
    "rpo": ("base model's draft rewritten by the reflection model + adapter", "no"),
    "rpo-k0": ("the same rewrite with no history recalled (k=0): the adapter alone", "no"),
    "rpo-base": ("the same rewrite, reflection model without adapter", "no"),
    "nearest": ("output of the most similar history item (no model)", "n/a"),
}


def _best(results: Mapping[str, Mapping[str, float]], metric: str) -> float:
    values = [scores[metric] for scores in results.values()]
    return min(values) if metric in LOWER_IS_BETTER else max(values)


def markdown_table(
    results: Mapping[str, Mapping[str, float]],
    metrics: tuple[str, ...],
    notes: Mapping[str, str] | None = None,
) -> str:
    """Render the metrics as a markdown table, one row per method, the best value in bold.

    Args:
        results: Method name to its metrics.
        metrics: The metric columns, in order.
        notes: Method name to a note that replaces its standard description.

    Returns:
        The table (with a header line and a trailing newline).

    >>> print(markdown_table({"zero": {"rouge-1": 0.2}}, ("rouge-1",)), end="")
    | method | rouge-1 ↑ | history seen by the black-box model | what it is |
    |---|---|---|---|
    | zero | **0.2000** | no | base model alone (no history) |
    """
    notes = notes or {}
    arrows = {m: "↓" if m in LOWER_IS_BETTER else "↑" for m in metrics}
    header = ["method", *(f"{m} {arrows[m]}" for m in metrics)]
    header += ["history seen by the black-box model", "what it is"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {m: _best(results, m) for m in metrics}
    for method, scores in results.items():
        cells = [method]
        for metric in metrics:
            text = f"{scores[metric]:.4f}"
            cells.append(f"**{text}**" if scores[metric] == best[metric] else text)
        description, seen = METHOD_DESCRIPTIONS.get(method, ("", ""))
        cells += [seen, notes.get(method, description)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure_class() -> type:
    """``matplotlib.figure.Figure``, or an error naming the extra that installs it."""
    module = optional_import("matplotlib.figure", extra="eval", needed_for="the results chart")
    return module.Figure


def bar_chart(
    results: Mapping[str, Mapping[str, float]],
    metrics: tuple[str, ...],
    path: str | Path,
    title: str,
    labels: Sequence[str] | None = None,
) -> Path:
    """Draw a grouped bar chart (metrics on the x axis, one bar per method) into a PNG.

    Args:
        results: Method name to its metrics.
        metrics: The metrics to draw.
        path: The PNG to write.
        title: The chart title.
        labels: The x axis labels, one per entry of ``metrics`` (default: each metric and
            whether lower or higher is better). The combined report of several sets puts the
            sets on the x axis.

    Returns:
        ``path``.
    """
    # A bare Figure draws without pyplot, so writing the chart never changes the backend of
    # the caller's process (a notebook keeps showing its own plots).
    Figure = figure_class()  # a class, named as matplotlib names it
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    methods = list(results)
    width = 0.8 / max(len(methods), 1)
    fig = Figure(figsize=(1.6 + 1.4 * len(metrics) * max(len(methods), 2) / 2.5, 4.2))
    ax = fig.subplots()
    for i, method in enumerate(methods):
        xs = [m + (i - (len(methods) - 1) / 2) * width for m in range(len(metrics))]
        values = [results[method][metric] for metric in metrics]
        bars = ax.bar(xs, values, width, label=method)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=7, padding=2)
    if labels is None:
        labels = [
            f"{m} ({'lower' if m in LOWER_IS_BETTER else 'higher'} is better)" for m in metrics
        ]
    ax.set_xticks(range(len(metrics)), list(labels))
    ax.set_title(title)
    ax.legend(
        fontsize=8, ncols=min(len(methods), 5), loc="upper center", bbox_to_anchor=(0.5, -0.1)
    )
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
