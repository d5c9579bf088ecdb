"""What a history store accepts: the checks shared by adding items, searching and loading a file.

Everything a save must write is checked when it enters the store, so ``save`` cannot fail later
on something an ``add`` accepted: strings must be UTF-8-encodable (a lone surrogate such as
``"\\ud800"`` is not), metadata must be JSON that round-trips (string keys, finite numbers,
nesting within :data:`MAX_METADATA_DEPTH`), and vectors must be finite, non-zero rows of one
positive width. A file being loaded is held to the same rules (see
:mod:`langchain_rpo.history_file`).

Every check raises a ``ValueError`` that names the offending item (``texts[3]``,
``metadatas[0]['tags'][2]``) and says what to do about it.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import faiss
import numpy as np

__all__ = [
    "MAX_METADATA_DEPTH",
    "check_add_call",
    "check_encodable",
    "check_json_value",
    "check_k",
    "check_metadata",
    "check_no_nul",
    "check_query",
    "check_str_sequence",
    "check_user_id",
    "normalised_vectors",
]

MAX_METADATA_DEPTH = 32
"""How deeply metadata may nest lists and dicts (the metadata dict itself is level 1).

Deep enough for any real record, shallow enough that nothing that walks metadata (JSON,
LangChain's serialisers, our own checks) comes near Python's recursion limit.
"""


def check_encodable(value: str, where: str) -> None:
    """Refuse a string that UTF-8 cannot encode (one holding a lone surrogate).

    Args:
        value: The string.
        where: How the error names it, for example ``"texts[3]"``.

    Raises:
        ValueError: When ``value`` holds a lone surrogate.
    """
    if value.isascii():  # the common case, without encoding a copy
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{where} holds a lone surrogate {value[exc.start]!r} at position {exc.start}, which "
            "UTF-8 cannot encode, so the store could not save it. Fix: repair the text before "
            "adding it, for example text.encode('utf-8', 'replace').decode('utf-8')."
        ) from None


def check_user_id(user_id: object) -> str:
    """Return ``user_id`` when it is a non-empty, UTF-8-encodable string.

    Raises:
        ValueError: Otherwise.
    """
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(
            f"user_id must be a non-empty string, got {user_id!r}. Pass the id that names "
            "the user, for example config={'configurable': {'user_id': 'alice'}}."
        )
    check_encodable(user_id, "user_id")
    check_no_nul(user_id, "user_id")
    return user_id


def check_str_sequence(values: object, name: str) -> list[str]:
    """Return ``values`` as a list of strings.

    Args:
        values: An iterable of strings (a bare string is refused, not split into characters).
        name: How errors name it, for example ``"ids"``.

    Raises:
        ValueError: When ``values`` is a string or not iterable, or holds a non-string.
    """
    # A bare string is a Sequence[str] too; iterating it character by character is never meant.
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of strings, got {type(values).__name__}.")
    out = list(values)
    for i, value in enumerate(out):
        if not isinstance(value, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(value).__name__}.")
    return out


def check_json_value(value: object, where: str, depth: int = 1) -> None:
    """Refuse anything JSON cannot store exactly, or that nests deeper than the limit.

    Accepted: ``None``, ``bool``, ``int``, finite ``float``, UTF-8-encodable ``str``, and lists,
    tuples (stored as lists) and dicts with string keys of those, nested at most
    :data:`MAX_METADATA_DEPTH` levels.

    Args:
        value: The value.
        where: How the error names it, for example ``"metadatas[2]"``.
        depth: The nesting level of ``value`` (1 for the metadata dict itself).

    Raises:
        ValueError: Naming the offending part of ``value``.
    """
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}; JSON cannot store NaN or infinity.")
        return
    if isinstance(value, str):
        check_encodable(value, where)
        return
    if isinstance(value, (dict, list, tuple)):
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(
                f"{where} nests lists and dicts deeper than MAX_METADATA_DEPTH "
                f"({MAX_METADATA_DEPTH} levels). Fix: flatten the metadata."
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValueError(
                        f"{where} has the key {key!r} of type {type(key).__name__}; metadata "
                        "keys must be strings (JSON would silently turn it into one)."
                    )
                check_encodable(key, f"{where} key {key!r}")
                check_json_value(item, f"{where}[{key!r}]", depth + 1)
        else:
            for i, item in enumerate(value):
                check_json_value(item, f"{where}[{i}]", depth + 1)
        return
    raise ValueError(
        f"{where} is of type {type(value).__name__}, which JSON cannot store; use str, int, float, "
        "bool, None, list or dict (convert NumPy scalars with .item())."
    )


def check_metadata(metadata: object, where: str) -> dict[str, Any]:
    """Return a JSON round-tripped copy of one item's metadata, or refuse it.

    The copy means a caller mutating nested values afterwards cannot change the store.

    Args:
        metadata: A mapping (``None`` is an empty one).
        where: How the error names it, for example ``"metadatas[2]"``.

    Raises:
        ValueError: When it is not a mapping or holds anything :func:`check_json_value` refuses.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(metadata).__name__}.")
    metadata = dict(metadata)
    check_json_value(metadata, where)
    try:
        copied: dict[str, Any] = json.loads(json.dumps(metadata, allow_nan=False))
    except (TypeError, ValueError) as exc:  # for example an int with more digits than allowed
        raise ValueError(f"{where} cannot be stored as JSON: {exc}") from exc
    return copied


