"""Error-bounded mode (issue 7): voxfield's bounded files vs SZ3 (and SPERR's and ZFP's own
error-bounded modes) at the same absolute bound E, on the same inputs, same run.

    python benchmarks/run_ebound.py                     # emd_3488, llsm_raw, bead; E = 1 %, 0.1 % of range
    python benchmarks/run_ebound.py --only emd_3488 --rel 0.01

voxfield rows: ``hybrid:sperr+E`` (the hybrid method, base ratio searched, residual
quantised with step 2E and entropy-coded) and ``jpeg2k+E`` (the same wrapper on a codec
that has no error mode). Every file is decoded and max |error| <= E is checked (a
violation is recorded and makes the script exit 1). Ratio = original bytes / .vxf bytes.
Writes results/ebound/{results.json,results.md,ratio_vs_sz3.png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.bench.datasets import DEFAULT_DATASETS, default_datasets
from voxfield.codecs.base import Target
from voxfield.codecs.registry import get_codec
from voxfield.compress import hybrid
from voxfield.compress.api import decompress
from voxfield.compress.classic import compress_volume
from voxfield.compress.modes import bounded, ebound
from voxfield.io import read_volume
from voxfield.metrics import psnr

HERE = Path(__file__).resolve().parent
EXTRA = (("bead", "fluorescence/bian_Bead_Image1_crop.tif", "ZYX", "widefield bead stack, 41x150x150 uint8"),)


def run_one(vol: Any, method: str, bound: float, time_budget: float) -> tuple[bytes, dict[str, Any]]:
    info: dict[str, Any] = {}
    if method in ("sz3", "sperr", "zfp"):
        return compress_volume(vol, get_codec(method), Target.max_abs_error(bound)), info
    if method == "hybrid:sperr+E":
        cfg = hybrid.HybridConfig.make("sperr", time_budget=time_budget)
        enc = bounded.make_encoder(vol, "hybrid", cfg, loose=True)
    elif method == "jpeg2k+E":
        enc = bounded.make_encoder(vol, codec=get_codec("jpeg2k"), loose=True)
    else:
        raise ValueError(method)
    blob, what, base_ratio = bounded.error_bounded(vol, enc, bound, search=True)
    info.update(description=what, base_ratio=base_ratio)
    return blob, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ebound")
    ap.add_argument("--only", default="emd_3488,llsm_raw,bead")
    ap.add_argument("--rel", default="0.01,0.001", help="bounds as fractions of each input's value range")
    ap.add_argument("--methods", default="sz3,sperr,zfp,hybrid:sperr+E,jpeg2k+E")
    ap.add_argument("--time-budget", type=float, default=30.0, help="seconds for the hybrid's filter fit")
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args()
    datasets = default_datasets(args.data_root, DEFAULT_DATASETS + EXTRA, args.only.split(","))
    rows: list[dict[str, Any]] = []
    violations = 0
    started = time.time()
    for ds in datasets:
        vol = read_volume(ds.path, axes=ds.axes)
        rng = float(np.max(vol.data)) - float(np.min(vol.data))
        for rel in (float(r) for r in args.rel.split(",")):
            bound = ebound.absolute_bound(vol.data, None, rel)
            for method in args.methods.split(","):
                t0 = time.perf_counter()
                blob, info = run_one(vol, method, bound, args.time_budget)
                enc = time.perf_counter() - t0
                t0 = time.perf_counter()
                dec = decompress(blob).data
                dec_s = time.perf_counter() - t0
                err = float(np.max(np.abs(dec.astype(np.float64) - vol.data.astype(np.float64))))
                ok = err <= bound
                violations += not ok
                row = {"dataset": ds.name, "rel_error": rel, "bound": bound, "range": rng, "method": method,
                       "file_bytes": len(blob), "ratio": vol.data.nbytes / len(blob), "max_abs_error": err,
                       "within_bound": ok, "psnr_db": psnr(vol.data, dec), "encode_s": enc, "decode_s": dec_s, **info}
                rows.append(row)
                print(f"{ds.name} E={rel:g}·range ({bound:.4g}) {method}: ratio {row['ratio']:.2f}, "
                      f"max err {err:.4g} ({'ok' if ok else 'VIOLATED'}), {enc:.1f} s", flush=True)
    command = "python benchmarks/run_ebound.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k not in ("out", "data_root"))
    doc = {"kind": "voxfield-ebound", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "duration_s": time.time() - started,
           "command": command, "rows": rows,
           "note": "ratio = original bytes / .vxf bytes; E = rel_error x (max - min) of each input; every file decoded "
                   "and checked for max |error| <= E."}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    (args.out / "results.md").write_text(markdown(rows, command))
    plot(rows, args.out / "ratio_vs_sz3.png")
    print(args.out / "results.md")
    sys.exit(1 if violations else 0)


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = ["# Error-bounded compression at equal E", "", f"Command: `{command}`", "",
             "E = rel × (max − min) of each input. Ratio = original bytes / .vxf bytes (container included). Every "
             "file was decoded and its max |error| checked against E. Times as multiples of SZ3's encode time on the "
             "same input and bound, same run.", "",
             "| dataset | E (rel) | E (abs) | method | ratio | ratio / SZ3 | max err / E | PSNR dB (data range) | enc ×SZ3 "
             "| base ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sz = next(x for x in rows if x["dataset"] == r["dataset"] and x["rel_error"] == r["rel_error"]
                  and x["method"] == "sz3")
        base = f"{r['base_ratio']:.1f}" if r.get("base_ratio") else "–"
        lines.append(f"| {r['dataset']} | {r['rel_error']:g} | {r['bound']:.4g} | {r['method']} | {r['ratio']:.2f} | "
                     f"**{r['ratio'] / sz['ratio']:.2f}** | {r['max_abs_error'] / r['bound']:.3f} | {r['psnr_db']:.2f} | "
                     f"{r['encode_s'] / sz['encode_s']:.3g} | {base} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["dataset"], r["rel_error"]) for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(keys), 3.8))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = []
        for ds, rel in keys:
            sz = next(x for x in rows if x["dataset"] == ds and x["rel_error"] == rel and x["method"] == "sz3")
            r = next((x for x in rows if x["dataset"] == ds and x["rel_error"] == rel and x["method"] == m), None)
            vals.append(r["ratio"] / sz["ratio"] if r else np.nan)
        ax.bar(np.arange(len(keys)) + i * width, vals, width, label=m)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{d}\nE={r:g}" for d, r in keys], fontsize=7)
    ax.set_ylabel("ratio / SZ3's ratio at the same E")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
