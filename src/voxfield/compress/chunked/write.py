"""``compress_to_zarr``: any-size input to a voxfield OME-Zarr (NGFF 0.5, zarr v3).

Level 0 is sharded (128^3 chunks in 512^3 shards by default) and every chunk is coded by
the ``voxfield`` zarr codec; the pyramid levels are block means, coded the same way. The
run is resumable: the store is created first, marked unfinished (``voxfield.complete``
false and no ``multiscales`` metadata, so no viewer shows it as an image), each task
leaves a done marker in ``OUT/.voxfield/``, and the NGFF metadata are written last. A
rerun of the same command skips the finished tasks and gives the same bytes as an
uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.compress.chunk_codec import ChunkTarget
from voxfield.compress.chunked import tasks
from voxfield.compress.chunked.executor import dask_client, run_tasks
from voxfield.compress.chunked.plan import Plan, make_plan
from voxfield.compress.chunked.probe import FAST_CODECS, calibrate_rd, choose_codec
from voxfield.compress.chunked.source import Source, open_source
from voxfield.errors import DataError, OptionError

#: Layout version of voxfield's own attributes in the store.
STORE_VERSION = 1


@dataclass
class ChunkedResult:
    """What :func:`compress_to_zarr` did: sizes (bytes actually written), ratio, the codec
    and how it was chosen, the plan, time, workers, the stated memory bound per worker
    and the highest peak resident memory of a worker process during one task
    (``peak_rss``, the process's baseline included; the calling process itself when run
    inline)."""

    path: Path
    original_bytes: int
    level0_bytes: int
    total_bytes: int
    codec: str
    target: ChunkTarget
    plan: Plan
    seconds: float
    workers: int
    memory_bound: int
    resumed_tasks: int = 0
    probe: list[dict[str, Any]] = field(default_factory=list)
    peak_rss: int = 0

    @property
    def ratio(self) -> float:
        """Original bytes / bytes of level 0 (the full-resolution data)."""
        return self.original_bytes / max(self.level0_bytes, 1)

    @property
    def total_ratio(self) -> float:
        """Original bytes / bytes of the whole store (pyramid and metadata included)."""
        return self.original_bytes / max(self.total_bytes, 1)

    @property
    def mb_per_s_per_worker(self) -> float:
        return self.original_bytes / 1e6 / max(self.seconds, 1e-9) / max(self.workers, 1)


def _target(ratio: float | None, psnr: float | None, max_error: float | None, lossless: bool
            ) -> tuple[str, float | None]:
    given = [(k, v) for k, v in (("ratio", ratio), ("psnr", psnr), ("max_abs_error", max_error)) if v is not None]
    if lossless:
        given.append(("lossless", None))
    if len(given) > 1:
        raise OptionError("give one target: --ratio, --psnr, --max-error or --lossless")
    if not given:
        from voxfield.compress.defaults import DEFAULT_RATIO

        return "ratio", DEFAULT_RATIO
    kind, value = given[0]
    if value is not None and not (math.isfinite(value) and value > 0):
        raise OptionError(f"--{kind.replace('_abs_', '-').replace('_', '-')} must be a finite number > 0, got {value}")
    return kind, value


def _request(src: Source, method: str, kind: str, value: float | None, plan: Plan, axes: str | None,
             codecs: tuple[str, ...], settings: dict[str, Any]) -> dict[str, Any]:
    """What identifies a run, for resume: the input (path, size, modification time), the
    method, target, layout and settings."""
    p = Path(src.path)
    stamp = p / "zarr.json" if p.is_dir() and (p / "zarr.json").exists() else p
    st = stamp.stat()
    return {"input": src.path, "input_size": st.st_size if p.is_file() else None, "input_mtime_ns": st.st_mtime_ns,
            "method": method, "target": {"kind": kind, "value": value}, "axes": axes, "codecs": list(codecs),
            "settings": settings, "plan": plan.to_dict()}


def machine_memory() -> int:
    """Bytes of physical memory of this machine (8 GiB where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def _store_bytes(path: Path, sub: str | None = None) -> int:
    root = path / sub if sub else path
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and tasks.STATE_DIR not in f.parts)


def _existing(out: Path) -> dict[str, Any] | None:
    """The voxfield attributes of an existing store at ``out`` (None if it is not one)."""
    meta = out / "zarr.json"
    if not meta.is_file():
        return None
    try:
        attrs = json.loads(meta.read_text()).get("attributes") or {}
    except (OSError, ValueError):
        return None
    vf = attrs.get("voxfield")
    return vf if isinstance(vf, dict) else None


