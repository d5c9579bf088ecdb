"""The settings an adapter was trained with, kept beside it: ``rpo_settings.json``.

An adapter learns the prompt it is trained on: how many history items it sees (``k``), how long
each item and the request may be, how many tokens its trajectory takes, and how its items were
recalled. Used with other settings it does worse, and nothing says so. So the training scripts
write those settings into every adapter folder they save, beside ``adapter_config.json``, and
:class:`~langchain_rpo.ReflectionModel`, :class:`~langchain_rpo.RPORewriter`, ``rpo eval`` and
``rpo demo`` take their defaults from it: a user who passes nothing gets what the adapter
learned, and one who passes a different value gets a :class:`UserWarning` naming the setting.

This module owns the file's format (:class:`AdapterSettings`: :meth:`~AdapterSettings.read`,
:meth:`~AdapterSettings.write`) and names each library default once:

===========================  =======  =====================================================
constant                     value    what it is the default of
===========================  =======  =====================================================
:data:`DEFAULT_K`            4        history items recalled (``RPORewriter.k``, ``rpo eval``)
:data:`DEFAULT_ITEM_CHARS`   300      ``RPORewriter``: each recalled item's text cut
:data:`DEFAULT_QUERY_CHARS`  1000     ``RPORewriter``: the request cut
:data:`DEFAULT_MAX_TOKENS`   256      ``ReflectionModel.max_tokens``; ``rpo eval``'s budget
:data:`LAMP_ITEM_CHARS`      400      LaMP: an item's long field (abstract, article) cut
===========================  =======  =====================================================

These defaults apply where an adapter records nothing (no adapter, or one saved before this file
existed: :meth:`AdapterSettings.read` returns None), so such adapters behave exactly as before.

The file (version 1)::

    {"version": 1, "prompt_version": 1, "k": 4, "max_item_chars": 80,
     "max_query_chars": 1000, "max_new_tokens": 96, "recall": "request"}

``max_item_chars`` and ``max_query_chars`` may be ``null``: the adapter was trained without that
cut. The module is at the bottom of the package (standard library only), so any layer can read it.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_ITEM_CHARS",
    "DEFAULT_K",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_QUERY_CHARS",
    "LAMP_ITEM_CHARS",
    "PROMPT_VERSION",
    "RECALL_KINDS",
    "SETTINGS_FILE",
    "SETTINGS_VERSION",
    "AdapterSettings",
    "warn_if_differs",
]

#: The file's name inside an adapter folder.
SETTINGS_FILE = "rpo_settings.json"
#: The version of the file's format this module reads and writes.
SETTINGS_VERSION = 1
#: The version of the reflection prompt :func:`langchain_rpo.prompts.build_reflection_messages`
#: builds. Bump it when that prompt changes what the model reads: adapters trained on another
#: version then say so when loaded.
PROMPT_VERSION = 1

#: History items recalled per request.
DEFAULT_K = 4
#: ``RPORewriter``: each recalled item's text is cut to this many characters.
DEFAULT_ITEM_CHARS = 300
#: ``RPORewriter``: the request is cut to this many characters.
DEFAULT_QUERY_CHARS = 1000
#: The reflection model's generation budget, in tokens.
DEFAULT_MAX_TOKENS = 256
#: LaMP: an item's long field (an abstract, an article) is cut to this many characters when the
#: item is rendered with the task's template (``rpo eval``'s ``rag``; ``rpo`` without settings).
LAMP_ITEM_CHARS = 400

#: How the history was searched: with the ``request`` (the query; the draft when there is none,
#: as ``RPORewriter`` does) or with the ``draft`` always.
RECALL_KINDS = ("request", "draft")


@dataclass(frozen=True)
class AdapterSettings:
    """The prompt and generation settings an adapter was trained with (``rpo_settings.json``).

    Attributes:
        k: History items recalled per request at inference (the adapter's working point; a
            curriculum may have trained several).
        max_item_chars: Each recalled item was cut to this many characters: for a LaMP item, its
            long field (the abstract, the article) in the task's template; for a plain text, the
            text. None: no cut.
        max_query_chars: The request was cut to this many characters (None: no cut).
        max_new_tokens: The reflection model's generation budget, in tokens.
        recall: How the history was searched, one of :data:`RECALL_KINDS`.
        prompt_version: The :data:`PROMPT_VERSION` of the reflection prompt it was trained on.
        version: The file format's version (:data:`SETTINGS_VERSION`).

    >>> s = AdapterSettings(k=4, max_item_chars=80, max_new_tokens=96)
    >>> AdapterSettings.from_dict(s.to_dict()) == s
    True
    """

    k: int = DEFAULT_K
    max_item_chars: int | None = DEFAULT_ITEM_CHARS
    max_query_chars: int | None = DEFAULT_QUERY_CHARS
    max_new_tokens: int = DEFAULT_MAX_TOKENS
    recall: str = "request"
    prompt_version: int = PROMPT_VERSION
    version: int = SETTINGS_VERSION

    def __post_init__(self) -> None:
        problems = []
        for name, minimum, optional in (
            ("k", 0, False),
            ("max_item_chars", 1, True),
            ("max_query_chars", 1, True),
            ("max_new_tokens", 1, False),
            ("prompt_version", 1, False),
            ("version", 1, False),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                wanted = f"a whole number >= {minimum}" + (" or null" if optional else "")
                problems.append(f"{name} must be {wanted}, got {value!r}")
        if self.recall not in RECALL_KINDS:
            problems.append(f"recall must be one of {', '.join(RECALL_KINDS)}, got {self.recall!r}")
        if self.version > SETTINGS_VERSION:
            problems.append(
                f"version {self.version} is newer than this langchain-rpo reads "
                f"({SETTINGS_VERSION}); upgrade langchain-rpo"
            )
        if problems:
            raise ValueError("; ".join(problems))

    # -- the dict and the file ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The settings as the file holds them (``version`` first)."""
        found = asdict(self)
        return {"version": found.pop("version"), **found}

    @classmethod
    def from_dict(cls, data: Any) -> AdapterSettings:
        """Read the settings from the file's JSON object.

        Raises:
            TypeError: For a value that is not a JSON object.
            ValueError: For an unknown key, a missing key or a value out of range, naming each.
        """
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        missing = sorted(known - set(data))
        if unknown or missing:
            parts = [f"unknown keys {unknown}"] if unknown else []
            parts += [f"missing keys {missing}"] if missing else []
            raise ValueError("; ".join(parts))
        return cls(**data)

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> AdapterSettings | None:
        """Read ``folder/rpo_settings.json``.

        Args:
            folder: An adapter folder.

        Returns:
            The settings; None when the folder has no settings file (an adapter saved before
            the file existed): its users then keep the library defaults, which is how such
            adapters always ran.

        Raises:
            ValueError: For a damaged file, naming it, what is wrong and the fix.
        """
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError too
            raise ValueError(
                f"{path}: not a valid adapter settings file ({err}). Fix: write it again with "
                "AdapterSettings(...).write(folder), or delete it to use the library defaults."
            ) from err

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``folder/rpo_settings.json`` atomically (the folder is created if missing).

        Returns:
            The file's path.
        """
        from langchain_rpo.atomic import atomic_write

        path = Path(folder) / SETTINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    # -- using them ---------------------------------------------------------------------------

    def differences(self, **given: Any) -> list[tuple[str, Any, Any]]:
        """The settings among ``given`` that differ from the trained ones.

        Returns:
            ``(name, trained value, given value)`` for each difference.

        >>> AdapterSettings(k=4).differences(k=0, max_new_tokens=256)
        [('k', 4, 0)]
        """
        return [
            (name, getattr(self, name), value)
            for name, value in given.items()
            if value != getattr(self, name)
        ]


def warn_if_differs(
    settings: AdapterSettings | None, where: str, stacklevel: int = 3, **given: Any
) -> None:
    """Warn once per setting that a caller chose a value the adapter was not trained with.

    Python shows a given warning once per place that issues it (the default filter), so a
    rewriter built per batch with the same value warns once.

    Args:
        settings: The adapter's settings (None: nothing recorded, nothing to compare).
        where: Who was given the value, for the message (``"RPORewriter"``).
        stacklevel: As :func:`warnings.warn`'s (3: the caller's caller).
        **given: The values the caller chose explicitly, by setting name.
    """
    if settings is None:
        return
    for name, trained, value in settings.differences(**given):
        warnings.warn(
            f"{where}: {name}={value!r} differs from the {name}={trained!r} the adapter was "
            f"trained with ({SETTINGS_FILE}); pass nothing to use the adapter's value.",
            UserWarning,
            stacklevel=stacklevel,
        )
