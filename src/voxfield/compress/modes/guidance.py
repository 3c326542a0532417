"""Application guidance for the neural methods (INIF's "application-appropriate guidance").

The fit minimises the volume's MSE; with guidance it minimises
``MSE + weight x guidance loss``, so that the compression keeps what a downstream analysis
needs even where the MSE would not care:

* ``segmentation`` — a threshold segmentation (Otsu's threshold of the original by
  default, or a given one; or a user's reference mask). The loss is ``1 - soft Dice``
  between a differentiable soft mask of the prediction, ``sigmoid((pred - t) / tau)``, and
  the reference mask, on the voxels the MSE term samples. It pulls voxels that sit on the
  wrong side of the threshold across it: the voxels that decide the segmentation.
* ``ssim`` — structural similarity on small random patches (``1 - MS-SSIM``, Gaussian
  window): local contrast and structure rather than pointwise error. INIF uses a learned
  perceptual loss (features of a pretrained classification network); such losses (LPIPS
  and the like) need downloaded weights and are not available offline, so voxfield uses
  MS-SSIM, a hand-made perceptual measure.

Every function here is pure (no global state); :class:`GuideConfig` is the user's setting,
:func:`prepare_field_guide` turns it into a :class:`FieldGuide` for one volume (threshold and
mask in the field's normalised units and layout), which :mod:`~voxfield.compress.neural_fit`
uses while fitting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from voxfield.compress.field_layout import FieldLayout
from voxfield.errors import DataError, OptionError
from voxfield.metrics.segmentation import as_reference_mask, reference_segmentation

#: Guidance kinds, in the order the messages list them.
GUIDE_KINDS = ("segmentation", "ssim")

#: Default weight of the guidance loss next to the MSE. Measured (sci, 500 steps, ratios 8-16,
#: three volumes, seeds 0-1): segmentation guidance at 0.3 raised the task Dice by +0.003 to
#: +0.025 for -0.06 to -0.19 dB PSNR; at 1.0 by +0.006 to +0.056 for -0.35 to -1.45 dB (and up
#: to -0.06 SSIM); ssim guidance at 0.3 kept or raised SSIM (+0.000 to +0.011) for <= 0.06 dB.
DEFAULT_GUIDE_WEIGHT = 0.3

#: Default width of the soft threshold, as a fraction of the data range (see
#: :func:`soft_segmentation_loss`).
DEFAULT_TAU_FRACTION = 0.02

#: MS-SSIM's scale weights (Wang, Simoncelli & Bovik 2003), finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ---------------------------------------------------------------------------- reference
def segmentation_reference(data: np.ndarray, threshold: float | None = None,
                           mask: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The task's reference segmentation of the ORIGINAL ``data``: ``(bool mask, threshold)``.

    The threshold is Otsu's (:func:`skimage.filters.threshold_otsu`) unless given; the mask
    is ``data > threshold``, or the user's ``mask`` (bool, 0/1, or a label image read as
    ``label > 0``), which must have the data's shape (:class:`DataError` otherwise). The
    threshold is returned in both cases: it segments the prediction.

    Raises :class:`DataError` when the segmentation is empty or covers everything (e.g.
    constant data): there is nothing for guidance to keep.
    """
    a = np.asarray(data)
    if mask is not None:
        as_reference_mask(mask, a.shape, "guide mask")  # shape first: the clearer message
    try:
        ref, t, _ = reference_segmentation(a, threshold, mask)
    except DataError as exc:
        raise DataError(f"guidance needs a segmentation to keep: {exc.message}") from None
    n = int(np.count_nonzero(ref))
    if n == 0 or n == ref.size:
        what = "no foreground voxels" if n == 0 else "no background voxels"
        raise DataError(f"guidance needs a segmentation with foreground and background: the reference has {what} "
                        f"(threshold {t:.6g}, data {float(np.min(a)):.6g}..{float(np.max(a)):.6g})")
    return ref, t


