"""The ``rpo`` command line.

Subcommands:

- ``rpo eval``: run methods side by side on a LaMP split (:mod:`langchain_rpo.lamp.harness`);
- ``rpo lamp download``: fetch the official LaMP files (:mod:`langchain_rpo.lamp.download`);
- ``rpo lamp score``: score a predictions file against the golds (:mod:`langchain_rpo.lamp.score`);
- ``rpo lamp validate``: check a split's files (:mod:`langchain_rpo.lamp.data`);
- ``rpo demo``: the quickstart demo (:mod:`langchain_rpo.demo`).

Heavy modules load inside each command, so ``rpo --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def _positive_or_none(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value or None


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from langchain_rpo.lamp.methods import METHOD_NAMES

    p = sub.add_parser(
        "eval",
        help="run methods side by side on a LaMP split (predictions, metrics, table, chart)",
        description="Run zero / rag / rpo / rpo-base / nearest on a LaMP split. Predictions are "
        "cached per question, so running the same command again resumes.",
    )
    p.add_argument("--task", help="LaMP_1 ... LaMP_7, LaMP_2N (default: the outputs file's task)")
    p.add_argument("--questions", type=Path, required=True, help="{split}_questions.json")
    p.add_argument("--outputs", type=Path, required=True, help="{split}_outputs.json (the golds)")
    p.add_argument("--out", type=Path, required=True, help="output folder (reuse it to resume)")
    p.add_argument(
        "--methods", default=",".join(METHOD_NAMES), help="comma-separated (default: %(default)s)"
    )
    p.add_argument("--k", type=int, default=4, help="history items for rag and rpo (default: 4)")
    p.add_argument(
        "--retriever", choices=("bm25", "dense"), default="bm25",
        help="retriever of rag and nearest (default: bm25)",
    )  # fmt: skip
    p.add_argument("--limit", type=_positive_or_none, default=None, help="first N questions only")
    p.add_argument(
        "--batch-size", type=int, default=8, help="questions per model batch (default: 8)"
    )
    p.add_argument(
        "--max-item-chars", type=int, default=400,
        help="cut a history item's long field to this many characters (0: no cut; default: 400)",
    )  # fmt: skip
    p.add_argument("--base-model", help="base model path or hub name (default: packaged SmolLM2)")
    p.add_argument("--reflection-model", help="reflection base model (default: the base model)")
    p.add_argument("--adapter", help="LoRA adapter of rpo (default: the bundled one, if any)")
    p.add_argument(
        "--reflection-max-new-tokens", type=int, default=256,
        help="reflection generation budget (default: 256)",
    )  # fmt: skip
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--embedding-model", help="dense store embeddings (default: all-MiniLM-L6-v2)")
    p.add_argument("--fresh", action="store_true", help="ignore cached predictions")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from langchain_rpo.lamp.harness import EvalConfig, parse_methods, run_eval

    if args.k < 0:
        raise ValueError(f"--k must be >= 0, got {args.k}")
    config = EvalConfig(
        questions=args.questions,
        outputs=args.outputs,
        out=args.out,
        task=args.task,
        methods=parse_methods(args.methods),
        k=args.k,
        retriever=args.retriever,
        limit=args.limit,
        batch_size=args.batch_size,
        max_item_chars=args.max_item_chars or None,
        base_model=args.base_model,
        reflection_model=args.reflection_model,
        adapter=args.adapter,
        reflection_max_new_tokens=args.reflection_max_new_tokens,
        device=args.device,
        embedding_model=args.embedding_model,
        fresh=args.fresh,
    )
    result = run_eval(config, progress=not args.no_progress)
    print(result.table, end="")
    print(f"\nwrote {result.out}/: metrics.json, results.md, results.png, {{method}}_outputs.json")
    return 0


def _add_lamp(sub: argparse._SubParsersAction) -> None:
    from langchain_rpo.lamp.download import BASE_URL_ENV, SPLITS

    lamp = sub.add_parser("lamp", help="LaMP data: download, score, validate")
    lsub = lamp.add_subparsers(
        dest="lamp_command", required=True, metavar="{download,score,validate}"
    )

    d = lsub.add_parser("download", help="fetch a split's official files (resumable)")
    d.add_argument("--task", required=True, help="LaMP_1 ... LaMP_7, LaMP_2N")
    d.add_argument("--split", choices=SPLITS, required=True)
    d.add_argument("--time-based", action="store_true", help="the time-based split")
    d.add_argument("--dest", type=Path, help="folder (default: lamp_data/{task}[_time]/{split})")
    d.add_argument("--base-url", help=f"mirror of the official host (or ${BASE_URL_ENV})")
    d.add_argument("--force", action="store_true", help="download complete files again")
    d.add_argument("--no-validate", action="store_true", help="skip the schema check")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=_run_download)

    s = lsub.add_parser("score", help="score predictions (official output format) against golds")
    s.add_argument("--task", help="the task (default: the golds file's task)")
    s.add_argument("--golds", type=Path, required=True, help="{split}_outputs.json")
    s.add_argument("--preds", type=Path, required=True, help="predictions, same format")
    s.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    s.set_defaults(func=_run_score)

    v = lsub.add_parser("validate", help="check a split's questions and outputs files")
    v.add_argument("--task", help="the task (default: the outputs file's task)")
    v.add_argument("--questions", type=Path, required=True)
    v.add_argument("--outputs", type=Path, required=True)
    v.set_defaults(func=_run_validate)


def _run_download(args: argparse.Namespace) -> int:
    from langchain_rpo.lamp.download import download_split
    from langchain_rpo.lamp.tasks import get_task

    spec = get_task(args.task)
    dest = (
        args.dest
        or Path("lamp_data") / f"{spec.name}{'_time' if args.time_based else ''}" / args.split
    )
    paths = download_split(
        spec, args.split, dest, time_based=args.time_based, base_url=args.base_url,
        force=args.force, validate=not args.no_validate, progress=not args.no_progress,
    )  # fmt: skip
    for path in paths:
        print(path)
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from langchain_rpo.lamp.score import format_metrics, score_files, write_metrics

    spec, metrics = score_files(args.golds, args.preds, args.task)
    print(format_metrics(spec, metrics))
    if args.json:
        write_metrics(args.json, spec, metrics)
    return 0


def _run_validate(args: argparse.Namespace) -> int:
    from langchain_rpo.lamp.data import validate_split

    spec, n = validate_split(args.questions, args.outputs, args.task)
    print(f"ok: {n} {spec.name} questions, each with its gold output")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from langchain_rpo import demo  # light: the demo imports its models inside main()

    p = sub.add_parser("demo", help="the quickstart demo, offline", description=demo.__doc__)
    demo.add_arguments(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from langchain_rpo import demo

    return int(demo.main(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``rpo`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="rpo", description="Reflective Personalization Optimization (RPO) for LangChain."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{eval,lamp,demo}")
    _add_eval(sub)
    _add_lamp(sub)
    _add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rpo``; returns the exit status (errors are one clear line on stderr, status 1)."""
    from langchain_rpo.lamp.data import LampDataError
    from langchain_rpo.lamp.download import DownloadError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return args.func(args)
    except (LampDataError, DownloadError, ValueError, FileNotFoundError) as err:
        print(f"rpo: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
