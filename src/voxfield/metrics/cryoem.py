"""Cryo-EM quality report of a processed map against its original (issue 4, deliverable 3).

:func:`cryoem_report` gathers, for an ``original`` map and a ``result`` (compressed,
denoised, reconstructed) on the same grid, the numbers a cryo-EM user checks, as one
JSON-serialisable dict (every key of :data:`CRYOEM_REPORT_KEYS` always present, ``None``
where it does not apply, ``notes`` saying why; ``inf`` may appear and ``json.dumps`` writes
it as ``Infinity``). :func:`format_cryoem_report` renders it: the density-band table in
paper 000's Table 1 layout (Markdown) and one plain line per other number.

Contour and mask
----------------
The **contour mask** is ``original > contour`` (strictly greater, as
:mod:`~voxfield.metrics.segmentation`). A contour at or above the map maximum gives an empty
mask and a :class:`~voxfield.errors.DataError`.

Without a contour the report uses :func:`auto_contour`, the **connectivity rule**: the
highest level at which the largest connected (face-connected) region of ``original > level``
holds at least 90 % of the voxels above the level, and at least 2000 Å^3. Scanning down
from the map maximum, the mask is first a scatter of separate high-density peaks (side chains,
metals, noise spikes); the level where they merge into one body is the lowest-surprise
display level: the molecule shows in one piece and the noise dust stays out. On EMD-3488 the
regions merge sharply between 0.0850 (largest region 49 % of the mask) and 0.0825 (97 %); the
rule gives 0.0846 (20 286 voxels, 2.0 % of the box) and a mask with Dice 0.918 against the
Chimera contour mask that comes with the map (``emd_3488_contour_mask.mrc``: EMD-3488
``> 0.068`` on its first 91 x 91 columns, 23 927 voxels). The rule is a little tighter than
that hand-picked level (Dice 0.96 at 0.075, 1.0 at 0.068).
When no level passes (several separate bodies, tomograms, slabs) the rule falls back to
``mean + 3 sigma`` of the non-flat voxels (voxels equal to a value that fills >= 5 % of the box,
like the zeros of a masked map, are left out of the statistics), and says so in
``contour_source``.

Metrics
-------
density_bands
    paper 000's relative-error table (:func:`~voxfield.metrics.density.density_bands`).
    Band edges: ``band_edges`` when given; else, **with a contour given by the user**,
    relative to it: low ``(0, c)`` (below the displayed surface), medium ``[c, 2c)``,
    high ``>= 2c``; else (no contour, or a contour <= 0, or the automatic one) paper 000's
    edges scaled to the map, ``(0.35, 0.75) x max(original)``, as :func:`compare` uses.
    ``density_band_rule`` says which.
psnr_box_db, psnr_mask_db
    PSNR over the whole box and over the contour mask. **Both use the same peak**: the data
    range (max - min) of the original over the whole box (``psnr_peak``), so that they
    differ only in which voxels the mean squared error is averaged over (``mse_box``,
    ``mse_mask``): a result whose errors sit in the solvent has ``psnr_mask_db`` above
    ``psnr_box_db``.
fsc_*
    FSC of result vs original over the whole box, unmasked
    (:func:`~voxfield.metrics.fourier_shell.fsc`): resolution at 0.5, 0.143 and **0.9** (the
    highest resolution out to which the FSC stays >= 0.9 at every shell from low frequency
    on; ``at_least`` = it never fell below up to Nyquist). With ``resolution`` (the map's
    resolution, Å): ``fsc_at_resolution`` (FSC interpolated there) and
    ``fsc_0.9_to_resolution`` (every shell up to ``1/resolution`` has FSC >= 0.9).
cc_mask_*
    with an atomic ``model``: map-model CC_mask of the original and of the result, same model
    map and atom mask (:mod:`~voxfield.metrics.map_model`: gemmi electron model map
    low-passed at ``resolution``, 2.0 Å atom mask, atoms shifted by ``-origin``).
contour_dice, contour_iou, contour_accuracy
    masks ``> contour`` of result vs original (:func:`~voxfield.metrics.segmentation.mask_scores`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from voxfield.errors import DataError, OptionError

from ._validate import check_array, check_pair
from .density import band_edges as _band_edges
from .density import density_bands, format_density_table
from .error import psnr_from_mse
from .fourier_shell import fsc
from .map_model import DEFAULT_CC_MASK_RADIUS, cc_mask, load_model, spacing3
from .segmentation import mask_scores

#: Share of the above-contour voxels the largest connected region must hold (auto contour).
AUTO_CONTOUR_FRACTION = 0.9
#: Smallest volume (Å^3) of that region (about a 15-residue peptide).
AUTO_CONTOUR_MIN_VOLUME = 2000.0
#: A value filling at least this share of the box is "flat" (masked solvent).
_FLAT_SHARE = 0.05
#: Maps larger than this are scanned at half sampling first (auto contour).
_SUBSAMPLE_ABOVE = 1 << 24

#: Every key of :func:`cryoem_report`'s dict, in display order.
CRYOEM_REPORT_KEYS = (
    "shape",
    "spacing_A",
    "origin_A",
    "contour",
    "contour_source",
    "mask_voxels",
    "mask_fraction",
    "mask_volume_A3",
    "contour_dice",
    "contour_iou",
    "contour_accuracy",
    "density_bands",
    "density_band_edges",
    "density_band_rule",
    "psnr_peak",
    "mse_box",
    "mse_mask",
    "psnr_box_db",
    "psnr_mask_db",
    "fsc_0.5_A",
    "fsc_0.5_at_least",
    "fsc_0.143_A",
    "fsc_0.143_at_least",
    "fsc_0.9_A",
    "fsc_0.9_at_least",
    "fsc_nyquist_A",
    "resolution_A",
    "fsc_at_resolution",
    "fsc_0.9_to_resolution",
    "fsc_curve",
    "model",
    "model_atoms",
    "model_atoms_in_box",
    "cc_mask_radius_A",
    "cc_mask_voxels",
    "cc_mask_original",
    "cc_mask_result",
    "notes",
)


# ----------------------------------------------------------------------------- contour


def _level(value: object, name: str = "contour") -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise OptionError(f"{name} must be finite, got {value!r}")
    return v


def contour_mask(map: np.ndarray, level: float) -> np.ndarray:
    """Bool mask ``map > level``. :class:`DataError` when it is empty (level at or above the
    map maximum)."""
    a = check_array(map, "map")
    t = _level(level)
    m = a > t
    if not m.any():
        raise DataError(
            f"contour level {t:g} is at or above the map maximum {float(a.max()):g}: "
            "the contour mask is empty; choose a lower --contour"
        )
    return m


@dataclass(frozen=True)
class AutoContour:
    """How :func:`auto_contour_info` chose a level.

    Attributes
    ----------
    level : the contour level (map units).
    rule : ``"connected"`` (the connectivity rule) or ``"mean+3sd"`` (the fallback).
    largest_fraction : share of the above-level voxels in the largest connected region.
    mask_voxels : voxels above the level.
    volume_A3 : their volume in Å^3.
    """

    level: float
    rule: str
    largest_fraction: float
    mask_voxels: int
    volume_A3: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flat_value(a: np.ndarray) -> float | None:
    """A value that fills >= 5 % of the box (masked solvent), or None."""
    sample = a.reshape(-1)[:: max(1, a.size // 200_000)]
    vals, counts = np.unique(sample, return_counts=True)
    i = int(np.argmax(counts))
    if counts[i] < _FLAT_SHARE * sample.size:
        return None
    v = vals[i]
    return float(v) if np.count_nonzero(a == v) >= _FLAT_SHARE * a.size else None


def _largest_share(a: np.ndarray, t: float) -> tuple[float, int, int]:
    """(share of the largest connected region, its voxels, all voxels) of ``a > t``."""
    m = a > t
    lab, n = ndimage.label(m)
    if n == 0:
        return 0.0, 0, 0
    sizes = np.bincount(lab.reshape(-1))[1:]
    big = int(sizes.max())
    total = int(sizes.sum())
    return big / total, big, total


def auto_contour_info(
    map: np.ndarray,
    spacing: float | Sequence[float] = 1.0,
    *,
    fraction: float = AUTO_CONTOUR_FRACTION,
    min_volume: float = AUTO_CONTOUR_MIN_VOLUME,
) -> AutoContour:
    """:func:`auto_contour` with the details (:class:`AutoContour`).

    Scans 48 levels, from the top 0.05 % to the top 95 % of the positive, non-flat voxels,
    downwards; the first level that passes the connectivity rule is refined by 10 bisection
    steps towards the level above it that failed. Maps above 16 M voxels are scanned at half
    sampling (every other voxel), the refinement runs on the full map.
    """
    a = check_array(map, "map")
    if a.ndim != 3:
        raise DataError(f"auto contour needs a 3-D map, got shape {a.shape}")
    sp = spacing3(spacing)
    frac = float(fraction)
    if not 0 < frac <= 1:
        raise OptionError(f"fraction must be in (0, 1], got {fraction!r}")
    voxel_vol = sp[0] * sp[1] * sp[2]
    a = a.astype(np.float32, copy=False)
    flat = _flat_value(a)
    vals = a.reshape(-1)
    if flat is not None:
        vals = vals[vals != flat]
    pos = vals[vals > 0]
    if pos.size == 0:
        raise DataError("the map has no positive density: no contour can be chosen; give one with --contour")

    def passes(arr: np.ndarray, t: float, vvol: float) -> tuple[bool, float, int]:
        share, big, total = _largest_share(arr, t)
        return (share >= frac and big * vvol >= min_volume), share, total

    coarse = a[::2, ::2, ::2] if a.size > _SUBSAMPLE_ABOVE else a
    cvol = voxel_vol * (a.size / coarse.size)
    above = np.geomspace(5e-4, 0.95, 48)  # share of positive voxels above each level
    levels = np.quantile(pos, 1.0 - above)
    hi: float | None = None  # a level that fails
    lo: float | None = None  # the highest level that passes
    for t in levels:
        ok, _, _ = passes(coarse, float(t), cvol)
        if ok:
            lo = float(t)
            break
        hi = float(t)
    if lo is not None:
        if hi is None:
            hi = float(a.max())
        for _ in range(10):
            mid = 0.5 * (lo + hi)
            if passes(a, mid, voxel_vol)[0]:
                lo = mid
            else:
                hi = mid
        share, _, total = _largest_share(a, lo)
        return AutoContour(lo, "connected", share, total, total * voxel_vol)
    v = vals.astype(np.float64)
    t = float(v.mean() + 3.0 * v.std())
    if t >= float(a.max()):
        t = float(np.quantile(pos, 0.99))
    share, _, total = _largest_share(a, t)
    return AutoContour(t, "mean+3sd", share, total, total * voxel_vol)


#: Mean density of protein (Da per Å^3), the standard rule for the volume a mass encloses.
PROTEIN_DA_PER_A3 = 1.21


def mass_contour(map: np.ndarray, spacing: float | Sequence[float], mass_kda: float) -> float:
    """The contour level that encloses the volume of ``mass_kda`` kilodaltons at
    :data:`PROTEIN_DA_PER_A3`: the level with ``mass / 1.21 Å^3`` of voxels above it (the
    number of voxels rounded to the nearest; the level lies between that many largest
    values and the next). ``spacing`` in Å.

    Raises :class:`OptionError` for a mass that is not positive or whose volume exceeds
    the map's box."""
    a = check_array(map, "map")
    m = float(mass_kda)
    if not math.isfinite(m) or m <= 0:
        raise OptionError(f"mass must be a positive number of kDa, got {mass_kda!r}")
    sp = spacing3(spacing) if a.ndim == 3 else (float(np.ravel(spacing)[0]),) * 3
    volume = m * 1000.0 / PROTEIN_DA_PER_A3
    n = int(round(volume / (sp[0] * sp[1] * sp[2])))
    if n < 1:
        raise OptionError(f"{m:g} kDa encloses less than one voxel of this map")
    if n >= a.size:
        raise OptionError(f"{m:g} kDa ({volume:,.0f} Å^3) does not fit in the map's box "
                          f"({a.size * sp[0] * sp[1] * sp[2]:,.0f} Å^3): check the mass and the voxel size")
    flat = a.reshape(-1).astype(np.float32, copy=False)
    # between the n-th and the (n+1)-th largest values: n voxels lie above the level
    part = np.partition(flat, (a.size - n - 1, a.size - n))
    below, nth = float(part[a.size - n - 1]), float(part[a.size - n])
    return (below + nth) / 2.0 if below < nth else float(np.nextafter(np.float32(nth), np.float32(-np.inf)))


