"""The ``rpo`` command line.

Subcommands:

- ``rpo eval``: run methods side by side on a LaMP split (:mod:`langchain_rpo.lamp.harness`);
- ``rpo lamp download``: fetch the official LaMP files (:mod:`langchain_rpo.lamp.download`);
- ``rpo lamp score``: score a predictions file against the golds (:mod:`langchain_rpo.lamp.score`);
- ``rpo lamp validate``: check a split's files (:mod:`langchain_rpo.lamp.data`);
- ``rpo history export`` / ``rpo history import``: move per-user history between backends
  (:mod:`langchain_rpo.history_transfer`);
- ``rpo history feedback``: write a backend's feedback events for training
  (:mod:`langchain_rpo.feedback`, read by ``training/build_preferences.py --events``);
- ``rpo demo``: the quickstart demo (:mod:`langchain_rpo.demo`).

Every user error (a bad option, a bad file, a path that cannot be written, a missing optional
package) ends as one ``rpo: error: ...`` line on stderr and exit status 1; ``-v`` adds the
traceback. Paths and option values are checked before any model loads. Heavy modules (torch,
transformers) load inside each command, and optional packages where they are used, so
``rpo --help`` is quick and works on the base install.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from langchain_rpo.cli_args import (
    Parser,
    UsageError,
    add_config_options,
    check_target,
    choice,
    whole_number,
)

__all__ = ["build_parser", "main"]

_EVAL_DESCRIPTION = """\
Run methods side by side on a LaMP split and score them with the task's official metric:

  zero      the base model alone (no history)
  rag       context injection: the top-k history items in the base model's prompt
  rpo       the base model's draft rewritten by the reflection model and its adapter
  rpo-k0    the same rewrite with no history recalled (k=0), to measure what history adds
  rpo-base  the same rewrite by the reflection model without adapter
  nearest   the output of the most similar history item (no model)

Name the split with --set (a set bundled with the package, or a folder of LaMP-format files)
or with --questions and --outputs. Several sets (--set a,b or --set a --set b) run one after
the other into --out/SET/, then --out/combined.md, combined.json and combined.png give each
method per set and pooled (the mean over all their questions), and the gain of each method over
zero (and of rpo over rpo-k0 and rpo-base) with its paired-bootstrap 95% interval.
Predictions are cached per question, so running the same command again resumes.
"""

_EVAL_EXAMPLES = """\
examples:
  rpo eval --set pep --out runs/pep --limit 16
  rpo eval --set pep,../shared/data/eip,go=../shared/data/goblog --out runs/three \\
      --methods zero,rpo-k0,rpo
  rpo eval --questions dev_questions.json --outputs dev_outputs.json --out runs/lamp5 \\
      --methods zero,rpo --k 4
  rpo eval --set pep --out runs/pep-mbr4 --methods rpo --reflection-candidates 4