# ---------------------------------------------------------------------------- losses
def soft_segmentation_loss(pred: torch.Tensor, ref_mask: torch.Tensor, threshold: float, tau: float,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - soft Dice`` of the soft mask ``sigmoid((pred - threshold) / tau)`` against
    ``ref_mask`` (bool or 0/1, same shape as ``pred``; any shape). ``weights`` (broadcast to
    ``pred``) weight each voxel, e.g. by the share of the volume its block stands for.

    ``tau`` (same units as ``pred``) sets how soft the threshold is: the soft mask goes from
    0.12 to 0.88 within ``threshold ± 2 tau``, so only voxels that close to the threshold get
    a gradient. A good ``tau`` is about the size of the reconstruction error, 1-2 % of the
    data range (:data:`DEFAULT_TAU_FRACTION`: 2 %, i.e. ``tau = 0.04`` on the neural
    methods' [-1, 1] normalised field): much smaller and the loss is flat almost everywhere,
    much larger and it turns into a second intensity loss that drags the whole foreground.
    """
    if not tau > 0:
        raise OptionError(f"tau must be > 0, got {tau!r}")
    if ref_mask.shape != pred.shape:
        raise DataError(f"reference mask shape {tuple(ref_mask.shape)} differs from the prediction's "
                        f"{tuple(pred.shape)}")
    m = ref_mask.to(pred.dtype)
    p = torch.sigmoid((pred - threshold) / tau)
    w = torch.ones_like(p) if weights is None else weights.to(pred.dtype).expand_as(p)
    inter = (w * p * m).sum()
    denom = (w * p).sum() + (w * m).sum()
    eps = 1e-6 * w.sum().detach() + 1e-12
    return 1.0 - (2.0 * inter + eps) / (denom + eps)


def segmentation_guidance_loss(pred: torch.Tensor, ref_mask: torch.Tensor, threshold: float, tau: float,
                               weights: torch.Tensor | None = None) -> torch.Tensor:
    """The segmentation term of the guided fit: :func:`soft_segmentation_loss` scaled by
    ``tau x (P + M)``, ``P`` and ``M`` the (weighted, detached) mean soft-predicted and
    reference foreground fractions of the sample.

    Why: the soft Dice's gradient per voxel is about ``1 / (2 x foreground fraction)``, and
    the sigmoid's ``1 / tau``; this scaling removes both, so that a voxel at ``pred`` is
    pushed with ``weight x sigmoid'((pred - threshold) / tau) / 2`` against the MSE's
    ``2 x error``: at balance the guidance moves a voxel by at most ``weight / 8`` (in the
    units of ``pred``; ``weight / 16`` of the data range on the [-1, 1] field) whether
    the segmentation covers 1 % or 50 % of the volume."""
    if not tau > 0:
        raise OptionError(f"tau must be > 0, got {tau!r}")
    with torch.no_grad():
        w = torch.ones_like(pred) if weights is None else weights.to(pred.dtype).expand_as(pred)
        total = w.sum().clamp_min(1e-12)
        frac = ((w * torch.sigmoid((pred - threshold) / tau)).sum() + (w * ref_mask.to(pred.dtype)).sum()) / total
    return tau * frac * soft_segmentation_loss(pred, ref_mask, threshold, tau, weights)


def ssim_guidance_scale(data_range: float) -> float:
    """Scale of ``1 - MS-SSIM`` in the guided fit: ``C2 / 2 = (0.03 x data_range)^2 / 2``.

    In a flat region ``1 - SSIM`` is about the local MSE over ``C2``, so the scaled term
    equals the MSE there and weighs errors less where the original has contrast (SSIM's
    masking): weight 1 gives structure about as much say as the MSE."""
    return 0.5 * (0.03 * data_range) ** 2


def _gauss_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over the spatial axes of ``(N, 1, *spatial)``, valid part."""
    n_sp = x.ndim - 2
    conv = F.conv2d if n_sp == 2 else F.conv3d
    for axis in range(n_sp):
        shape = [1, 1] + [1] * n_sp
        shape[2 + axis] = g.numel()
        x = conv(x, g.view(shape))
    return x


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per item (``(N,)`` each)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mx * mx
    syy = _blur(y * y, g) - my * my
    sxy = _blur(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    dims = tuple(range(1, x.ndim))
    return (lum * cs).mean(dim=dims), cs.mean(dim=dims)


def ms_ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float, *, window: int = 11,
            sigma: float = 1.5) -> torch.Tensor:
    """MS-SSIM per item (``(N,)``) of ``(N, 1, H, W)`` or ``(N, 1, D, H, W)`` tensors.

    Gaussian window (``window`` taps, ``sigma``; shrunk to the smallest side, kept odd),
    valid filtering, as many scales as the size allows (each scale halves the size by 2x
    average pooling; a scale needs a side of at least the window), at least one and at most
    five, with the standard weights renormalised to the scales used. One scale is plain
    SSIM."""
    if pred.shape != target.shape:
        raise DataError(f"ms_ssim: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim not in (4, 5) or pred.shape[1] != 1:
        raise DataError(f"ms_ssim needs (N, 1, H, W) or (N, 1, D, H, W) tensors, got shape {tuple(pred.shape)}")
    if not data_range > 0:
        raise OptionError(f"data_range must be > 0, got {data_range!r}")
    side = min(pred.shape[2:])
    win = min(window, side)
    win -= 1 - win % 2  # odd
    g = _gauss_window(win, sigma, pred)
    levels = 1
    while levels < len(MS_SSIM_WEIGHTS) and side // 2**levels >= win:
        levels += 1
    if levels == 1:
        return _ssim_cs(pred, target, g, data_range)[0]
    w = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=pred.dtype, device=pred.device)
    w = w / w.sum()
    pool = F.avg_pool2d if pred.ndim == 4 else F.avg_pool3d
    x, y = pred, target
    out = torch.ones(pred.shape[0], dtype=pred.dtype, device=pred.device)
    for j in range(levels):
        s, cs = _ssim_cs(x, y, g, data_range)
        term = s if j == levels - 1 else cs
        out = out * term.clamp_min(1e-4) ** w[j]
        if j < levels - 1:
            x, y = pool(x, 2), pool(y, 2)
    return out


def ms_ssim_loss(pred: torch.Tensor, target: torch.Tensor, data_range: float) -> torch.Tensor:
    """``1 - MS-SSIM`` (mean over items) of 2-D ``(N, 1, H, W)`` or 3-D ``(N, 1, D, H, W)``
    tensors; 0 for identical inputs, differentiable (see :func:`ms_ssim` for the scales).

    A hand-made perceptual loss: learned perceptual losses (LPIPS, or INIF's features of a
    pretrained classification network) need downloaded network weights and are not
    available offline."""
    return 1.0 - ms_ssim(pred, target, data_range).mean()


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class GuideConfig:
    """A guidance setting: ``kind`` (segmentation or ssim), ``weight`` of its loss next to
    the MSE (> 0), the segmentation ``threshold`` in data units (None: Otsu's), the output
    ``channel`` it looks at (None: all), and ``tau_fraction``, the soft threshold's width
    as a fraction of the data range."""

    kind: str
    weight: float = DEFAULT_GUIDE_WEIGHT
    threshold: float | None = None
    channel: int | None = None
    tau_fraction: float = DEFAULT_TAU_FRACTION

    def __post_init__(self) -> None:
        if self.kind not in GUIDE_KINDS:
            raise OptionError(f"unknown guide {self.kind!r} (known: {', '.join(GUIDE_KINDS)})")
        if not _finite(self.weight) or self.weight <= 0:
            raise OptionError(f"guide_weight must be a number > 0, got {self.weight!r}")
        if self.threshold is not None:
            if self.kind != "segmentation":
                raise OptionError("guide_threshold goes with guide=segmentation")
            if not _finite(self.threshold):
                raise OptionError(f"guide_threshold must be a finite number, got {self.threshold!r}")
        if self.channel is not None and (isinstance(self.channel, bool) or not isinstance(self.channel, int)
                                         or self.channel < 0):
            raise OptionError(f"guide_channel must be a channel index >= 0, got {self.channel!r}")
        if not _finite(self.tau_fraction) or not 0 < self.tau_fraction <= 0.5:
            raise OptionError(f"guide_tau must be in (0, 0.5] (a fraction of the data range), got "
                              f"{self.tau_fraction!r}")


def _finite(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class FieldGuide:
    """A :class:`GuideConfig` made concrete for one volume, in the field's units.

    ``threshold`` and ``tau`` are in normalised units ([-1, 1] spans the data range),
    ``data_threshold`` in data units; ``mask_field`` is the reference segmentation laid out
    like the field (``(*coord_shape, n)``, ``n`` = 1 with a channel, else the field's
    outputs) for segmentation guidance, None for ssim."""

    kind: str
    weight: float
    threshold: float | None
    tau: float
    channel: int | None
    data_threshold: float | None = None
    reference: str | None = None  # otsu, given or mask
    mask_field: np.ndarray | None = None

    def describe(self) -> dict[str, object]:
        """JSON-ready summary for the file header."""
        return {"kind": self.kind, "weight": float(self.weight), "channel": self.channel,
                "threshold": self.data_threshold, "reference": self.reference}


def _field_order(arr: np.ndarray, layout: FieldLayout) -> np.ndarray:
    """``arr`` (volume axes) -> ``(*coord_shape, n_out)``, values untouched."""
    return np.transpose(arr, layout.coord_axes + layout.out_axes).reshape(layout.coord_shape + (layout.n_out,))


def prepare_field_guide(config: GuideConfig, layout: FieldLayout, data: np.ndarray,
                        mask: np.ndarray | None = None) -> FieldGuide:
    """The :class:`FieldGuide` of ``config`` for ``data`` (the original, volume axes) under
    ``layout``. ``mask`` is an optional reference segmentation with the data's shape (or,
    with a channel, the shape of one channel: the data without its channel axes).

    :class:`OptionError` for a channel the field does not have (data without a channel axis,
    channels stored as coordinates, index out of range) or a mask with ssim guidance;
    :class:`DataError` for a mask of the wrong shape or an empty/full segmentation."""
    ch = config.channel
    if ch is not None:
        if not layout.out_axes:
            as_coord = any(a in "CS" for a in layout.axes)
            raise OptionError(f"guide_channel {ch}: the data (axes {layout.axes}, shape {layout.shape}) has no channel "
                              "axis among the field's outputs"
                              + (" (channels are coordinates here: channels=coord)" if as_coord else ""))
        if ch >= layout.n_out:
            raise OptionError(f"guide_channel {ch} is out of range: the data has {layout.n_out} channels "
                              f"(0..{layout.n_out - 1})")
    tau = 2.0 * config.tau_fraction
    if config.kind == "ssim":
        if mask is not None:
            raise OptionError("a guide mask goes with guide=segmentation, not ssim")
        if len(layout.coord_axes) < 2:
            raise OptionError(f"ssim guidance needs 2 or more coordinate axes, the field has {len(layout.coord_axes)}")
        return FieldGuide("ssim", float(config.weight), None, tau, ch)
    values = _field_order(np.asarray(data), layout)
    mask_field = None
    if mask is not None:
        m = np.asarray(mask)
        one_channel = tuple(layout.shape[i] for i in layout.coord_axes)  # coordinate axes keep their order
        if m.shape == tuple(layout.shape):
            mask_field = _field_order(m, layout)
            if ch is not None:
                mask_field = mask_field[..., ch : ch + 1]
        elif ch is not None and m.shape == one_channel:
            mask_field = m[..., None]
        else:
            expect = f"{tuple(layout.shape)}" + (f" or {one_channel} (one channel)" if ch is not None else "")
            raise DataError(f"guide mask has shape {m.shape}, the data {tuple(layout.shape)}: it must be {expect}")
    if ch is not None:
        values = values[..., ch : ch + 1]
    ref, t = segmentation_reference(values, config.threshold, mask_field)
    lo, hi = layout.lo, layout.hi
    t_norm = float((t - lo) * 2.0 / (hi - lo) - 1.0) if hi > lo else 0.0
    source = "mask" if mask is not None else ("given" if config.threshold is not None else "otsu")
    return FieldGuide("segmentation", float(config.weight), t_norm, tau, ch, float(t), source,
                      np.ascontiguousarray(ref))


__all__ = [
    "DEFAULT_GUIDE_WEIGHT",
    "DEFAULT_TAU_FRACTION",
    "GUIDE_KINDS",
    "MS_SSIM_WEIGHTS",
    "FieldGuide",
    "GuideConfig",
    "ms_ssim",
    "ms_ssim_loss",
    "prepare_field_guide",
    "segmentation_guidance_loss",
    "segmentation_reference",
    "soft_segmentation_loss",
    "ssim_guidance_scale",
]
