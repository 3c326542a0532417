"""Mask metrics: SCI's thresholded accuracy Acc(tau), Dice and IoU, and the agreement of a
downstream threshold segmentation (:func:`segmentation_agreement`: Dice, IoU, object counts).

Conventions: a voxel is "in" a thresholded mask when its value is **strictly greater** than
the threshold (``v > tau``), as in SCI and :func:`skimage.filters.threshold_otsu`. Dice and
IoU of two empty masks are 1.0 (both agree that there is nothing), so a codec that keeps an
empty region empty is not penalised.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from voxfield.errors import DataError, OptionError

from ._validate import check_pair, flat_view, iter_chunks


def _threshold(value: float, name: str) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(t):
        raise OptionError(f"{name} must be finite, got {value!r}")
    return t


def _as_mask(a: np.ndarray, name: str) -> np.ndarray:
    """Bool view/copy of a mask; integer/float masks must hold only 0 and 1."""
    if a.dtype == bool:
        return a
    if not np.isin(a, (0, 1)).all():
        raise DataError(f"{name}: not a mask (values other than 0/1); threshold it first")
    return a != 0


def _counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(|A|, |B|, |A and B|) for two bool arrays of equal shape, streamed."""
    fa, fb = flat_view(a), flat_view(b)
    na = nb = nab = 0
    for sl in iter_chunks(fa.size, 1 << 22):
        xa, xb = fa[sl], fb[sl]
        na += int(np.count_nonzero(xa))
        nb += int(np.count_nonzero(xb))
        nab += int(np.count_nonzero(xa & xb))
    return na, nb, nab


def _dice_from(na: int, nb: int, nab: int) -> float:
    return 1.0 if na + nb == 0 else 2.0 * nab / (na + nb)


def _iou_from(na: int, nb: int, nab: int) -> float:
    union = na + nb - nab
    return 1.0 if union == 0 else nab / union


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A| + |B|)`` of two masks (bool, or 0/1 values).
    1.0 when both are empty."""
    x, y = check_pair(a, b, ("mask a", "mask b"))
    return _dice_from(*_counts(_as_mask(x, "mask a"), _as_mask(y, "mask b")))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union (Jaccard) ``|A∩B| / |A∪B|`` of two masks. 1.0 when both are empty."""
    x, y = check_pair(a, b, ("mask a", "mask b"))
    return _iou_from(*_counts(_as_mask(x, "mask a"), _as_mask(y, "mask b")))


def thresholded_accuracy(
    original: np.ndarray, result: np.ndarray, tau: float, *, _checked: bool = False
) -> float:
    """SCI's Acc(tau): fraction (0-1) of voxels where ``(original > tau) == (result > tau)``.

    ``tau`` is in the data's units (SCI uses 200 and 500 on uint16 data). Dominated by the
    background for sparse data: report Dice next to it.
    """
    if not _checked:
        original, result = check_pair(original, result)
    t = _threshold(tau, "tau")
    fa, fb = flat_view(original), flat_view(result)
    agree = 0
    for sl in iter_chunks(fa.size, 1 << 22):
        agree += int(np.count_nonzero((fa[sl] > t) == (fb[sl] > t)))
    return agree / fa.size


def mask_scores(
    original: np.ndarray, result: np.ndarray, threshold: float, *, _checked: bool = False
) -> dict:
    """Scores of the masks ``original > threshold`` and ``result > threshold``.

    Returns a JSON-serialisable dict: ``threshold``, ``accuracy`` (Acc(tau), 0-1), ``dice``,
    ``iou``, ``n_original`` and ``n_result`` (voxels in each mask).
    """
    if not _checked:
        original, result = check_pair(original, result)
    t = _threshold(threshold, "threshold")
    fa, fb = flat_view(original), flat_view(result)
    na = nb = nab = agree = 0
    for sl in iter_chunks(fa.size, 1 << 22):
        ma = fa[sl] > t
        mb = fb[sl] > t
        na += int(np.count_nonzero(ma))
        nb += int(np.count_nonzero(mb))
        nab += int(np.count_nonzero(ma & mb))
        agree += int(np.count_nonzero(ma == mb))
    return {
        "threshold": t,
        "accuracy": agree / fa.size,
        "dice": _dice_from(na, nb, nab),
        "iou": _iou_from(na, nb, nab),
        "n_original": na,
        "n_result": nb,
    }


