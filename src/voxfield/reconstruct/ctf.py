"""Contrast transfer function (CTF) of the electron microscope.

Conventions (as in RELION and cryoDRGN):

* wavelength ``λ = 12.2639 / sqrt(V + 0.97845e-6 V²)`` Å for an acceleration voltage ``V``
  in volts;
* astigmatic defocus ``Δf(α) = (dfU + dfV)/2 + (dfU − dfV)/2 · cos(2(α − dfAng))`` in Å,
  where ``α`` is the angle of the frequency vector;
* ``γ = 2π(−½ Δf λ s² + ¼ Cs λ³ s⁴) − phase_shift`` with ``Cs`` in Å (given in mm);
* ``CTF = sqrt(1 − w²) sin γ − w cos γ = sin(γ − atan(w / sqrt(1 − w²)))`` with amplitude
  contrast ``w`` (cryoDRGN's formula; RELION's ``−sin(χ + atan(w/sqrt(1−w²)))`` with its
  ``χ = −γ`` is the same function). It is ``−w`` at ``s = 0`` and grows more negative at low
  frequency for underfocus (positive ``Δf``). Optionally multiplied by ``exp(−B s² / 4)``.

Note: ANCHORS.md writes ``−sin(γ + phase)`` with this ``γ``, which mixes the two conventions
and flips the low-frequency lobe; the simulator's test checks the formula above against
cryoDRGN's.

The functions accept numpy arrays or torch tensors (the result has the same type).
Frequencies are in 1/Å with the last axis ``(kx, ky)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Column layout of a cryoDRGN CTF table (one row per particle).
CTF_COLUMNS = ("D", "Apix", "dfU", "dfV", "dfAng", "kV", "Cs", "w", "phase")


def _ns(x: Any):
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return torch
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return np


def wavelength(volt_kv: Any) -> Any:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = volt_kv * 1000.0
    xp = _ns(v)
    return 12.2639 / xp.sqrt(v + 0.97845e-6 * v * v)


def compute_ctf(
    freqs: Any,
    dfu: Any,
    dfv: Any,
    dfang: Any,
    volt: Any,
    cs: Any,
    w: Any,
    phase_shift: Any = 0.0,
    bfactor: Any = None,
) -> Any:
    """CTF at spatial frequencies ``freqs`` (``[..., 2]`` as ``(kx, ky)``, 1/Å).

    ``dfu, dfv`` defocus in Å, ``dfang`` astigmatism angle in degrees, ``volt`` in kV,
    ``cs`` in mm, ``w`` amplitude contrast, ``phase_shift`` in degrees, ``bfactor`` in Å².
    Parameters broadcast against ``freqs[..., 0]`` (use shape ``[N, 1]`` for a batch of
    particles and ``freqs`` of shape ``[P, 2]``).
    """
    xp = _ns(freqs)
    kx = freqs[..., 0]
    ky = freqs[..., 1]
    s2 = kx * kx + ky * ky
    ang = xp.arctan2(ky, kx)
    lam = wavelength(volt)
    cs_a = cs * 1e7
    dfang_r = dfang * (math.pi / 180.0)
    ph_r = phase_shift * (math.pi / 180.0)
    defocus = 0.5 * (dfu + dfv) + 0.5 * (dfu - dfv) * xp.cos(2.0 * (ang - dfang_r))
    gamma = 2.0 * math.pi * (-0.5 * defocus * lam * s2 + 0.25 * cs_a * lam**3 * s2 * s2) - ph_r
    amp_phase = xp.arctan(w / xp.sqrt(1.0 - w * w)) if not isinstance(w, float) else math.atan(w / math.sqrt(1 - w * w))
    ctf = xp.sin(gamma - amp_phase)
    if bfactor is not None:
        ctf = ctf * xp.exp(-bfactor / 4.0 * s2)
    return ctf


def half_grid_freqs(D: int, apix: float = 1.0) -> np.ndarray:
    """Frequencies ``(kx, ky)`` in 1/Å of the ``rfft2`` layout of a ``D×D`` image.

    Shape ``[D, D//2 + 1, 2]``: rows follow ``numpy.fft.fftfreq(D)`` (ky), columns
    ``numpy.fft.rfftfreq(D)`` (kx), divided by the pixel size.
    """
    ky = np.fft.fftfreq(D) / apix
    kx = np.fft.rfftfreq(D) / apix
    g = np.empty((D, D // 2 + 1, 2), dtype=np.float64)
    g[..., 0] = kx[None, :]
    g[..., 1] = ky[:, None]
    return g


def ctf_from_table(freqs: Any, table: Any) -> Any:
    """CTF for each row of a cryoDRGN-layout table ``[N, 9]`` at ``freqs`` (1/Å, ``[P, 2]``).

    Returns ``[N, P]`` (same array type as ``table``).
    """
    t = table
    return compute_ctf(
        freqs,
        t[:, 2:3],
        t[:, 3:4],
        t[:, 4:5],
        t[:, 5:6],
        t[:, 6:7],
        t[:, 7:8],
        t[:, 8:9],
    )
