"""One-call comparison of a result with its original: :func:`compare` and :func:`format_report`.

:func:`compare` returns a flat, JSON-serialisable dict (``json.dumps`` works; ``inf`` may
appear and is written as ``Infinity``) that ``voxfield metrics`` and the benchmark harness
share. **Every key of** :data:`REPORT_KEYS` **is always present**; a metric that does not apply
(no sizes given, not 3-D, no spacing, no contour...) is ``None``, and ``notes`` says why when
it is not obvious.

Keys
----
shape, dtype, result_dtype, n_voxels
    array shape (list), dtypes (str), number of samples.
original_min, original_max, data_range
    extremes of the original and ``max - min`` (data units): the PSNR/SSIM peak.
mse, rmse, max_abs_error, mean_abs_error
    pointwise errors (data units; mse in units squared).
psnr_db
    PSNR in dB with peak = ``data_range`` (voxfield's PSNR; ``inf`` when identical, ``-inf``
    when the original is constant and the result is not).
psnr_dtype_max_db, psnr_dtype_max_peak
    PSNR with the dtype-maximum peak (SCI/TINC/INIF convention: 65535 for uint16 *and for
    float data*); only for comparison with those papers, never comparable with ``psnr_db``.
ssim, ssim_mode, ssim_spatial_axes
    mean SSIM (Wang et al. 2004, n-D window), how it was computed (``"3D"``,
    ``"2D per slice"``...) and the axes the window ran over.
original_nbytes, compressed_nbytes, ratio, bits_per_voxel
    rate: ``ratio = original_nbytes / compressed_nbytes`` ("x") and bits per voxel, when
    ``compressed_nbytes`` is given (``original_nbytes`` defaults to the raw
    array size ``original.nbytes``).
spacing, unit
    spacing per spatial axis as given, and the unit it was read in.
fsc_0.5_A, fsc_0.5_at_least, fsc_0.143_A, fsc_0.143_at_least, fsc_nyquist_A, fsc_curve
    FSC of result vs original (3-D arrays with spacing): resolution in Å where the FSC first
    falls below 0.5 / 0.143, flags meaning "never fell below: at least this good", the last
    shell's resolution, and the curve ``{"frequency_per_A", "fsc", "n_voxels"}``.
density_bands, density_band_edges
    paper 000's relative-error table (list of row dicts, see
    :mod:`voxfield.metrics.density`) and the edges used, for cryo-EM maps.
contour, contour_accuracy, contour_dice, contour_iou
    masks ``> contour`` of both arrays: SCI's Acc(tau), Dice and IoU.
notes
    list of short strings: conventions and why something was skipped.

Cryo-EM mode
------------
The density-band table is computed when ``cryoem=True``, or, with ``cryoem=None`` (default),
automatically when ``unit`` is Å, the array is 3-D float data and the original has both
negative and positive values (a typical EMDB map). ``cryoem=False`` turns it off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from voxfield.errors import DataError, OptionError

from ._validate import check_pair, default_spatial_axes, normalize_axes, positive_number
from .density import band_edges, density_bands
from .error import dtype_max_peak, error_stats, psnr_from_mse
from .fourier_shell import fsc
from .rate import bits_per_voxel, compression_ratio
from .segmentation import mask_scores
from .similarity import ssim_details

#: Every key of :func:`compare`'s dict, in display order.
REPORT_KEYS = (
    "shape",
    "dtype",
    "result_dtype",
    "n_voxels",
    "original_min",
    "original_max",
    "data_range",
    "mse",
    "rmse",
    "max_abs_error",
    "mean_abs_error",
    "psnr_db",
    "psnr_dtype_max_db",
    "psnr_dtype_max_peak",
    "ssim",
    "ssim_mode",
    "ssim_spatial_axes",
    "original_nbytes",
    "compressed_nbytes",
    "ratio",
    "bits_per_voxel",
    "spacing",
    "unit",
    "fsc_0.5_A",
    "fsc_0.5_at_least",
    "fsc_0.143_A",
    "fsc_0.143_at_least",
    "fsc_nyquist_A",
    "fsc_curve",
    "density_bands",
    "density_band_edges",
    "contour",
    "contour_accuracy",
    "contour_dice",
    "contour_iou",
    "notes",
)

# Length units to Å (metrics imports nothing from voxfield.io, so a small local table).
_TO_ANGSTROM = {
    "å": 1.0,
    "a": 1.0,
    "\u212b": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "ang": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometre": 10.0,
    "µm": 1e4,
    "μm": 1e4,
    "um": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "micrometer": 1e4,
    "micrometre": 1e4,
    "mm": 1e7,
    "m": 1e10,
}
_PIXEL_UNITS = {"px", "pixel", "pixels", ""}


def _angstrom_factor(unit: str | None) -> float | None:
    """Factor from ``unit`` to Å; None for pixels or unknown units."""
    if unit is None:
        return None
    return _TO_ANGSTROM.get(str(unit).strip().lower())


def _is_angstrom(unit: str | None) -> bool:
    return _angstrom_factor(unit) == 1.0


def _spatial_spacing(spacing: float | Sequence[float], n_spatial: int) -> list[float]:
    if np.ndim(spacing) == 0:
        return [positive_number(spacing, "spacing")] * n_spatial
    vals = [positive_number(s, "spacing") for s in spacing]  # type: ignore[union-attr]
    if len(vals) != n_spatial:
        raise OptionError(f"spacing has {len(vals)} values for {n_spatial} spatial axes")
    return vals


def compare(
    original: np.ndarray,
    result: np.ndarray,
    *,
    spacing: float | Sequence[float] | None = None,
    spatial_axes: Sequence[int] | None = None,
    compressed_nbytes: int | None = None,
    original_nbytes: int | None = None,
    contour: float | None = None,
    unit: str | None = None,
    cryoem: bool | None = None,
    density_edges: Sequence[float] | None = None,
    fsc_mask: np.ndarray | None = None,
    fsc_mode: bool | None = None,
) -> dict[str, Any]:
    """Compare ``result`` with ``original`` on every metric that applies.

    Parameters
    ----------
    original, result : arrays of the same shape (1-5-D), real dtypes.
    spacing : voxel size per spatial axis (one number or one per axis of ``spatial_axes``),
        in ``unit``. Needed for the FSC.
    spatial_axes : which axes are spatial (default: all of a 1-3-D array, the last three of a
        4-5-D one). Non-spatial axes are looped over for SSIM.
    compressed_nbytes : size of the compressed payload in bytes (gives ratio and bits/voxel).
    original_nbytes : size to compare it with (default ``original.nbytes``, the raw array).
    contour : density threshold for Acc(tau)/Dice/IoU of the masks ``> contour``.
    unit : unit of ``spacing`` (``"Å"``, ``"nm"``, ``"µm"``...). FSC resolutions are always
        reported in Å; with ``unit=None`` the spacing is taken to be in Å (noted).
    cryoem : density-band table on/off; None = automatic (module docstring).
    density_edges : absolute band edges for the density table (default: scaled to the map).
    fsc_mask : optional soft mask for the FSC (same shape).
    fsc_mode : FSC on/off; None = automatic: computed for single 3-D volumes whose voxels
        are in Å or nm (cryo-EM/ET maps), skipped (with a note) for µm/mm microscopy data,
        where a Fourier-shell resolution in Å means little.

    Returns
    -------
    dict with every key of :data:`REPORT_KEYS` (None where a metric does not apply).
    """
    a, b = check_pair(original, result)
    out: dict[str, Any] = {k: None for k in REPORT_KEYS}
    notes: list[str] = []
    ndim = a.ndim
    axes = normalize_axes(default_spatial_axes(ndim) if spatial_axes is None else spatial_axes, ndim)

    out["shape"] = [int(n) for n in a.shape]
    out["dtype"] = str(a.dtype)
    out["result_dtype"] = str(b.dtype)
    out["n_voxels"] = int(a.size)

    # --- pointwise errors and PSNR (one streaming pass)
    st = error_stats(a, b, _checked=True)
    out["original_min"] = st.original_min
    out["original_max"] = st.original_max
    out["data_range"] = st.data_range
    out["mse"] = st.mse
    out["rmse"] = st.rmse
    out["max_abs_error"] = st.max_abs
    out["mean_abs_error"] = st.mean_abs
    out["psnr_db"] = psnr_from_mse(st.mse, st.data_range)
    peak = dtype_max_peak(a.dtype)
    out["psnr_dtype_max_db"] = psnr_from_mse(st.mse, peak)
    out["psnr_dtype_max_peak"] = peak
    notes.append(
        f"psnr_db uses the original's data range ({st.data_range:.6g}); psnr_dtype_max_db uses "
        f"the dtype maximum {peak:g} (SCI/TINC/INIF convention"
        f"{', also for float data' if a.dtype.kind == 'f' else ''})"
        " and is not comparable with it"
    )
    if st.data_range == 0:
        notes.append("original is constant (data range 0): PSNR is undefined (-inf unless identical)")

    # --- SSIM
    try:
        sr = ssim_details(
            a, b, spatial_axes=axes, _checked=True, _original_range=(st.original_min, st.original_max)
        )
        out["ssim"] = sr.ssim
        out["ssim_mode"] = sr.mode
        out["ssim_spatial_axes"] = list(sr.spatial_axes)
    except DataError as e:
        notes.append(f"ssim skipped: {e}")

    # --- rate
    if compressed_nbytes is not None:
        onb = int(a.nbytes) if original_nbytes is None else original_nbytes
        out["original_nbytes"] = int(onb)
        out["compressed_nbytes"] = int(compressed_nbytes)
        out["ratio"] = compression_ratio(onb, compressed_nbytes)
        out["bits_per_voxel"] = bits_per_voxel(compressed_nbytes, a.size)
    elif original_nbytes is not None:
        out["original_nbytes"] = int(positive_number(original_nbytes, "original_nbytes"))

    # --- FSC
    if spacing is not None:
        sp = _spatial_spacing(spacing, len(axes))
        out["spacing"] = sp
        out["unit"] = unit
        factor = 1.0 if unit is None else _angstrom_factor(unit)
        molecular = factor is not None and factor <= 10.0  # Å or nm voxels: cryo-EM / cryo-ET maps
        if fsc_mode is False:
            pass
        elif ndim != 3 or len(axes) != 3:
            notes.append("FSC skipped: needs a single 3-D volume (3 spatial axes, no other axes)")
        elif factor is None:
            notes.append(f"FSC skipped: unit {unit!r} is not a physical length")
        elif not molecular and fsc_mode is None:
            notes.append(f"FSC skipped: voxels in {unit} (FSC is reported for maps in Å or nm; pass fsc=True to force)")
        else:
            if unit is None:
                notes.append("spacing taken to be in Å (no unit given)")
            res = fsc(a, b, [s * factor for s in sp], mask=fsc_mask)
            r5, r1 = res.resolution_05, res.resolution_0143
            out["fsc_0.5_A"] = r5.angstrom
            out["fsc_0.5_at_least"] = r5.at_least
            out["fsc_0.143_A"] = r1.angstrom
            out["fsc_0.143_at_least"] = r1.at_least
            out["fsc_nyquist_A"] = res.nyquist_angstrom
            out["fsc_curve"] = {
                "frequency_per_A": [float(v) for v in res.frequency],
                "fsc": [float(v) for v in res.fsc],
                "n_voxels": [int(v) for v in res.n_voxels],
            }
    elif unit is not None:
        out["unit"] = unit

    # --- density bands (paper 000)
    if cryoem is None:
        do_bands = (
            _is_angstrom(unit)
            and ndim == 3
            and a.dtype.kind == "f"
            and st.original_min < 0 < st.original_max
        )
    else:
        do_bands = bool(cryoem)
    if do_bands:
        edges = band_edges(a, edges=density_edges)
        rows = density_bands(a, b, edges=edges, _checked=True)
        out["density_bands"] = [r.to_dict() for r in rows]
        out["density_band_edges"] = [float(e) for e in edges]
        if density_edges is None:
            notes.append("density bands: paper 000's edges scaled to the map, (0.35, 0.75) x max(original)")

    # --- masks at a contour level
    if contour is not None:
        ms = mask_scores(a, b, contour, _checked=True)
        out["contour"] = ms["threshold"]
        out["contour_accuracy"] = ms["accuracy"]
        out["contour_dice"] = ms["dice"]
        out["contour_iou"] = ms["iou"]

    out["notes"] = notes
    return out


def _num(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def format_report(d: dict[str, Any]) -> str:
    """Plain-text rendering of a :func:`compare` dict: one metric per line, no markup."""
    lines: list[str] = []

    def row(label: str, text: str) -> None:
        lines.append(f"{label:<18} {text}")

    shape = " x ".join(str(n) for n in d.get("shape") or [])
    row("shape", f"{shape} ({d.get('dtype')})")
    row("original range", f"{_num(d.get('original_min'))} .. {_num(d.get('original_max'))} "
        f"(data range {_num(d.get('data_range'))})")
    row("MSE / RMSE", f"{_num(d.get('mse'))} / {_num(d.get('rmse'))}")
    row("max |error|", f"{_num(d.get('max_abs_error'))}  (mean {_num(d.get('mean_abs_error'))})")
    row("PSNR", f"{_num(d.get('psnr_db'), '.2f')} dB (peak = data range)")
    row(
        "PSNR dtype-max",
        f"{_num(d.get('psnr_dtype_max_db'), '.2f')} dB (peak = {_num(d.get('psnr_dtype_max_peak'), 'g')}, "
        "SCI/INIF convention; not comparable)",
    )
    if d.get("ssim") is not None:
        row("SSIM", f"{d['ssim']:.5f} ({d.get('ssim_mode')})")
    if d.get("ratio") is not None:
        row("ratio", f"{d['ratio']:.2f}x, {d['bits_per_voxel']:.4g} bits/voxel "
            f"({d['compressed_nbytes']} of {d['original_nbytes']} bytes)")
    if d.get("fsc_0.5_A") is not None:
        parts = []
        for t in ("0.5", "0.143"):
            v = d[f"fsc_{t}_A"]
            if math.isinf(v):
                parts.append(f"{t}: none")
            else:
                parts.append(f"{t}: {'<= ' if d[f'fsc_{t}_at_least'] else ''}{v:.2f} Å")
        row("FSC resolution", ", ".join(parts) + f" (Nyquist {d['fsc_nyquist_A']:.2f} Å)")
    if d.get("contour") is not None:
        row(f"contour {d['contour']:g}", f"Acc {d['contour_accuracy']:.4f}, Dice {d['contour_dice']:.4f}, "
            f"IoU {d['contour_iou']:.4f}")
    if d.get("density_bands"):
        lines.append("density bands (relative error where original > 0):")
        for r in d["density_bands"]:
            hi = "inf" if math.isinf(r["upper"]) else f"{r['upper']:.3g}"
            rng = f"{r['lower']:.3g}-{hi}"
            if r["n_points"] == 0:
                lines.append(f"  {r['band']:<7} {rng:<16} no points")
                continue
            lines.append(
                f"  {r['band']:<7} {rng:<16} n={r['n_points']:<9} mean {r['mean_rel_error_pct']:.2f}%  "
                f"median {r['median_rel_error_pct']:.2f}%  "
                f"within {r['within_limit_pct']:g}%: {r['within_pct']:.2f}%"
            )
    for n in d.get("notes") or []:
        lines.append(f"note: {n}")
    return "\n".join(lines)


__all__ = ["REPORT_KEYS", "compare", "format_report"]
