"""Decode speed of neural files (issue 3 bar: full decode <= 5 s and a 32^3 region
<= 0.5 s for a 100^3 map at 128x). Compresses EMD-3488 with each method at 128x (default
settings), then times, on this machine, the full decode, a 32^3 region, a slice, a
4x preview and 10,000 scattered points (median of 5 runs each), and checks that every
partial decode equals the same voxels of the full decode.

    python benchmarks/run_decode_speed.py     # writes results/decode_speed/
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import voxfield
from voxfield.bench.runner import machine_info
from voxfield.codecs.base import Target
from voxfield.compress.api import decompress
from voxfield.compress.methods import compress_field
from voxfield.io import read_volume

HERE = Path(__file__).resolve().parent


def timed(fn, repeats: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "decode_speed")
    ap.add_argument("--input", default=None)
    ap.add_argument("--methods", default="sci,siren,grid")
    ap.add_argument("--time-budget", type=float, default=None, help="training seconds (default: the methods' own)")
    args = ap.parse_args()
    from voxfield.bench.datasets import find_data_root

    src = Path(args.input) if args.input else find_data_root() / "cryoem_maps" / "emd_3488.mrc"
    vol = read_volume(src)
    rows = []
    rng = np.random.default_rng(0)
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        settings = {} if args.time_budget is None else {"time_budget": args.time_budget}
        blob, rep = compress_field(vol, method, Target.ratio(128, 0.02), settings)
        enc = time.perf_counter() - t0
        full_s, full = timed(lambda: decompress(blob).data, 3)
        arr = voxfield.open(blob)
        z, y, x = (rng.integers(0, n - 32) for n in vol.shape)
        roi_s, roi = timed(lambda: arr[z:z + 32, y:y + 32, x:x + 32])
        slice_s, plane = timed(lambda: arr[:, 50, :])
        prev_s, prev = timed(lambda: arr[::4, ::4, ::4])
        pts = np.stack([rng.integers(0, n, 10_000) for n in vol.shape], axis=1)
        pts_s, vals = timed(lambda: arr.points(pts))
        exact = bool(np.array_equal(roi, full[z:z + 32, y:y + 32, x:x + 32]) and np.array_equal(plane, full[:, 50, :])
                     and np.array_equal(prev, full[::4, ::4, ::4]) and np.array_equal(vals, full[tuple(pts.T)]))
        rows.append({"method": method, "ratio": vol.data.nbytes / len(blob), "encode_s": enc, "blocks": rep.n_blocks,
                     "full_decode_s": full_s, "roi32_s": roi_s, "slice_s": slice_s, "preview4_s": prev_s,
                     "points10k_s": pts_s, "partial_equals_full": exact})
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"input": str(src.name), "shape": list(vol.shape), "machine": machine_info(), "rows": rows,
           "command": "python benchmarks/run_decode_speed.py" + (
               f" --time-budget {args.time_budget:g}" if args.time_budget else "")}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    lines = [f"# Decode speed on {src.name} {vol.shape} at 128x ({doc['machine']['cpu']}, "
             f"{doc['machine']['cores']} cores; median of repeated runs, seconds)", "",
             "| method | ratio | blocks | encode s | full decode | 32^3 region | slice | 4x preview | 10k points | "
             "partial == full |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['ratio']:.1f} | {r['blocks']} | {r['encode_s']:.0f} | {r['full_decode_s']:.2f} | "
                     f"{r['roi32_s']:.3f} | {r['slice_s']:.3f} | {r['preview4_s']:.3f} | {r['points10k_s']:.3f} | "
                     f"{'yes' if r['partial_equals_full'] else 'NO'} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
