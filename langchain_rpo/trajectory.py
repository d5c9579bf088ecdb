"""The structured rewriting trajectory: the one place that renders and parses it.

A trajectory is what the reflection model writes before (and around) its answer::

    <preferences>what the recalled history shows about this user</preferences>
    <gaps>where the draft departs from those preferences</gaps>
    <rewrite>the personalized answer, and nothing else</rewrite>

Training targets are rendered here (:func:`render`) and model outputs are parsed here
(:func:`parse`); every other module imports this one rather than spelling the tags again.

The answer is the text of the *last complete* ``<rewrite>`` block. Tag-like strings inside a
field are escaped on render (``<`` becomes ``&lt;`` and ``&`` becomes ``&amp;``) and unescaped
on parse, so any text survives a round trip. The reflection prompt escapes what users and models
wrote (history items, the request, the draft) the same way, so none of it can open or close a
tag.

How a block is found, for any output (well-formed or not), deterministically: a block opens at a
``<name>`` tag and closes at the *next* ``</name>``; an opening tag repeated inside an open
block is dropped (it opens nothing); blocks follow one another, and the last complete one counts.
So ``<rewrite>a <rewrite>b</rewrite> c</rewrite>`` gives ``a b``, and the stray closing tag after
it is ignored.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "FIELDS",
    "REWRITE_CLOSE",
    "REWRITE_OPEN",
    "ParseFailure",
    "RewriteStreamExtractor",
    "Trajectory",
    "TrajectoryParseError",
    "close_cut_rewrite",
    "escape",
    "parse",
    "render",
    "try_parse",
    "unescape",
]

FIELDS: tuple[str, str, str] = ("preferences", "gaps", "rewrite")
REWRITE_OPEN = "<rewrite>"
REWRITE_CLOSE = "</rewrite>"

# The prompt shows the format as "<rewrite>...</rewrite>"; an output that only echoes that
# placeholder has answered nothing.
_PLACEHOLDER = re.compile(r"[.\u2026\s]+")
_BLOCK = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL) for name in FIELDS}


def _last_block(name: str, text: str) -> str | None:
    """The text of the last complete ``name`` block (nested opening tags dropped), or None."""
    found = _BLOCK[name].findall(text)
    return found[-1].replace(f"<{name}>", "") if found else None


def escape(text: str) -> str:
    """Escape a field's text so that it cannot close or open a tag.

    >>> escape("a </rewrite> & b")
    'a &lt;/rewrite> &amp; b'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;")


def unescape(text: str) -> str:
    """Invert :func:`escape` (and any other HTML entity the model may write).

    >>> unescape("a &lt;/rewrite> &amp; b")
    'a </rewrite> & b'
    """
    return html.unescape(text)


class ParseFailure(str, Enum):
    """Why a model output is not a usable trajectory (a stable, named reason)."""

    EMPTY_OUTPUT = "empty_output"
    NO_REWRITE = "no_rewrite_block"
    UNCLOSED_REWRITE = "unclosed_rewrite_block"
    EMPTY_REWRITE = "empty_rewrite"
    PLACEHOLDER_REWRITE = "placeholder_rewrite"


class TrajectoryParseError(ValueError):
    """Raised by :func:`parse` when an output holds no usable rewrite.

    Attributes:
        reason: The named :class:`ParseFailure`.
        text: The raw output that failed to parse.
    """

    def __init__(self, reason: ParseFailure, text: str) -> None:
        self.reason = reason
        self.text = text
        super().__init__(f"unusable reflection output ({reason.value}): {text[:200]!r}")


@dataclass(frozen=True)
class Trajectory:
    """A parsed (or to-be-rendered) rewriting trajectory.

    Attributes:
        rewrite: The personalized answer (for label and rating tasks, the label itself).
        preferences: What the recalled history shows about the user ("" when absent).
        gaps: Where the draft departs from those preferences ("" when absent).
    """

    rewrite: str
    preferences: str = ""
    gaps: str = ""

    def to_dict(self) -> dict[str, str]:
        """Return the three fields as a plain dict (JSON-friendly, for metadata)."""
        return {"preferences": self.preferences, "gaps": self.gaps, "rewrite": self.rewrite}


