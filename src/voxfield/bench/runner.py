"""Matched-ratio benchmark runs: every codec × every input × every target ratio.

Each run happens in a forked child (so one codec's memory or crash cannot disturb the
next) and records: the ``.vxf`` file actually written and its measured ratio, whether the
ratio target was hit (±tolerance), encode and decode seconds, peak memory of each, and the
quality metrics of :func:`voxfield.metrics.compare` (PSNR with the data's range, SSIM, max
error, FSC resolutions for maps...). Lossless codecs run once per input.
"""

from __future__ import annotations

import functools
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from voxfield.bench.datasets import Dataset, find_data_root
from voxfield.bench.memory import measure_call, run_isolated
from voxfield.bench.methods import MethodSpec
from voxfield.codecs.base import Target
from voxfield.compress.api import decompress
from voxfield.errors import TargetNotMet
from voxfield.io import read_volume
from voxfield.io.volume import Volume
from voxfield.metrics import compare


@dataclass
class BenchConfig:
    """What to run."""

    codecs: list[str]
    ratios: list[float] = field(default_factory=lambda: [16.0, 64.0, 256.0])
    rtol: float = 0.03
    timeout_s: float = 1800.0


def run_one(vol: Volume, dataset: str, method: str, target: Target, workdir: Path) -> dict[str, Any]:
    """Compress, write, read back and measure one (input, method, target). Runs in-process;
    :func:`run_benchmark` calls it inside a forked child."""
    spec = MethodSpec.parse(method)
    rec: dict[str, Any] = {
        "dataset": dataset,
        "codec": method,
        "neural": spec.neural,
        "target": target.to_dict(),
        "original_bytes": int(vol.data.nbytes),
    }
    reports: list[Any] = []

    def encode() -> tuple[bytes, bool, str | None]:
        try:
            blob, rep = spec.encode(vol, target)
            reports.append(rep)
            return blob, True, None
        except TargetNotMet as exc:
            if exc.best is None:
                raise
            return exc.best, False, str(exc)

    (blob, hit, note), enc_s, enc_peak = measure_call(encode)
    report = reports[0] if reports else None
    ratio_label = "lossless" if target.kind == "lossless" else f"{target.value:g}"
    path = workdir / f"{dataset}-{abs(hash(method))}-{ratio_label}.vxf"
    path.write_bytes(blob)
    file_bytes = path.stat().st_size
    dec, dec_s, dec_peak = measure_call(lambda: decompress(path))
    spatial = [i for i, a in enumerate(vol.axes) if a in "ZYX"]
    quality = compare(vol.data, dec.data, spacing=vol.spacing, spatial_axes=spatial, unit=vol.unit,
                      compressed_nbytes=file_bytes, original_nbytes=vol.data.nbytes)
    rec.update(
        hit=bool(hit) if target.kind in ("ratio", "bytes") else None,
        note=note,
        file_bytes=int(file_bytes),
        ratio=vol.data.nbytes / file_bytes,
        bits_per_voxel=8.0 * file_bytes / vol.data.size,
        encode_s=enc_s,
        decode_s=dec_s,
        encode_peak_mib=enc_peak,
        decode_peak_mib=dec_peak,
        metrics=quality,
    )
    if report is not None:
        rec["fit"] = asdict(report)
    path.unlink()
    return rec


def plan(datasets: Sequence[Dataset], config: BenchConfig) -> list[tuple[Dataset, str, Target]]:
    """The list of runs: lossless codecs once per input, the others once per ratio."""
    runs: list[tuple[Dataset, str, Target]] = []
    for ds in datasets:
        for name in config.codecs:
            if MethodSpec.parse(name).lossless:
                runs.append((ds, name, Target.lossless()))
            else:
                runs.extend((ds, name, Target.ratio(r, config.rtol)) for r in config.ratios)
    return runs


def display_path(path: Path) -> str:
    """``path`` relative to the data collection (``data/...``) when it lies inside it, so
    that committed results do not carry one machine's folder layout."""
    root = find_data_root()
    try:
        if root is not None:
            return "data/" + str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        pass
    return str(path)


def machine_info() -> dict[str, Any]:
    """Where the benchmark ran: CPU, cores, Python and library versions."""
    import os

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for pkg in ("voxfield", "numpy", "imagecodecs", "imageio-ffmpeg", "scikit-image", "scipy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def run_benchmark(
    datasets: Sequence[Dataset],
    config: BenchConfig,
    *,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run every planned (input, codec, target) and return the full results document."""
    runs = plan(datasets, config)
    results: list[dict[str, Any]] = []
    volumes: dict[str, Volume] = {}
    started = time.time()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=not show_progress, transient=False)
    with progress, tempfile.TemporaryDirectory(prefix="voxfield-bench-") as tmp:
        task = progress.add_task("benchmark", total=len(runs))
        for ds, codec_name, target in runs:
            label = "lossless" if target.kind == "lossless" else f"{target.value:g}x"
            progress.update(task, description=f"{ds.name} · {codec_name} · {label}")
            if ds.name not in volumes:
                volumes[ds.name] = read_volume(ds.path, axes=ds.axes)
            vol = volumes[ds.name]
            rec = run_isolated(functools.partial(run_one, vol, ds.name, codec_name, target, Path(tmp)),
                               timeout=config.timeout_s)
            rec.setdefault("dataset", ds.name)
            rec.setdefault("codec", codec_name)
            rec.setdefault("target", target.to_dict())
            results.append(rec)
            if on_result is not None:
                on_result(rec)
            progress.advance(task)
    return {
        "kind": "voxfield-benchmark",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": time.time() - started,
        "machine": machine_info(),
        "config": {"codecs": config.codecs, "ratios": config.ratios, "rtol": config.rtol},
        "psnr_note": "PSNR uses the original's own value range (max - min), not the dtype maximum; "
                     "psnr_dtype_max_db follows the SCI/INIF convention and is reported separately.",
        "ratio_note": "ratio = original data bytes / bytes of the .vxf file written (container included).",
        "datasets": [
            {"name": d.name, "path": display_path(d.path), "axes": d.axes, "note": d.note,
             "shape": list(volumes[d.name].shape) if d.name in volumes else None,
             "dtype": volumes[d.name].dtype.name if d.name in volumes else None}
            for d in datasets
        ],
        "runs": results,
    }