def check_add_call(
    user_id: object,
    texts: object,
    metadatas: object,
    ids: object,
    *,
    reserved_keys: frozenset[str] = frozenset(),
) -> tuple[str, list[str], list[dict[str, Any]], list[str]]:
    """Check an add call's arguments, the same way for every backend; ids generated when absent.

    Everything a backend will need to store is checked here, before it changes, so a save (or
    an insert) can never fail on an item an add accepted.

    Args:
        user_id: The user.
        texts: The texts.
        metadatas: One metadata dict per text, or ``None``.
        ids: One unique, non-empty string id per text, or ``None`` (uuid4 hex ids).
        reserved_keys: Metadata keys the backend keeps for itself (a vector-store adapter
            stores the user id in metadata); a metadata dict holding one is refused.

    Returns:
        ``(user_id, texts, metadatas, ids)`` as lists; the metadata dicts are JSON round-tripped
        copies, so a caller mutating nested values afterwards cannot change the store.

    Raises:
        ValueError: Naming the offending item (``texts[3]``, ``metadatas[0]['tags']``).
    """
    user_id = check_user_id(user_id)
    text_list = check_str_sequence(texts, "texts")
    for i, text in enumerate(text_list):
        check_encodable(text, f"texts[{i}]")
        check_no_nul(text, f"texts[{i}]")
    n = len(text_list)
    if metadatas is None:
        metas: list[dict[str, Any]] = [{} for _ in range(n)]
    else:
        if isinstance(metadatas, (str, dict)) or not isinstance(metadatas, Iterable):
            raise ValueError(
                f"metadatas must be a list of dicts (one per text), got {type(metadatas).__name__}."
            )
        metas = [check_metadata(m, f"metadatas[{i}]") for i, m in enumerate(metadatas)]
        if len(metas) != n:
            raise ValueError(
                f"Got {n} texts but {len(metas)} metadatas; pass one metadata dict per "
                "text, or metadatas=None."
            )
        for i, meta in enumerate(metas):
            clash = reserved_keys.intersection(meta)
            if clash:
                raise ValueError(
                    f"metadatas[{i}] uses the reserved key {sorted(clash)[0]!r}, which this "
                    "backend keeps for itself (it names the item's owner). Fix: rename that key."
                )
    if ids is None:
        item_ids = [uuid.uuid4().hex for _ in range(n)]
    else:
        item_ids = check_str_sequence(ids, "ids")
        if len(item_ids) != n:
            raise ValueError(
                f"Got {n} texts but {len(item_ids)} ids; pass one id per text, or ids=None "
                "to generate them."
            )
        for i, item_id in enumerate(item_ids):
            if not item_id:
                raise ValueError(f"ids[{i}] is empty; ids must be non-empty strings.")
            check_encodable(item_id, f"ids[{i}]")
            check_no_nul(item_id, f"ids[{i}]")
        if len(set(item_ids)) != n:
            raise ValueError(
                "ids must be unique within one call; to replace an item, add it once with "
                "its existing id."
            )
    return user_id, text_list, metas, item_ids


