"""Fourier shell correlation (FSC) between two 3-D maps, and resolution estimates.

Definition
----------
With ``F1``, ``F2`` the discrete Fourier transforms of the two maps,

    FSC(shell) = sum Re(F1 conj(F2)) / sqrt(sum |F1|^2 * sum |F2|^2)

summed over the Fourier voxels of the shell. Shells are defined by **physical** spatial
frequency ``|k| = sqrt(kz^2 + ky^2 + kx^2)`` in 1/Å, with ``k_i = m_i / (n_i * s_i)``
(``n_i`` voxels of ``s_i`` Å along axis ``i``), so non-cubic boxes and anisotropic
spacing are handled:

* shell width ``dk = shell_width / min_i(n_i * s_i)``: one coarsest frequency step (the
  step along the axis with the shortest physical extent) when ``shell_width = 1``, so that
  every shell holds Fourier voxels;
* shell ``j`` holds the voxels with ``round(|k| / dk) == j``, i.e.
  ``(j - 1/2) dk <= |k| < (j + 1/2) dk``; its reported frequency is the centre ``j * dk``.
  Shell 0 is the mean (DC) term;
* shells run up to the isotropic Nyquist frequency ``min_i 1 / (2 s_i)`` (the highest
  frequency sampled in every direction); corner voxels beyond it are ignored. For a cubic
  box the last shell is exactly Nyquist (resolution ``2 s``).

The transforms are real-to-complex (``scipy.fft.rfftn``, float64); the half spectrum is
weighted so that each voxel of the full spectrum counts once (``n_voxels`` are full-spectrum
counts). Sums are accumulated in float64, chunk by chunk.

Zero-power shells: when both maps have no power in a shell the FSC there is 1 (they agree),
when only one has none it is 0. No division warnings are emitted, so an all-zero map gives a
defined curve.

Resolution
----------
``resolution_at(t)`` is where the FSC **first** falls below ``t``, searching from the first
shell after DC, with linear interpolation in frequency between the last shell at or above
``t`` and the first below; in Å (``1 / frequency``). Below it the FSC is ``>= t`` at every
shell, so it is also "the highest resolution out to which FSC >= t" (use it with 0.9 for
"FSC >= 0.9 out to 3.2 Å" checks, or :meth:`FSCResult.fsc_at_resolution`). If the curve never
falls below ``t`` the last shell's resolution (Nyquist for cubic boxes) is reported with
``at_least=True``: the maps agree at least that far. If it is already below ``t`` at the first
shell after DC, the resolution is ``inf`` (no agreement at any resolved frequency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft

from voxfield.errors import DataError, OptionError

from ._validate import check_array, check_pair, positive_number

#: Fourier voxels per chunk when summing over shells.
_FSC_CHUNK = 1 << 21


@dataclass(frozen=True)
class Resolution:
    """A resolution estimate from an FSC curve.

    Attributes
    ----------
    angstrom : resolution in Å (``inf`` when the FSC is below the threshold from the first
        shell on).
    threshold : the FSC threshold (e.g. 0.5, 0.143).
    at_least : True when the FSC never fell below the threshold up to the last shell: the
        true resolution is this value or better (smaller).
    """

    angstrom: float
    threshold: float
    at_least: bool

    def __float__(self) -> float:
        return self.angstrom

    def __str__(self) -> str:
        if math.isinf(self.angstrom):
            return f"none (FSC < {self.threshold:g} at every shell)"
        prefix = "<= " if self.at_least else ""
        return f"{prefix}{self.angstrom:.2f} Å"


@dataclass(frozen=True, eq=False)
class FSCResult:
    """An FSC curve.

    Attributes
    ----------
    frequency : shape ``(n_shells,)``, shell centres in 1/Å (``frequency[0] == 0`` is DC).
    fsc : shape ``(n_shells,)``, FSC per shell (dimensionless, in [-1, 1]).
    n_voxels : shape ``(n_shells,)``, number of Fourier voxels (full spectrum) per shell.
    spacing : voxel size (z, y, x) in Å.
    shell_width : shell width in 1/Å.
    """

    frequency: np.ndarray
    fsc: np.ndarray
    n_voxels: np.ndarray
    spacing: tuple[float, float, float]
    shell_width: float

    @property
    def nyquist_angstrom(self) -> float:
        """Resolution of the last shell in Å (``2 * spacing`` for a cubic, isotropic box)."""
        return 1.0 / float(self.frequency[-1])

    def resolution_at(self, threshold: float) -> Resolution:
        """Resolution (Å) where the FSC first falls below ``threshold`` (module docs)."""
        t = float(threshold)
        if not math.isfinite(t):
            raise OptionError(f"FSC threshold must be finite, got {threshold!r}")
        f, c = self.frequency, self.fsc
        below = np.nonzero(c[1:] < t)[0]
        if below.size == 0:
            return Resolution(1.0 / float(f[-1]), t, True)
        j = int(below[0]) + 1  # first shell below, >= 1
        if j == 1:
            return Resolution(math.inf, t, False)
        f0, f1, c0, c1 = float(f[j - 1]), float(f[j]), float(c[j - 1]), float(c[j])
        frac = (c0 - t) / (c0 - c1)  # c0 >= t > c1, so 0 <= frac < 1
        return Resolution(1.0 / (f0 + frac * (f1 - f0)), t, False)

    @property
    def resolution_05(self) -> Resolution:
        """Resolution at FSC = 0.5."""
        return self.resolution_at(0.5)

    @property
    def resolution_0143(self) -> Resolution:
        """Resolution at FSC = 0.143 (the gold-standard threshold for half-maps)."""
        return self.resolution_at(0.143)

    def fsc_at_resolution(self, resolution: float) -> float:
        """FSC linearly interpolated (in frequency) at ``resolution`` Å.

        Raises :class:`OptionError` for a resolution finer than the last shell (not measured)
        or not > 0.
        """
        r = positive_number(resolution, "resolution")
        fq = 1.0 / r
        fmax = float(self.frequency[-1])
        if fq > fmax * (1 + 1e-9):
            raise OptionError(
                f"resolution {r:g} Å is finer than the last FSC shell ({1 / fmax:.3f} Å, Nyquist)"
            )
        return float(np.interp(fq, self.frequency, self.fsc))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: curve (lists) and resolutions at 0.5 and 0.143."""
        r5, r1 = self.resolution_05, self.resolution_0143
        return {
            "frequency_per_A": [float(v) for v in self.frequency],
            "fsc": [float(v) for v in self.fsc],
            "n_voxels": [int(v) for v in self.n_voxels],
            "spacing_A": [float(s) for s in self.spacing],
            "shell_width_per_A": float(self.shell_width),
            "nyquist_A": self.nyquist_angstrom,
            "resolution_0.5_A": r5.angstrom,
            "resolution_0.5_at_least": r5.at_least,
            "resolution_0.143_A": r1.angstrom,
            "resolution_0.143_at_least": r1.at_least,
        }


