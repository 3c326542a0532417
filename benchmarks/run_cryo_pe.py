"""The ``cryo-pe`` method (paper 000, Zou) on real cryo-EM maps, and its joint model over
several maps (``cryo-pe-set``, issue 4):

(a) cryo-pe on EMD-3488 and EMD-21457 (segmented) at each ratio of ``--ratios`` (default
    10 and 64): measured ratio, PSNR (data range) and the paper's density-band table
    (``cryoem_report(...)["density_bands"]``): the high band's mean relative error against
    the paper's bar (<= 10 % at >= 10:1);
(b) ablation: the paper's weighted loss vs plain MSE (``loss=mse``) at the first ratio,
    high- and medium-band errors;
(c) one joint network over ``--joint-maps`` (default four maps of different shapes and
    voxel sizes, all small enough to use whole: no crop, no downsampling) vs compressing each
    map alone, at the same total ratio (each ratio of ``--ratios``): total bytes and mean
    PSNR. The joint fit gets the sum of the single fits' time budgets.

    python benchmarks/run_cryo_pe.py                       # writes results/cryo_pe/
    python benchmarks/run_cryo_pe.py --time-budget 60 --ratios 10,64 --out /tmp/cp

Each compression trains for ``--time-budget`` seconds (default: the method's own, from the
map size); timings and results depend on the machine, recorded in the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from voxfield.bench.runner import machine_info  # noqa: E402
from voxfield.codecs.base import Target  # noqa: E402
from voxfield.compress.api import decompress  # noqa: E402
from voxfield.compress.cryo_pe_set import CryoPESetConfig, CryoPESetReport, compress_set  # noqa: E402
from voxfield.compress.methods import compress_field  # noqa: E402
from voxfield.errors import VoxfieldError  # noqa: E402
from voxfield.io import Volume, read_volume  # noqa: E402
from voxfield.metrics import psnr  # noqa: E402
from voxfield.metrics.cryoem import cryoem_report  # noqa: E402

HERE = Path(__file__).resolve().parent
MAPS = ("emd_3488.mrc", "emd_21457_seg.mrc")
JOINT_MAPS = ("emd_3488.mrc", "emd_21457_seg.mrc", "emd_1703.map", "emd_3001.map.gz")
#: The paper's bar: high-density mean relative error <= 10 % at a ratio >= 10.
PAPER_BAR_PCT, PAPER_BAR_RATIO = 10.0, 10.0


def bands(orig: np.ndarray, dec: np.ndarray, spacing: tuple[float, ...]) -> dict[str, Any]:
    """Mean relative error (%) per density band, plus the band edges and rule used."""
    rep = cryoem_report(orig, dec, spacing)
    out: dict[str, Any] = {f"{r['band']}_mean_rel_err_pct": r["mean_rel_error_pct"] for r in rep["density_bands"]}
    out.update({f"{r['band']}_within20_pct": r["within_pct"] for r in rep["density_bands"]})
    out.update({"band_edges": rep["density_band_edges"], "band_rule": rep["density_band_rule"],
                "contour": rep["contour"]})
    return out


def single(vol: Volume, ratio: float, settings: dict[str, Any]) -> dict[str, Any]:
    """cryo-pe on one map: ratio, PSNR, bands, bytes, time (or the error)."""
    t0 = time.perf_counter()
    try:
        blob, rep = compress_field(vol, "cryo-pe", Target.ratio(ratio, 0.02), settings)
    except VoxfieldError as exc:
        return {"target_ratio": ratio, "error": str(exc), "encode_s": time.perf_counter() - t0}
    enc = time.perf_counter() - t0
    dec = decompress(blob).data
    row = {"target_ratio": ratio, "ratio": vol.data.nbytes / len(blob), "bytes": len(blob),
           "original_bytes": int(vol.data.nbytes), "psnr_db": psnr(vol.data, dec), "encode_s": enc,
           "steps": rep.steps, "widths": rep.widths, "bits": rep.bits, "threshold": rep.threshold,
           "occupancy_bytes": rep.occupancy_bytes, "occupancy_coder": rep.occupancy_coder,
           "loss": settings.get("loss", "weighted")}
    row.update(bands(vol.data, dec, vol.spacing))
    high = row.get("high_mean_rel_err_pct")
    row["meets_paper_bar"] = bool(high is not None and row["ratio"] >= PAPER_BAR_RATIO * 0.98
                                  and high <= PAPER_BAR_PCT)
    return row


def joint(vols: list[Volume], names: list[str], ratio: float, settings: dict[str, Any]) -> dict[str, Any]:
    """One cryo-pe-set file over ``vols`` at ``ratio``: bytes, per-map PSNR (or the error)."""
    t0 = time.perf_counter()
    rep = CryoPESetReport()
    try:
        blob = compress_set(vols, CryoPESetConfig.preset(**settings), Target.ratio(ratio, 0.02), names=names,
                            report=rep)
    except VoxfieldError as exc:
        return {"target_ratio": ratio, "error": str(exc), "encode_s": time.perf_counter() - t0}
    enc = time.perf_counter() - t0
    psnrs = [psnr(v.data, decompress(blob, k + 1).data) for k, v in enumerate(vols)]
    total = sum(int(v.data.nbytes) for v in vols)
    return {"target_ratio": ratio, "ratio": total / len(blob), "bytes": len(blob), "original_bytes": total,
            "psnr_db": dict(zip(names, psnrs, strict=True)), "mean_psnr_db": float(np.mean(psnrs)), "encode_s": enc,
            "steps": rep.steps, "widths": rep.widths, "bits": rep.bits, "notes": rep.notes,
            "occupancy_bytes": sum(m.occupancy_bytes for m in rep.members)}


def fmt(v: Any, spec: str = ".1f") -> str:
    return "—" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cryo_pe")
    ap.add_argument("--ratios", default="10,64", help="comma-separated target ratios (default 10,64)")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="training seconds per single-map compression (default: the method's own); "
                         "the joint fit gets the sum over its maps")
    ap.add_argument("--maps", default=",".join(MAPS), help="maps of parts (a) and (b)")
    ap.add_argument("--joint-maps", default=",".join(JOINT_MAPS), help="maps of part (c), 3 or more")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="real-data folder (default: ../shared/data)")
    args = ap.parse_args()
    from voxfield.bench.datasets import find_data_root

    root = find_data_root(args.data)
    if root is None:
        sys.exit("no real-data folder found (give --data)")
    folder = root / "cryoem_maps"
    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    base: dict[str, Any] = {"seed": args.seed, "device": args.device}
    if args.time_budget is not None:
        base["time_budget"] = args.time_budget
    cache: dict[str, Volume] = {}

    def load(name: str) -> Volume:
        if name not in cache:
            cache[name] = read_volume(folder / name)
        return cache[name]

    # (a) cryo-pe per map and ratio; (b) the loss ablation at the first ratio
    rows_a, rows_b = [], []
    for name in args.maps.split(","):
        vol = load(name)
        for r in ratios:
            row = {"map": name, "shape": list(vol.shape), **single(vol, r, base)}
            rows_a.append(row)
            print("(a)", json.dumps(row, default=str), flush=True)
        weighted = next(x for x in rows_a if x["map"] == name and x["target_ratio"] == ratios[0])
        mse = {"map": name, "shape": list(vol.shape), **single(vol, ratios[0], {**base, "loss": "mse"})}
        rows_b += [weighted, mse]
        print("(b)", json.dumps(mse, default=str), flush=True)

    # (c) joint vs alone
    jnames = [n for n in args.joint_maps.split(",") if n]
    jvols = [load(n) for n in jnames]
    rows_c = []
    for r in ratios:
        alone = [single(v, r, base) for v in jvols]
        ok = [a for a in alone if "error" not in a]
        jset = {**base}
        if args.time_budget is not None:
            jset["time_budget"] = args.time_budget * len(jvols)
        j = joint(jvols, jnames, r, jset)
        row = {"target_ratio": r, "maps": jnames, "shapes": [list(v.shape) for v in jvols],
               "voxel_sizes": [list(v.spacing) for v in jvols], "joint": j,
               "alone": {n: a for n, a in zip(jnames, alone, strict=True)},
               "alone_total_bytes": sum(a["bytes"] for a in ok) if len(ok) == len(alone) else None,
               "alone_mean_psnr_db": float(np.mean([a["psnr_db"] for a in ok])) if len(ok) == len(alone) else None}
        rows_c.append(row)
        print("(c)", json.dumps({k: v for k, v in row.items() if k != "alone"}, default=str), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/run_cryo_pe.py " + " ".join(sys.argv[1:])
    doc = {"machine": machine_info(), "command": command.strip(), "ratios": ratios, "time_budget": args.time_budget,
           "paper_bar": {"high_band_mean_rel_err_pct_max": PAPER_BAR_PCT, "ratio_min": PAPER_BAR_RATIO},
           "cryo_pe": rows_a, "loss_ablation": rows_b, "joint": rows_c,
           "note": "maps are used whole (none needs cropping: the largest, EMD-3488, is 100^3)"}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1, default=str))

    budget = "method default" if args.time_budget is None else f"{args.time_budget:g} s per map"
    lines = [f"# cryo-pe (paper 000) on real maps ({doc['machine'].get('cpu')}, {doc['machine'].get('cores')} cores; "
             f"training budget: {budget})", "", f"Command: `{doc['command']}`", "",
             "## (a) cryo-pe: ratio, PSNR, density bands (mean relative error %)", "",
             f"Paper's bar: high band <= {PAPER_BAR_PCT:g} % at >= {PAPER_BAR_RATIO:g}:1.", "",
             "| map | target | ratio | PSNR dB | low % | medium % | high % | high within 20 % | meets bar | steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows_a:
        if "error" in x:
            lines.append(f"| {x['map']} | {x['target_ratio']:g} | not reached: {x['error']} | | | | | | | |")
            continue
        lines.append(f"| {x['map']} | {x['target_ratio']:g} | {x['ratio']:.2f} | {x['psnr_db']:.2f} | "
                     f"{fmt(x.get('low_mean_rel_err_pct'))} | {fmt(x.get('medium_mean_rel_err_pct'))} | "
                     f"{fmt(x.get('high_mean_rel_err_pct'))} | {fmt(x.get('high_within20_pct'))} | "
                     f"{'yes' if x['meets_paper_bar'] else 'no'} | {x['steps']} |")
    lines += ["", f"## (b) loss ablation at {ratios[0]:g}:1 (mean relative error %)", "",
              "| map | loss | ratio | PSNR dB | medium % | high % |", "|---|---|---|---|---|---|"]
    for x in rows_b:
        if "error" in x:
            lines.append(f"| {x['map']} | {x.get('loss', '?')} | not reached: {x['error']} | | | |")
            continue
        lines.append(f"| {x['map']} | {x['loss']} | {x['ratio']:.2f} | {x['psnr_db']:.2f} | "
                     f"{fmt(x.get('medium_mean_rel_err_pct'))} | {fmt(x.get('high_mean_rel_err_pct'))} |")
    lines += ["", "## (c) one joint network vs each map alone, same total ratio", "",
              f"Maps: {', '.join(jnames)} (shapes {', '.join('x'.join(map(str, v.shape)) for v in jvols)}; voxel sizes "
              f"{', '.join(f'{v.spacing[0]:.3g}' for v in jvols)} Å; used whole). The joint fit trains for the sum of "
              "the single fits' budgets.", "",
              "| target | joint bytes | joint ratio | joint mean PSNR dB | alone total bytes | alone mean PSNR dB |",
              "|---|---|---|---|---|---|"]
    for x in rows_c:
        j = x["joint"]
        jb = f"{j['bytes']:,} | {j['ratio']:.2f} | {j['mean_psnr_db']:.2f}" if "error" not in j else \
            f"not reached: {j['error']} | | "
        missed = [n for n in jnames if "error" in x["alone"][n]]
        ab = f"{x['alone_total_bytes']:,}" if not missed else f"not reached ({', '.join(missed)} alone)"
        lines.append(f"| {x['target_ratio']:g} | {jb} | {ab} | {fmt(x['alone_mean_psnr_db'], '.2f')} |")
    lines += ["", "Per-map PSNR (dB), joint / alone:", ""]
    for x in rows_c:
        j = x["joint"]
        per = [f"{n}: {fmt(j.get('psnr_db', {}).get(n), '.2f')} / "
               + ("not reached (" + x["alone"][n]["error"].split(":")[0] + ")" if "error" in x["alone"][n]
                  else fmt(x["alone"][n].get("psnr_db"), ".2f")) for n in jnames]
        lines.append(f"- {x['target_ratio']:g}:1 — " + "; ".join(per))
    (args.out / "results.md").write_text("\n".join(lines) + "\n")

    # plot: (a) high-band error vs ratio per map, with the paper's bar; (c) mean PSNR joint vs alone
    fig, axs = plt.subplots(1, 2, figsize=(11, 4))
    for name in args.maps.split(","):
        pts = [(x["ratio"], x["high_mean_rel_err_pct"]) for x in rows_a
               if x["map"] == name and "error" not in x and x.get("high_mean_rel_err_pct") is not None]
        if pts:
            axs[0].plot(*zip(*pts, strict=True), "o-", label=name)
    axs[0].axhline(PAPER_BAR_PCT, color="k", ls="--", lw=1, label="paper bar (10 %)")
    axs[0].axvline(PAPER_BAR_RATIO, color="grey", ls=":", lw=1)
    axs[0].set_xscale("log")
    axs[0].set_xlabel("compression ratio")
    axs[0].set_ylabel("high-band mean relative error (%)")
    axs[0].set_title("(a) cryo-pe, high-density band")
    axs[0].legend(fontsize=8)
    xs = np.arange(len(rows_c))
    jp = [x["joint"].get("mean_psnr_db", np.nan) for x in rows_c]
    ap_ = [x["alone_mean_psnr_db"] if x["alone_mean_psnr_db"] is not None else np.nan for x in rows_c]
    axs[1].bar(xs - 0.2, jp, 0.4, label="joint (one network)")
    axs[1].bar(xs + 0.2, ap_, 0.4, label="each alone")
    axs[1].set_xticks(xs, [f"{x['target_ratio']:g}:1" for x in rows_c])
    axs[1].set_ylabel("mean PSNR (dB, data range)")
    axs[1].set_title(f"(c) {len(jnames)} maps, same total ratio")
    axs[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "cryo_pe.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
