"""The neural methods by name: configuration, compression and decoding in one table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from voxfield.codecs.base import Target
from voxfield.compress import cryo_pe, grid, neural
from voxfield.errors import OptionError
from voxfield.io.volume import Volume

#: Neural methods, default first.
NEURAL_METHODS: tuple[str, ...] = ("sci", "siren", "grid", cryo_pe.METHOD)


def make_config(method: str, **settings: Any) -> neural.NeuralConfig | grid.GridConfig | cryo_pe.CryoPEConfig:
    """The validated configuration of ``method`` with ``settings`` over its defaults."""
    cfg: neural.NeuralConfig | grid.GridConfig | cryo_pe.CryoPEConfig
    if method == grid.METHOD:
        cfg = grid.GridConfig.preset(method, **settings)
    elif method == cryo_pe.METHOD:
        cfg = cryo_pe.CryoPEConfig.preset(method, **settings)
    elif method in neural.METHODS:
        cfg = neural.NeuralConfig.preset(method, **settings)
    else:
        raise OptionError(f"unknown method {method!r} (neural: {', '.join(NEURAL_METHODS)})")
    cfg.validate()
    return cfg


def compress_field(vol: Volume, method: str, target: Target | None, settings: dict[str, Any] | None = None, *,
                   progress: Callable[[str, float], None] | None = None,
                   guide_mask: np.ndarray | None = None) -> tuple[bytes, Any]:
    """Compress ``vol`` with a neural method; returns the ``.vxf`` bytes and the fit report.
    ``guide_mask``: reference segmentation for ``guide=segmentation`` (sci, siren)."""
    cfg = make_config(method, **(settings or {}))
    if guide_mask is not None and not isinstance(cfg, neural.NeuralConfig):
        raise OptionError(f"guidance works with the sci and siren methods, not {method}")
    if isinstance(cfg, grid.GridConfig):
        rep: Any = grid.GridReport()
        return grid.compress_grid(vol, cfg, target, progress=progress, report=rep), rep
    if isinstance(cfg, cryo_pe.CryoPEConfig):
        crep = cryo_pe.CryoPEReport()
        return cryo_pe.compress_cryo_pe(vol, cfg, target, progress=progress, report=crep), crep
    rep = neural.FitReport(method)
    kw = {"guide_mask": guide_mask} if guide_mask is not None else {}
    return neural.compress_neural(vol, cfg, target, progress=progress, report=rep, **kw), rep


#: method name -> loader of a random-access field (None for constant volumes) and its layout
FIELD_LOADERS = {**{m: neural.load_field for m in neural.METHODS}, grid.METHOD: grid.load_field,
                 cryo_pe.METHOD: cryo_pe.load_field}
#: method name -> whole-volume decoder
NEURAL_DECODERS = {**{m: neural.decode_neural for m in neural.METHODS}, grid.METHOD: grid.decode_grid,
                   cryo_pe.METHOD: cryo_pe.decode_cryo_pe}
