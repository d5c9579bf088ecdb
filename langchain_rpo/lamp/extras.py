"""Optional dependencies: imported where they are used, with an error that names the extra.

The base install (``pip install langchain-rpo``) has none of the benchmark's packages (``ijson``,
``rouge-score``, ``rank-bm25``, ``matplotlib``); importing them at module level would break
``import langchain_rpo.lamp`` and ``rpo --help`` there. Each use asks :func:`optional_import`
instead, so only the code that needs a package fails without it, with the install command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "optional_import"]


class MissingExtraError(ImportError):
    """An optional package that is not installed; the message names the extra that brings it."""


def optional_import(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or explain which extra of ``langchain-rpo`` installs it.

    Args:
        module: The module to import (``"ijson"``, ``"rouge_score.rouge_scorer"``...).
        extra: The ``langchain-rpo`` extra that depends on it (``"eval"``).
        needed_for: What needs it, for the message (``"reading LaMP files"``).

    Returns:
        The module.

    Raises:
        MissingExtraError: When it cannot be imported, naming the install command.

    >>> optional_import("json", extra="eval", needed_for="a doctest").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".", 1)[0]
        raise MissingExtraError(
            f"{needed_for} needs the optional package {package!r}, which is not installed. "
            f'Fix: pip install "langchain-rpo[{extra}]"'
        ) from err