def check_query(query: object) -> str:
    """Return ``query`` when it is a string.

    Raises:
        ValueError: Otherwise.
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}.")
    return query


def check_k(k: object) -> int:
    """Return ``k`` as an ``int`` when it is a whole number of results, 0 or more.

    ``bool`` is refused (``True`` is an ``int`` in Python, but never a meant count); NumPy
    integers are accepted.

    Raises:
        ValueError: Otherwise.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an int, 0 or more, got {k!r} ({type(k).__name__}).")
    if k < 0:
        raise ValueError(f"k must be 0 or more, got {k}.")
    return int(k)


def normalised_vectors(vectors: object, dim: int | None, what: str) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 2-D copy with unit-length rows, or refuse them.

    A 1-D input is one vector. Refused: anything that is not an array of numbers, a width of 0
    or other than ``dim``, NaN or infinity (also values beyond float32's range), and zero rows,
    which have no direction (cosine similarity is undefined for them; FAISS would keep them as
    zeros that score 0 against everything). Rows too small or too large to square in float32
    are rescaled before normalising, so they keep their direction.

    Args:
        vectors: The vectors (a NumPy array, a list of lists, a single list).
        dim: The store's width, or ``None`` while it has none.
        what: How errors name a row: a format string with ``{i}``, such as
            ``"embeddings[{i}]"``; a 1-D input is named with ``{i}`` dropped.

    Raises:
        ValueError: Naming the first offending row.
    """
    whole = what.replace("[{i}]", "")
    try:
        raw = np.asarray(vectors)
    except (TypeError, ValueError) as exc:  # ragged rows, for example
        raise ValueError(f"{whole} must be an array of numbers: {exc}") from exc
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{whole} must be numbers, got an array of dtype {raw.dtype}.")
    if raw.ndim not in (1, 2):
        raise ValueError(
            f"{whole} must be a vector or a 2-D array of vectors, got shape {raw.shape}."
        )

    def row(i: int) -> str:
        return whole if raw.ndim == 1 else what.format(i=i)

    with np.errstate(over="ignore"):  # overflow to inf is refused below, by name
        array = np.array(raw, dtype=np.float32, order="C", copy=True, ndmin=2)
    if array.shape[1] == 0:
        raise ValueError(f"{whole} has width 0; vectors need at least one dimension.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(
            f"Embedding dimension mismatch: got vectors of width {array.shape[1]}, but this "
            f"store holds vectors of width {dim}. Use the same embeddings model the store was "
            "built with."
        )
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(
            f"{row(i)} is not finite (NaN or infinity, or a value beyond float32's "
            "range), so it could never be recalled. Fix: check the embeddings model's output."
        )
    with np.errstate(over="ignore", under="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", array, array))
    awkward = ~np.isfinite(norms) | (norms == 0)
    if awkward.any():
        rows = np.flatnonzero(awkward)
        peaks = np.abs(array[rows]).max(axis=1)
        if (peaks == 0).any():
            i = int(rows[np.argmax(peaks == 0)])
            raise ValueError(
                f"{row(i)} is a zero vector: it has no direction, so no cosine "
                "similarity can be computed for it. Fix: check the embeddings model's output."
            )
        # Scale into a range float32 can square, then normalise as usual.
        array[rows] /= peaks[:, None]
    # Normalised here whatever the caller passed, so inner product is cosine similarity.
    faiss.normalize_L2(array)
    return array


def check_no_nul(value: str, where: str) -> None:
    """Refuse a string holding a NUL character (``"\\x00"``).

    PostgreSQL's ``text`` cannot hold NUL, so every backend refuses a NUL in a user id, an item
    id or a text (the same inputs everywhere, so a history moves between backends unchanged);
    metadata may hold NUL (every backend stores it as JSON text, where it is escaped).

    Args:
        value: The string.
        where: How the error names it, for example ``"user_id"`` or ``"texts[3]"``.

    Raises:
        ValueError: When ``value`` holds a NUL.
    """
    position = value.find("\x00")
    if position >= 0:
        raise ValueError(
            f"{where} holds a NUL character ('\\x00') at position {position}, which no history "
            "backend stores (PostgreSQL text cannot hold it). Fix: remove it, for example "
            "value.replace('\\x00', '')."
        )
