"""The default method ``auto`` (probe-picked prior + learned prior + fitted residual)
against every classic codec it can choose as a prior and against the previous hybrid
(``hybrid:sperr`` without the learned prior), matched on the bytes of the files written.

    python benchmarks/run_auto.py                                # writes benchmarks/results/auto/
    python benchmarks/run_auto.py --ratios 64,256 --time-budget 20
    python benchmarks/run_auto.py --tables-only                  # remake tables from results.json
    python benchmarks/run_auto.py --science-only                 # science-lossless ratios only

For each input and target ratio: auto's PSNR and measured ratio, every classic codec's,
and auto's gain over the best classic codec at that target. Because files land within a
tolerance of the target (auto ±2 %, classic codecs ±3 %), the gain is also given *at
matched ratio*: the best codec's PSNR interpolated, linear in log ratio between its own
runs at neighbouring targets, at auto's measured ratio. PSNR uses each original's own
value range (max − min). Nothing in auto was tuned on these inputs.

Inputs: **held out** from the learned prior's training — the four real inputs of the
classic benchmark (``voxfield.bench.default_datasets``: EMD-3488, EMD-21457 segment,
lattice light-sheet raw, IMC E34); **training split** (reported separately) — the
calcium-imaging movie, an input of the neural benchmark whose crops the microscopy
prior was trained on.

Also: the learned prior's gain split (zero side bytes / with block flags / with the
adapted head, as auto's encoder measured it on the prior decode), encode and decode
seconds, and (``--science``) the science-lossless ratio (FSC >= 0.9 to the map's
resolution) of auto, HEVC and SPERR on the maps whose resolution is known.

Writes ``results.json``/``results.md``/``rd_*.png`` (every run, by ``voxfield.bench``),
``auto_vs_classic.{json,md}``, ``gain.png``, ``learned_split.md`` and
``science_lossless.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from voxfield.bench import BenchConfig, Dataset, default_datasets, find_data_root, run_benchmark, write_results

HERE = Path(__file__).resolve().parent
PRIORS = ("sperr", "hevc", "jpegxl", "jpeg2k", "sz3", "zfp")
#: Inputs the learned prior saw crops of in training (reported separately).
TRAIN_SPLIT = (("calcium_2Dt", "fluorescence/imageio_calcium_imaging_2Dt.tif", "TYX",
                "calcium imaging movie, 1000 frames of 30x40 uint16 (2D+t)"),)
#: Maps with a known resolution (Å) for the science-lossless ratio.
RESOLUTIONS = {"emd_3488": 3.2, "emd_21457_seg": 3.2}
#: The hybrid as it was before the learned prior (issue 7's default prior).
PREVIOUS = "hybrid:sperr[learned=none,time_budget={tb:g}]"


def _psnr(run: dict[str, Any]) -> float | None:
    m = run.get("metrics") or {}
    v = m.get("psnr_db")
    return float(v) if v is not None and math.isfinite(v) else None


#: A curve is extended (its end segment, linear in log ratio) this far past its end ratios.
EXTEND = 0.05


def _interp(points: list[tuple[float, float]], ratio: float) -> float | None:
    """PSNR at ``ratio`` from (ratio, PSNR) points, linear in log ratio; past either end
    by at most :data:`EXTEND` (files land within a few percent of their target) the end
    segment is extended; None further out or with fewer than two points."""
    pts = sorted(points)
    if len(pts) < 2:
        return None
    if ratio < pts[0][0] * (1 - EXTEND) or ratio > pts[-1][0] * (1 + EXTEND):
        return None
    seg = next(((a, b) for a, b in zip(pts, pts[1:], strict=False) if a[0] <= ratio <= b[0]),
               (pts[0], pts[1]) if ratio < pts[0][0] else (pts[-2], pts[-1]))
    (r0, p0), (r1, p1) = seg
    if r1 <= r0:
        return None
    w = (math.log(ratio) - math.log(r0)) / (math.log(r1) - math.log(r0))
    return p0 + w * (p1 - p0)


def _learned(run: dict[str, Any]) -> dict[str, Any] | None:
    """The learned-prior stage's record in an auto run (``fit.hybrid.learned``)."""
    fit = run.get("fit") or {}
    h = fit.get("hybrid") or {}
    lp = h.get("learned")
    if not lp:
        return None
    return {"prior": fit.get("prior"), "kept": fit.get("kept"), **lp}


