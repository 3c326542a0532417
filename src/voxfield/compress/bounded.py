"""Error-bounded compression with any method: the method's file plus the entropy-coded
residual of :mod:`voxfield.compress.ebound` (``voxfield compress --max-error E``).

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
from voxfield.compress import ebound, hybrid
from voxfield.compress.classic import compress_volume
from voxfield.io.volume import Volume

#: encode(ratio or None, full) -> (.vxf bytes, one-line description)
Encoder = Callable[[float | None, bool], tuple[bytes, str]]


def make_encoder(vol: Volume, *, codec: Codec | None = None, hybrid_cfg: hybrid.HybridConfig | None = None,
                 neural_method: str | None = None, settings: dict[str, Any] | None = None,
                 target: Target | None = None, tol: float = 0.02, loose: bool = False,
                 guide_mask: np.ndarray | None = None,
                 progress: Callable[[str, float], None] | None = None,
                 describe_neural: Callable[[str, Any], str] | None = None) -> Encoder:
    """A function making the method's own file at a ratio (``None``: ``target``).
    ``full=False`` makes a hybrid's prior-only file (used while searching). ``loose``: a
    ratio within 30 % is enough (classic/hybrid bases while searching)."""

    def encode(r: float | None, full: bool = True) -> tuple[bytes, str]:
        rtol = 0.3 if loose and neural_method is None else tol
        tgt = target if r is None else Target.ratio(r, rtol)
        if codec is not None:
            return compress_volume(vol, codec, tgt), codec.name
        if hybrid_cfg is not None:
            rep = hybrid.HybridReport()
            cfg = hybrid_cfg if full else replace(hybrid_cfg, residual="none", guide=None)
            blob = hybrid.compress_hybrid(vol, cfg, tgt, progress=progress, report=rep, guide_mask=guide_mask)
            return blob, hybrid.describe_choice(rep)
        assert neural_method is not None
        from voxfield.compress.methods import compress_field

        kw = {"guide_mask": guide_mask} if guide_mask is not None else {}
        blob, rep = compress_field(vol, neural_method, tgt or Target.ratio(64.0, tol), settings, progress=progress,
                                   **kw)
        return blob, describe_neural(neural_method, rep) if describe_neural else neural_method

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
    r = ratio if ratio is not None else 64.0
    base, what = encode(r, True)
    return ebound.attach(base, vol.data, bound, decode), f"{what} + residual bounded to {bound:.4g}", r