#: Objects smaller than this many voxels are not counted by :func:`segmentation_agreement`.
DEFAULT_MIN_OBJECT_SIZE = 8


def otsu_threshold(data: np.ndarray, name: str = "original") -> float:
    """Otsu's threshold of ``data`` (:func:`skimage.filters.threshold_otsu`, 256 bins):
    the level that best splits the histogram into two classes. The foreground is
    ``data > threshold``. :class:`DataError` for constant data (nothing to split)."""
    from skimage.filters import threshold_otsu

    a = np.asarray(data)
    lo, hi = np.min(a), np.max(a)
    if lo == hi:
        raise DataError(f"{name}: constant data ({float(lo):g}) has no Otsu threshold (nothing to segment)")
    return float(threshold_otsu(a.astype(np.float64, copy=False) if a.dtype.kind == "b" else a))


def as_reference_mask(mask: np.ndarray, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """A user's reference segmentation as a bool array: bool masks as they are, 0/1 masks
    and label images (integer or integral float values) as ``label > 0``. :class:`DataError`
    when the shape is not ``shape`` or the values are not labels."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise DataError(f"{name} has shape {m.shape}, the data {tuple(shape)}: a reference segmentation must match "
                        "the data voxel for voxel")
    if m.dtype == bool:
        return m
    if m.dtype.kind not in "iuf":
        raise DataError(f"{name}: unsupported dtype {m.dtype} (give a bool mask or an integer label image)")
    if m.dtype.kind == "f" and not (np.isfinite(m).all() and (m == np.round(m)).all()):
        raise DataError(f"{name}: not a mask or label image (non-integer or non-finite values)")
    return m > 0


def reference_segmentation(original: np.ndarray, threshold: float | None = None,
                           mask: np.ndarray | None = None) -> tuple[np.ndarray, float, str]:
    """The task's reference segmentation of ``original``: ``(mask, threshold, source)``.

    ``threshold`` is Otsu's (``source`` ``"otsu"``) unless given (``"given"``); the mask is
    ``original > threshold``, or the user's ``mask`` (``source`` ``"mask"``; the threshold
    is still returned: it segments the decoded data)."""
    a = np.asarray(original)
    if threshold is None:
        t, source = otsu_threshold(a), "otsu"
    else:
        t, source = _threshold(threshold, "threshold"), "given"
    if mask is not None:
        return as_reference_mask(mask, a.shape), t, "mask"
    return a > t, t, source


def count_objects(mask: np.ndarray, *, min_size: int = DEFAULT_MIN_OBJECT_SIZE,
                  connectivity: int | None = None) -> int:
    """Connected components of a bool mask (:func:`scipy.ndimage.label`) with at least
    ``min_size`` voxels. ``connectivity`` 1..ndim (1: faces only; default ndim: faces,
    edges and corners)."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    conn = m.ndim if connectivity is None else int(connectivity)
    if not 1 <= conn <= max(m.ndim, 1):
        raise OptionError(f"connectivity must be 1..{m.ndim} for {m.ndim}-D data, got {connectivity!r}")
    labels, n = ndimage.label(m, structure=ndimage.generate_binary_structure(m.ndim, conn))
    if n == 0:
        return 0
    sizes = np.bincount(labels.reshape(-1))[1:]
    return int(np.count_nonzero(sizes >= max(int(min_size), 1)))