def compare(doc: dict[str, Any], auto_label: str) -> list[dict[str, Any]]:
    """One row per (input, target): auto vs the best classic codec."""
    runs = [r for r in doc["runs"] if r.get("hit") or r.get("file_bytes")]
    rows = []
    for ds in dict.fromkeys(r["dataset"] for r in runs):
        mine = [r for r in runs if r["dataset"] == ds]
        curves: dict[str, list[tuple[float, float]]] = {}
        for r in mine:
            if r["codec"] in PRIORS and _psnr(r) is not None and r.get("ratio"):
                curves.setdefault(r["codec"], []).append((float(r["ratio"]), _psnr(r)))  # type: ignore[arg-type]
        for a in (r for r in mine if r["codec"] == auto_label):
            target = float(a["target"]["value"])
            same = {r["codec"]: r for r in mine if r["codec"] in PRIORS and float(r["target"]["value"]) == target
                    and r.get("hit") and _psnr(r) is not None}
            pa = _psnr(a)
            prev = [r for r in mine if r["codec"].startswith("hybrid:") and float(r["target"]["value"]) == target]
            row: dict[str, Any] = {"dataset": ds, "target": target, "auto_ratio": a.get("ratio"), "auto_psnr": pa,
                                   "split": "train" if ds in {t[0] for t in TRAIN_SPLIT} else "held-out",
                                   "previous_hybrid": (prev[0].get("ratio"), _psnr(prev[0])) if prev else None,
                                   "learned": _learned(a),
                                   "auto_hit": bool(a.get("hit")), "auto_encode_s": a.get("encode_s"),
                                   "auto_decode_s": a.get("decode_s"), "note": a.get("note"),
                                   "classic": {c: (r["ratio"], _psnr(r)) for c, r in same.items()}}
            if same and pa is not None and a.get("hit"):
                best = max(same, key=lambda c: _psnr(same[c]))  # type: ignore[arg-type, return-value]
                row["best"], row["best_ratio"], row["best_psnr"] = best, same[best]["ratio"], _psnr(same[best])
                row["gain_same_target"] = pa - row["best_psnr"]
                at = {c: _interp(curves.get(c, []), float(a["ratio"])) for c in curves}
                at = {c: v for c, v in at.items() if v is not None}
                if at:
                    best_m = max(at, key=lambda c: at[c])
                    row["best_matched"], row["best_psnr_matched"] = best_m, at[best_m]
                    row["gain_matched"] = pa - at[best_m]
            rows.append(row)
    return rows


#: Domain of each input, for the bars (cryo-EM maps vs light microscopy).
DOMAIN = {"emd_3488": "cryo-EM", "emd_21457_seg": "cryo-EM"}


def _f(v: Any, d: int = 2) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def _median(v: list[float]) -> float:
    v = sorted(v)
    n = len(v)
    return (v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])) if n else float("nan")


def write_table(rows: list[dict[str, Any]], out: Path, command: str) -> None:
    lines = ["# auto vs the best classic codec", "", f"Command: `{command}`", "",
             "PSNR on each original's own value range (max − min). `gain (same target)`: auto minus the best "
             "classic codec at the same target ratio (each file within its tolerance). `gain (matched)`: auto minus "
             "the best classic codec's PSNR interpolated (linear in log ratio) at auto's measured ratio; – where "
             "auto's ratio lies outside the codecs' measured range. `previous hybrid`: hybrid:sperr without the "
             "learned prior (the method before this issue). Seconds: encode and decode on this machine's 2 cores.",
             ""]
    for split in ("held-out", "train"):
        part = [r for r in rows if r.get("split", "held-out") == split]
        if not part:
            continue
        lines += [f"## {split} inputs" + (" (never seen by the learned prior)" if split == "held-out" else
                                          " (the learned prior saw crops of these)"), "",
                  "| input | target | auto ratio | auto PSNR | best classic (same target) | its ratio | its PSNR | "
                  "gain (same target) dB | gain (matched) dB | previous hybrid ratio / PSNR | auto encode s | "
                  "auto decode s |",
                  "|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|"]
        for r in part:
            prev = r.get("previous_hybrid")
            ptxt = f"{_f(prev[0], 1)} / {_f(prev[1])}" if prev else "–"
            lines.append(f"| {r['dataset']} | {r['target']:g} | {_f(r['auto_ratio'], 1)} | {_f(r['auto_psnr'])} | "
                         f"{r.get('best', '–')} | {_f(r.get('best_ratio'), 1)} | {_f(r.get('best_psnr'))} | "
                         f"**{_f(r.get('gain_same_target'))}** | {_f(r.get('gain_matched'))} | {ptxt} | "
                         f"{_f(r['auto_encode_s'], 1)} | {_f(r.get('auto_decode_s'), 2)} |")
        g = [r["gain_matched"] for r in part if r.get("gain_matched") is not None]
        s_ = [r["gain_same_target"] for r in part if r.get("gain_same_target") is not None]
        if s_:
            lines += ["", f"Gain at the same target: min {min(s_):+.2f} dB, median {_median(s_):+.2f} dB, "
                      f"max {max(s_):+.2f} dB over {len(s_)} cells."]
        if g:
            lines += [f"Gain at matched ratio: min {min(g):+.2f} dB, median {_median(g):+.2f} dB over "
                      f"{len(g)} cells."]
        for dom in ("cryo-EM", "light microscopy"):
            cells = [r for r in part if DOMAIN.get(r["dataset"], "light microscopy") == dom
                     and 64 <= r["target"] <= 512 and r.get("gain_same_target") is not None]
            if cells:
                med = _median([r["gain_same_target"] for r in cells])
                medm = _median([r["gain_matched"] for r in cells if r.get("gain_matched") is not None])
                lines.append(f"- {dom}, 64–512x: median gain {med:+.2f} dB at the same target, {medm:+.2f} dB "
                             f"matched ({len(cells)} cells); worst {min(r['gain_same_target'] for r in cells):+.2f}")
        lines.append("")
    (out / "auto_vs_classic.md").write_text("\n".join(lines) + "\n")
    (out / "auto_vs_classic.json").write_text(json.dumps(rows, indent=1))
    write_learned_split(rows, out)


