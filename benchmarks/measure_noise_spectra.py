"""Measure the real noise profiles the denoiser's simulator draws from (issue 18) and ship
them as ``src/voxfield/denoise/weights/noise_spectra.json``.

Sources (all real, none of them a denoising test map): the solvent of EMD-1703 (the one
non-test map in ``../shared/data`` large enough for a spectrum, 46x65x46) and the background
corners of the real particle stacks (EMPIAR-10076, the RELION 3.1 stack, the ASPIRE sample
of EMPIAR-10204). The test maps EMD-3488 and EMD-21457 are deliberately not used.

    python benchmarks/measure_noise_spectra.py
"""

from __future__ import annotations

import json

import numpy as np

from voxfield.bench.datasets import find_data_root
from voxfield.denoise.noise_spectra import PROFILE_GRID, noise_profile
from voxfield.io import read_volume

MAPS = ["cryoem_maps/emd_1703.map"]
STACKS = ["particles/real/empiar_10076_7.mrc", "particles/real/relion31.mrcs", "particles/real/sample.mrcs"]


def main() -> None:
    root = find_data_root()
    out = []
    for m in MAPS:
        v = read_volume(root / m)
        p = noise_profile(np.asarray(v.data), float(v.spacing[0]))
        if p is not None:
            out.append({"name": m, "kind": "map solvent", "profile": np.round(p, 4).tolist()})
    for s in STACKS:
        v = read_volume(root / s)
        p = noise_profile(np.asarray(v.data), images=True)
        if p is not None:
            out.append({"name": s, "kind": "particle background", "profile": np.round(p, 4).tolist()})
    doc = {"grid_k_over_k50": PROFILE_GRID.round(4).tolist(), "profiles": out,
           "made_by": "benchmarks/measure_noise_spectra.py"}
    from pathlib import Path

    from voxfield.denoise.noise_spectra import __file__ as here

    dst = Path(here).with_name("weights") / "noise_spectra.json"
    dst.write_text(json.dumps(doc, indent=1))
    for e in out:
        p = np.asarray(e["profile"])
        print(f"{e['name']:45s} amp at k50x[0.5,1,1.5,2,3]: "
              + " ".join(f"{np.interp(x, PROFILE_GRID, p):.2f}" for x in (0.5, 1, 1.5, 2, 3)))
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