"""

_LAMP_DESCRIPTION = """\
The official LaMP files: download them (resumable, each file checked before it replaces
anything), score predictions against the golds, or check a split's files.
"""

#: OSError numbers with a hint that names the likely cause.
_OS_HINTS = {
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file stands where a folder is needed",
    errno.EISDIR: "it is a folder; name a file",
    errno.EACCES: "check the permissions, or choose another path",
    errno.ENOSPC: "free some disk space, then run again",
}


# --------------------------------------------------------------------------- rpo eval


def _bundled_sets_help() -> str:
    from langchain_rpo.lamp.sets import SETS

    lines = ["bundled sets (--set NAME, --split train|dev; default split: dev):"]
    for bundled in SETS.values():
        lines.append(f"  {bundled.name:<8}{bundled.description} [{bundled.task}]")
        lines.append(f"  {'':<8}files: {bundled.folder()}")
    return "\n".join(lines) + "\n"


def _add_eval(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from langchain_rpo.lamp.harness import EvalConfig
    from langchain_rpo.lamp.sets import SETS

    p = sub.add_parser(
        "eval",
        parents=[common],
        help="run methods side by side on a LaMP split (predictions, metrics, table, chart)",
        description=_EVAL_DESCRIPTION,
        epilog=_bundled_sets_help() + "\n" + _EVAL_EXAMPLES,
    )
    p.add_argument(
        "--set", dest="bundled_set", action="append", metavar="NAME|PATH|NAME=PATH",
        help=f"a bundled set ({', '.join(SETS)}) or a folder of LaMP-format files, instead of "
        "--questions/--outputs; several: comma-separated or repeated (one combined report)",
    )  # fmt: skip
    p.add_argument(
        "--split", type=choice("--split", ("train", "dev")), metavar="{train,dev}",
        help="the bundled set's split (default: dev)",
    )  # fmt: skip
    # One option per EvalConfig field: its default and help are written there, once.
    add_config_options(p, EvalConfig, optional=("questions", "outputs"))
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run_eval)


def _split_files(args: argparse.Namespace) -> tuple[Path, Path] | list:
    """The questions and outputs files, from ``--set`` or from ``--questions``/``--outputs``;
    several sets (:class:`~langchain_rpo.lamp.sets.BundledSet`) when ``--set`` names several."""
    from langchain_rpo.lamp.sets import parse_sets

    given = [flag for flag, value in (("--questions", args.questions), ("--outputs", args.outputs))
             if value is not None]  # fmt: skip
    if args.bundled_set is not None:
        if given:
            raise UsageError(
                f"--set and {' and '.join(given)} both name the split; pass one of them "
                "(see 'rpo eval --help')"
            )
        sets = parse_sets(args.bundled_set)
        return sets if len(sets) > 1 else sets[0].files(args.split or "dev")
    if args.split is not None:
        raise UsageError("--split goes with --set (see 'rpo eval --help')")
    if len(given) < 2:
        raise UsageError(
            "name the split: --set NAME, or both --questions and --outputs (see 'rpo eval --help')"
        )
    return args.questions, args.outputs


def _run_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from langchain_rpo.lamp.harness import EvalConfig, run_eval

    found = _split_files(args)
    sets = found if isinstance(found, list) else None
    # Several sets: each run gets its own files; the config's are placeholders until then.
    args.questions, args.outputs = sets[0].files(args.split or "dev") if sets else found
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    config = EvalConfig(**{name: value for name, value in vars(args).items() if name in names})
    if sets:
        from langchain_rpo.lamp.combined import run_sets

        combined = run_sets(config, sets, args.split or "dev", progress=not args.no_progress)
        print(combined.table, end="")
        print(
            f"\nwrote {combined.out}/: combined.md, combined.json, combined.png, and one run "
            f"folder per set ({', '.join(combined.runs)})"
        )
        return 0
    result = run_eval(config, progress=not args.no_progress)
    print(result.table, end="")
    print(f"\nwrote {result.out}/: metrics.json, results.md, results.png, {{method}}_outputs.json")
    return 0


# --------------------------------------------------------------------------- rpo lamp ...


def _add_lamp(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from langchain_rpo.lamp.download import BASE_URL_ENV, SPLITS

    lamp = sub.add_parser(
        "lamp", parents=[common], help="LaMP data: download, score, validate",
        description=_LAMP_DESCRIPTION,
    )  # fmt: skip
    lsub = lamp.add_subparsers(
        dest="lamp_command", required=True, metavar="{download,score,validate}"
    )

    d = lsub.add_parser(
        "download", parents=[common], help="fetch a split's official files (resumable)",
        description="Fetch a split's official files into --dest, resumably. Each file is checked "
        "(the task's LaMP schema) before it replaces anything; a file already there that fails "
        "the check is downloaded again, so running the command again repairs it.",
    )  # fmt: skip
    d.add_argument("--task", required=True, help="LaMP_1 ... LaMP_7, LaMP_2N")
    d.add_argument(
        "--split", type=choice("--split", SPLITS), required=True,
        metavar="{" + ",".join(SPLITS) + "}", help="the split (test: questions only)",
    )  # fmt: skip
    d.add_argument("--time-based", action="store_true", help="the time-based split")
    d.add_argument(
        "--dest", type=Path, metavar="PATH",
        help="folder (default: lamp_data/{task}[_time]/{split})",
    )  # fmt: skip
    d.add_argument("--base-url", help=f"mirror of the official host (or ${BASE_URL_ENV})")
    d.add_argument("--force", action="store_true", help="download files that pass again")
    d.add_argument(
        "--no-validate", action="store_true",
        help="check only that each file is JSON of the right kind, not the task's schema",
    )  # fmt: skip
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    d.set_defaults(func=_run_download)

    s = lsub.add_parser(
        "score", parents=[common],
        help="score predictions (official output format) against golds",
        description="Score a predictions file against the golds with the task's official metric. "
        'Both files are {"task": ..., "golds": [{"id": ..., "output": ...}]}.',
    )  # fmt: skip
    s.add_argument("--task", help="the task (default: the golds file's task)")
    s.add_argument("--golds", type=Path, required=True, metavar="PATH", help="{split}_outputs.json")
    s.add_argument(
        "--preds", type=Path, required=True, metavar="PATH", help="predictions, same format"
    )
    s.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the metrics to this JSON file"
    )
    s.set_defaults(func=_run_score)

    v = lsub.add_parser(
        "validate", parents=[common], help="check a split's questions and outputs files",
        description="Check a split's files: every record against the task's schema, and that "
        "the questions and the golds hold the same ids.",
    )  # fmt: skip
    v.add_argument("--task", help="the task (default: the outputs file's task)")
    v.add_argument("--questions", type=Path, required=True, metavar="PATH")
    v.add_argument("--outputs", type=Path, required=True, metavar="PATH")
    v.set_defaults(func=_run_validate)


def _run_download(args: argparse.Namespace) -> int:
    from langchain_rpo.lamp.download import download_split
    from langchain_rpo.lamp.tasks import get_task

    spec = get_task(args.task)
    dest = (
        args.dest
        or Path("lamp_data") / f"{spec.name}{'_time' if args.time_based else ''}" / args.split
    )
    check_target(dest, "--dest", folder=True)
    paths = download_split(
        spec, args.split, dest, time_based=args.time_based, base_url=args.base_url,
        force=args.force, validate=not args.no_validate, progress=not args.no_progress,
    )  # fmt: skip
    for path in paths:
        print(path)
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from langchain_rpo.lamp.score import format_metrics, score_files, write_metrics

    if args.json is not None:
        check_target(args.json, "--json", folder=False)
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


# --------------------------------------------------------------------------- rpo history ...

_HISTORY_DESCRIPTION = """\
Move per-user history between backends through a JSON Lines file (one item per line, with a
header naming the embeddings model; format: langchain_rpo.history_transfer). A backend is named
by a spec:

  history.zip             a FAISS history file (the embedded default)
  postgresql://...        a PostgreSQL + pgvector database (pip install "langchain-rpo[postgres]")
  qdrant:PATH[#NAME]      a local Qdrant folder, collection rpo_history by default
                          (pip install "langchain-rpo[qdrant]")

Texts are embedded with the default model (all-MiniLM-L6-v2) where they need embedding.
'rpo history feedback' writes a backend's feedback events (RPORewriter.record_feedback) as the
JSON Lines that training/build_preferences.py --events reads.
"""

_HISTORY_EXAMPLES = """\
examples:
  rpo history export history.zip history.jsonl --vectors
  rpo history import history.jsonl postgresql://app@db.example/rpo
  rpo history export postgresql://app@db.example/rpo - --user alice | gzip > alice.jsonl.gz
  rpo history feedback history.zip runs/feedback.jsonl
"""


def _add_history(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    history = sub.add_parser(
        "history", parents=[common],
        help="export or import per-user history, export feedback events (any backend)",
        description=_HISTORY_DESCRIPTION, epilog=_HISTORY_EXAMPLES,
    )  # fmt: skip
    hsub = history.add_subparsers(
        dest="history_command", required=True, metavar="{export,import,feedback}"
    )
    e = hsub.add_parser(
        "export", parents=[common], help="write a backend's items to a JSON Lines file",
        description="Write every item of a backend (or of --user) to a JSON Lines file, "
        "streaming. The file is written atomically: it appears whole or not at all.",
        epilog=_HISTORY_EXAMPLES,
    )  # fmt: skip
    e.add_argument(
        "source", metavar="SOURCE", help="the backend to read (see 'rpo history --help')"
    )
    e.add_argument("out", metavar="FILE", help="the JSON Lines file to write, or - for stdout")
    e.add_argument(
        "--vectors", action="store_true",
        help="include each item's vector, so importing needs no embedding model",
    )  # fmt: skip
    e.add_argument(
        "--user", action="append", dest="users", metavar="ID",
        help="export only this user (repeat for more)",
    )  # fmt: skip
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_run_history_export)

    i = hsub.add_parser(
        "import", parents=[common], help="add a JSON Lines file's items to a backend",
        description="Add every item of a JSON Lines export to a backend (created if missing); "
        "an item whose id the user already has is replaced. The whole file is checked first: "
        "a damaged file imports nothing, and the error names its line.",
        epilog=_HISTORY_EXAMPLES,
    )  # fmt: skip
    i.add_argument("file", metavar="FILE", help="the JSON Lines file to read, or - for stdin")
    i.add_argument(
        "target", metavar="TARGET", help="the backend to add to (see 'rpo history --help')"
    )
    i.add_argument(
        "--reembed", action="store_true",
        help="ignore the file's vectors and embed the texts with the target's model",
    )  # fmt: skip
    i.add_argument(
        "--batch-size", type=whole_number("--batch-size", 1), default=256, metavar="N",
        help="items per write (default: %(default)s)",
    )  # fmt: skip
    i.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=_run_history_import)

    f = hsub.add_parser(
        "feedback", parents=[common], help="write a backend's feedback events for training",
        description="Write the feedback events of a backend (or of --user), each user's in time "
        "order, as the JSON Lines of langchain_rpo.feedback that 'python -m "
        "training.build_preferences --events FILE' reads. The file is written atomically.",
        epilog="example:\n  rpo history feedback history.zip runs/feedback.jsonl\n"
        "  python -m training.build_preferences --events runs/feedback.jsonl "
        "--out runs/feedback_preferences.jsonl",
    )  # fmt: skip
    f.add_argument(
        "source", metavar="SOURCE", help="the backend to read (see 'rpo history --help')"
    )
    f.add_argument("out", metavar="FILE", help="the JSON Lines file to write, or - for stdout")
    f.add_argument(
        "--user", action="append", dest="users", metavar="ID",
        help="only this user's events (repeat for more)",
    )  # fmt: skip
    f.set_defaults(func=_run_history_feedback)


def _progress(args: argparse.Namespace) -> bool:
    # A bar only for a person watching: never in a log file or a pipe.
    return not args.quiet and sys.stderr.isatty()


def _run_history_export(args: argparse.Namespace) -> int:
    from langchain_rpo.atomic import atomic_write
    from langchain_rpo.history_transfer import export_history, open_history

    if args.out != "-":
        check_target(Path(args.out), "FILE", folder=False)
    with open_history(args.source, create=False) as backend:
        options = {
            "user_ids": args.users,
            "with_vectors": args.vectors,
            "progress": _progress(args),
        }
        if args.out == "-":
            n = export_history(backend, sys.stdout, **options)
            sys.stdout.flush()
        else:
            # users' texts: a new export file is readable by its owner only, as a history file
            with atomic_write(args.out, "w", encoding="utf-8", private=True) as stream:
                n = export_history(backend, stream, **options)
    print(f"exported {n} items from {args.source}", file=sys.stderr)
    return 0


def _run_history_feedback(args: argparse.Namespace) -> int:
    from langchain_rpo.feedback import dump_events, write_events
    from langchain_rpo.history_checks import check_user_id
    from langchain_rpo.history_transfer import open_history

    if args.out != "-":
        check_target(Path(args.out), "FILE", folder=False)
    wanted = None if args.users is None else [check_user_id(user) for user in args.users]
    with open_history(args.source, create=False) as backend:
        users = backend.feedback_users()
        if wanted is not None:  # those asked for, once each, that have events
            having = set(users)
            users = [user for user in dict.fromkeys(wanted) if user in having]
        # One user's events in memory at a time, as `rpo history export` streams them.
        events = (event for user in users for event in backend.feedback(user))
        if args.out == "-":
            n = dump_events(sys.stdout, events)
            sys.stdout.flush()
        else:
            n = write_events(args.out, events)
    print(f"wrote {n} feedback events of {len(users)} users from {args.source}", file=sys.stderr)
    return 0


def _run_history_import(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from langchain_rpo.history_transfer import import_history, open_history

    with contextlib.ExitStack() as stack:
        if args.file == "-":
            # Spooled to disk, not memory: a seekable copy is checked whole before anything is
            # added, as a file is, so a damaged stream imports nothing either.
            stream = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
            shutil.copyfileobj(sys.stdin, stream)
            stream.seek(0)
            name = "<stdin>"
        else:
            stream = stack.enter_context(open(args.file, encoding="utf-8", newline="\n"))
            name = args.file
        with open_history(args.target, create=True) as backend:
            n = import_history(
                backend, stream, use_vectors=not args.reembed, batch_size=args.batch_size,
                progress=_progress(args), name=name,
            )  # fmt: skip
    print(f"imported {n} items into {args.target}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- rpo demo


def _add_demo(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from langchain_rpo import demo  # light: the demo imports its models inside main()

    p = sub.add_parser(
        "demo", parents=[common], help="the quickstart demo, offline",
        description=demo.DESCRIPTION, epilog=demo.EXAMPLES,
    )  # fmt: skip
    demo.add_arguments(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from langchain_rpo import demo

    return int(demo.main(args) or 0)


# --------------------------------------------------------------------------- the parser, main


def build_parser() -> argparse.ArgumentParser:
    """Return the ``rpo`` argument parser (its errors raise :class:`UsageError`)."""
    # -v is accepted before and after the subcommand; SUPPRESS keeps a subcommand's parser
    # from resetting a -v given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="log progress details, and show the traceback of an error",
    )  # fmt: skip
    parser = Parser(
        prog="rpo",
        description="Reflective Personalization Optimization (RPO) for LangChain: benchmark it\n"
        "on LaMP, or see it personalize answers in a demo.",
        epilog="Run 'rpo COMMAND --help' for a command's options.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="log progress details, and show the traceback of an error",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="{eval,lamp,history,demo}")
    _add_eval(sub, common)
    _add_lamp(sub, common)
    _add_history(sub, common)
    _add_demo(sub, common)
    return parser


def _describe(err: BaseException) -> str:
    """One line for a user error; an ``OSError`` as its path, its reason and a hint."""
    if isinstance(err, OSError) and err.strerror:
        paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
        hint = _OS_HINTS.get(err.errno)
        text = (": ".join(paths) + ": " if paths else "") + err.strerror
        return text + (f" ({hint})" if hint else "")
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rpo``; returns the exit status.

    A user error is one line on stderr, ``rpo: error: ...``, and status 1 (``-v`` prints the
    traceback before it). ``--help`` prints the help and returns 0.

    Args:
        argv: The arguments (None: ``sys.argv[1:]``).
    """
    from langchain_rpo.assets import MissingModelError
    from langchain_rpo.lamp.download import DownloadError
    from langchain_rpo.lamp.extras import MissingExtraError

    arguments = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in arguments or "--verbose" in arguments
    try:
        args = build_parser().parse_args(arguments)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
        )
        return args.func(args)
    except SystemExit as done:  # --help, or argparse's own exit
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    except KeyboardInterrupt:
        print("rpo: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
    # ValueError covers UsageError, LampDataError and the value checks of the library;
    # MissingExtraError and MissingModelError name the pip command that installs what is missing.
    except (ValueError, OSError, DownloadError, MissingExtraError, MissingModelError) as err:
        if verbose:
            traceback.print_exc()
        print(f"rpo: error: {_describe(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