def auto_contour(map: np.ndarray, spacing: float | Sequence[float] = 1.0) -> float:
    """Contour level for a map when the user gives none (rule in the module docstring:
    the highest level at which one connected region holds >= 90 % of the mask; fallback
    mean + 3 sigma of the non-flat voxels). ``spacing`` (Å) sets the 2000 Å^3 minimum size."""
    return auto_contour_info(map, spacing).level


# ----------------------------------------------------------------------------- report


def _mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    if mask is None:
        d = a.astype(np.float64) - b
    else:
        d = a[mask].astype(np.float64) - b[mask]
    return float(np.mean(d * d))


def _nan_to_none(v: float | None) -> float | None:
    if v is None or math.isnan(v):
        return None
    return float(v)


def cryoem_report(
    original: np.ndarray,
    result: np.ndarray,
    spacing: float | Sequence[float],
    *,
    contour: float | None = None,
    origin: float | Sequence[float] | None = None,
    model: Any = None,
    resolution: float | None = None,
    band_edges: Sequence[float] | None = None,
    cc_mask_radius: float = DEFAULT_CC_MASK_RADIUS,
) -> dict[str, Any]:
    """Cryo-EM quality report of ``result`` against ``original`` (module docstring).

    Parameters
    ----------
    original, result : 3-D maps ``(z, y, x)`` of the same shape.
    spacing : voxel size in Å, one number or ``(z, y, x)``; 0 raises :class:`DataError`.
    contour : display threshold in the original's units; None = :func:`auto_contour`.
    origin : position ``(z, y, x)`` in Å of voxel (0, 0, 0) (``Volume.origin``: header ORIGIN,
        else nstart x voxel size); used to place the model. None = 0 (noted when a model is
        given).
    model : path of a PDB/mmCIF file, or a ``gemmi.Structure``, for CC_mask.
    resolution : the map's resolution in Å: FSC at that resolution, and the model map's
        low-pass (needed with ``model``).
    band_edges : absolute density-band edges ``(e1, e2)``.
    cc_mask_radius : atom-mask radius in Å for CC_mask.

    Returns
    -------
    dict with every key of :data:`CRYOEM_REPORT_KEYS`.
    """
    a, b = check_pair(original, result)
    if a.ndim != 3:
        raise DataError(f"the cryo-EM report needs 3-D maps (z, y, x), got shape {a.shape}")
    sp = spacing3(spacing)
    out: dict[str, Any] = {k: None for k in CRYOEM_REPORT_KEYS}
    notes: list[str] = []
    out["shape"] = [int(n) for n in a.shape]
    out["spacing_A"] = list(sp)
    if origin is not None:
        out["origin_A"] = [float(v) for v in (np.broadcast_to(np.asarray(origin, dtype=float), (3,)))]
    res_a: float | None = None
    if resolution is not None:
        res_a = _level(resolution, "resolution")
        if res_a <= 0:
            raise OptionError(f"resolution must be > 0 Å, got {resolution!r}")
        out["resolution_A"] = res_a

    # --- contour and mask
    level: float | None
    if contour is not None:
        level = _level(contour)
        out["contour_source"] = "given"
    else:
        try:
            info = auto_contour_info(a, sp)
        except DataError as e:
            level = None
            notes.append(f"no contour: {e}")
        else:
            level = info.level
            out["contour_source"] = (
                f"auto ({'connectivity rule' if info.rule == 'connected' else 'fallback mean + 3 sd'}: "
                f"largest region {100 * info.largest_fraction:.1f} % of the mask)"
            )
    mask = None
    if level is not None:
        mask = contour_mask(a, level)
        n_mask = int(np.count_nonzero(mask))
        out["contour"] = level
        out["mask_voxels"] = n_mask
        out["mask_fraction"] = n_mask / a.size
        out["mask_volume_A3"] = n_mask * sp[0] * sp[1] * sp[2]
        ms = mask_scores(a, b, level, _checked=True)
        out["contour_dice"] = ms["dice"]
        out["contour_iou"] = ms["iou"]
        out["contour_accuracy"] = ms["accuracy"]

    # --- density bands
    if band_edges is not None:
        edges = _band_edges(a, edges=band_edges)
        out["density_band_rule"] = "given edges"
    elif contour is not None and level is not None and level > 0:
        edges = _band_edges(a, contour=level)
        out["density_band_rule"] = "contour: low (0, c), medium [c, 2c), high >= 2c"
    else:
        edges = _band_edges(a)
        out["density_band_rule"] = "paper 000 edges scaled to the map: (0.35, 0.75) x max(original)"
        if contour is not None and level is not None and level <= 0:
            notes.append("contour <= 0: density bands use the paper-scaled edges")
    rows = density_bands(a, b, edges=edges, _checked=True)
    out["density_bands"] = [r.to_dict() for r in rows]
    out["density_band_edges"] = [float(e) for e in edges]

    # --- PSNR
    peak = float(a.max()) - float(a.min())
    out["psnr_peak"] = peak
    mse_box = _mse(a, b)
    out["mse_box"] = mse_box
    out["psnr_box_db"] = psnr_from_mse(mse_box, peak)
    if mask is not None:
        mse_m = _mse(a, b, mask)
        out["mse_mask"] = mse_m
        out["psnr_mask_db"] = psnr_from_mse(mse_m, peak)
    notes.append(
        "psnr_box_db and psnr_mask_db share one peak, the original's data range over the whole box; "
        "psnr_mask_db averages the squared error over the contour mask only"
    )

    # --- FSC
    fr = fsc(a, b, sp)
    for t, key in ((0.5, "0.5"), (0.143, "0.143"), (0.9, "0.9")):
        r = fr.resolution_at(t)
        out[f"fsc_{key}_A"] = r.angstrom
        out[f"fsc_{key}_at_least"] = r.at_least
    out["fsc_nyquist_A"] = fr.nyquist_angstrom
    out["fsc_curve"] = {
        "frequency_per_A": [float(v) for v in fr.frequency],
        "fsc": [float(v) for v in fr.fsc],
        "n_voxels": [int(v) for v in fr.n_voxels],
    }
    if res_a is not None:
        try:
            out["fsc_at_resolution"] = fr.fsc_at_resolution(res_a)
        except OptionError as e:
            notes.append(f"FSC at the resolution not reported: {e}")
        else:
            kmax = 1.0 / res_a
            shells = fr.fsc[1:][fr.frequency[1:] <= kmax * (1 + 1e-9)]
            out["fsc_0.9_to_resolution"] = bool(np.all(shells >= 0.9) and out["fsc_at_resolution"] >= 0.9)

    # --- model
    if model is not None:
        if res_a is None:
            raise OptionError("CC_mask with an atomic model needs the map's resolution (--resolution, Å)")
        if isinstance(model, (str, os.PathLike)):
            out["model"] = os.fspath(model)
            st = load_model(model)
        else:
            out["model"] = getattr(model, "name", None) or type(model).__name__
            st = model
        if origin is None:
            notes.append("origin not given: voxel (0, 0, 0) taken to be at 0 Å when placing the model")
        mc = cc_mask([a, b], st, sp, resolution=res_a, origin=origin, radius=cc_mask_radius)
        out["model_atoms"] = mc.n_atoms
        out["model_atoms_in_box"] = mc.n_atoms_in_box
        out["cc_mask_radius_A"] = mc.radius
        out["cc_mask_voxels"] = mc.mask_voxels
        out["cc_mask_original"] = _nan_to_none(mc.cc_mask[0])
        out["cc_mask_result"] = _nan_to_none(mc.cc_mask[1])
        notes.extend(mc.warnings)

    out["notes"] = notes
    return out


