"""The denoiser on simulated maps of held-out models, 3-20 Å, new weights against old
(issue 18, deliverable 5).

    python benchmarks/denoise_corpus.py --out /tmp/dn2/corpus --cache /tmp/pkgs   # once
    python benchmarks/run_denoise_heldout.py --corpus /tmp/dn2/corpus              # ~15 min on 2 cores

Models: the corpus's *test* split (sequence-identity clusters never used for training or
validation of ``unet_v2``, nor of ``unet_v1``), one model per cluster (the alphabetically
first), at most ``--models``. Each is simulated whole, in its own frame, with the v2
simulator (seed 1: local and anisotropic resolution, sharpening, real noise spectra, dust,
unmodelled parts) at R = 3, 6, 10, 15 and 20 Å, and evaluated as ``voxfield denoise eval``
does (label: 3-sigma atom mask of the modelled atoms; positive = noise; contour = the level
enclosing the model's mass), with the map's resolution given. Compared: ``unet_v2`` in both
modes (raw and with the default structure protection), ``unet_v1`` (background and
structural, its own thresholds, with the 0.80 low-resolution rule), a plain threshold and
hide dust at the mass contour, and the best level of each (oracles). Also: the share of the
voxels above the contour and within 3 Å of a model atom that structural mode (protected)
removes, for each network and for the one the family picks (unet_v1 up to 10 Å).

The simulator is the training one, so these numbers are optimistic for real maps; the real
pairs are in ``run_denoise.py``.

Writes ``benchmarks/results/denoise_heldout/{results.json,results.md,gmean.png}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "denoise_heldout"
RESOLUTIONS = (3.0, 6.0, 10.0, 15.0, 20.0)
V1 = HERE.parent / "src" / "voxfield" / "denoise" / "weights" / "unet_v1.safetensors"
V2 = HERE.parent / "src" / "voxfield" / "denoise" / "weights" / "unet_v2.safetensors"
SHOW = ("default background", "v2 background", "v1 background", "v2 background, protected",
        "v2 structural, protected", "plain threshold", "hide dust (size 5 Å)", "plain threshold, best level (oracle)",
        "hide dust, best level (oracle)")
#: ``voxfield denoise`` uses unet_v1 up to this resolution and unet_v2 beyond
#: (:data:`voxfield.denoise.unet.SPECIALIST_UP_TO`).
SPECIALIST_UP_TO = 10.0


def test_models(corpus: Path, limit: int) -> list[tuple[str, Path]]:
    """One model per test cluster (first key), at most ``limit``."""
    m = json.loads((corpus / "corpus.json").read_text())["models"]
    firsts: dict[str, str] = {}
    for k in sorted(m):
        r = m[k]
        if r["split"] == "test" and not r["derived"]:
            firsts.setdefault(r["cluster"], k)
    keys = sorted(firsts.values())[:limit]
    return [(k, corpus / m[k]["file"]) for k in keys]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--report-only", action="store_true", help="re-write the table and plot from results.json")
    args = ap.parse_args()
    if args.report_only:
        report(json.loads((OUT / "results.json").read_text()))
        return
    import torch

    from voxfield.denoise.api import protect_structure
    from voxfield.denoise.confusion import confusion
    from voxfield.denoise.evaluate import evaluate
    from voxfield.denoise.molmap import read_atoms, structure_label
    from voxfield.denoise.predict import predict_map, resolve_threshold
    from voxfield.denoise.simulate import SIM_V2, simulate_sample
    from voxfield.denoise.unet import load_weights
    from voxfield.io.volume import Volume
    from voxfield.metrics.map_model import atom_mask, load_model

    torch.set_num_threads(2)
    m2, meta2 = load_weights(V2)
    m1, meta1 = load_weights(V1)
    results: list[dict[str, Any]] = []
    for key, path in test_models(args.corpus, args.models):
        atoms = read_atoms(path)
        st = load_model(path)
        for res in RESOLUTIONS:
            t0 = time.perf_counter()
            s = simulate_sample(atoms, np.random.default_rng(1), SIM_V2, resolution=res, whole=True, keep_frame=True)
            org = tuple(s.info["origin_zyx"])
            vol = Volume(s.raw, "ZYX", (1.0, 1.0, 1.0), "Å", org, {})
            d = evaluate(vol, st, atoms, resolution=res, model=m2, meta=meta2, name=key, force=True)
            rows = {("v2 " + r["method"][len("voxfield ("):-1] if r["method"].startswith("voxfield (") else r["method"]):
                    {"gmean": r["gmean"], "tpr": r["tpr"], "tnr": r["tnr"]} for r in d["rows"]}
            # unet_v1 on the same map, its own thresholds
            p1 = predict_map(m1, s.raw, 1.0)
            x = p1.work_input
            label = structure_label(atoms, x.shape, resolution=res, origin=org)
            valid = x > 0
            for mode in ("background", "structural"):
                c = confusion(p1.work_prob, label, resolve_threshold(meta1, mode, None, res), valid)
                rows[f"v1 {mode}"] = {"gmean": c.gmean, "tpr": c.tpr, "tnr": c.tnr}
            # structural mode (protected): density above the contour near the model removed,
            # by each network and by the family's choice
            p2 = predict_map(m2, s.raw, 1.0, resolution=res)
            near = atom_mask(atoms.zyx, x.shape, 1.0, org, 3.0)
            removed = {}
            for tag, pr, mt in (("v1", p1, meta1), ("v2", p2, meta2)):
                lev_n = d["level"] / pr.scale
                t_st = resolve_threshold(mt, "structural", None, res)
                kept = protect_structure(pr.work_input, pr.work_prob, pr.work_prob >= t_st, lev_n)
                sel = (pr.work_input > lev_n) & near
                removed[tag] = float((sel & ~kept).sum()) / max(int(sel.sum()), 1)
            removed_near = removed["v1" if res <= SPECIALIST_UP_TO else "v2"]
            results.append({"model": key, "resolution": res, "level": d["level"], "rows": rows,
                            "structural_removed_above_near": removed_near,
                            "structural_removed_above_near_by": removed, "sim": s.info,
                            "seconds": round(time.perf_counter() - t0, 1)})
            print(key, res, {k: round(v["gmean"], 3) for k, v in rows.items() if k in SHOW},
                  f"struct removed near {removed_near:.2%}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report(results)


def report(results: list[dict[str, Any]]) -> None:
    """``results.md`` and ``gmean.png`` from the per-map results; the *default* column is
    what ``voxfield denoise`` runs (unet_v1 up to 10 Å, unet_v2 beyond)."""
    for r in results:
        pick = "v1" if r["resolution"] <= SPECIALIST_UP_TO else "v2"
        r["rows"]["default background"] = dict(r["rows"][f"{pick} background"], weights=f"unet_{pick}")
    lines = ["# Denoiser on simulated maps of held-out models (corpus test split)", "",
             "G-mean (positive = noise) over the nonzero voxels; labels = 3-sigma atom masks at R. Simulator v2, "
             "seed 1. *default*: what `voxfield denoise --resolution R` runs (unet_v1 up to 10 Å, unet_v2 beyond). "
             "Threshold and dust at the mass contour; 'best level' rows are oracles. "
             "*struct. removed*: share of the voxels above the contour and within 3 Å of the model that "
             "the default's structural mode (protected) sets to 0.", "",
             "| model | R (Å) | " + " | ".join(SHOW) + " | struct. removed |", "|---|---:|" + "---:|" * (len(SHOW) + 1)]
    for r in results:
        lines.append(f"| {r['model']} | {r['resolution']:g} | "
                     + " | ".join(f"{r['rows'][m]['gmean']:.3f}" for m in SHOW)
                     + f" | {r['structural_removed_above_near']:.2%} |")
    lines += ["", "Means over models:", "", "| R (Å) | " + " | ".join(SHOW) + " | struct. removed (max) |",
              "|---:|" + "---:|" * (len(SHOW) + 1)]
    for res in RESOLUTIONS:
        rs = [r for r in results if r["resolution"] == res]
        lines.append(f"| {res:g} | " + " | ".join(f"{np.mean([r['rows'][m]['gmean'] for r in rs]):.3f}" for m in SHOW)
                     + f" | {max(r['structural_removed_above_near'] for r in rs):.2%} |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for m, style in zip(SHOW, ("-o", "--s", "--^", "--o", "-s", ":v", ":x", "-.v", "-.x")):
        ax.plot(RESOLUTIONS, [np.mean([r["rows"][m]["gmean"] for r in results if r["resolution"] == res])
                              for res in RESOLUTIONS], style, label=m, lw=2.5 if m.startswith("default") else 1.2)
    ax.set_xlabel("resolution (Å)")
    ax.set_ylabel("mean G-mean over held-out models")
    ax.set_title("Held-out models, simulated maps (v2 simulator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "gmean.png", dpi=120)
    print((OUT / "results.md").read_text())


if __name__ == "__main__":
    main()
