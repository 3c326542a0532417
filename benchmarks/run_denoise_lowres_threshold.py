"""Where the background mode's low-resolution threshold comes from (issue 18).

    python benchmarks/run_denoise_lowres_threshold.py      # ~2 min

``unet_v1``'s background threshold (0.444) was chosen on validation cubes at 2.5-10 Å.
For maps at 10 Å and worse run with ``unet_v1``, ``voxfield.denoise.predict.LOW_RES_BACKGROUND_THRESHOLD``
is the mean of the G-mean-best thresholds of ``unet_v1`` on simulated maps (``voxfield
denoise simulate --simulator v1``, model frame, seed 1) of the two *validation* models of the model card,
4E43 and 1OSM, at 10, 15 and 20 Å. The held-out models of
``run_denoise_resolution.py`` are not used here.

Writes ``benchmarks/results/denoise_lowres_threshold/{results.json,results.md}``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from run_denoise_resolution import run  # this folder is on sys.path when the script runs

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "denoise_lowres_threshold"
MODELS = (("4E43", "atomic_models/general/4E43.pdb"), ("1OSM", "atomic_models/general/1osm.pdb.gz"))
RESOLUTIONS = (10.0, 15.0, 20.0)
ORACLE = "voxfield, best threshold (oracle)"


def main() -> None:
    from voxfield.bench import find_data_root
    from voxfield.denoise.predict import LOW_RES_BACKGROUND_THRESHOLD
    from voxfield.denoise.unet import SPECIALIST, default_weights_path

    v1 = str(default_weights_path(None).with_name(SPECIALIST))

    root = find_data_root()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel in MODELS:
            for res in RESOLUTIONS:
                sim, js = Path(tmp) / "sim.mrc", Path(tmp) / "e.json"
                run("denoise", "simulate", str(root / rel), "-o", str(sim), "--resolution", f"{res:g}", "--seed", "1",
                    "--simulator", "v1")
                run("denoise", "eval", str(sim), str(root / rel), "--resolution", f"{res:g}", "-o", str(js),
                    "--json", "--force", "--weights", v1)
                best = next(r for r in json.loads(js.read_text())["rows"] if r["method"] == ORACLE)
                rows.append({"model": name, "resolution": res, "best_threshold": best["threshold"],
                             "gmean_at_best": best["gmean"]})
                print(rows[-1], flush=True)
    mean = sum(r["best_threshold"] for r in rows) / len(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps({"rows": rows, "mean_best_threshold": mean,
                                                  "shipped_constant": LOW_RES_BACKGROUND_THRESHOLD}, indent=1))
    lines = ["# Low-resolution background threshold, from the validation models", "",
             "| model | R (Å) | G-mean-best threshold | G-mean there |", "|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['resolution']:g} | {r['best_threshold']:.3f} | {r['gmean_at_best']:.3f} |"
              for r in rows]
    lines += ["", f"Mean: {mean:.3f}; shipped constant: {LOW_RES_BACKGROUND_THRESHOLD:.2f}."]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
