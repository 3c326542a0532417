"""Chunked ``--ratio``: bits shared by rate-distortion slope (the default) against every
chunk at exactly the ratio, on small real inputs cut into small chunks (issue 17).

    python benchmarks/run_chunked_alloc.py       # ~2 min

Inputs (``../shared/data``): the lattice light-sheet stack (88 x 320 x 256 uint16, chunks
32 x 64 x 64, ratio 64), the stent CT (256 x 128 x 128, chunks 32 x 64 x 64, ratio 32) and
EMD-3488 (100^3 float32 cut into 32^3 chunks, ratio 64: a cryo-EM map larger than one
chunk). For each: ratio on the bytes written, PSNR (data range) and the seam check (max
error and RMSE at chunk faces over elsewhere). Quality only: no timing is reported.

Writes ``benchmarks/results/chunked_alloc/{results.json,results.md}``.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "chunked_alloc"
CASES = (("llsm_raw", "fluorescence/pycudadecon_llsm_im_raw.tif", (32, 64, 64), 64.0),
         ("stent_ct", "medical/imageio_stent_ct.npz", (32, 64, 64), 32.0),
         ("emd_3488", "cryoem_maps/emd_3488.mrc", (32, 32, 32), 64.0))


def main() -> None:
    import voxfield
    from voxfield.bench import find_data_root
    from voxfield.compress.chunked import compress_to_zarr
    from voxfield.metrics.seams import seam_report

    root = find_data_root()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel, chunks, ratio in CASES:
            path = root / rel
            if path.suffix == ".npz":  # the chunked reader takes .npy
                arr = np.load(path)
                np.save(Path(tmp) / f"{name}.npy", arr[list(arr.keys())[0]])
                path = Path(tmp) / f"{name}.npy"
            x = voxfield.read_volume(path).data
            for allocate in (True, False):
                out = Path(tmp) / f"{name}_{allocate}.ome.zarr"
                r = compress_to_zarr(path, out, chunks=chunks, ratio=ratio, workers=1, allocate=allocate, levels=1)
                y = np.asarray(voxfield.open(out))
                x2 = x.reshape(y.shape)
                mse = float(np.mean((y.astype(np.float64) - x2) ** 2))
                rep = seam_report(x2, y, r.plan.chunks)
                rows.append({"input": name, "shape": list(x2.shape), "chunks": list(chunks), "goal": ratio,
                             "allocate": allocate, "codec": r.codec, "ratio": r.ratio,
                             "psnr_db": 20 * math.log10(float(np.ptp(x2))) - 10 * math.log10(mse),
                             "seam_max_ratio": rep.max_ratio, "seam_rmse_ratio": rep.rmse_ratio})
                print(rows[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Chunked `--ratio`: rate-distortion allocation vs equal ratios", "",
             "PSNR on the data range; ratio on the bytes written (level 0); seams: max error (and RMSE) at chunk "
             "faces over elsewhere, bar <= 1.5.", "",
             "| input | chunks | goal | mode | codec | ratio | PSNR (dB) | seam max | seam RMSE |",
             "|---|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['input']} {tuple(r['shape'])} | {tuple(r['chunks'])} | {r['goal']:g} | "
                     f"{'RD allocation' if r['allocate'] else 'equal ratio'} | {r['codec']} | {r['ratio']:.2f} | "
                     f"{r['psnr_db']:.2f} | {r['seam_max_ratio']:.2f} | {r['seam_rmse_ratio']:.2f} |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
