"""JSON encoding of volume descriptions and ``Volume.meta``.

``meta`` holds header fields: mostly JSON types, plus numpy scalars/arrays from header
parsers and ``bytes`` (an MRC extended header, an ImageJ overlay). :func:`dumps` writes
bytes as ``{"__bytes__": "<base64>"}`` and numpy values as plain numbers/lists;
:func:`loads` restores bytes. Used by the NPZ/HDF5 writers and the ``.vxf`` container.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

_BYTES_KEY = "__bytes__"


def to_jsonable(obj: Any) -> Any:
    """Recursively convert ``obj`` to JSON types (bytes -> tagged base64)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {_BYTES_KEY: base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def from_jsonable(obj: Any) -> Any:
    """Inverse of :func:`to_jsonable` (restores bytes). A ``{"__bytes__": ...}`` tag whose
    value is not base64 text (a damaged or forged header) stays a plain dict, which the
    writers then refuse as bytes with a warning."""
    if isinstance(obj, dict):
        if set(obj) == {_BYTES_KEY} and isinstance(obj[_BYTES_KEY], str):
            try:
                return base64.b64decode(obj[_BYTES_KEY], validate=True)
            except (ValueError, binascii.Error):
                return dict(obj)  # not base64: kept as the plain map it is
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj


def dumps(obj: Any, *, ascii: bool = False) -> str:
    """Compact JSON text of ``obj`` (see :func:`to_jsonable`). With ``ascii``, every
    non-ASCII character is escaped (``\\uXXXX``), so that text holding lone surrogates
    (possible in strings from an untrusted header) can still be encoded as UTF-8.

    Raises ``RecursionError`` for structures nested beyond Python's recursion limit."""
    return json.dumps(to_jsonable(obj), separators=(",", ":"), ensure_ascii=ascii, allow_nan=True)


def loads(text: str | bytes) -> Any:
    """Parse text made by :func:`dumps`.

    Raises ``ValueError`` (``json.JSONDecodeError``, or text that is not UTF-8) for
    malformed text and ``RecursionError`` for nesting beyond Python's recursion limit."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    return from_jsonable(json.loads(text))