def render(trajectory: Trajectory, fields: Sequence[str] = FIELDS) -> str:
    """Render a trajectory as the reflection model should write it (a training target).

    Args:
        trajectory: The fields to render; each is escaped so tag-like text is safe.
        fields: The blocks to write, in order: all three by default; ``("rewrite",)`` gives the
            rewrite-only completion of the ablation that trains without the reasoning (what
            :func:`parse` reads back the same way).

    Returns:
        The blocks, one per line.

    Raises:
        ValueError: A field that is not one of :data:`FIELDS`, or no ``rewrite`` block.

    >>> print(render(Trajectory(rewrite="PEP 8", preferences="short", gaps="too long")))
    <preferences>short</preferences>
    <gaps>too long</gaps>
    <rewrite>PEP 8</rewrite>
    >>> render(Trajectory(rewrite="PEP 8", preferences="short"), fields=("rewrite",))
    '<rewrite>PEP 8</rewrite>'
    """
    unknown = [name for name in fields if name not in FIELDS]
    if unknown or "rewrite" not in fields:
        raise ValueError(
            f"render writes blocks of {FIELDS} and always the rewrite, got fields={tuple(fields)}"
        )
    values = trajectory.to_dict()
    return "\n".join(f"<{name}>{escape(values[name])}</{name}>" for name in fields)


def parse(text: str) -> Trajectory:
    """Parse a model output into a :class:`Trajectory`.

    The answer is the last complete ``<rewrite>`` block, stripped of surrounding whitespace;
    ``preferences`` and ``gaps`` are the last complete blocks of their kind, or "".

    Args:
        text: The raw reflection-model output.

    Returns:
        The parsed trajectory.

    Raises:
        TrajectoryParseError: With a named :class:`ParseFailure` when there is no usable
            rewrite (empty output, no block, an unclosed block, an empty rewrite, or one that
            only echoes the prompt's ``...`` placeholder).
    """
    if not text or not text.strip():
        raise TrajectoryParseError(ParseFailure.EMPTY_OUTPUT, text)
    block = _last_block("rewrite", text)
    if block is None:
        reason = ParseFailure.UNCLOSED_REWRITE if REWRITE_OPEN in text else ParseFailure.NO_REWRITE
        raise TrajectoryParseError(reason, text)
    rewrite = unescape(block).strip()
    if not rewrite:
        raise TrajectoryParseError(ParseFailure.EMPTY_REWRITE, text)
    if _PLACEHOLDER.fullmatch(rewrite):
        raise TrajectoryParseError(ParseFailure.PLACEHOLDER_REWRITE, text)
    extra = {}
    for name in ("preferences", "gaps"):
        found = _last_block(name, text)
        extra[name] = unescape(found).strip() if found is not None else ""
    return Trajectory(rewrite=rewrite, **extra)


def close_cut_rewrite(text: str) -> str:
    """Close a ``<rewrite>`` block that a server cut at a ``</rewrite>`` stop sequence.

    A served reflection model asked to stop at ``</rewrite>`` (``stop=["</rewrite>"]``, as the
    OpenAI API does it) returns its output *without* the stop sequence. Call this only when the
    server says it stopped on a stop sequence (``finish_reason == "stop"``): an output cut by the
    token budget (``"length"``) stays unclosed, and :func:`parse` rejects it.

    >>> close_cut_rewrite("<gaps>g</gaps><rewrite>PEP 8")
    '<gaps>g</gaps><rewrite>PEP 8</rewrite>'
    >>> close_cut_rewrite("<rewrite>done</rewrite>")
    '<rewrite>done</rewrite>'
    """
    opened = text.rfind(REWRITE_OPEN)
    if opened >= 0 and REWRITE_CLOSE not in text[opened:]:
        return text + REWRITE_CLOSE
    return text


