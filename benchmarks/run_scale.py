"""Large data: chunked OME-Zarr compression of a multi-GB light-sheet volume on Dask.

    python benchmarks/run_scale.py                        # 4.15 GB input, ~1 h on 2 cores
    python benchmarks/run_scale.py --size-gb 0.3 --sub-gb 0.1 --out /tmp/scale_check   # a quick check

Input: the real lattice light-sheet stack of ``../shared/data`` (88 x 320 x 256 uint16,
held out from the learned prior's training) tiled to ``--size-gb`` (default 4.15 GB:
8 x 6 x 6 tiles, 704 x 1920 x 1536), each tile flipped at random along each axis, scaled
by a random gain (0.8-1.2) and given its own Gaussian read noise (sigma 3 counts), so that
no two chunks are alike. Written as an uncompressed BigTIFF (memory-mapped on reading)
in ``--work`` (not committed).

Measured, at voxfield's default settings (``method="auto"``, ratio 64, 128^3 chunks in
512^3 shards, pyramid):

* the whole input with 1 worker (inline) and with 2 workers (a ``distributed``
  LocalCluster of 2 processes): MB/s per core, peak resident memory per worker (and the
  bound voxfield states), ratio on the bytes written, PSNR (data range) and the seam
  check (max error at chunk faces against elsewhere) over the whole volume, and whether
  the two stores are identical byte for byte;
* a 1 GB sub-volume: chunked against whole-volume compression with the same codec;
  Blosc-Zstd level 5 (the OME-Zarr default of exaSPIM); imagecodecs' SPERR and JPEG XL
  per 128^3 chunk (what their numcodecs do in zarr) at the same ratio;
* chunked ``auto`` against whole-volume ``auto`` (with its neural residual) on a 16 MB
  sub-volume (128 x 256 x 256, four chunks), where the whole-volume fit is affordable on
  this machine;
* kill and resume: the command run in a subprocess, killed with SIGKILL at 30 % and 70 %
  of its uninterrupted time, rerun until done; the store is compared with the
  uninterrupted one;
* a paper estimate of 1 PB on N workers from the measured per-chunk cost.

Writes ``benchmarks/results/scale/results.json``, ``results.md`` and ``scale.png``.
Run it alone: the machine's two cores are the measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "scale"
LLSM = "fluorescence/pycudadecon_llsm_im_raw.tif"
#: Voxel size of the lattice light-sheet stack (µm), from its MANIFEST entry.
SPACING = (0.3, 0.1015, 0.1015)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_input(path: Path, size_gb: float, seed: int) -> tuple[int, ...]:
    """Tile the real stack to about ``size_gb`` GB (per-tile flips, gain, noise)."""
    import tifffile

    from voxfield.bench import find_data_root

    tile = tifffile.imread(find_data_root() / LLSM).astype(np.float32)
    tz, ty, tx = tile.shape
    # grid: 8 x 6 x 6 tiles at 4.15 GB; smaller inputs shrink the longest grid axis first
    grid = [8, 6, 6]
    while math.prod(grid) * tile.nbytes / 2 > size_gb * 1e9 * 1.05 and max(grid) > 1:
        k = int(np.argmax(grid))
        grid[k] -= 1
    shape = (grid[0] * tz, grid[1] * ty, grid[2] * tx)
    if path.exists() and tifffile.TiffFile(path).series[0].shape == shape:
        log(f"input exists: {path} {shape}")
        return shape
    rng = np.random.default_rng(seed)
    mm = tifffile.memmap(path, shape=shape, dtype=np.uint16, bigtiff=True, metadata={"axes": "ZYX"},
                         resolution=(1 / SPACING[2], 1 / SPACING[1]))
    for iz in range(grid[0]):
        for iy in range(grid[1]):
            for ix in range(grid[2]):
                t = tile
                for ax in range(3):
                    if rng.random() < 0.5:
                        t = np.flip(t, ax)
                t = t * rng.uniform(0.8, 1.2) + rng.normal(0.0, 3.0, size=t.shape)
                mm[iz * tz:(iz + 1) * tz, iy * ty:(iy + 1) * ty, ix * tx:(ix + 1) * tx] = np.clip(np.rint(t), 0, 65535)
        mm.flush()
    del mm
    log(f"wrote {path} {shape} ({math.prod(shape) * 2 / 1e9:.2f} GB)")
    return shape


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def store_quality(original: Any, store: Path, chunks: tuple[int, ...], block: int = 128) -> dict[str, Any]:
    """PSNR (data range of the original), max error and the seam check over the whole
    store, block by block (z-slabs of ``block``, one at a time in memory)."""
    import zarr

    from voxfield.metrics.seams import face_mask

    arr = zarr.open_array(store=str(store), path="0", mode="r")
    shape = arr.shape
    lo, hi = np.inf, -np.inf
    sse, n = 0.0, 0
    fmax = omax = 0.0
    fsse = osse = 0.0
    fn = on = 0
    full_mask = None
    for z0 in range(0, shape[0], block):
        z1 = min(z0 + block, shape[0])
        for y0 in range(0, shape[1], 1024):
            y1 = min(y0 + 1024, shape[1])
            a = np.asarray(original[z0:z1, y0:y1]).astype(np.float32)
            d = np.asarray(arr[z0:z1, y0:y1]).astype(np.float32)
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
            e = np.abs(d - a)
            sse += float(np.sum(e.astype(np.float64) ** 2))
            n += e.size
            # faces in global coordinates: block origins are multiples of the chunk
            if full_mask is None or full_mask.shape != e.shape:
                full_mask = face_mask(e.shape, tuple(chunks))
            m = full_mask.copy()
            for ax, (o, c, size) in enumerate(zip((z0, y0, 0), chunks, shape)):
                if o > 0 and c < size:  # the block's first plane is a chunk face too
                    sl = [slice(None)] * 3
                    sl[ax] = 0
                    m[tuple(sl)] = True
                if o + e.shape[ax] < size and c < size:
                    sl = [slice(None)] * 3
                    sl[ax] = -1
                    m[tuple(sl)] = True
            fe, oe = e[m], e[~m]
            if fe.size:
                fmax = max(fmax, float(fe.max()))
                fsse += float(np.sum(fe.astype(np.float64) ** 2))
                fn += fe.size
            if oe.size:
                omax = max(omax, float(oe.max()))
                osse += float(np.sum(oe.astype(np.float64) ** 2))
                on += oe.size
    mse = sse / n
    return {"psnr_db": 20 * math.log10(hi - lo) - 10 * math.log10(mse) if mse > 0 else math.inf,
            "data_range": hi - lo, "rmse": math.sqrt(mse), "face_max_error": fmax, "other_max_error": omax,
            "seam_max_ratio": fmax / omax if omax else None,
            "face_rmse": math.sqrt(fsse / max(fn, 1)), "other_rmse": math.sqrt(osse / max(on, 1)),
            "seam_rmse_ratio": math.sqrt(fsse / max(fn, 1)) / math.sqrt(osse / max(on, 1)) if osse else None}


def psnr_of(a: np.ndarray, d: np.ndarray) -> float:
    a = a.astype(np.float64)
    mse = float(np.mean((d.astype(np.float64) - a) ** 2))
    return 20 * math.log10(float(np.ptp(a))) - 10 * math.log10(mse)


def chunked_run(src: Path, out: Path, workers: int, **kw: Any) -> dict[str, Any]:
    from voxfield.compress.chunked import compress_to_zarr

    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if time.time() - last[0] > 30 or done == total:
            last[0] = time.time()
            log(f"  {out.name} {stage}: {done}/{total}")

    res = compress_to_zarr(src, out, workers=workers, force=True, progress=progress, **kw)
    return {"workers": res.workers, "seconds": res.seconds, "original_bytes": res.original_bytes,
            "level0_bytes": res.level0_bytes, "total_bytes": res.total_bytes, "ratio": res.ratio,
            "total_ratio": res.total_ratio, "codec": res.codec, "target": res.target.text(),
            "mb_per_s_per_core": res.mb_per_s_per_worker, "peak_rss_bytes": res.peak_rss,
            "memory_bound_bytes": res.memory_bound, "chunks": list(res.plan.chunks), "shards": list(res.plan.shards),
            "levels": len(res.plan.levels), "tasks": len(res.plan.shard_boxes()), "probe": res.probe}


def per_chunk_codec(sub: np.ndarray, chunk: int, encode: Any, decode: Any) -> tuple[int, float, float]:
    """(bytes, PSNR, seconds) of coding ``sub`` chunk by chunk with imagecodecs."""
    nbytes, sse = 0, 0.0
    t0 = time.perf_counter()
    for z in range(0, sub.shape[0], chunk):
        for y in range(0, sub.shape[1], chunk):
            for x in range(0, sub.shape[2], chunk):
                c = np.ascontiguousarray(sub[z:z + chunk, y:y + chunk, x:x + chunk])
                b = encode(c)
                nbytes += len(b)
                d = decode(b).reshape(c.shape)
                sse += float(np.sum((d.astype(np.float64) - c) ** 2))
    secs = time.perf_counter() - t0
    mse = sse / sub.size
    return nbytes, 20 * math.log10(float(np.ptp(sub))) - 10 * math.log10(mse), secs


def jxl_distance_for(sub: np.ndarray, ratio: float, chunk: int) -> float:
    """JPEG XL distance giving about ``ratio`` per ``chunk``^3 chunk over every other chunk
    of ``sub`` (bisection in log distance)."""
    import imagecodecs

    picks = [np.ascontiguousarray(sub[z:z + chunk, y:y + chunk, x:x + chunk])
             for z in range(0, sub.shape[0], chunk) for y in range(0, sub.shape[1], chunk)
             for x in range(0, sub.shape[2], chunk)][::2]
    raw = sum(p.nbytes for p in picks)
    lo, hi = 0.02, 25.0
    for _ in range(12):
        mid = math.sqrt(lo * hi)
        r = raw / sum(len(imagecodecs.jpegxl_encode(p, distance=mid, effort=3)) for p in picks)
        lo, hi = (mid, hi) if r < ratio else (lo, mid)
    return math.sqrt(lo * hi)


def kill_and_resume(src: Path, ref_store: Path, work: Path, seconds: float, workers: int) -> list[dict[str, Any]]:
    """Run the CLI, SIGKILL it at 30 % and 70 % of ``seconds``, rerun to the end."""
    out = []
    voxfield = [sys.executable, "-m", "voxfield.cli.main"]
    ref = digest(ref_store)
    for frac in (0.3, 0.7):
        store = work / f"kill_{int(frac * 100)}.ome.zarr"
        cmd = [*voxfield, "compress", str(src), "-o", str(store), "--workers", str(workers), "--force"]
        p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds * frac)
        killed = p.poll() is None
        if killed:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        rerun = [*voxfield, "compress", str(src), "-o", str(store), "--workers", str(workers)]
        t0 = time.perf_counter()
        r = subprocess.run(rerun, capture_output=True, text=True)
        same = r.returncode == 0 and digest(store) == ref
        out.append({"kill_at_fraction": frac, "killed": killed, "rerun_rc": r.returncode,
                    "rerun_seconds": time.perf_counter() - t0, "identical_to_uninterrupted": same,
                    "rerun_said": (r.stdout + r.stderr).strip().splitlines()[-1:] if r.stdout or r.stderr else []})
        log(f"  kill at {frac:.0%}: killed={killed} rerun rc={r.returncode} identical={same}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=4.15)
    ap.add_argument("--sub-gb", type=float, default=1.07, help="sub-volume of the whole-volume comparison")
    ap.add_argument("--work", type=Path, default=Path("/tmp/voxfield_scale"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-auto-whole", action="store_true")
    ap.add_argument("--small-only", action="store_true",
                    help="redo only the chunked runs of the small sub-volume (auto, hevc), keeping the rest of "
                         "results.json (the whole-volume auto too, unless --redo-whole-auto)")
    ap.add_argument("--redo-whole-auto", action="store_true")
    ap.add_argument("--keep-whole-auto", action="store_true",
                    help="full run, but keep the whole-volume auto result of the previous results.json (same input)")
    args = ap.parse_args()
    if args.small_only:
        small_only(args)
        return
    import tifffile

    import voxfield

    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, no GPU", "input": {}, "runs": {}}
    tif = args.work / "llsm_tiled.tif"
    shape = make_input(tif, args.size_gb, args.seed)
    res["input"] = {"path": str(tif), "shape": list(shape), "dtype": "uint16", "bytes": math.prod(shape) * 2,
                    "source": LLSM, "tiles": "random flips per axis, gain 0.8-1.2, Gaussian noise sigma 3"}
    original = tifffile.memmap(tif, mode="r")

    # 1. the whole input, 1 worker (inline) and 2 workers (LocalCluster of 2 processes)
    for w in (1, 2):
        log(f"chunked, {w} worker(s)")
        res["runs"][f"workers_{w}"] = chunked_run(tif, args.work / f"w{w}.ome.zarr", w)
        log(f"  {json.dumps({k: v for k, v in res['runs'][f'workers_{w}'].items() if k != 'probe'})}")
    r1, r2 = res["runs"]["workers_1"], res["runs"]["workers_2"]
    res["speedup_2_vs_1"] = r1["seconds"] / r2["seconds"]
    res["stores_identical_1_vs_2"] = digest(args.work / "w1.ome.zarr") == digest(args.work / "w2.ome.zarr")
    log("quality of the whole store")
    res["quality_whole"] = store_quality(original, args.work / "w2.ome.zarr", tuple(r2["chunks"]))
    log(f"  {res['quality_whole']}")
    nchunks = math.prod(-(-s // c) for s, c in zip(shape, r1["chunks"]))
    per_chunk = r1["seconds"] / nchunks
    chunk_bytes = math.prod(r1["chunks"]) * 2
    pb_chunks = 1e15 / chunk_bytes
    res["petabyte_estimate"] = {
        "seconds_per_chunk_1_worker": per_chunk, "chunk_bytes": chunk_bytes, "chunks_in_1_PB": pb_chunks,
        "parallel_efficiency_measured": res["speedup_2_vs_1"] / 2,
        "days": {str(n): pb_chunks * per_chunk / n / 86400 for n in (1, 100, 1000, 10000)},
        "assumes": "the measured 1-worker cost per 128^3 uint16 chunk (pyramid and I/O included), linear "
                   "scaling in workers, storage not the bottleneck"}

    # 2. a ~1 GB sub-volume: chunked vs whole volume, Blosc-Zstd, imagecodecs per chunk
    sz = min(shape[0], 512)
    side = int(math.sqrt(args.sub_gb * 1e9 / 2 / sz))
    side = -(-side // 128) * 128 if side > 128 else side  # whole chunks: 1024 at 1.07 GB
    sy, sx = min(shape[1], side), min(shape[2], side)
    sub = np.ascontiguousarray(original[:sz, :sy, :sx])
    sub_path = args.work / "sub.npy"
    np.save(sub_path, sub)
    res["sub"] = {"shape": list(sub.shape), "bytes": sub.nbytes}
    log(f"sub-volume {sub.shape} ({sub.nbytes / 1e9:.2f} GB)")
    c = chunked_run(sub_path, args.work / "sub.ome.zarr", 2)
    import zarr

    dec = np.asarray(zarr.open_array(store=str(args.work / "sub.ome.zarr"), path="0", mode="r")[...])
    c["psnr_db"] = psnr_of(sub, dec)
    res["sub"]["chunked"] = c
    codec = c["codec"]
    log(f"  chunked: ratio {c['ratio']:.2f} PSNR {c['psnr_db']:.2f} dB ({codec})")
    t0 = time.perf_counter()
    whole = voxfield.compress(sub, codec=codec, ratio=c["ratio"], check=False)
    wsec = time.perf_counter() - t0
    wd = voxfield.decompress(whole.payload).data
    res["sub"]["whole_volume_same_codec"] = {"codec": codec, "ratio": sub.nbytes / len(whole.payload),
                                             "psnr_db": psnr_of(sub, wd), "seconds": wsec}
    del wd, whole
    log(f"  whole-volume {codec}: {res['sub']['whole_volume_same_codec']}")
    import imagecodecs
    from zarr.codecs import BloscCodec

    t0 = time.perf_counter()
    bz = zarr.create_array(store=str(args.work / "blosc.zarr"), shape=sub.shape, dtype=sub.dtype, chunks=(128,) * 3,
                           shards=(512,) * 3, compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")],
                           overwrite=True)
    bz[...] = sub
    bsec = time.perf_counter() - t0
    bbytes = sum(f.stat().st_size for f in (args.work / "blosc.zarr").rglob("*") if f.is_file())
    res["sub"]["blosc_zstd5"] = {"ratio": sub.nbytes / bbytes, "psnr_db": math.inf, "seconds": bsec,
                                 "mb_per_s": sub.nbytes / 1e6 / bsec}
    log(f"  blosc-zstd 5: {res['sub']['blosc_zstd5']}")
    ratio = c["ratio"]
    nb, ps, secs = per_chunk_codec(sub, 128, lambda a: imagecodecs.sperr_encode(a.astype(np.float64), 16 / ratio,
                                                                                "bpp"),
                                   imagecodecs.sperr_decode)
    res["sub"]["imagecodecs_sperr"] = {"ratio": sub.nbytes / nb, "psnr_db": ps, "seconds": secs,
                                       "mode": f"bpp {16 / ratio:.4f} per 128^3 chunk"}
    log(f"  imagecodecs sperr: {res['sub']['imagecodecs_sperr']}")
    jz = min(sub.shape[0], 128)
    part = np.ascontiguousarray(sub[:jz])
    dist = jxl_distance_for(part, ratio, 128)  # searched on the planes it is then measured on
    nb, ps, secs = per_chunk_codec(part, 128, lambda a: imagecodecs.jpegxl_encode(a, distance=dist, effort=3),
                                   imagecodecs.jpegxl_decode)
    res["sub"]["imagecodecs_jpegxl"] = {"ratio": part.nbytes / nb, "psnr_db": ps, "seconds": secs,
                                        "distance": dist, "on": f"first {jz} planes ({part.nbytes / 1e6:.0f} MB)",
                                        "voxfield_chunked_psnr_same_planes": psnr_of(part, dec[:jz])}
    log(f"  imagecodecs jpegxl: {res['sub']['imagecodecs_jpegxl']}")
    del dec

    # 3. chunked auto vs whole-volume auto on 16 MB (4 chunks; the whole-volume fit of auto
    # takes minutes per few million voxels on 2 cores)
    small = np.ascontiguousarray(sub[:128, :256, :256])
    small_path = args.work / "small.npy"
    np.save(small_path, small)
    whole: dict[str, Any] | None = None if args.skip_auto_whole else {}
    prev = args.out / "results.json"
    if args.keep_whole_auto and prev.exists():
        whole = json.loads(prev.read_text()).get("small", {}).get("whole_auto") or whole
    res["small"] = small_runs(small, small_path, args.work, whole)

    # 4. kill and resume (CLI in a subprocess, SIGKILL)
    log("kill and resume")
    res["kill_resume"] = kill_and_resume(sub_path, args.work / "sub.ome.zarr", args.work, c["seconds"], 2)

    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    write_tables(res, args.out)
    log(f"wrote {args.out}")


def small_runs(small: np.ndarray, small_path: Path, work: Path, whole: dict[str, Any] | None) -> dict[str, Any]:
    """Chunked auto (default candidates), chunked HEVC, and whole-volume auto (``whole``:
    {} to run it, a previous result to keep, None to skip) on the small sub-volume."""
    import voxfield

    out: dict[str, Any] = {"shape": list(small.shape)}
    for key, kw in (("chunked_auto", {}), ("chunked_hevc", {"method": "hevc"})):
        r = chunked_run(small_path, work / f"small_{key}.ome.zarr", 2, **kw)
        r["psnr_db"] = psnr_of(small, np.asarray(voxfield.open(work / f"small_{key}.ome.zarr")))
        out[key] = r
        log(f"  small {key}: ratio {r['ratio']:.2f} PSNR {r['psnr_db']:.2f} dB, {r['seconds']:.1f} s")
    if whole == {}:
        log("whole-volume auto on the small sub-volume")
        t0 = time.perf_counter()
        wa = voxfield.compress(small, ratio=out["chunked_auto"]["ratio"], check=False)
        whole = {"ratio": small.nbytes / len(wa.payload), "seconds": time.perf_counter() - t0,
                 "psnr_db": psnr_of(small, voxfield.decompress(wa.payload).data), "description": wa.description}
        log(f"  whole auto: {whole['ratio']:.2f} {whole['psnr_db']:.2f} dB")
    if whole:
        out["whole_auto"] = whole
    return out


def small_only(args: argparse.Namespace) -> None:
    res = json.loads((args.out / "results.json").read_text())
    small_path = args.work / "small.npy"
    small = np.load(small_path)
    keep = None if args.redo_whole_auto else res.get("small", {}).get("whole_auto")
    res["small"] = small_runs(small, small_path, args.work, {} if args.redo_whole_auto else keep)
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    write_tables(res, args.out)
    log(f"wrote {args.out}")


def write_tables(res: dict[str, Any], out: Path) -> None:
    r1, r2 = res["runs"]["workers_1"], res["runs"]["workers_2"]
    q = res["quality_whole"]
    gb = res["input"]["bytes"] / 1e9
    lines = [
        "# Chunked OME-Zarr compression at scale",
        "",
        f"Input: {res['input']['shape']} uint16, {gb:.2f} GB, tiled from the real lattice light-sheet stack "
        f"`{res['input']['source']}` ({res['input']['tiles']}). Machine: {res['machine']}. "
        "Default settings: `method=auto`, ratio 64, 128^3 chunks, 512^3 shards, pyramid. "
        "PSNR on the original's data range (max − min); ratios on the bytes written.",
        "",
        "| run | codec | s | MB/s per core | peak RSS per worker | stated bound | ratio (level 0) | ratio (store) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in (("1 worker (inline)", r1), ("2 workers (LocalCluster, 2 processes)", r2)):
        lines.append(f"| {name} | {r['codec']} | {r['seconds']:.0f} | {r['mb_per_s_per_core']:.1f} | "
                     f"{r['peak_rss_bytes'] / 2**30:.2f} GiB | {r['memory_bound_bytes'] / 2**30:.2f} GiB | "
                     f"{r['ratio']:.2f} | {r['total_ratio']:.2f} |")
    lines += [
        "",
        f"- Speed-up 2 workers / 1: **{res['speedup_2_vs_1']:.2f}x**; stores byte-identical: "
        f"{res['stores_identical_1_vs_2']}.",
        f"- Whole store: PSNR {q['psnr_db']:.2f} dB (range {q['data_range']:.0f}), RMSE {q['rmse']:.3f}.",
        f"- Seams: max error at chunk faces {q['face_max_error']:.1f} vs {q['other_max_error']:.1f} elsewhere "
        f"(ratio **{q['seam_max_ratio']:.2f}**, bar ≤ 1.5); RMSE at faces {q['face_rmse']:.3f} vs "
        f"{q['other_rmse']:.3f} (ratio {q['seam_rmse_ratio']:.2f}).",
        "",
        f"## Sub-volume {res['sub']['shape']} ({res['sub']['bytes'] / 1e9:.2f} GB)",
        "",
        "| method | ratio | PSNR (dB) | s |",
        "|---|---:|---:|---:|",
    ]
    s = res["sub"]
    rows = [("voxfield chunked (auto → " + s["chunked"]["codec"] + ", 2 workers)", s["chunked"]),
            (f"voxfield whole volume, {s['whole_volume_same_codec']['codec']}", s["whole_volume_same_codec"]),
            ("Blosc-Zstd 5 (lossless)", s["blosc_zstd5"]),
            ("imagecodecs SPERR per 128^3 chunk", s["imagecodecs_sperr"]),
            (f"imagecodecs JPEG XL per 128^3 chunk ({s['imagecodecs_jpegxl']['on']})", s["imagecodecs_jpegxl"])]
    for name, r in rows:
        lines.append(f"| {name} | {r['ratio']:.2f} | {r['psnr_db']:.2f} | {r['seconds']:.0f} |")
    lines.append(f"\nvoxfield chunked on the same planes as JPEG XL: "
                 f"{s['imagecodecs_jpegxl']['voxfield_chunked_psnr_same_planes']:.2f} dB.")
    sm = res["small"]
    lines += ["", f"## Chunked vs whole-volume auto, {sm['shape']} ({math.prod(sm['shape']) * 2 / 1e6:.0f} MB)", "",
              "| method | ratio | PSNR (dB) | s | MB/s per core |", "|---|---:|---:|---:|---:|"]
    for key, name in (("chunked_auto", "chunked auto (default candidates SPERR/SZ3/ZFP)"),
                      ("chunked_hevc", "chunked, `--codec hevc`")):
        if key in sm:
            r = sm[key]
            lines.append(f"| {name} → {r['codec']} | {r['ratio']:.2f} | {r['psnr_db']:.2f} | {r['seconds']:.1f} | "
                         f"{r['mb_per_s_per_core']:.2f} |")
    if "whole_auto" in sm:
        w = sm["whole_auto"]
        first = w["description"].splitlines()[0].split(",")[0]
        lines.append(f"| whole-volume auto ({first}) | {w['ratio']:.2f} | {w['psnr_db']:.2f} | {w['seconds']:.0f} | "
                     f"{math.prod(sm['shape']) * 2 / 1e6 / w['seconds'] / 2:.3f} |")
        lines.append("\nThe whole-volume fit's report:\n\n```\n" + w["description"] + "\n```")
    lines.append("\n(At this size a chunked run is mostly the start of the worker processes and the probe, "
                 "so its MB/s says little; see the 4 GB runs above.)")
    lines += ["", "## Kill and resume (SIGKILL, then the same command)", "",
              "| killed at | killed | rerun exit | identical to uninterrupted |", "|---|---|---:|---|"]
    for k in res["kill_resume"]:
        lines.append(f"| {k['kill_at_fraction']:.0%} | {k['killed']} | {k['rerun_rc']} | "
                     f"{k['identical_to_uninterrupted']} |")
    pb = res["petabyte_estimate"]
    lines += ["", "## 1 PB on paper", "",
              f"{pb['seconds_per_chunk_1_worker']:.3f} s per 128^3 uint16 chunk on one worker "
              f"({pb['chunks_in_1_PB']:.3g} chunks in 1 PB); measured 2-worker efficiency "
              f"{pb['parallel_efficiency_measured']:.2f}. Assumes {pb['assumes']}.", "",
              "| workers | days |", "|---:|---:|"]
    for n, d in pb["days"].items():
        lines.append(f"| {n} | {d:.1f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    plot(res, out)


def plot(res: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r1, r2 = res["runs"]["workers_1"], res["runs"]["workers_2"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    ax[0].bar(["1 worker", "2 workers"], [r1["mb_per_s_per_core"] * 1, r2["mb_per_s_per_core"] * 2],
              color=["#888", "#36c"])
    ax[0].axhline(5, ls="--", c="k", lw=0.8)
    ax[0].set_ylabel("MB/s (all workers)")
    ax[0].set_title("throughput (dashed: 5 MB/s)")
    ax[1].bar(["1 worker", "2 workers"], [r1["peak_rss_bytes"] / 2**30, r2["peak_rss_bytes"] / 2**30],
              color=["#888", "#36c"])
    ax[1].axhline(r1["memory_bound_bytes"] / 2**30, ls=":", c="r", lw=1, label="stated bound")
    ax[1].axhline(2, ls="--", c="k", lw=0.8, label="bar (2 GB)")
    ax[1].set_ylabel("peak RSS per worker (GiB)")
    ax[1].legend()
    s = res["sub"]
    names = ["chunked", "whole vol.", "ic SPERR", "ic JPEG XL*"]
    vals = [s["chunked"]["psnr_db"], s["whole_volume_same_codec"]["psnr_db"], s["imagecodecs_sperr"]["psnr_db"],
            s["imagecodecs_jpegxl"]["psnr_db"]]
    ax[2].bar(names, vals, color=["#36c", "#69c", "#c63", "#c96"])
    ax[2].set_ylim(min(vals) - 2, max(vals) + 1)
    ax[2].set_ylabel("PSNR (dB, data range)")
    ax[2].set_title(f"1 GB sub-volume at ratio {s['chunked']['ratio']:.0f}")
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
