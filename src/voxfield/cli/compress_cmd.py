"""``voxfield compress`` and ``voxfield decompress``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voxfield.cli import console
from voxfield.codecs.registry import available_codecs
from voxfield.compress import container
from voxfield.compress.api import DEFAULT_METHOD as api_default_method
from voxfield.compress.hybrid_names import PRIORS
from voxfield.compress.methods import NEURAL_METHODS
from voxfield.errors import FormatError, OptionError
from voxfield.io import check_writable

if TYPE_CHECKING:
    from voxfield.codecs.base import Target
    from voxfield.io.volume import Volume

#: Classic codec of the demo and of ``--codec`` without a name.
DEFAULT_CODEC = "sperr"
#: Method of ``voxfield compress`` without --method/--codec (see benchmarks/README.md).
DEFAULT_METHOD = api_default_method


def default_output(path: Path) -> Path:
    """``map.mrc`` -> ``map.mrc.vxf`` beside it (keeps the full original name visible)."""
    return path.parent / (path.name.rstrip("/") + container.SUFFIX)


def parse_settings(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs -> typed dict (ints, floats, booleans, strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise OptionError(f"--set takes key=value, got {item!r}")
        value: Any = raw.strip()
        low = value.lower()
        if low in ("true", "false"):
            value = low == "true"
        elif low in ("none", "null"):
            value = None
        else:
            for cast in (int, float):
                try:
                    value = cast(value)
                    break
                except ValueError:
                    pass
        out[key.strip().replace("-", "_")] = value
    return out


@contextmanager
def stage_progress(label: str) -> Iterator[Callable[[str, float], None]]:
    """A rich progress display on stderr with one bar per stage; yields the
    ``progress(stage, fraction)`` callback that the compressors call."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                        console=console.err, transient=True)
    tasks: dict[str, Any] = {}

    def update(stage: str, fraction: float) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(f"{label}: {stage}", total=1.0)
        progress.update(tasks[stage], completed=fraction)

    with progress:
        yield update


def run_neural(vol: Volume, method: str, target: Target | None, settings: dict[str, Any], **kwargs: Any
               ) -> tuple[bytes, Any]:
    """Neural compression with a rich progress bar over the fitting stages."""
    from voxfield.compress.methods import compress_field

    with stage_progress(method) as update:
        return compress_field(vol, method, target, settings, progress=update, **kwargs)


def parse_shape(text: str | None, what: str) -> tuple[int, ...] | None:
    """``"128,128,128"`` -> (128, 128, 128)."""
    if text is None:
        return None
    try:
        out = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        raise OptionError(f"{what} takes sizes separated by commas, e.g. 128,128,128 (got {text!r})") from None
    if not out or any(n < 1 for n in out):
        raise OptionError(f"{what} takes sizes >= 1 (got {text!r})")
    return out


