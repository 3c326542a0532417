"""The shipped denoiser across resolution on simulated maps of held-out models (issue 18,
part of deliverable 5).

    python benchmarks/run_denoise_resolution.py       # ~4 min on 2 cores

Models never used in the denoiser's training or validation (model card): PDB 5NI1, 5ME2
and the 6VYB N-domain. Each is simulated with ``voxfield denoise simulate`` in the model's own frame (molmap at
R, noise, dust, structural noise, seed 1; the v1 simulator) at R = 3, 6, 10, 15 and 20 Å — the
shipped family runs unet_v1 (trained at 2.5–10 Å) up to 10 Å and unet_v2 (2.5–20 Å) beyond — and evaluated with ``voxfield denoise eval`` at the same R (label: the
3-sigma atom mask; positive = noise). Compared: the network in both modes (raw, and with
the default structure protection), a plain threshold and hide dust at the mass contour,
and the best level of each (oracle). The simulator is the training one, so these numbers
are optimistic for real maps.

Writes ``benchmarks/results/denoise_resolution/{results.json,results.md,gmean.png}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "denoise_resolution"
MODELS = (("5NI1", "atomic_models/5ni1_updated.cif"), ("5ME2", "atomic_models/5me2.pdb"),
          ("6VYB N-dom", "atomic_models/6vyb_Ndom.pdb"))
RESOLUTIONS = (3.0, 6.0, 10.0, 15.0, 20.0)
SHOW = ("voxfield (background)", "voxfield (structural)", "voxfield (background, protected)",
        "voxfield (structural, protected)", "plain threshold", "hide dust (size 5 Å)",
        "plain threshold, best level (oracle)", "hide dust, best level (oracle)")


def run(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "voxfield", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"voxfield {' '.join(args)}: {r.stderr.strip()[-500:]}")


def main() -> None:
    from voxfield.bench import find_data_root

    root = find_data_root()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel in MODELS:
            model = root / rel
            for res in RESOLUTIONS:
                sim = Path(tmp) / f"sim_{res:g}.mrc"
                js = Path(tmp) / f"e_{res:g}.json"
                run("denoise", "simulate", str(model), "-o", str(sim), "--resolution", f"{res:g}", "--seed", "1",
                    "--simulator", "v1")
                run("denoise", "eval", str(sim), str(model), "--resolution", f"{res:g}", "-o", str(js), "--json",
                    "--force")
                d = json.loads(js.read_text())
                g = {r["method"]: {"gmean": r["gmean"], "tpr": r["tpr"], "tnr": r["tnr"]} for r in d["rows"]}
                results.append({"model": name, "resolution": res, "level": d["level"],
                                "level_source": d["level_source"], "rows": g})
                print(name, res, {k: round(v["gmean"], 3) for k, v in g.items() if k in SHOW}, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    lines = ["# Denoiser across resolution: simulated maps of held-out models", "",
             "G-mean (positive = noise) over the nonzero voxels; labels = 3-sigma atom masks at R. "
             "Weights: unet_v1 up to 10 Å, unet_v2 beyond (the family `voxfield denoise` picks). Threshold and dust at the mass contour; 'best level' rows are oracles.", "",
             "| model | R (Å) | " + " | ".join(SHOW) + " |", "|---|---:|" + "---:|" * len(SHOW)]
    for r in results:
        lines.append(f"| {r['model']} | {r['resolution']:g} | "
                     + " | ".join(f"{r['rows'][m]['gmean']:.3f}" for m in SHOW) + " |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(5 * len(MODELS), 3.8), sharey=True)
    for ax, (name, _) in zip(axes, MODELS):
        rs = [r for r in results if r["model"] == name]
        for m, style in zip(SHOW, ("-o", "-s", "--o", "--s", ":^", ":v", "-.^", "-.v")):
            ax.plot([r["resolution"] for r in rs], [r["rows"][m]["gmean"] for r in rs], style, label=m, ms=4)
        ax.axvspan(2.5, 10, color="#eee", zorder=0)
        ax.set_title(name)
        ax.set_xlabel("resolution (Å); grey: trained range")
    axes[0].set_ylabel("G-mean")
    axes[-1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(OUT / "gmean.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