def _check_output(out: Path, src: Source, force: bool, request: dict[str, Any]) -> bool:
    """True to resume an unfinished run of this same job; False to write a new store."""
    inp = Path(src.path)
    if out.resolve() == inp or inp in out.resolve().parents or out.resolve() in inp.parents:
        raise OptionError(f"output {out} overlaps the input {inp}")
    if not out.exists():
        return False
    prev = _existing(out)
    if prev is not None and prev.get("complete") is False and prev.get("request") == request and not force:
        return True
    if not force:
        if prev is not None and prev.get("complete") is False:
            raise OptionError(f"{out} holds an unfinished run of a different job (other input or options); "
                              "use --force to overwrite it")
        raise OptionError(f"{out} already exists; use --force to overwrite it")
    if out.is_dir():
        shutil.rmtree(out)
    else:
        out.unlink()
    return False


def _has_distributed() -> bool:
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


def _is_classic(method: str) -> bool:
    from voxfield.codecs.registry import CODECS

    return method in CODECS


def _codec(method: str, target: ChunkTarget, settings: dict[str, Any], letters: str) -> Any:
    from voxfield.compress.zarr_codec import VoxfieldCodec

    return VoxfieldCodec(method=method, target=target.to_dict(), settings=settings, axes=letters)


def _create_store(out: Path, plan: Plan, codec: Any, attrs: dict[str, Any]) -> None:
    import zarr

    root = zarr.open_group(store=str(out), mode="w", zarr_format=3)
    root.attrs.update({"voxfield": attrs})
    names = [a.lower() for a in plan.letters]
    for k, lv in enumerate(plan.levels):
        chunks = plan.level_chunks(k)
        root.create_array(str(k), shape=lv.shape, dtype=plan.dtype, chunks=chunks,
                          shards=plan.shards if k == 0 else None, serializer=codec, compressors=None,
                          fill_value=0, dimension_names=names)


def _ngff_attrs(src: Source, plan: Plan) -> dict[str, Any]:
    from voxfield.io.omezarr import _ngff_axes

    datasets = []
    for k, lv in enumerate(plan.levels):
        scale, trans = [], []
        for a, f in zip(plan.letters, lv.factors):
            if a in "ZYX":
                s0 = src.spacing.get(a, 1.0)
                scale.append(s0 * f)
                trans.append(src.origin.get(a, 0.0) + (f - 1) * s0 / 2.0)
            else:
                scale.append(1.0)
                trans.append(0.0)
        datasets.append({"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale},
                                                                        {"type": "translation", "translation": trans}]})
    ms = {"name": src.name, "axes": _ngff_axes(plan.letters, src.unit, {}), "datasets": datasets, "type": "mean",
          "metadata": {"method": "voxfield block mean (2x2[x2]) cast to the data type, each level coded by the "
                                 "voxfield zarr codec"}}
    ome: dict[str, Any] = {"version": "0.5", "multiscales": [ms]}
    omero = src.meta.get("omero")
    if isinstance(omero, dict):
        ome["omero"] = omero
    elif src.channel_names:
        ome["omero"] = {"channels": [{"label": n} for n in src.channel_names]}
    return ome


