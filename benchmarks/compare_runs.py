"""Compare two runs on the same LaMP questions: the gain of one over the other, with its uncertainty.

A dev split of a hundred-odd questions measures a relative gain (RPO with history against the
same adapter without it, or one adapter against another) with a wide margin. This script reads
two prediction files in the official format (``rpo eval`` writes ``{method}_outputs.json``) and
the golds, scores each question with the task's own metric (:func:`langchain_rpo.lamp.metrics.evaluate`
on that question alone) and reports the relative gain of B over A with a paired bootstrap: the
questions are resampled with replacement, the same resample for both runs. The logic lives in
:mod:`langchain_rpo.lamp.bootstrap` (``rpo eval`` uses it for its combined table of several sets);
this script is its command line for two prediction files.

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
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks._common import print_footer, print_header, print_table
from langchain_rpo.lamp.bootstrap import MEAN_METRICS, Gain, paired_bootstrap, per_question
from langchain_rpo.lamp.data import read_outputs
from langchain_rpo.lamp.tasks import get_task

# Re-exported: this script's names before the logic moved into the harness.
__all__ = ["MEAN_METRICS", "Gain", "main", "paired_bootstrap", "per_question"]


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
