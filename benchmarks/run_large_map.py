"""Large maps (issue 4): compress and decompress a 256^3 float32 map (64 MiB) with bounded
memory. The map is real density: EMD-3488 (100^3, 1.05 Å) extended to 256^3 by mirror
tiling (numpy "symmetric" padding), so every voxel is a voxel of the real map.

Each encode and each decode (``voxfield decompress``'s path, slab-streamed above 256 MiB, written to an MRC
file) runs in its own forked process; peak memory is that process's resident-set growth
(VmHWM, C libraries included).

    python benchmarks/run_large_map.py                      # sperr, sci, grid, cryo-pe at 128x
    python benchmarks/run_large_map.py --time-budget 60 --methods sci,grid

Writes results/large_map/{results.json,results.md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from voxfield.bench.datasets import mirror_tiled_emd3488
from voxfield.bench.memory import measure_call, run_isolated
from voxfield.bench.methods import MethodSpec, parse_methods, with_settings
from voxfield.bench.runner import machine_info
from voxfield.codecs.base import Target
from voxfield.compress.stream import decompress_to_file
from voxfield.io import read_volume, write_volume
from voxfield.metrics import psnr

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "large_map")
    ap.add_argument("--methods", default="sperr,sci,grid,cryo-pe")
    ap.add_argument("--ratio", type=float, default=128.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--time-budget", type=float, default=None, help="training seconds per neural encode")
    args = ap.parse_args()
    vol = mirror_tiled_emd3488(args.size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="voxfield-large-") as tmp:
        src = Path(tmp) / "large.mrc"
        write_volume(vol, src)
        for text in parse_methods(args.methods):
            spec = MethodSpec.parse(with_settings(text, time_budget=args.time_budget))
            vxf, dec_path = Path(tmp) / "x.vxf", Path(tmp) / "x.decoded.mrc"

            def encode(spec: MethodSpec = spec, vxf: Path = vxf) -> dict[str, object]:
                v = read_volume(src)
                (blob, _), seconds, peak = measure_call(lambda: spec.encode(v, Target.ratio(args.ratio, 0.03)))
                vxf.write_bytes(blob)
                return {"encode_s": seconds, "encode_peak_mib": peak, "bytes": len(blob)}

            def decode(vxf: Path = vxf, dec_path: Path = dec_path) -> dict[str, object]:
                _, seconds, peak = measure_call(lambda: decompress_to_file(vxf, dec_path, overwrite=True))
                return {"decode_s": seconds, "decode_peak_mib": peak}

            t0 = time.perf_counter()
            row: dict[str, object] = {"method": spec.label, **run_isolated(encode, timeout=3600)}
            if "error" not in row:
                row.update(run_isolated(decode, timeout=3600))
                if "error" not in row:
                    row["ratio"] = vol.data.nbytes / int(row["bytes"])  # type: ignore[arg-type]
                    row["psnr_db"] = psnr(vol.data, read_volume(dec_path).data)
            row["total_s"] = time.perf_counter() - t0
            row.pop("traceback", None)
            row.pop("wall_s", None)
            rows.append(row)
            print(row, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = f"python benchmarks/run_large_map.py --methods {args.methods} --ratio {args.ratio:g}" + (
        f" --time-budget {args.time_budget:g}" if args.time_budget else "")
    doc = {"shape": list(vol.shape), "source": "emd_3488.mrc mirror-tiled", "machine": machine_info(),
           "rows": rows, "command": cmd}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1, default=float))
    lines = [f"# {args.size}^3 float32 map ({vol.data.nbytes / 2**20:.0f} MiB, EMD-3488 mirror-tiled) at "
             f"{args.ratio:g}x", "", f"Command: `{cmd}`. Peak memory = resident-set growth of the encoding or "
             "decoding process (VmHWM); decode writes an MRC file through `voxfield decompress`'s path (slab "
             "streaming starts above 256 MiB). PSNR on the data's own range.", "",
             "| method | ratio | PSNR dB | encode s | encode peak MiB | decode s | decode peak MiB | error |",
             "|---|---|---|---|---|---|---|---|"]

    def f(v: object, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    for r in rows:
        lines.append(f"| {r['method']} | {f(r.get('ratio'), '.1f')} | {f(r.get('psnr_db'), '.2f')} | "
                     f"{f(r.get('encode_s'), '.0f')} | {f(r.get('encode_peak_mib'), '.0f')} | "
                     f"{f(r.get('decode_s'), '.1f')} | {f(r.get('decode_peak_mib'), '.0f')} | {r.get('error', '')} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print(args.out / "results.md")


if __name__ == "__main__":
    main()