def parse_codecs(text: str | None) -> tuple[str, ...] | None:
    """``"sperr,hevc"`` -> ("sperr", "hevc"); ``"all"`` -> every lossy classic codec."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return ("sperr", "hevc", "jpegxl", "jpeg2k", "sz3", "zfp")
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in available_codecs()]
    if not names or unknown:
        raise OptionError(f"--codecs: unknown or unavailable {', '.join(unknown) or text!r} "
                          f"(available: {', '.join(available_codecs())})")
    return names


def run_chunked(input: Path, output: Path, *, chunks: str | None, **options: Any) -> None:
    """``voxfield compress IN -o OUT.ome.zarr``: chunked compression with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from voxfield.compress.chunked import compress_to_zarr

    def probe(text: str) -> None:
        console.err.print(f"  probe: {text}", markup=False, highlight=False)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=console.err, transient=True)
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(f"{output.name}: {stage}", total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        res = compress_to_zarr(input, output, chunks=parse_shape(chunks, "--chunks"), progress=update, on_probe=probe,
                               **options)
    resumed = f", resumed ({res.resumed_tasks} tasks were done)" if res.resumed_tasks else ""
    console.out.print(
        f"{input.name} -> {res.path}: {res.original_bytes:,} -> {res.level0_bytes:,} bytes at full resolution, "
        f"ratio {res.ratio:.2f} ({res.total_ratio:.2f} with the {len(res.plan.levels)}-level pyramid), "
        f"{res.codec}, {res.target.text()}; chunks {res.plan.chunks}, shards {res.plan.shards} "
        f"({''.join(res.plan.letters)}); {res.workers} worker(s), {res.seconds:.1f} s "
        f"({res.mb_per_s_per_worker:.1f} MB/s per worker), memory per worker at most "
        f"{res.memory_bound / 2**30:.2f} GiB{resumed}")


def describe_fit(method: str, rep: Any) -> str:
    """One line about a fit for the command's summary (the method's own ``describe``)."""
    from voxfield.compress.registry import get_method

    return get_method(method).describe(rep)


def compress(
    input: Annotated[Path, typer.Argument(help="Volume to compress (.mrc/.map(.gz), .tif, .ome.zarr, .npy, .npz, .h5).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output .vxf file [default: INPUT.vxf].")] = None,
    method: Annotated[str | None, typer.Option(help=f"Method [default: {DEFAULT_METHOD}]: auto (hybrid with its prior codec picked per volume by a probe of every classic codec), hybrid[:PRIOR] (a classic codec + neural residual; PRIOR: {', '.join(PRIORS)}), or a pure neural field: {', '.join(NEURAL_METHODS)} (lower quality than the classic codecs at the same size).")] = None,
    codec: Annotated[str | None, typer.Option(help="Classic codec instead of a neural method: " + ", ".join(available_codecs()))] = None,
    ratio: Annotated[float | None, typer.Option(help="Target compression ratio (original bytes / file bytes).")] = None,
    max_error: Annotated[float | None, typer.Option("--max-error", help="Absolute error bound E, in data units: every voxel decodes within E (any method; neural and hybrid methods add an entropy-coded residual, with --ratio as the base's ratio).")] = None,
    rel_error: Annotated[float | None, typer.Option("--rel-error", help="Error bound as a fraction of the value range (max - min), e.g. 0.001.")] = None,
    psnr_db: Annotated[float | None, typer.Option("--psnr", help="Target PSNR in dB, data range (classic codecs).")] = None,
    lossless: Annotated[bool, typer.Option("--lossless", help="Lossless (gzip, zstd, raw).")] = False,
    tolerance: Annotated[float | None, typer.Option(help="Accepted relative deviation from a ratio target [default: 0.02 neural, 0.03 classic].")] = None,
    device: Annotated[str | None, typer.Option(help="Neural methods: auto, cpu or cuda [default: auto].")] = None,
    steps: Annotated[int | None, typer.Option(help="Neural methods: training steps [default: as many as fit --time-budget].")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", help="Neural methods: seconds of training when --steps is not given [default: 180 for 1M+ voxels, less for smaller inputs].")] = None,
    seed: Annotated[int | None, typer.Option(help="Neural methods: random seed [default: 0].")] = None,
    settings: Annotated[list[str] | None, typer.Option("--set", help="Neural methods: any configuration key, e.g. --set fr=1.5 --set max_blocks=20.")] = None,
    axes: Annotated[str | None, typer.Option(help="Override the input's axis letters, e.g. ZYX.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")] = False,
    check: Annotated[bool, typer.Option(help="Decode the result and report PSNR and max error.")] = True,
    fsc_target: Annotated[float | None, typer.Option("--fsc-target", help="Science-lossless: the highest ratio whose decoded map keeps FSC >= this (e.g. 0.9) out to --resolution.")] = None,
    resolution: Annotated[float | None, typer.Option(help="With --fsc-target: the map's resolution in Å.")] = None,
    apix: Annotated[float | None, typer.Option(help="Voxel size in Å, overriding the input's header (e.g. when it says 0); stored in the file.")] = None,
    guide: Annotated[str | None, typer.Option(help="Application guidance for neural and hybrid methods: segmentation (keep a threshold segmentation) or ssim (MS-SSIM).")] = None,
    guide_weight: Annotated[float | None, typer.Option("--guide-weight", help="Weight of the guidance loss beside the MSE [default: 0.3].")] = None,
    guide_threshold: Annotated[float | None, typer.Option("--guide-threshold", help="Segmentation guidance: the threshold [default: Otsu's on the original].")] = None,
    guide_channel: Annotated[int | None, typer.Option("--guide-channel", help="Segmentation guidance on multichannel data: the channel to segment (counted from 0).")] = None,
    guide_mask: Annotated[Path | None, typer.Option("--guide-mask", help="Segmentation guidance: a reference mask or label image (same shape as the data; label > 0 is foreground).")] = None,
    workers: Annotated[int | None, typer.Option(help="-o OUT.ome.zarr: local Dask worker processes [default: one per core, as memory allows; 1 runs inline].")] = None,
    scheduler: Annotated[str | None, typer.Option(help="-o OUT.ome.zarr: address of a running dask.distributed scheduler (tcp://host:8786) to run on instead.")] = None,
    chunks: Annotated[str | None, typer.Option(help="-o OUT.ome.zarr: chunk shape in NGFF axis order (T,C,Z,Y,X), e.g. 128,128,128 [default: 128^3; 1 per channel and time point].")] = None,
    levels: Annotated[int | None, typer.Option(help="-o OUT.ome.zarr: pyramid levels including full resolution [default: down to 64 voxels].")] = None,
    key: Annotated[str | None, typer.Option(help="HDF5 input: the dataset to compress [default: the largest].")] = None,
    allocate: Annotated[bool, typer.Option("--allocate/--equal-ratio", help="-o OUT.ome.zarr with --ratio: share the bits among chunks by rate-distortion slope (the array within a few % of the ratio), or give every chunk exactly the ratio.")] = True,
    codecs: Annotated[str | None, typer.Option(help="-o OUT.ome.zarr with --method auto: the candidate codecs, comma-separated, or 'all' [default: sperr,sz3,zfp, the ones fast enough for 5 MB/s per core].")] = None,
) -> None:
    """Compress a volume into a self-describing .vxf file (a classic codec, with a fitted
    neural residual when it pays), or, with -o OUT.ome.zarr, an input of any size chunk by
    chunk into OME-Zarr on Dask."""
    from voxfield.compress.api import compress as compress_api

    if output is not None and output.name.rstrip("/").lower().endswith(".zarr"):
        unsupported = {"--rel-error": rel_error, "--fsc-target": fsc_target, "--resolution": resolution,
                       "--tolerance": tolerance, "--apix": apix, "--guide": guide, "--guide-mask": guide_mask,
                       "--device": device, "--time-budget": time_budget}
        bad = [k for k, v in unsupported.items() if v is not None]
        if bad:
            raise OptionError(f"{', '.join(bad)}: not available for chunked OME-Zarr output")
        run_chunked(input, output, method=method or codec or "auto", ratio=ratio, psnr=psnr_db, max_error=max_error,
                    lossless=lossless, chunks=chunks, levels=levels, axes=axes, key=key, workers=workers,
                    codecs=parse_codecs(codecs), allocate=allocate,
                    scheduler=scheduler, force=force, settings={**parse_settings(settings),
                                                                **({"steps": steps} if steps else {}),
                                                                **({"seed": seed} if seed is not None else {})})
        return

    def probe(text: str) -> None:
        console.err.print(f"  {text}" if not text.endswith("…") else text, markup=False, highlight=False)

    extra = parse_settings(settings)
    named: dict[str, Any] = {"device": device, "steps": steps, "time_budget": time_budget, "seed": seed}
    for key, value in list(named.items()):  # a named option wins over the same key given with --set
        if value is None and key in extra:
            named[key] = extra.pop(key)
        extra.pop(key, None)
        if named[key] is None:
            del named[key]
    with stage_progress(method or ("base" if codec is None else codec)) as update:
        res = compress_api(input, method=method, codec=codec, ratio=ratio, max_error=max_error, rel_error=rel_error,
                           psnr=psnr_db, lossless=lossless, fsc_target=fsc_target, resolution=resolution,
                           tolerance=tolerance, output=output or default_output(input), overwrite=force,
                           **named, guide=guide,
                           guide_weight=guide_weight, guide_threshold=guide_threshold, guide_channel=guide_channel,
                           guide_mask=guide_mask, axes=axes, apix=apix, check=check, progress=update,
                           on_probe=probe, **extra)
    msg = (f"{input.name} -> {res.path}: {res.original_bytes:,} -> {res.nbytes:,} bytes, ratio {res.ratio:.2f} "
           f"({res.bits_per_voxel:.3f} bits/voxel), {res.description}, {res.seconds:.1f} s")
    if res.psnr_db is not None:
        msg += f"; PSNR {res.psnr_db:.2f} dB (data range), max |error| {res.max_abs_error:.4g}"
    console.out.print(msg)


def decompress(
    input: Annotated[Path, typer.Argument(help=".vxf file made by voxfield compress.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file; its suffix picks the format [default: the original name with .decoded].")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")] = False,
    member: Annotated[str | None, typer.Option("--member", help="A set made by compress-set: the map to restore, by number counted from 1 (as `voxfield info` lists them) or by name.")] = None,
) -> None:
    """Decode a .vxf file back to the original format (or the format of -o's suffix), or a
    voxfield OME-Zarr store (its full resolution) to any format."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from voxfield.compress.classic import output_name

    if input.is_dir() or input.name.rstrip("/").lower().endswith(".zarr"):
        from voxfield.compress.zarr_read import decompress_zarr

        if output is None:
            raise OptionError("decoding an OME-Zarr store needs -o OUTPUT (e.g. -o volume.tif or -o volume.npy)")
        t0 = time.perf_counter()
        with stage_progress("decoding") as update:
            shape, dtype, letters = decompress_zarr(input, output, overwrite=force,
                                                    progress=lambda f: update(input.name, f))
        console.out.print(f"{input} -> {output}: {' × '.join(map(str, shape))} {dtype} ({letters}), "
                          f"{time.perf_counter() - t0:.2f} s")
        return
    require_vxf(input)
    with container.VxfReader(input) as reader:
        header = reader.header
        method = header.get("method")
        if member is not None or (isinstance(method, dict) and method.get("name") == "cryo-pe-set"):
            # a set of maps (cryo_pe_set.is_set); that module brings torch, a single volume needs none of it
            from voxfield.compress.cryo_pe_set import member_header

            header = member_header(header, member, input)
        out = output or output_name(header, input)
    check_writable(out, overwrite=force)
    t0 = time.perf_counter()
    from voxfield.compress.stream import decompress_to_file

    progress = Progress(TextColumn("decoding"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                        console=console.err, transient=True)
    with progress:
        task = progress.add_task("decode", total=1.0)
        vol = decompress_to_file(input, out, overwrite=force,
                                 progress=lambda f: progress.update(task, completed=f), member=member)
    console.out.print(f"{input} -> {out}: {' × '.join(map(str, vol.shape))} {vol.dtype.name} "
                      f"({vol.axes}), {time.perf_counter() - t0:.2f} s")


def require_vxf(path: Path) -> None:
    """Refuse anything that is not a .vxf file with a clear message."""
    if not container.is_vxf(path):
        if not path.exists():
            raise FormatError("no such file", path)
        raise FormatError("not a voxfield .vxf file", path)
