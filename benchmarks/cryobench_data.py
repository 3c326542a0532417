"""CryoBench-style heterogeneous particle sets, generated locally (issue 19, deliverable 1).

Two kinds, built from PDB 1BD2 (a T-cell receptor bound to peptide–MHC; CC0, shipped in
``../shared/data/atomic_models/general``):

* ``hinge`` — a one-dimensional continuous motion like IgG-1D's Fab: the TCR (chains D and
  E) turned rigidly about its hinge on the MHC (:func:`voxfield.reconstruct.conformations.hinge_states`)
  from -30° to +30° in 50 states;
* ``assembly`` — discrete compositional heterogeneity like Ribosembly: the MHC heavy chain
  (A) always, with beta-2-microglobulin (B), the peptide (C) and the TCR (D+E) each present
  or absent: 8 states (:func:`~voxfield.reconstruct.conformations.composition_states`).

Each at SNR 0.01 and 0.1 (CryoBench's 0.01 and a tenfold easier set), CTF on, uniform random
poses, ``--n`` images (default 50,000) of ``--box`` px (default 64); the pixel size is the
smallest 0.1 Å step that holds every state in the box. Ground truth per image: its state
index, ``t`` and the state's volume (``gt/state_XXX.mrc``), for per-image FSC.

    python benchmarks/cryobench_data.py --out /tmp/cryobench      # ~6 min, 3.3 GB

Writes the datasets under ``--out`` and a summary (``results.json``, ``results.md``,
``states.png``: central sections of the ground-truth states) under ``--summary`` (default
``benchmarks/results/cryobench_data/``). The 128 px hinge set of the memory measurement:

    python benchmarks/cryobench_data.py --out /tmp/cryobench128 --box 128 --snr 0.01 --kinds hinge \
        --summary benchmarks/results/cryobench_data_128
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "cryobench_data"
MODEL = "atomic_models/general/1BD2.cif.gz"
RESOLUTION = 6.0
HINGE = ("D+E", -30.0, 30.0, 50)
GROUPS = ["B", "C", "D+E"]
PATTERNS = [(b, c, t) for b in (0, 1) for c in (0, 1) for t in (0, 1)]


def fitting_apix(states: list, box: int, resolution: float) -> float:
    """Smallest pixel size (0.1 Å steps) whose box holds every state about their common
    centre, atoms plus 3 sigma."""
    from voxfield.reconstruct.simulate import state_reach

    reach = state_reach(states, np.concatenate([s.zyx for s in states]).mean(axis=0), resolution)
    return math.ceil(10 * reach / (box // 2 - 1) + 1e-9) / 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--snr", default="0.01,0.1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default="hinge,assembly", help="Which kinds to simulate (comma-separated).")
    ap.add_argument("--summary", type=Path, default=OUT, help="Folder of the summary (results.json/md, states.png).")
    args = ap.parse_args()
    from voxfield.bench import find_data_root
    from voxfield.reconstruct.conformations import composition_states, hinge_states, select
    from voxfield.reconstruct.simulate import read_model, simulate_dataset

    atoms, keys = read_model(find_data_root() / MODEL)
    sel, a0, a1, n_hinge = HINGE
    wanted = [k for k in args.kinds.split(",") if k]
    if not wanted or set(wanted) - {"hinge", "assembly"}:
        ap.error(f"--kinds: choose from hinge, assembly; got {args.kinds!r}")
    kinds = {}
    if "hinge" in wanted:
        kinds["hinge"] = hinge_states(atoms, select(keys, sel), np.linspace(a0, a1, n_hinge))
    if "assembly" in wanted:
        kinds["assembly"] = composition_states(atoms, keys, GROUPS, [[bool(f) for f in p] for p in PATTERNS])
    snrs = [float(s) for s in args.snr.split(",")]
    rows = []
    for kind, states in kinds.items():
        apix = fitting_apix(states, args.box, RESOLUTION)
        for snr in snrs:
            name = f"{kind}_snr{snr:g}"
            t0 = time.perf_counter()
            res = simulate_dataset(args.out / name, [], states=states, n_images=args.n, D=args.box, apix=apix,
                                   resolution=RESOLUTION, snr=snr, seed=args.seed, progress=True)
            rows.append({"dataset": name, "kind": kind, "states": len(states), "images": res.n_images, "box": res.D,
                         "apix": res.apix, "resolution": RESOLUTION, "snr": snr, "noise_std": res.noise_std,
                         "atoms_per_state": sorted({len(s) for s in states}), "seconds": round(time.perf_counter() - t0, 1),
                         "path": str(args.out / name)})
            print(rows[-1], flush=True)
    summary = args.summary
    summary.mkdir(parents=True, exist_ok=True)
    doc = {"model": MODEL, "hinge": {"domain": sel, "angles_deg": [a0, a1], "states": n_hinge},
           "assembly": {"always": "A", "groups": GROUPS, "patterns": PATTERNS}, "datasets": rows}
    (summary / "results.json").write_text(json.dumps(doc, indent=1))
    lines = ["# CryoBench-style particle sets (generated locally from PDB 1BD2)", "",
             f"Hinge: chains {sel} turned {a0:g}° to {a1:g}° about their hinge on the MHC, {n_hinge} states. "
             f"Assembly: chain A always, groups {', '.join(GROUPS)} present or absent, {len(PATTERNS)} states. "
             "Molmap at 6 Å, CTF on, uniform poses; SNR as defined in `voxfield.reconstruct.simulate`.", "",
             "| dataset | states | images | box | Å/px | SNR | seconds to simulate |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['dataset']} | {r['states']} | {r['images']:,} | {r['box']} | {r['apix']:g} | {r['snr']:g} | "
              f"{r['seconds']:.0f} |" for r in rows]
    (summary / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mrcfile

    show = {k: v for k, v in {"hinge": [0, n_hinge // 2, n_hinge - 1],
                              "assembly": list(range(len(PATTERNS)))}.items() if k in kinds}
    fig, axes = plt.subplots(len(show), len(PATTERNS), figsize=(2 * len(PATTERNS), 2.2 * len(show)), squeeze=False)
    for row, (kind, idx) in enumerate(show.items()):
        folder = args.out / f"{kind}_snr{snrs[0]:g}" / "gt"
        for col in range(len(PATTERNS)):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(idx):
                with mrcfile.open(folder / f"state_{idx[col]:03d}.mrc") as m:
                    ax.imshow(np.asarray(m.data).sum(axis=0), cmap="gray")
                label = (f"{np.linspace(a0, a1, n_hinge)[idx[col]]:+.1f}°" if kind == "hinge"
                         else "A" + "".join(f"+{g}" for g, f in zip(GROUPS, PATTERNS[idx[col]]) if f))
                ax.set_title(f"{kind}: {label}", fontsize=7)
    fig.tight_layout()
    fig.savefig(summary / "states.png", dpi=110)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
