"""Evaluation of a denoiser against an atomic model (``voxfield denoise eval``).

Paper 003's protocol: on the 1 Å working grid, the *label* is the 3-sigma atom mask of the
model at the map's resolution (:func:`voxfield.denoise.molmap.structure_label`); only the
voxels that are nonzero in the normalised input (negatives clipped to 0) are counted;
*positive = noise*. Reported for the same voxels:

- the network at its background and structural thresholds (from the weights);
- a plain threshold at the contour level (voxels at or below it are noise);
- ChimeraX hide dust at that level (size limit 5 Å): below the level or in a small piece;
- the best G-mean any threshold on *this* map could give for the network, the plain threshold
  and hide dust (an oracle that knows the answer: an upper bound, not a method);
- the map–model similarity of eqs. 1–3 (the paper's training-pair filter) and CC_mask.

The contour level, shared by the threshold and hide-dust baselines, is the user's
``level`` (the deposited contour, in the map's own units), or the level that encloses a
mass (``--mass`` kDa, else the model's own mass) at 1.21 Da/Å^3
(:func:`voxfield.metrics.cryoem.mass_contour`). The connectivity rule of
:func:`~voxfield.metrics.cryoem.auto_contour` is no longer used here: on one map it chose
4.7 sigma, 3,907 voxels where the mass implies about 10,200, and made both baselines look
weaker than they are.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxfield.denoise.confusion import Confusion, confusion, confusion_from_masks, sweep
from voxfield.denoise.dust import dust_mask
from voxfield.denoise.molmap import Atoms, molmap, structure_label
from voxfield.denoise.predict import predict_map, resolve_threshold
from voxfield.denoise.similarity import map_model_similarity
from voxfield.denoise.unet import UNet3D
from voxfield.errors import DataError
from voxfield.io.volume import Volume
from voxfield.metrics.cryoem import mass_contour
from voxfield.metrics.map_model import cc_mask, model_mass_kda

#: ChimeraX hide dust's default size limit (Å).
DUST_SIZE = 5.0


def _row(name: str, c: Confusion, threshold: float | None, note: str = "") -> dict[str, Any]:
    d = c.to_dict()
    return {"method": name, "threshold": threshold, "tpr": d["tpr"], "tnr": d["tnr"], "fpr": d["fpr"],
            "fnr": d["fnr"], "precision": d["precision"], "accuracy": d["accuracy"], "gmean": d["gmean"],
            "tp": d["tp"], "fp": d["fp"], "tn": d["tn"], "fn": d["fn"], "note": note}


def _best_dust(x: np.ndarray, label: np.ndarray, valid: np.ndarray, n: int = 24) -> tuple[float, Confusion]:
    """hide dust at the level (of ``n`` quantiles of the valid voxels) with the best G-mean."""
    levels = np.unique(np.quantile(x[valid], np.linspace(0.02, 0.9, n)))
    best: tuple[float, Confusion] | None = None
    for lv in levels:
        c = confusion_from_masks(dust_mask(x, float(lv), 1.0, size=DUST_SIZE).noise_mask(), label, valid)
        if best is None or (math.isfinite(c.gmean) and c.gmean > best[1].gmean):
            best = (float(lv), c)
    assert best is not None
    return best


def evaluate(
    vol: Volume,
    structure: Any,
    atoms: Atoms,
    *,
    resolution: float,
    model: UNet3D,
    meta: dict[str, Any],
    level: float | None = None,
    device: torch.device | str = "cpu",
    plots_dir: str | os.PathLike[str] | None = None,
    name: str = "map",
    progress: Callable[[int, int], None] | None = None,
    mass_kda: float | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Confusion-matrix evaluation of the network and the baselines on one map–model pair
    (module docstring). ``structure``: the gemmi Structure (for CC_mask); ``atoms``: the same
    model as :class:`Atoms`. Writes ``<name>_pr.png`` and ``<name>_hist.png`` to ``plots_dir``.

    The contour of the threshold and hide-dust baselines is ``level`` (the deposited
    contour), else the level enclosing ``mass_kda`` at 1.21 Da/Å^3, else the level enclosing
    the model's own mass (:func:`~voxfield.metrics.map_model.model_mass_kda`).

    Raises :class:`DataError` naming CC_mask when the model does not overlap the map (the
    accepted CC_mask falls with resolution, :func:`~voxfield.metrics.map_model.mismatch_cc_for`);
    ``force`` evaluates anyway and records the warning."""
    data = np.asarray(vol.data, dtype=np.float32)
    if data.ndim != 3:
        raise DataError(f"evaluation needs a 3-D map, got shape {data.shape}")
    sp = tuple(float(s) for s in vol.spacing)
    origin = tuple(float(o) for o in vol.origin)
    cc = cc_mask(data, structure, sp, resolution=resolution, origin=origin, warn=False)
    if cc.warnings and not force:
        raise DataError(cc.warnings[0] + " (--force evaluates anyway)")
    pred = predict_map(model, data, sp, device=device, progress=progress, resolution=resolution)
    x, prob = pred.work_input, pred.work_prob
    label = structure_label(atoms, x.shape, resolution=resolution, spacing=1.0, origin=origin)
    valid = x > 0
    if not (valid & label).any() or not (valid & ~label).any():
        raise DataError("the model labels no structure voxel (or no noise voxel) among the map's nonzero voxels")
    if level is not None:
        lev, source = float(level), "given (deposited) contour"
    else:
        mass = float(mass_kda) if mass_kda is not None else model_mass_kda(structure)
        lev = mass_contour(data, sp, mass)
        source = f"{mass:.1f} kDa {'given' if mass_kda is not None else 'of the model'} at 1.21 Da/Å^3"
    lev_n = lev / pred.scale
    t_bg = resolve_threshold(meta, "background", None, resolution)
    t_st = resolve_threshold(meta, "structural", None, resolution)
    rows = [
        _row("voxfield (background)", confusion(prob, label, t_bg, valid), t_bg),
        _row("voxfield (structural)", confusion(prob, label, t_st, valid), t_st),
    ]
    c_thr = confusion_from_masks(x <= lev_n, label, valid)
    rows.append(_row("plain threshold", c_thr, lev, "at the contour level"))
    dres = dust_mask(x, lev_n, 1.0, size=DUST_SIZE)
    c_dust = confusion_from_masks(dres.noise_mask(), label, valid)
    rows.append(_row("hide dust (size 5 Å)", c_dust, lev, f"at the contour level; {dres.n_dust} of {dres.n_components} pieces hidden"))
    sw_net = sweep(prob, label, valid)
    sw_thr = sweep(x, label, valid)
    t_net_best, _ = sw_net.best()
    t_thr_best, _ = sw_thr.best()
    rows.append(_row("voxfield, best threshold (oracle)", confusion(prob, label, t_net_best, valid), t_net_best))
    rows.append(_row("plain threshold, best level (oracle)", confusion_from_masks(x <= t_thr_best, label, valid),
                     t_thr_best * pred.scale))
    lv_best, c_dust_best = _best_dust(x, label, valid)
    rows.append(_row("hide dust, best level (oracle)", c_dust_best, lv_best * pred.scale))
    from voxfield.denoise.api import protect_structure

    for mode, t in (("background", t_bg), ("structural", t_st)):
        kept = protect_structure(x, prob, prob >= t, lev_n)
        rows.append(_row(f"voxfield ({mode}, protected)", confusion_from_masks(~kept, label, valid), t,
                         "as `voxfield denoise` runs by default: main structure above the contour kept unless P < 0.05"))
    sim = molmap(atoms, x.shape, resolution=resolution, origin=origin)
    simil = map_model_similarity(x, sim, lev_n)
    out: dict[str, Any] = {
        "map": name, "resolution_A": resolution, "shape": list(data.shape), "voxel_size_A": list(sp),
        "work_shape": list(x.shape), "valid_voxels": int(valid.sum()), "structure_voxels": int((valid & label).sum()),
        "noise_voxels": int((valid & ~label).sum()), "level": lev, "level_source": source,
        "cc_warnings": list(cc.warnings),
        "similarity": simil.to_dict(), "cc_mask": cc.cc_mask[0], "rows": rows,
        "gmean_gain_over_dust": rows[0]["gmean"] - c_dust.gmean,
        "gmean_gain_over_best_dust": rows[0]["gmean"] - c_dust_best.gmean,
        "tiles": [pred.tiles_run, pred.tiles_total],
    }
    if plots_dir is not None:
        from voxfield.denoise.plots import plot_pr_curves, plot_score_histogram

        pdir = Path(plots_dir)
        pdir.mkdir(parents=True, exist_ok=True)
        pts = {f"{r['method']}": (r["tpr"], r["precision"]) for r in rows[:4]}
        out["plots"] = [
            str(plot_pr_curves({"voxfield": sw_net, "plain threshold": sw_thr}, pdir / f"{name}_pr.png", points=pts,
                               title=f"{name}: noise precision-recall")),
            str(plot_score_histogram(prob, label, valid, pdir / f"{name}_hist.png",
                                     thresholds={"background": t_bg, "structural": t_st},
                                     title=f"{name}: structure probability")),
        ]
    return out


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of an :func:`evaluate` result."""
    lines = ["| method | threshold | TPR | TNR | FPR | FNR | precision | accuracy | G-mean |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        t = "" if r["threshold"] is None else f"{r['threshold']:.4g}"
        lines.append(f"| {r['method']} | {t} | {r['tpr']:.3f} | {r['tnr']:.3f} | {r['fpr']:.3f} | {r['fnr']:.3f} | "
                     f"{r['precision']:.3f} | {r['accuracy']:.3f} | {r['gmean']:.3f} |")
    return "\n".join(lines)