def segmentation_agreement(
    original: np.ndarray, decoded: np.ndarray, threshold: float | None = None, mask: np.ndarray | None = None,
    channel: int | None = None, *, channel_axis: int | None = None, min_size: int = DEFAULT_MIN_OBJECT_SIZE,
    connectivity: int | None = None,
) -> dict[str, Any]:
    """How well a threshold segmentation of ``decoded`` agrees with the original's.

    The reference is ``original > t`` with ``t`` Otsu's threshold of the original (or the
    given ``threshold``), or the user's ``mask`` (bool, 0/1 or label image, label > 0, same
    shape as the data or as the selected channel); ``decoded`` is segmented at the same
    ``t``. ``channel`` picks one channel along ``channel_axis`` (which must be given: data
    without a channel axis cannot pick one).

    Returns a JSON-ready dict: ``threshold``, ``threshold_source`` (otsu, given),
    ``reference`` (threshold, mask), ``channel``, ``dice``, ``iou``, ``n_reference`` and
    ``n_decoded`` (voxels in each mask), ``objects_reference`` and ``objects_decoded``
    (connected components of at least ``min_size`` voxels, ``connectivity`` default full),
    ``objects_rel_diff`` ((decoded - reference) / reference; 0 when both are 0, inf when
    only the reference has none), ``min_size`` and ``connectivity``.
    """
    a, b = check_pair(original, decoded, ("original", "decoded"))
    if channel is not None:
        if channel_axis is None:
            raise OptionError(f"channel {channel}: the data (shape {a.shape}) has no channel axis")
        ax = int(channel_axis)
        if not -a.ndim <= ax < a.ndim:
            raise OptionError(f"channel axis {ax} is out of range for {a.ndim}-D data")
        n_ch = a.shape[ax]
        if not 0 <= int(channel) < n_ch:
            raise OptionError(f"channel {channel} is out of range: the data has {n_ch} channel(s)")
        if mask is not None and np.ndim(mask) == a.ndim:
            mask = np.take(np.asarray(mask), int(channel), axis=ax)
        a, b = np.take(a, int(channel), axis=ax), np.take(b, int(channel), axis=ax)
    if int(min_size) < 1:
        raise OptionError(f"min_size must be >= 1 voxel, got {min_size!r}")
    ref, t, source = reference_segmentation(a, threshold, mask)
    seg = b > t
    na, nb, nab = _counts(ref, seg)
    conn = a.ndim if connectivity is None else int(connectivity)
    n_ref = count_objects(ref, min_size=min_size, connectivity=conn)
    n_dec = count_objects(seg, min_size=min_size, connectivity=conn)
    if n_ref:
        rel = (n_dec - n_ref) / n_ref
    else:
        rel = 0.0 if n_dec == 0 else math.inf
    return {
        "threshold": t,
        "threshold_source": "given" if threshold is not None else "otsu",
        "reference": "mask" if source == "mask" else "threshold",
        "channel": None if channel is None else int(channel),
        "dice": _dice_from(na, nb, nab),
        "iou": _iou_from(na, nb, nab),
        "n_reference": na,
        "n_decoded": nb,
        "objects_reference": n_ref,
        "objects_decoded": n_dec,
        "objects_rel_diff": rel,
        "min_size": int(min_size),
        "connectivity": conn,
    }


def format_segmentation(d: dict[str, Any]) -> str:
    """Plain-text lines for a :func:`segmentation_agreement` dict (as in ``voxfield metrics``)."""
    ref = "reference mask" if d["reference"] == "mask" else "original"
    ch = "" if d.get("channel") is None else f", channel {d['channel']}"
    rel = d["objects_rel_diff"]
    rel_s = "inf" if math.isinf(rel) else f"{100 * rel:+.1f} %"
    return "\n".join([
        f"{'segmentation':<18} threshold {d['threshold']:.6g} ({d['threshold_source']}{ch}), vs the {ref}: "
        f"Dice {d['dice']:.4f}, IoU {d['iou']:.4f}",
        f"{'objects':<18} {d['objects_reference']} in the {ref}, {d['objects_decoded']} in the result ({rel_s}; "
        f">= {d['min_size']} voxels, connectivity {d['connectivity']})",
    ])


__all__ = [
    "DEFAULT_MIN_OBJECT_SIZE",
    "as_reference_mask",
    "count_objects",
    "dice",
    "format_segmentation",
    "iou",
    "mask_scores",
    "otsu_threshold",
    "reference_segmentation",
    "segmentation_agreement",
    "thresholded_accuracy",
]
