"""Where the background mode's low-resolution threshold comes from (issue 18).

    python benchmarks/run_denoise_lowres_threshold.py      # ~2 min

The shipped weights' background threshold (0.444) was chosen on validation cubes at
2.5-10 Å. For maps at 10 Å and worse, ``voxfield.denoise.predict.LOW_RES_BACKGROUND_THRESHOLD``
is the mean of the G-mean-best thresholds of the network on simulated maps (``voxfield
denoise simulate``, model frame, seed 1) of the two *validation* models of the model card,
4E43 and 1OSM, at 10, 15 and 20 Å. The held-out models of
``run_denoise_resolution.py`` are not used here.

Writes ``benchmarks/results/denoise_lowres_threshold/{results.json,results.md}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "denoise_lowres_threshold"
MODELS = (("4E43", "atomic_models/general/4E43.pdb"), ("1OSM", "atomic_models/general/1osm.pdb.gz"))
RESOLUTIONS = (10.0, 15.0, 20.0)
ORACLE = "voxfield, best threshold (oracle)"


def run(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "voxfield", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"voxfield {' '.join(args)}: {r.stderr.strip()[-500:]}")


def main() -> None:
    from voxfield.bench import find_data_root
    from voxfield.denoise.predict import LOW_RES_BACKGROUND_THRESHOLD

    root = find_data_root()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel in MODELS:
            for res in RESOLUTIONS:
                sim, js = Path(tmp) / "sim.mrc", Path(tmp) / "e.json"
                run("denoise", "simulate", str(root / rel), "-o", str(sim), "--resolution", f"{res:g}", "--seed", "1")
                run("denoise", "eval", str(sim), str(root / rel), "--resolution", f"{res:g}", "-o", str(js),
                    "--json", "--force")
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