def _spacing3(spacing: float | Sequence[float]) -> tuple[float, float, float]:
    if np.ndim(spacing) == 0:
        s = positive_number(spacing, "spacing")
        return (s, s, s)
    vals = list(spacing)  # type: ignore[arg-type]
    if len(vals) != 3:
        raise OptionError(f"spacing must be one number or three (z, y, x), got {len(vals)} values")
    z, y, x = (positive_number(v, "spacing") for v in vals)
    return (z, y, x)


def fsc(
    map1: np.ndarray,
    map2: np.ndarray,
    spacing: float | Sequence[float],
    *,
    mask: np.ndarray | None = None,
    shell_width: float = 1.0,
) -> FSCResult:
    """Fourier shell correlation of two 3-D maps of the same shape.

    Parameters
    ----------
    map1, map2 : arrays of shape ``(nz, ny, nx)`` (any sizes, not necessarily cubic), real.
    spacing : voxel size in Å, one number or ``(z, y, x)``.
    mask : optional soft mask of the same shape (values usually in [0, 1]); both maps are
        multiplied by it before the transforms.
    shell_width : shell width in units of the coarsest frequency step ``1 / min_i(n_i s_i)``.

    Returns
    -------
    :class:`FSCResult` (curve, per-shell voxel counts, resolution helpers). See the module
    docstring for the shell definition and the resolution rules.
    """
    a, b = check_pair(map1, map2, ("map1", "map2"))
    if a.ndim != 3:
        raise DataError(f"FSC needs 3-D maps, got shape {a.shape}")
    sp = _spacing3(spacing)
    width = positive_number(shell_width, "shell_width")
    if mask is not None:
        m = check_array(mask, "mask")
        if m.shape != a.shape:
            raise DataError(f"shapes differ: mask {m.shape} vs maps {a.shape}")
        m = m.astype(np.float64, copy=False)
        x1 = np.multiply(a, m, dtype=np.float64)
        x2 = np.multiply(b, m, dtype=np.float64)
        del m
    else:
        x1 = np.asarray(a, dtype=np.float64)
        x2 = np.asarray(b, dtype=np.float64)

    nz, ny, nx = a.shape
    # overwrite_x only when we own the float64 copy
    f1 = scipy.fft.rfftn(x1, overwrite_x=x1 is not a)
    del x1
    f2 = scipy.fft.rfftn(x2, overwrite_x=x2 is not b)
    del x2

    dk = width / min(n * s for n, s in zip(a.shape, sp))
    f_nyq = min(1.0 / (2.0 * s) for s in sp)
    n_shells = int(math.floor(f_nyq / dk + 1e-9)) + 1

    kz2 = np.fft.fftfreq(nz, d=sp[0]) ** 2
    ky2 = np.fft.fftfreq(ny, d=sp[1]) ** 2
    kx = np.fft.rfftfreq(nx, d=sp[2])
    kx2 = kx**2
    # half-spectrum weights: planes kx = 0 and (even nx) kx = Nyquist stand for one voxel
    # of the full spectrum, every other plane for two (the conjugate pair).
    wx = np.full(kx.size, 2.0)
    wx[0] = 1.0
    if nx % 2 == 0:
        wx[-1] = 1.0

    num = np.zeros(n_shells + 1)
    p1 = np.zeros(n_shells + 1)
    p2 = np.zeros(n_shells + 1)
    cnt = np.zeros(n_shells + 1)
    plane = ny * kx.size
    step = max(1, _FSC_CHUNK // plane)
    for z0 in range(0, nz, step):
        z1 = min(z0 + step, nz)
        k2 = kz2[z0:z1, None, None] + ky2[None, :, None] + kx2[None, None, :]
        shell = np.rint(np.sqrt(k2) / dk).astype(np.int64)
        del k2
        np.minimum(shell, n_shells, out=shell)  # bucket n_shells collects the corners
        shell = shell.reshape(-1)
        w = np.broadcast_to(wx, (z1 - z0, ny, kx.size)).reshape(-1)
        c1 = f1[z0:z1].reshape(-1)
        c2 = f2[z0:z1].reshape(-1)
        cross = c1.real * c2.real
        cross += c1.imag * c2.imag
        cross *= w
        num += np.bincount(shell, weights=cross, minlength=n_shells + 1)
        pw = np.square(c1.real)
        pw += np.square(c1.imag)
        pw *= w
        p1 += np.bincount(shell, weights=pw, minlength=n_shells + 1)
        pw = np.square(c2.real)
        pw += np.square(c2.imag)
        pw *= w
        p2 += np.bincount(shell, weights=pw, minlength=n_shells + 1)
        cnt += np.bincount(shell, weights=w, minlength=n_shells + 1)
    num, p1, p2, cnt = num[:n_shells], p1[:n_shells], p2[:n_shells], cnt[:n_shells]

    den = np.sqrt(p1 * p2)
    curve = np.zeros(n_shells)
    ok = den > 0
    np.divide(num, den, out=curve, where=ok)
    curve[(p1 == 0) & (p2 == 0)] = 1.0
    np.clip(curve, -1.0, 1.0, out=curve)
    freq = np.arange(n_shells) * dk
    return FSCResult(
        frequency=freq,
        fsc=curve,
        n_voxels=np.rint(cnt).astype(np.int64),
        spacing=sp,
        shell_width=dk,
    )
