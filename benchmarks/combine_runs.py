"""Put answers from several ``rpo eval --set`` runs side by side: one combined table, chart and gains.

``rpo eval`` compares the methods of one run. Ablations compare *runs*: two adapters, the
trajectory against a rewrite-only adapter, one adapter at two settings. Each run wrote
``OUT/SET/{method}_outputs.json`` for every set; this script takes one method of each run under a
label of its own and hands them to the harness's combined report
(:func:`langchain_rpo.lamp.combined.combine`): per-set and pooled scores, and for each pair the
paired-bootstrap 95% interval of the gain (pooled: resampled within each set), with the count of
questions where B is worse than A.

Run from the repository root::

    python -m benchmarks.combine_runs \\
        --set pep,eip=../shared/data/eip,bip=../shared/data/bip,swift=../shared/data/swift,goblog=../shared/data/goblog \\
        --run zero=benchmarks/lamp_five_sets_multidomain:zero \\
        --run trajectory=benchmarks/lamp_five_sets_multidomain:rpo \\
        --run rewrite-only=runs/md/eval_ro:rpo \\
        --pair zero:rewrite-only --pair trajectory:rewrite-only \\
        --out benchmarks/lamp_five_sets_stage4/ablations/rewrite_only
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from langchain_rpo.lamp.combined import CombinedResult, combine
from langchain_rpo.lamp.data import read_outputs
from langchain_rpo.lamp.harness import EvalResult
from langchain_rpo.lamp.sets import parse_sets
from langchain_rpo.lamp.tasks import get_task

__all__ = ["main", "parse_pair", "parse_run"]


def parse_run(value: str) -> tuple[str, Path, str]:
    """Read ``LABEL=FOLDER[:METHOD]`` (METHOD defaults to LABEL).

    >>> parse_run("trajectory=runs/eval:rpo")
    ('trajectory', PosixPath('runs/eval'), 'rpo')
    >>> parse_run("zero=runs/eval")
    ('zero', PosixPath('runs/eval'), 'zero')
    """
    label, sep, rest = value.partition("=")
    if not sep or not label.strip() or not rest.strip():
        raise argparse.ArgumentTypeError(
            f"--run {value!r}: write LABEL=FOLDER[:METHOD], e.g. trajectory=runs/eval:rpo"
        )
    folder, colon, method = rest.rpartition(":")
    if not colon:
        folder, method = rest, label
    return label.strip(), Path(folder.strip()), method.strip()


def parse_pair(value: str) -> tuple[str, str]:
    """Read ``A:B`` (the gain of B over A).

    >>> parse_pair("zero:trajectory")
    ('zero', 'trajectory')
    """
    a, sep, b = value.partition(":")
    if not sep or not a.strip() or not b.strip():
        raise argparse.ArgumentTypeError(f"--pair {value!r}: write A:B (the gain of B over A)")
    return a.strip(), b.strip()


def main(argv: Sequence[str] | None = None) -> CombinedResult:
    """Parse the arguments, read the runs, write and print the combined report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", required=True,
                        help="The sets, as rpo eval --set takes them (NAME, PATH or NAME=PATH).")  # fmt: skip
    parser.add_argument("--split", default="dev", help="The split the runs answered.")
    parser.add_argument("--run", action="append", type=parse_run, required=True,
                        help="LABEL=FOLDER[:METHOD]: FOLDER/SET/METHOD_outputs.json, shown as LABEL.")  # fmt: skip
    parser.add_argument("--pair", action="append", type=parse_pair, default=None,
                        help="A:B, a gain to report (default: each label against 'zero').")  # fmt: skip
    parser.add_argument("--out", required=True, type=Path, help="Where combined.* are written.")
    parser.add_argument("--resamples", type=int, default=2000, help="Bootstrap resamples.")
    args = parser.parse_args(argv)

    labels = [label for label, _, _ in args.run]
    if len(set(labels)) != len(labels):
        parser.error(f"--run labels must differ, got {labels}")
    runs: dict[str, EvalResult] = {}
    for one in parse_sets(args.set):
        _, outputs = one.files(args.split)
        golds = read_outputs(outputs)
        task = get_task(golds.task)
        predictions = {}
        for label, folder, method in args.run:
            path = folder / one.name / f"{method}_outputs.json"
            predictions[label] = read_outputs(path, task).outputs
        runs[one.name] = EvalResult(
            task=task,
            n=len(golds.outputs),
            metrics={},
            table="",
            out=args.out,
            predictions=predictions,
            golds=golds.outputs,
        )
    result = combine(runs, args.out, resamples=args.resamples, pairs=args.pair)
    print(result.table)
    print(f"wrote {args.out}/combined.md, combined.json, combined.png", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
