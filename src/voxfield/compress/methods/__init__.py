"""The built-in compression methods, one module each, registered with
:mod:`voxfield.compress.registry`:

=====================  ==================  =============================================
module                 name(s)             what
=====================  ==================  =============================================
``classic_codec``      ``classic``         any classic codec of :mod:`voxfield.codecs`
``neural_fields``      ``sci``, ``siren``  block-partitioned SIREN fields (papers 001/002)
``latent_grid``        ``grid``            multi-resolution latent grid + small MLP
``cryo_pe_field``      ``cryo-pe``         occupancy mask + positional-encoding MLP (maps)
``cryo_pe_sets``       ``cryo-pe-set``     several maps, one network, one latent each
``hybrid_residual``    ``hybrid``          a classic prior + a neural residual filter
``auto_choice``        ``auto``            hybrid, the prior picked per volume by a probe
=====================  ==================  =============================================

The shortcuts below (``NEURAL_METHODS``, :func:`make_config`, :func:`compress_field`) go
through the registry; they are kept for scripts written against the first release.
Importing this package imports no method (and no torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from voxfield.compress import registry

#: The built-in neural methods, default first (``voxfield compress --method``).
NEURAL_METHODS: tuple[str, ...] = ("sci", "siren", "grid", "cryo-pe")


def make_config(method: str, **settings: Any) -> Any:
    """The validated configuration of ``method`` with ``settings`` over its defaults."""
    return registry.get_method(method).config(**settings)


def compress_field(vol: Any, method: str, target: Any, settings: dict[str, Any] | None = None, *,
                   progress: Callable[[str, float], None] | None = None,
                   guide_mask: np.ndarray | None = None) -> tuple[bytes, Any]:
    """Compress ``vol`` with the registered ``method``; returns the ``.vxf`` bytes and the
    report. ``guide_mask``: reference segmentation for ``guide=segmentation``."""
    m = registry.get_method(method)
    cfg = m.config(**(settings or {}))
    kw = {"guide_mask": guide_mask} if guide_mask is not None else {}
    return m.encode(vol, target, cfg, progress=progress, **kw)