def compress_to_zarr(input: str | os.PathLike[str], output: str | os.PathLike[str], *, method: str = "auto",
                     ratio: float | None = None, psnr: float | None = None, max_error: float | None = None,
                     lossless: bool = False, chunks: tuple[int, ...] | None = None,
                     shards: tuple[int, ...] | None = None, levels: int | None = None, axes: str | None = None,
                     key: str | None = None, series: int = 0, workers: int | None = None,
                     scheduler: str | None = None, codecs: tuple[str, ...] | None = None,
                     settings: dict[str, Any] | None = None, memory_limit: int | None = None, force: bool = False,
                     allocate: bool = True,
                     progress: Callable[[str, int, int], None] | None = None,
                     on_probe: Callable[[str], None] | None = None) -> ChunkedResult:
    """Compress ``input`` (OME-Zarr, TIFF/BigTIFF/OME-TIFF, MRC, HDF5, ``.npy``; any size)
    chunk by chunk into the OME-Zarr store ``output``.

    Parameters
    ----------
    method:
        ``"auto"`` (one codec for the array, picked by a probe of ``codecs`` on sampled
        chunks; default candidates SPERR, SZ3, ZFP), a classic codec name (``"hevc"``,
        ``"jpegxl"``...) or any method of :func:`voxfield.compress` run per chunk
        (``"hybrid:sperr"`` with ``settings={"steps": 200, "seed": 0}``).
    ratio, psnr, max_error, lossless:
        The global target (default: ratio 64). ``ratio``: the array at that ratio, with
        the bits shared among chunks by rate-distortion slope (``allocate``, for classic
        codecs: each chunk is coded where its error falls as fast per bit as the array's
        slope, calibrated on 32 sampled chunks; the total lands within a few % of the
        ratio), or, with ``allocate=False``, every chunk at exactly that ratio;
        ``psnr``: in dB on the whole array's data range, turned into an RMSE that each
        chunk meets (so the array does too); ``max_error``: every voxel within it.
    chunks, shards, levels:
        The layout (defaults in :mod:`voxfield.compress.chunked.plan`).
    axes, key, series:
        The input's axis letters (override), HDF5 dataset, TIFF series.
    workers, scheduler:
        ``workers`` local worker processes (default: the cores this machine has, as many
        as its memory allows; 1 runs inline), or the address of a running
        ``dask.distributed`` scheduler.
    memory_limit:
        Bytes one worker may use (default: this machine's memory / workers); a layout
        that needs more raises :class:`DataError`.
    force:
        Overwrite an existing ``output``. Without it, an unfinished run of the same job is
        resumed and anything else is refused.
    progress:
        ``progress(stage, done, total)`` as tasks finish.
    """
    t0 = time.perf_counter()
    out = Path(output)
    settings = dict(settings or {})
    kind, value = _target(ratio, psnr, max_error, lossless)
    src = open_source(input, axes=axes, key=key, series=series)
    spacing = dict(src.spacing)
    plan = make_plan(src.letters, src.shape, src.dtype, spacing, chunks=chunks, shards=shards, levels=levels)
    need = plan.worker_memory()
    machine = machine_memory()
    if workers is not None and workers < 1:
        raise OptionError(f"--workers must be >= 1, got {workers}")
    n_workers = workers or max(1, min(os.cpu_count() or 1, machine // need))
    if workers is None and scheduler is None and n_workers > 1 and not _has_distributed():
        import warnings

        warnings.warn("dask.distributed is not installed: running on one worker (pip install 'voxfield[dask]' "
                      "to use every core)", UserWarning, stacklevel=2)
        n_workers = 1
    limit = memory_limit or (machine // n_workers if scheduler is None else None)
    if limit is not None and need > limit:
        raise DataError(f"a task of this layout (shard {plan.shards}, chunk {plan.chunks}, {plan.dtype}) needs "
                        f"{need / 2**30:.2f} GiB, more than the {limit / 2**30:.2f} GiB a worker may use here; give "
                        "smaller --chunks/--shards or fewer --workers", Path(input))
    cands = tuple(codecs) if codecs else FAST_CODECS
    request = _request(src, method, kind, value, plan, axes, cands, settings)
    request["allocate"] = allocate
    resume = _check_output(out, src, force, request)
    report: Callable[[str, int, int], None] = progress or (lambda s, d, t: None)

    with dask_client(n_workers, scheduler, limit) as get_client:
        if resume:
            attrs = _existing(out) or {}
            chosen, target = attrs["codec"], ChunkTarget.from_dict(attrs["chunk_target"])
            probe_rows = attrs.get("probe", [])
        else:
            if kind == "psnr":
                boxes = plan.shard_boxes()
                ranges = run_tasks(get_client(), tasks.range_task, [(src, b) for b in boxes],
                                   lambda d, t: report("data range", d, t))
                lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
                span = hi - lo
                if span <= 0:
                    target = ChunkTarget("lossless")
                else:
                    target = ChunkTarget("rmse", span / 10 ** (float(value) / 20))  # type: ignore[arg-type]
            elif kind == "lossless":
                target = ChunkTarget("lossless")
            else:
                target = ChunkTarget(kind, value)
            probe_rows = []
            if method == "auto":
                chosen, rows = choose_codec(src, plan, target, cands)
                probe_rows = [r.to_dict() for r in rows]
                if on_probe:
                    for r in rows:
                        on_probe(f"{r.codec:7s} {r.nbytes:>10,} bytes  {r.psnr_db:6.2f} dB  "
                                 f"{r.mb_per_s:6.1f} MB/s{'' if r.met else '  (missed the target)'}")
                    on_probe(f"chosen: {chosen}")
            else:
                chosen = method
            if target.kind == "ratio" and allocate and _is_classic(chosen):
                rd = calibrate_rd(src, plan, chosen, float(target.value), settings)  # type: ignore[arg-type]
                if rd is not None:
                    target = rd
                    if on_probe:
                        on_probe(f"rate-distortion allocation: slope {rd.slope:.4g}, exponent {rd.alpha:.2f}")
            attrs = {"version": STORE_VERSION, "complete": False, "request": request, "codec": chosen,
                     "chunk_target": target.to_dict(), "probe": probe_rows,
                     "memory_per_worker_bytes": need}
            out.parent.mkdir(parents=True, exist_ok=True)
            _create_store(out, plan, _codec(chosen, target, settings, plan.letters), attrs)
        job = tasks.Job(src, plan, str(out.resolve()))
        client = get_client()
        boxes = plan.shard_boxes()
        todo = [(job, i) for i in range(len(boxes)) if not tasks.is_done(job, 0, i)]
        skipped = len(boxes) - len(todo)
        results = run_tasks(client, tasks.shard_task, todo, lambda d, t: report("level 0", d + skipped, t + skipped))
        for k in plan.rounds():
            lb = plan.level_boxes(k)
            todo_k = [(job, k, i) for i in range(len(lb)) if not tasks.is_done(job, k, i)]
            skipped += len(lb) - len(todo_k)
            done0 = len(lb) - len(todo_k)
            results += run_tasks(client, tasks.level_task, todo_k,
                                 lambda d, t, done0=done0, k=k: report(f"level {k}", d + done0, t + done0))
    per_level = _finish(out, src, plan, attrs)
    seconds = time.perf_counter() - t0
    total = sum(per_level) + (out / "zarr.json").stat().st_size
    return ChunkedResult(out, src.nbytes, per_level[0], total, chosen, target, plan, seconds,
                         1 if scheduler is None and n_workers <= 1 else n_workers, need, skipped, probe_rows,
                         max([r["peak_rss"] for r in results if r and "peak_rss" in r], default=0))


def _finish(out: Path, src: Source, plan: Plan, attrs: dict[str, Any]) -> list[int]:
    """Write the NGFF metadata and mark the store complete; drop the bookkeeping. Returns
    the bytes of each level (its chunks and metadata)."""
    import zarr

    state = out / tasks.STATE_DIR
    if state.exists():
        shutil.rmtree(state)
    per_level = [_store_bytes(out, str(k)) for k in range(len(plan.levels))]
    root = zarr.open_group(store=str(out), mode="r+")
    root.attrs.update({"ome": _ngff_attrs(src, plan), "voxfield": {**attrs, "complete": True,
                                                                    "bytes_per_level": per_level}})
    return per_level


def is_unfinished(path: str | os.PathLike[str]) -> bool:
    """True for a voxfield store whose run has not finished (rerun the command to finish)."""
    prev = _existing(Path(path))
    return prev is not None and prev.get("complete") is False



def describe_store(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What ``voxfield info`` shows of a voxfield OME-Zarr store, read from its metadata
    only (no voxel is decoded): shape, axes, voxel size, layout, codec, target, bytes per
    level and ratios, and whether the run finished. None when ``path`` is not one."""
    p = Path(path)
    vf = _existing(p)
    if vf is None:
        return None
    plan = (vf.get("request") or {}).get("plan") or {}
    shape = [int(n) for n in plan.get("shape", [])]
    dtype = str(plan.get("dtype", "?"))
    try:
        original = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    except TypeError:
        original = 0
    out: dict[str, Any] = {"file": str(p), "format": "ome-zarr (voxfield)", "complete": bool(vf.get("complete")),
                           "shape": shape, "dtype": np.dtype(dtype).name if original else dtype,
                           "axes": plan.get("letters"), "chunks": plan.get("chunks"), "shards": plan.get("shards"),
                           "levels": [lv.get("shape") for lv in plan.get("levels", [])],
                           "codec": vf.get("codec"), "target": ChunkTarget.from_dict(vf["chunk_target"]).text()
                           if isinstance(vf.get("chunk_target"), dict) else None,
                           "memory_per_worker_bytes": vf.get("memory_per_worker_bytes"),
                           "original_bytes": original}
    per_level = vf.get("bytes_per_level")
    if isinstance(per_level, list) and per_level:
        out["bytes_per_level"] = per_level
        out["ratio_level0"] = original / max(int(per_level[0]), 1)
        out["ratio_store"] = original / max(_store_bytes(p), 1)
    if vf.get("complete"):
        from voxfield.io.omezarr_lazy import open_lazy

        img = open_lazy(p)
        out["spacing"] = dict(zip([a for a in img.axes if a in "ZYX"], img.spacing(0)))
        out["unit"] = img.unit
        if img.channel_names:
            out["channels"] = img.channel_names
    return out
