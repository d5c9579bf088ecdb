"""Command-line plumbing shared by ``rpo`` and ``rpo demo``: plain-word errors, checked values.

- :class:`Parser`: an ``argparse`` parser whose errors are one plain line (raised as
  :class:`UsageError`, which ``rpo`` prints as ``rpo: error: ...`` with exit status 1) instead of
  argparse's usage dump and status 2.
- :func:`whole_number`, :func:`choice`, :func:`parsed_by`: value types whose messages name the
  option and the value (``--limit must be a positive whole number, got 'abc'``).
- :func:`add_config_options`: options built from a config dataclass, so that each option's
  default and help live once, on the dataclass field (as TRL's parsers do with their configs).
- :func:`check_target`: a path to write, checked before any work (a file where a folder is
  needed, a folder where a file is, a path under a file, no write permission).

Light on purpose (only the standard library): ``rpo --help`` imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, NoReturn

__all__ = [
    "Parser",
    "UsageError",
    "add_config_options",
    "check_config",
    "check_target",
    "choice",
    "option",
    "parsed_by",
    "whole_number",
]


class UsageError(ValueError):
    """A command line that cannot be run as written; the message says what to change."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one plain line, raised as :class:`UsageError`.

    Subparsers made with ``add_subparsers`` are of this class too (argparse uses the parent's).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The help texts are written as paragraphs and examples: keep their line breaks.
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise the argparse error as one plain line that points at this command's help."""
        raise UsageError(f"{_plain(message)} (see '{self.prog} --help')")


def _plain(message: str) -> str:
    """Reword argparse's messages: ``argument --limit: expected one argument`` and the like.

    >>> _plain("argument --limit: expected one argument")
    '--limit needs a value'
    >>> _plain("argument {eval,lamp}: invalid choice: 'x' (choose from 'eval', 'lamp')")
    "unknown command 'x'; choose from eval, lamp"
    >>> _plain("argument --k: --k must be a whole number of 0 or more, got '-1'")
    "--k must be a whole number of 0 or more, got '-1'"
    >>> _plain("the following arguments are required: {download,score}")
    'name a command: download, score'
    """
    command = re.fullmatch(r"the following arguments are required: \{(.*?)\}", message)
    if command:
        return f"name a command: {command.group(1).replace(',', ', ')}"
    found = re.fullmatch(r"argument (\S+?)(?:/\S+)?: (.*)", message, flags=re.DOTALL)
    if not found:
        return message
    name, rest = found.groups()
    if rest.startswith(name):  # our value types already name the option
        return rest
    if rest in ("expected one argument", "expected at least one argument"):
        return f"{name} needs a value"
    invalid = re.fullmatch(r"invalid choice: (.*) \(choose from (.*)\)", rest, flags=re.DOTALL)
    if invalid:
        value, options = invalid.groups()
        options = options.replace("'", "")
        if name.startswith("{"):
            return f"unknown command {value}; choose from {options}"
        return f"{name} must be one of {options}, got {value}"
    return f"{name}: {rest}"


def whole_number(
    option: str, minimum: int = 0, *, zero_means_none: bool = False
) -> Callable[[str], int | None]:
    """An argparse type: a whole number of at least ``minimum``, with a message naming ``option``.

    Args:
        option: The option, for the message (``"--limit"``).
        minimum: The smallest value accepted.
        zero_means_none: Also accept ``0`` and return None for it (``--max-item-chars 0``: no cut).

    Returns:
        The type function.

    >>> whole_number("--limit", 1)("12")
    12
    >>> whole_number("--limit", 1)("abc")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: --limit must be a positive whole number, got 'abc'
    """
    wanted = (
        "a positive whole number" if minimum == 1 else f"a whole number of {minimum} or more"
    ) + (" (or 0 for none)" if zero_means_none else "")

    def parse(text: str) -> int | None:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value == 0 and zero_means_none:
            return None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{option} must be {wanted}, got {text!r}")
        return value

    parse.__name__ = "whole number"  # what argparse would print, were a message to slip through
    return parse


def choice(option: str, options: Iterable[str]) -> Callable[[str], str]:
    """An argparse type: one of ``options``, with a message naming ``option`` and the choices.

    >>> choice("--retriever", ["bm25", "dense"])("tfidf")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: --retriever must be one of bm25, dense, got 'tfidf'
    """
    allowed = tuple(options)

    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(
                f"{option} must be one of {', '.join(allowed)}, got {text!r}"
            )
        return text

    return parse


def parsed_by(option: str, function: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type that runs ``function``, turning its ``ValueError`` into a plain message."""

    def parse(text: str) -> Any:
        try:
            return function(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{option}: {err}") from err

    return parse


def check_target(path: Path, option: str, *, folder: bool) -> None:
    """Check that ``path`` can be written as a folder (``folder``) or as a file, before any work.

    Args:
        path: The path to write (it need not exist).
        option: The option that named it, for the message (``"--out"``).
        folder: True for a folder (created when missing), False for a file.

    Raises:
        ValueError: Naming the path, the option and what is in the way.
    """
    if path.exists():
        if folder and not path.is_dir():
            raise ValueError(
                f"{path}: {option} names a file; it must be a folder (created if missing)"
            )
        if not folder and path.is_dir():
            raise ValueError(f"{path}: {option} names a folder; it must be a file to write")
        existing = path if folder else path.parent
    else:
        existing = path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(
                f"{path}: cannot write {option} there, because {existing} is a file, not a folder"
            )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write {option} there (no write permission in {existing})")


# --------------------------------------------------------------------------- config dataclasses


def option(
    help: str,  # argparse's name for it
    *,
    minimum: int | None = None,
    zero_means_none: bool = False,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    cli: bool = True,
) -> dict[str, Any]:
    """Describe a dataclass field's command-line option: ``field(default=..., metadata=option(...))``.

    Args:
        help: The option's help; ``%(default)s`` shows the default.
        minimum: For whole numbers: the smallest value (checked by :func:`check_config` too).
        zero_means_none: ``0`` on the command line means None (a field typed ``int | None``).
        parse: Turns the option's text into the field's value (``ValueError`` for bad text).
        metavar: The option's placeholder in the help.
        cli: False for a field without an option.

    Returns:
        The field's metadata.
    """
    return {
        "help": help,
        "minimum": minimum,
        "zero_means_none": zero_means_none,
        "parse": parse,
        "metavar": metavar,
        "cli": cli,
    }


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _allows_none(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _literal_options(annotation: Any) -> tuple[str, ...] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(candidate) is Literal:
            return tuple(typing.get_args(candidate))
    return None


def _is(annotation: Any, kind: type) -> bool:
    args = typing.get_args(annotation)
    return annotation is kind or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType) and kind in args
    )


def check_config(config: Any) -> None:
    """Check a config dataclass's whole numbers and choices against its fields' descriptions.

    Args:
        config: An instance of a dataclass whose fields carry :func:`option` metadata.

    Raises:
        ValueError: Naming the field, the rule and the value.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(config, f.name)
        annotation = hints[f.name]
        if value is None and _allows_none(annotation):
            continue
        minimum = f.metadata.get("minimum")
        if minimum is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < minimum
        ):
            wanted = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
            raise ValueError(f"{cls.__name__}.{f.name} must be {wanted}, got {value!r}")
        options = _literal_options(annotation)
        if options is not None and value not in options:
            raise ValueError(
                f"{cls.__name__}.{f.name} must be one of {', '.join(options)}, got {value!r}"
            )


def add_config_options(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    optional: Iterable[str] = (),
) -> None:
    """Add one option per field of the dataclass ``cls`` (described with :func:`option`).

    A field without a default is a required option unless it is named in ``optional`` (the
    caller then fills it in, as ``rpo eval --set`` does for ``--questions``). Whole numbers get
    :func:`whole_number`, ``Literal`` fields :func:`choice`, ``bool`` fields a switch, ``Path``
    fields a path; ``parse`` overrides the type. Defaults come from the field, never repeated.

    Args:
        parser: The parser to add to.
        cls: The dataclass.
        optional: Required fields that the command line may leave out.
    """
    hints = typing.get_type_hints(cls)
    leave_out = set(optional)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag, annotation = _flag(f.name), hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kwargs: dict[str, Any] = {"help": meta.get("help"), "dest": f.name}
        if required:
            kwargs["required"] = f.name not in leave_out
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs["default"] = default
        if annotation is bool:
            parser.add_argument(flag, action="store_true", **kwargs)
            continue
        options = _literal_options(annotation)
        if meta.get("parse") is not None:
            kwargs["type"] = parsed_by(flag, meta["parse"])
        elif options is not None:
            kwargs["type"] = choice(flag, options)
            kwargs["metavar"] = "{" + ",".join(options) + "}"
        elif _is(annotation, int):
            kwargs["type"] = whole_number(
                flag, meta.get("minimum") or 0, zero_means_none=meta.get("zero_means_none", False)
            )
            kwargs["metavar"] = "N"
        elif _is(annotation, Path):
            kwargs["type"] = Path
            kwargs["metavar"] = "PATH"
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if isinstance(kwargs.get("default"), tuple):  # show "a,b,c", as it is typed
            kwargs["default"] = ",".join(map(str, kwargs["default"]))
        parser.add_argument(flag, **kwargs)