def write_learned_split(rows: list[dict[str, Any]], out: Path) -> None:
    """The learned prior's gain over the prior decode, as auto's encoder measured it on the
    first prior decode of the kept fit: zero side bytes (trained head, every block),
    with block flags (zero-byte network, a bit per block), with the adapted head (+flags)."""
    lines = ["# the learned prior's gain, split", "",
             "Measured by auto's encoder on the prior decode it fitted (the winner's), PSNR gain over that decode "
             "before any residual filter. `zero bytes`: the shipped network, applied everywhere (no side bytes). "
             "`+ flags`: kept only in the blocks where it helps (one bit per block). `+ adapted head`: its last layer "
             "refitted to this volume (17 float16 numbers) + flags. `kept`: what the file stores.", "",
             "| input | target | prior | domain | zero bytes dB | + flags dB | + adapted head dB | kept | blocks on |",
             "|---|---:|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        lp = r.get("learned")
        if not lp:
            continue
        if lp.get("skipped"):
            lines.append(f"| {r['dataset']} | {r['target']:g} | {lp.get('prior')} | – | – | – | – | "
                         f"off: {lp['skipped']} | – |")
            continue
        for dom in ("cryoem", "microscopy"):
            z = lp["options"].get(dom)
            a = lp["options"].get(dom + "+adapt")
            if not z:
                continue
            kept = ("**" + ("adapted" if lp.get("adapt") else "zero-byte") + "**") if lp.get("domain") == dom else ""
            lines.append(f"| {r['dataset']} | {r['target']:g} | {lp.get('prior')} | {dom} | "
                         f"{z.get('gain_db_zero_bytes', float('nan')):+.2f} | {z.get('gain_db_flags', float('nan')):+.2f} | "
                         f"{(a or {}).get('gain_db_flags', float('nan')):+.2f} | {kept} | "
                         f"{lp.get('blocks_on')}/{lp.get('blocks')} |")
    (out / "learned_split.md").write_text("\n".join(lines) + "\n")


def science(datasets: list[Dataset], time_budget: float, out: Path, command: str) -> None:
    """Science-lossless ratio (FSC >= 0.9 to the map's resolution) of auto, HEVC and SPERR."""
    from voxfield.bench.methods import MethodSpec
    from voxfield.compress.api import decompress
    from voxfield.compress.modes.science import science_lossless
    from voxfield.io import read_volume

    rows = []
    for ds in datasets:
        res_a = RESOLUTIONS.get(ds.name)
        if res_a is None:
            continue
        vol = read_volume(ds.path)
        spacing = tuple(vol.spacing_of(a) for a in "ZYX")
        for label in (f"auto[time_budget={time_budget:g}]", "hevc", "sperr"):
            spec = MethodSpec.parse(label)
            t0 = time.perf_counter()
            res = science_lossless(vol.data, lambda t, s=spec: s.encode(vol, t)[0], lambda b: decompress(b).data,
                                   spacing, res_a, threshold=0.9, tolerance=0.02 if spec.neural else 0.03)
            rows.append({"dataset": ds.name, "resolution": res_a, "method": label, "ratio": res.ratio,
                         "min_fsc": res.min_fsc, "seconds": time.perf_counter() - t0})
            print(f"science {ds.name} {label}: {res.ratio}", flush=True)
    lines = ["# science-lossless ratio: auto vs HEVC and SPERR", "", f"Command: `{command} --science-only`", "",
             "Highest ratio (bytes of the .vxf written) whose decode keeps FSC >= 0.9 in every shell out to the map's "
             "resolution (search: doubling, then bisection to 2–3 %; voxfield.compress.modes.science).", "",
             "| map | resolution Å | method | ratio | lowest FSC | search s | vs best of HEVC/SPERR |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        best = max((q["ratio"] or 0 for q in rows if q["dataset"] == r["dataset"] and q["method"] in ("hevc", "sperr")),
                   default=0)
        rel = f"{r['ratio'] / best:.2f}x" if r["ratio"] and best else "–"
        lines.append(f"| {r['dataset']} | {r['resolution']} | {r['method']} | {_f(r['ratio'], 1)} | "
                     f"{_f(r['min_fsc'], 3)} | {r['seconds']:.0f} | {rel} |")
    (out / "science_lossless.md").write_text("\n".join(lines) + "\n")
    (out / "science_lossless.json").write_text(json.dumps(rows, indent=1))


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [r for r in rows if r.get("gain_same_target") is not None]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(cells)), 3.5))
    labels = [f"{r['dataset']}\n{r['target']:g}x" for r in cells]
    ax.bar(range(len(cells)), [r["gain_same_target"] for r in cells], color="tab:blue", label="same target")
    ax.scatter(range(len(cells)), [r.get("gain_matched", float("nan")) for r in cells], color="k", zorder=3,
               label="matched ratio")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(cells)), labels, fontsize=7)
    ax.set_ylabel("auto − best classic (dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "gain.png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "auto")
    ap.add_argument("--ratios", default="32,64,128,256,512")
    ap.add_argument("--time-budget", type=float, default=30.0, help="seconds per residual-filter fit")
    ap.add_argument("--only", default=None, help="comma-separated dataset names")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--no-previous", action="store_true", help="skip the previous hybrid:sperr")
    ap.add_argument("--no-train-split", action="store_true", help="skip the training-split inputs")
    ap.add_argument("--science", action="store_true", help="also the science-lossless ratios")
    ap.add_argument("--science-only", action="store_true")
    ap.add_argument("--tables-only", action="store_true", help="remake the comparison from OUT/results.json")
    args = ap.parse_args()
    auto_label = f"auto[time_budget={args.time_budget:g}]"
    command = "python benchmarks/run_auto.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" if v is not True else f"--{k.replace('_', '-')}"
        for k, v in vars(args).items()
        if v not in (None, False) and k not in ("out", "tables_only", "science_only", "data_root"))
    datasets = default_datasets(args.data_root)
    if not args.no_train_split:
        root = find_data_root(args.data_root)
        datasets += default_datasets(root, TRAIN_SPLIT) if root and (root / TRAIN_SPLIT[0][1]).exists() else []
    if args.only:
        keep = set(args.only.split(","))
        datasets = [d for d in datasets if d.name in keep]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.science_only:
        science(datasets, args.time_budget, args.out, command)
        print(args.out / "science_lossless.md")
        return
    if args.tables_only:
        doc = json.loads((args.out / "results.json").read_text())
        rows = compare(doc, auto_label)
        write_table(rows, args.out, doc.get("command", ""))
        plot(rows, args.out)
        print(args.out / "auto_vs_classic.md")
        return
    ratios = [float(r) for r in args.ratios.split(",")]
    methods = [auto_label, *PRIORS] + ([] if args.no_previous else [PREVIOUS.format(tb=args.time_budget)])
    doc = run_benchmark(datasets, BenchConfig(codecs=methods, ratios=ratios))
    doc["command"] = command
    for p in write_results(doc, args.out):
        print(p)
    rows = compare(doc, auto_label)
    write_table(rows, args.out, command)
    plot(rows, args.out)
    print(args.out / "auto_vs_classic.md")
    if args.science:
        science(datasets, args.time_budget, args.out, command)
        print(args.out / "science_lossless.md")


if __name__ == "__main__":
    main()