def try_parse(text: str) -> tuple[Trajectory | None, ParseFailure | None]:
    """Parse without raising: ``(trajectory, None)`` or ``(None, reason)``.

    >>> try_parse("<rewrite>ok</rewrite>")[0].rewrite
    'ok'
    >>> try_parse("no tags")[1].value
    'no_rewrite_block'
    """
    try:
        return parse(text), None
    except TrajectoryParseError as err:
        return None, err.reason


class RewriteStreamExtractor:
    """Pick the rewrite's text out of a streamed trajectory, as it arrives.

    Feed the model's output piece by piece; :meth:`feed` returns the part of the (first)
    ``<rewrite>`` block that is now certain, unescaped and with the surrounding whitespace that
    :func:`parse` strips held back, so the concatenated pieces equal ``parse(text).rewrite`` for
    any output whose first complete rewrite block is also its last. A ``<rewrite>`` repeated
    inside the block is dropped, as :func:`parse` drops it.

    >>> extractor = RewriteStreamExtractor()
    >>> pieces = ["<prefer", "ences>x</preferences><rew", "rite> PEP &amp;", " 8 </rewr", "ite>"]
    >>> "".join(extractor.feed(p) for p in pieces) + extractor.flush()
    'PEP & 8'
    >>> extractor.closed
    True
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._state = "before"  # before -> inside -> closed
        self._started = False  # has any rewrite text been emitted?
        self._lead = ""  # leading text that is still only the "..." placeholder

    @property
    def opened(self) -> bool:
        """Whether the ``<rewrite>`` tag has been seen."""
        return self._state != "before"

    @property
    def closed(self) -> bool:
        """Whether the ``</rewrite>`` tag has been seen (the rewrite is complete)."""
        return self._state == "closed"

    def feed(self, piece: str) -> str:
        """Add a piece of model output; return the rewrite text it makes certain."""
        if self._state == "closed":
            return ""
        self._buffer += piece
        if self._state == "before":
            start = self._buffer.find(REWRITE_OPEN)
            if start < 0:
                # Keep a tail that could be the start of a split opening tag.
                self._buffer = self._buffer[-(len(REWRITE_OPEN) - 1) :]
                return ""
            self._buffer = self._buffer[start + len(REWRITE_OPEN) :]
            self._state = "inside"
        self._buffer = self._buffer.replace(REWRITE_OPEN, "")
        end = self._buffer.find(REWRITE_CLOSE)
        if end >= 0:
            ready, self._buffer, self._state = self._buffer[:end].rstrip(), "", "closed"
            return self._emit(ready)
        # Hold back what could still be a split tag (closing, or a repeated opening one to
        # drop), a split entity or trailing space.
        safe = len(self._buffer)
        for tag in (REWRITE_CLOSE, REWRITE_OPEN):
            for cut in range(1, len(tag)):
                if self._buffer.endswith(tag[:cut]):
                    safe = min(safe, len(self._buffer) - cut)
        amp = self._buffer.rfind("&", 0, safe)
        if amp >= 0 and ";" not in self._buffer[amp:safe]:
            safe = amp
        ready = self._buffer[:safe]
        stripped = ready.rstrip()
        self._buffer = ready[len(stripped) :] + self._buffer[safe:]
        return self._emit(stripped)

    def flush(self) -> str:
        """Return what is held back once the output has ended (an unclosed block's tail)."""
        if self._state != "inside":
            return ""
        ready, self._buffer = self._buffer.rstrip(), ""
        return self._emit(ready)

    def _emit(self, text: str) -> str:
        if not self._started:
            # Hold back leading whitespace and dots until real text shows this is no
            # placeholder echo (which parse() rejects, so it must never reach a user).
            text = unescape(self._lead + text).lstrip()
            if _PLACEHOLDER.fullmatch(text) or not text:
                self._lead = text
                return ""
            self._started, self._lead = True, ""
            return text
        return unescape(text)
