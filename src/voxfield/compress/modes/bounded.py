"""Error-bounded compression with any method: the method's file plus the entropy-coded
residual of :mod:`voxfield.compress.modes.ebound` (``voxfield compress --max-error E``).

For classic codecs and the hybrid method the base ratio is searched: the file is made at a
few base ratios with the prior codec alone, the one giving the smallest total is kept, and
the full method (hybrid: prior + residual filter) is then made at that ratio and kept when
it gives a smaller file. Neural methods use the given base ratio (default 64), since each
probe would be a full fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from voxfield.codecs.base import Codec, Target
from voxfield.compress.classic import compress_volume
from voxfield.compress.defaults import DEFAULT_RATIO
from voxfield.compress.modes import ebound
from voxfield.compress.registry import Method, get_method
from voxfield.io.volume import Volume

#: encode(ratio or None, full) -> (.vxf bytes, one-line description)
Encoder = Callable[[float | None, bool], tuple[bytes, str]]


def make_encoder(vol: Volume, method: Method | str | None = None, config: Any = None, *,
                 codec: Codec | None = None, settings: dict[str, Any] | None = None,
                 target: Target | None = None, tol: float = 0.02, loose: bool = False,
                 guide_mask: np.ndarray | None = None,
                 progress: Callable[[str, float], None] | None = None) -> Encoder:
    """A function making ``method``'s own file at a ratio (``None``: ``target``).

    ``method``: a registered :class:`~voxfield.compress.registry.Method` or its name
    (``"classic"`` when ``codec`` is given); ``config``: its configuration (default: its
    defaults with ``settings``). ``full=False`` makes a hybrid's prior-only file (used
    while searching). ``loose``: a ratio within 30 % is enough (classic and hybrid bases
    while searching)."""
    if method is None or isinstance(method, str):
        method = get_method(method or ("classic" if codec is not None else "sci"))
    if config is None and method.kind != "classic":
        config = method.config(**(settings or {}))

    def encode(r: float | None, full: bool = True) -> tuple[bytes, str]:
        rtol = 0.3 if loose and method.kind in ("classic", "hybrid") else tol
        tgt = target if r is None else Target.ratio(r, rtol)
        if method.kind == "classic":
            assert codec is not None
            return compress_volume(vol, codec, tgt), codec.name
        cfg = config if full or method.kind != "hybrid" else replace(config, residual="none", guide=None)
        kw = {"guide_mask": guide_mask} if guide_mask is not None else {}
        blob, rep = method.encode(vol, tgt, cfg, progress=progress, **kw)
        return blob, method.describe(rep)

    return encode


def error_bounded(vol: Volume, encode: Encoder, bound: float, *, search: bool, ratio: float | None = None,
                  decode: Callable[[bytes], np.ndarray] | None = None,
                  on_probe: Callable[[float, int, int], None] | None = None) -> tuple[bytes, str, float]:
    """The smallest file found whose every voxel decodes within ``bound`` of ``vol``.
    Returns (bytes, description, base ratio)."""
    if decode is None:
        from voxfield.compress.api import decompress

        def decode(b: bytes) -> np.ndarray:
            return decompress(b).data

    if search and ratio is None:
        prior_only, base_ratio = ebound.search_base(lambda r: encode(r, False)[0], decode, vol.data, bound,
                                                    on_probe=on_probe)
        base, what = encode(base_ratio, True)
        full = ebound.attach(base, vol.data, bound, decode)
        if len(full) <= len(prior_only):
            return full, f"{what}; base {base_ratio:.1f}x + residual bounded to {bound:.4g}", base_ratio
        return prior_only, f"prior alone at {base_ratio:.1f}x + residual bounded to {bound:.4g}", base_ratio
    r = ratio if ratio is not None else DEFAULT_RATIO
    base, what = encode(r, True)
    return ebound.attach(base, vol.data, bound, decode), f"{what} + residual bounded to {bound:.4g}", r
