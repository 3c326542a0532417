"""Benchmark results to files: JSON (everything), a Markdown table, rate–distortion PNGs."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

from voxfield.io.atomic import atomic_path, write_bytes_atomic  # noqa: E402
from voxfield.io.metajson import to_jsonable  # noqa: E402

#: Codec used as the speed reference in tables (times are shown as multiples of its time).
SPEED_REFERENCE = "zstd"


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec)


def _metric(run: dict[str, Any], key: str) -> Any:
    return (run.get("metrics") or {}).get(key)


def _target_label(run: dict[str, Any]) -> str:
    t = run.get("target", {})
    return "lossless" if t.get("kind") == "lossless" else f"{t.get('value'):g}"


def markdown_table(doc: dict[str, Any]) -> str:
    """The results as Markdown: one table per input, rows sorted by target then codec."""
    lines = [
        "# voxfield benchmark",
        "",
        f"Created {doc.get('created')} on {doc['machine'].get('cpu')} ({doc['machine'].get('cores')} cores), "
        f"Python {doc['machine'].get('python')}; run took {doc.get('duration_s', 0) / 60:.1f} min.",
        "",
        f"- {doc.get('ratio_note')}",
        f"- {doc.get('psnr_note')}",
        f"- Speed: encode/decode time as a multiple of `{SPEED_REFERENCE}`'s time on the same input in the same "
        "run (lower is faster); absolute seconds are in the JSON.",
        "- `hit`: measured ratio within the tolerance of the target; `no` rows show the closest point the "
        "codec's knob reached.",
        "",
    ]
    by_ds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in doc["runs"]:
        by_ds[r["dataset"]].append(r)
    for ds in doc["datasets"]:
        runs = by_ds.get(ds["name"], [])
        ref = next((r for r in runs if r["codec"] == SPEED_REFERENCE and "error" not in r), None)
        is_map = any(_metric(r, "fsc_0.5_A") is not None for r in runs)
        shape = "×".join(map(str, ds.get("shape") or []))
        lines += [f"## {ds['name']}", "", f"{ds.get('note') or ds['path']} — shape {shape} {ds.get('dtype')}", ""]
        head = ["codec", "target", "ratio", "hit", "PSNR dB (data range)", "SSIM", "max err"]
        if is_map:
            head += ["FSC 0.5 Å", "FSC 0.143 Å"]
        head += ["enc ×ref", "dec ×ref", "enc MiB", "dec MiB"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def order(r: dict[str, Any]) -> tuple[float, str]:
            t = r.get("target", {})
            return (0.0 if t.get("kind") == "lossless" else float(t.get("value") or 0), r["codec"])

        for r in sorted(runs, key=order):
            if "error" in r:
                lines.append(f"| {r['codec']} | {_target_label(r)} | error: {r['error'][:80]} |")
                continue
            row = [
                r["codec"], _target_label(r), _fmt(r["ratio"], ".1f"),
                "–" if r.get("hit") is None else ("yes" if r["hit"] else "no"),
                _fmt(_metric(r, "psnr_db")), _fmt(_metric(r, "ssim"), ".4f"), _fmt(_metric(r, "max_abs_error"), ".3g"),
            ]
            if is_map:
                row += [_fmt(_metric(r, "fsc_0.5_A")), _fmt(_metric(r, "fsc_0.143_A"))]
            if ref:
                row += [_fmt(r["encode_s"] / ref["encode_s"], ".2g"), _fmt(r["decode_s"] / ref["decode_s"], ".2g")]
            else:
                row += ["–", "–"]
            row += [_fmt(r.get("encode_peak_mib"), ".0f"), _fmt(r.get("decode_peak_mib"), ".0f")]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def rd_plots(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """One PNG per input: PSNR vs ratio (and FSC-0.5 resolution vs ratio for maps)."""
    paths: list[Path] = []
    by_ds: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in doc["runs"]:
        if "error" not in r:
            by_ds[r["dataset"]].append(r)
    for ds, runs in by_ds.items():
        lossy = [r for r in runs if r.get("target", {}).get("kind") != "lossless"]
        if not lossy:
            continue
        has_fsc = any(_metric(r, "fsc_0.5_A") is not None for r in lossy)
        ncols = 2 if has_fsc else 1
        fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols, 4.4), squeeze=False, constrained_layout=True)
        codecs = sorted({r["codec"] for r in lossy})
        for codec in codecs:
            pts = sorted((r for r in lossy if r["codec"] == codec), key=lambda r: r["ratio"])
            xs = [r["ratio"] for r in pts]
            ys = [_metric(r, "psnr_db") for r in pts]
            (line,) = axes[0][0].plot(xs, ys, marker="o", label=codec)
            missed = [(x, y) for x, y, r in zip(xs, ys, pts) if r.get("hit") is False]
            if missed:
                axes[0][0].scatter(*zip(*missed), facecolors="none", edgecolors=line.get_color(), s=90)
            if has_fsc:
                axes[0][1].plot(xs, [_metric(r, "fsc_0.5_A") for r in pts], marker="o", label=codec)
        for r in runs:
            if r.get("target", {}).get("kind") == "lossless" and r["ratio"] > 1.05:
                axes[0][0].axvline(r["ratio"], color="0.6", lw=0.8, ls=":")
                axes[0][0].annotate(f"{r['codec']} (lossless)", (r["ratio"], 0.02), xycoords=("data", "axes fraction"),
                                    rotation=90, fontsize=7, color="0.4", ha="right", va="bottom")
        for ax in axes[0]:
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax = axes[0][0]
        ax.set_xscale("log")
        ax.set_xlabel("compression ratio (original bytes / file bytes)")
        ax.set_ylabel("PSNR (dB, data range)")
        ax.set_title(f"{ds}: rate–distortion")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        if has_fsc:
            ax = axes[0][1]
            ax.set_xscale("log")
            ax.set_xlabel("compression ratio")
            ax.set_ylabel("FSC = 0.5 resolution vs original (Å, lower is better)")
            ax.set_title(f"{ds}: FSC 0.5 resolution")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        path = out_dir / f"rd_{ds}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def write_results(doc: dict[str, Any], out_dir: str | os.PathLike[str], *, name: str = "results") -> list[Path]:
    """Write ``<name>.json``, ``<name>.md`` and the rate–distortion PNGs under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath = write_bytes_atomic(out / f"{name}.json",
                               json.dumps(to_jsonable(doc), indent=1, allow_nan=True).encode())
    mpath = write_bytes_atomic(out / f"{name}.md", markdown_table(doc).encode())
    return [jpath, mpath, *rd_plots(doc, out)]