# ----------------------------------------------------------------------------- text


def _num(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def _res(d: dict[str, Any], key: str) -> str:
    v = d.get(f"fsc_{key}_A")
    if v is None:
        return "-"
    if math.isinf(v):
        return "none"
    return f"{'<= ' if d.get(f'fsc_{key}_at_least') else ''}{v:.2f} Å"


def format_cryoem_report(d: dict[str, Any]) -> str:
    """Text of a :func:`cryoem_report` dict: the density-band table as Markdown in paper
    000's Table 1 layout, then one plain ``label: value`` line per number."""
    lines: list[str] = []
    if d.get("density_bands"):
        lines.append(format_density_table(d["density_bands"], title="Relative error by density region (original > 0)"))
        lines.append(f"band edges: {', '.join(f'{e:.4g}' for e in d.get('density_band_edges') or [])} "
                     f"({d.get('density_band_rule')})")
        lines.append("")

    def row(label: str, text: str) -> None:
        lines.append(f"{label}: {text}")

    shape = " x ".join(str(n) for n in d.get("shape") or [])
    sp = d.get("spacing_A") or []
    row("map", f"{shape} voxels of {' x '.join(f'{s:.4g}' for s in sp)} Å")
    if d.get("contour") is not None:
        row("contour", f"{d['contour']:.4g} ({d.get('contour_source')}); mask {d['mask_voxels']} voxels "
            f"({100 * d['mask_fraction']:.2f} % of the box, {d['mask_volume_A3']:.4g} Å^3)")
        row("contour mask of result vs original",
            f"Dice {d['contour_dice']:.4f}, IoU {d['contour_iou']:.4f}, Acc {d['contour_accuracy']:.4f}")
    row("PSNR whole box", f"{_num(d.get('psnr_box_db'), '.2f')} dB (peak = original's data range {_num(d.get('psnr_peak'))})")
    if d.get("psnr_mask_db") is not None:
        row("PSNR inside contour mask", f"{_num(d['psnr_mask_db'], '.2f')} dB (same peak; MSE over the mask only)")
    row("FSC resolution", f"0.5: {_res(d, '0.5')}, 0.143: {_res(d, '0.143')} (Nyquist {_num(d.get('fsc_nyquist_A'), '.2f')} Å)")
    row("FSC >= 0.9 out to", _res(d, "0.9"))
    if d.get("fsc_at_resolution") is not None:
        ok = d.get("fsc_0.9_to_resolution")
        row(f"FSC at {d['resolution_A']:g} Å", f"{d['fsc_at_resolution']:.4f} "
            f"({'FSC >= 0.9 out to it' if ok else 'FSC falls below 0.9 before it'})")
    if d.get("model") is not None:
        row("model", f"{d['model']} ({d['model_atoms_in_box']} of {d['model_atoms']} atoms inside the box)")
        row(f"CC_mask ({_num(d.get('cc_mask_radius_A'), 'g')} Å atom mask, {d.get('cc_mask_voxels')} voxels)",
            f"original {_num(d.get('cc_mask_original'), '.4f')}, result {_num(d.get('cc_mask_result'), '.4f')}")
    for n in d.get("notes") or []:
        lines.append(f"note: {n}")
    return "\n".join(lines)


__all__ = [
    "AUTO_CONTOUR_FRACTION",
    "AUTO_CONTOUR_MIN_VOLUME",
    "CRYOEM_REPORT_KEYS",
    "AutoContour",
    "auto_contour",
    "auto_contour_info",
    "contour_mask",
    "cryoem_report",
    "format_cryoem_report",
]
