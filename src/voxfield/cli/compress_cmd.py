"""``voxfield compress`` and ``voxfield decompress``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from voxfield.cli import console
from voxfield.codecs.base import Target
from voxfield.codecs.registry import available_codecs, get_codec
from voxfield.compress import container, hybrid
from voxfield.compress.api import decompress as decompress_vxf
from voxfield.compress.bounded import make_encoder
from voxfield.compress.classic import compress_volume, output_name
from voxfield.compress.hybrid import PRIORS
from voxfield.compress.methods import NEURAL_METHODS, compress_field, make_config
from voxfield.errors import DataError, FormatError, OptionError, VoxfieldError
from voxfield.io import check_writable, read_volume
from voxfield.io.atomic import write_bytes_atomic
from voxfield.io.volume import Volume
from voxfield.metrics import max_abs_error, psnr

#: Classic codec of the demo and of ``--codec`` without a name.
DEFAULT_CODEC = "sperr"
#: Method of ``voxfield compress`` without --method/--codec (chosen by the benchmark,
#: see benchmarks/README.md).
DEFAULT_METHOD = "sci"


def make_target(ratio: float | None, max_error: float | None, rel_error: float | None,
                psnr_db: float | None, lossless: bool, tolerance: float) -> Target | None:
    """The one target given on the command line (None: the method's default)."""
    given = [(k, v) for k, v in (("ratio", ratio), ("max_abs_error", max_error), ("rel_error", rel_error),
                                 ("psnr", psnr_db)) if v is not None]
    if lossless:
        given.append(("lossless", None))
    if len(given) > 1:
        raise OptionError("give one target: --ratio, --max-error, --rel-error, --psnr or --lossless")
    if not given:
        return None
    kind, value = given[0]
    if kind == "ratio" and value is not None and value <= 1:
        raise OptionError(f"--ratio must be > 1 (got {value:g})")
    return Target(kind, value, tolerance)  # type: ignore[arg-type]


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
    with stage_progress(method) as update:
        return compress_field(vol, method, target, settings, progress=update, **kwargs)


def describe_fit(method: str, rep: Any) -> str:
    """One line about a neural fit for the command's summary."""
    if method == "grid":
        return (f"grid: {rep.levels} latent levels ({rep.latents:,} latents, {rep.latent_bytes:,} bytes), "
                f"{rep.n_params} synthesis parameters, {rep.steps} steps")
    if method == "cryo-pe":
        return (f"cryo-pe: threshold {rep.threshold:.4g} ({rep.threshold_source}), {rep.occupied:,} voxels occupied "
                f"({100 * rep.occupied_fraction:.1f} %), occupancy {rep.occupancy_bytes:,} B ({rep.occupancy_coder}), "
                f"widths {rep.widths}, {rep.n_params:,} parameters, {rep.steps} steps, {rep.loss} loss, "
                f"weights at {rep.bits:.2f} bits")
    return (f"{method}: {rep.n_blocks} block(s) in {rep.n_groups} group(s), {rep.n_params:,} parameters, "
            f"{rep.steps} steps, weights at {rep.bits:.2f} bits")


def compress(
    input: Annotated[Path, typer.Argument(help="Volume to compress (.mrc/.map(.gz), .tif, .ome.zarr, .npy, .npz, .h5).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output .vxf file [default: INPUT.vxf].")] = None,
    method: Annotated[str | None, typer.Option(help=f"Neural method: {', '.join(NEURAL_METHODS)} [default: {DEFAULT_METHOD}], or hybrid[:PRIOR] (a classic codec + neural residual; PRIOR: {', '.join(PRIORS)}).")] = None,
    codec: Annotated[str | None, typer.Option(help="Classic codec instead of a neural method: " + ", ".join(available_codecs()))] = None,
    ratio: Annotated[float | None, typer.Option(help="Target compression ratio (original bytes / file bytes).")] = None,
    max_error: Annotated[float | None, typer.Option("--max-error", help="Absolute error bound E, in data units: every voxel decodes within E (any method; neural and hybrid methods add an entropy-coded residual, with --ratio as the base's ratio).")] = None,
    rel_error: Annotated[float | None, typer.Option("--rel-error", help="Error bound as a fraction of the value range (max - min), e.g. 0.001.")] = None,
    psnr_db: Annotated[float | None, typer.Option("--psnr", help="Target PSNR in dB, data range (classic codecs).")] = None,
    lossless: Annotated[bool, typer.Option("--lossless", help="Lossless (gzip, zstd, raw).")] = False,
    tolerance: Annotated[float | None, typer.Option(help="Accepted relative deviation from a ratio target [default: 0.02 neural, 0.03 classic].")] = None,
    device: Annotated[str, typer.Option(help="Neural methods: auto, cpu or cuda.")] = "auto",
    steps: Annotated[int | None, typer.Option(help="Neural methods: training steps [default: as many as fit --time-budget].")] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", help="Neural methods: seconds of training when --steps is not given [default: 180 for 1M+ voxels, less for smaller inputs].")] = None,
    seed: Annotated[int, typer.Option(help="Neural methods: random seed.")] = 0,
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
) -> None:
    """Compress a volume into a self-describing .vxf file: a neural field (default) or a
    classic codec, at a target ratio (or an error bound for classic codecs)."""
    if method is not None and codec is not None:
        raise OptionError("give --method (neural) or --codec (classic), not both")
    if method is not None and method.startswith("classic:"):
        codec, method = method.split(":", 1)[1], None
    out = output or default_output(input)
    if out.suffix.lower() != container.SUFFIX:
        raise OptionError(f"output must end in {container.SUFFIX} (got {out.name})")
    check_writable(out, overwrite=force)
    hybrid_prior: str | None = None
    is_hybrid = method is not None and method.split(":", 1)[0] == hybrid.METHOD
    if is_hybrid:
        assert method is not None
        hybrid_prior = hybrid.parse_method(method)
    neural_method = None if codec is not None or is_hybrid else (method or DEFAULT_METHOD)
    if neural_method is not None and neural_method not in NEURAL_METHODS:
        raise OptionError(f"unknown method {neural_method!r} (neural: {', '.join(NEURAL_METHODS)}; hybrid[:PRIOR]; "
                          "classic codecs with --codec)")
    tol = tolerance if tolerance is not None else (0.03 if codec is not None else 0.02)
    c = get_codec(codec) if codec is not None else None
    bounded = max_error is not None or rel_error is not None
    # error bound on top of a method: neural, hybrid, or a classic codec without its own error mode
    wrap_bound = bounded and (c is None or "max_abs_error" not in c.targets)
    if wrap_bound:
        if psnr_db is not None or lossless or fsc_target is not None:
            raise OptionError("an error bound goes with --ratio (the base's ratio) only")
        if max_error is not None and rel_error is not None:
            raise OptionError("give --max-error or --rel-error, not both")
        for flag, value in (("--max-error", max_error), ("--rel-error", rel_error)):
            if value is not None and not value > 0:
                raise OptionError(f"{flag} must be > 0, got {value:g}")
        target = Target.ratio(ratio, tol) if ratio is not None else None
    else:
        target = make_target(ratio, max_error, rel_error, psnr_db, lossless, tol)
    if fsc_target is not None and (target is not None or resolution is None):
        raise OptionError("--fsc-target needs --resolution and no other target (--ratio, --max-error, ...)")
    if fsc_target is None and resolution is not None:
        raise OptionError("--resolution goes with --fsc-target")
    if apix is not None and not apix > 0:
        raise OptionError(f"--apix must be > 0 Å, got {apix:g}")
    guided = any(v is not None for v in (guide_weight, guide_threshold, guide_channel, guide_mask))
    if guided and guide is None:
        raise OptionError("--guide-weight/--guide-threshold/--guide-channel/--guide-mask go with --guide")
    if guide is not None and c is not None:
        raise OptionError("--guide works with neural and hybrid methods, not classic codecs")
    extra = parse_settings(settings)
    if guide is not None:
        extra.update({k: v for k, v in (("guide", guide), ("guide_weight", guide_weight),
                                        ("guide_threshold", guide_threshold)) if v is not None})
        if guide_channel is not None:
            if is_hybrid:
                raise OptionError("--guide-channel works with the neural methods; for the hybrid method pass "
                                  "--guide-mask")
            extra["guide_channel"] = guide_channel
    hcfg: hybrid.HybridConfig | None = None
    if neural_method is not None:
        extra.update({k: v for k, v in (("device", device), ("steps", steps), ("time_budget", time_budget),
                                        ("seed", seed)) if v is not None})
        make_config(neural_method, **extra)  # unknown keys fail before reading
    elif is_hybrid:
        extra.update({k: v for k, v in (("device", device), ("steps", steps), ("time_budget", time_budget),
                                        ("seed", seed)) if v is not None})
        hcfg = hybrid.HybridConfig.make(hybrid_prior, **extra)
        hybrid.require_prior(hcfg.prior)
    if c is not None and wrap_bound and not c.available():
        raise OptionError(f"codec {c.name} is unavailable on this machine")
    vol = read_volume(input, axes=axes)
    if apix is not None:
        vol = with_voxel_size(vol, apix)
    mask_arr = None
    if guide_mask is not None:
        if guide != "segmentation":
            raise OptionError("--guide-mask goes with --guide segmentation")
        mask_arr = read_volume(guide_mask).data
        if mask_arr.shape != vol.data.shape and not (guide_channel is not None and mask_arr.ndim == vol.data.ndim - 1):
            raise OptionError(f"--guide-mask has shape {mask_arr.shape}, the data {vol.data.shape}")
        mask_arr = mask_arr > 0
    t0 = time.perf_counter()

    with stage_progress(hcfg and "hybrid" or neural_method or "base") as update:
        encode_base = make_encoder(vol, codec=c, hybrid_cfg=hcfg, neural_method=neural_method, settings=extra,
                                   target=target, tol=tol, loose=wrap_bound, guide_mask=mask_arr, progress=update,
                                   describe_neural=describe_fit)
        if fsc_target is not None:
            assert resolution is not None
            blob, what = _science_lossless(vol, c, neural_method, extra, fsc_target, resolution, None, tol)
        elif wrap_bound:
            blob, what = _error_bounded(vol, encode_base, max_error, rel_error, ratio, c is not None or is_hybrid)
        elif c is not None:
            blob = compress_volume(vol, c, target)
            what = c.name
        else:
            blob, what = encode_base(None if target is not None else 64.0, True)
    seconds = time.perf_counter() - t0
    r = vol.data.nbytes / len(blob)
    msg = (f"{input.name} -> {out}: {vol.data.nbytes:,} -> {len(blob):,} bytes, ratio {r:.2f} "
           f"({8 * len(blob) / vol.data.size:.3f} bits/voxel), {what}, {seconds:.1f} s")
    if check:  # before writing: a file that does not decode is never left behind
        try:
            dec = decompress_vxf(blob)
        except VoxfieldError as exc:
            raise DataError(f"the compressed file does not decode ({exc.message}); nothing was written",
                            input) from None
        msg += (f"; PSNR {psnr(vol.data, dec.data):.2f} dB (data range), "
                f"max |error| {max_abs_error(vol.data, dec.data):.4g}")
    write_bytes_atomic(out, blob, overwrite=force)
    console.out.print(msg)


def _error_bounded(vol: Volume, encode_base: Callable[..., tuple[bytes, str]], max_error: float | None,
                   rel_error: float | None, ratio: float | None, searchable: bool) -> tuple[bytes, str]:
    """The method's file plus the entropy-coded residual that bounds every voxel's error
    (:func:`voxfield.compress.bounded.error_bounded`), reporting each probe of the search."""
    from voxfield.compress import ebound
    from voxfield.compress.bounded import error_bounded

    bound = ebound.absolute_bound(vol.data, max_error, rel_error)

    def probe(r: float, base: int, total: int) -> None:
        console.err.print(f"  base at {r:.1f}x: {base:,} B, estimated total {total:,} B", markup=False,
                          highlight=False)

    if searchable and ratio is None:
        console.err.print("searching the base ratio that makes the smallest error-bounded file…")
    blob, what, _ = error_bounded(vol, encode_base, bound, search=searchable, ratio=ratio, on_probe=probe)
    return blob, what


def with_voxel_size(vol: Volume, apix: float) -> Volume:
    """``vol`` with every spatial voxel size set to ``apix`` Å (an origin given in voxels,
    unit "px", is converted with it; an origin in Å or nm is kept, in Å)."""
    scale = {"px": apix, "nm": 10.0}.get(vol.unit, 1.0)
    origin = tuple(o * scale for o in vol.origin)
    return Volume(vol.data, vol.axes, (float(apix),) * len(vol.spacing), "Å", origin, vol.meta)


def _science_lossless(vol: Volume, codec: Any, neural_method: str | None, settings: dict[str, Any], threshold: float,
                      resolution: float, apix: float | None, tol: float) -> tuple[bytes, str]:
    """Run the FSC-target search and return the best file and a summary."""
    from voxfield.cli.metrics_cmd import angstrom_frame
    from voxfield.compress.science import Probe, science_lossless
    from voxfield.errors import TargetNotMet

    spacing, _ = angstrom_frame(vol, apix)
    perm = [vol.axes.index(a) for a in "ZYX"]
    name = codec.name if codec is not None else neural_method

    def encode(target: Target) -> bytes:
        if codec is not None:
            return compress_volume(vol, codec, target)
        assert neural_method is not None
        return compress_field(vol, neural_method, target, settings)[0]

    def show(p: Probe) -> None:
        got = "not reached" if p.ratio is None else f"ratio {p.ratio:.1f}"
        fsc_txt = "" if p.min_fsc is None else f", lowest FSC to {resolution:g} Å {p.min_fsc:.4f}"
        console.err.print(f"  {name} at {p.target:.1f}x: {got}{fsc_txt} -> {'keeps' if p.passed else 'loses'} "
                          f"FSC {threshold:g}", markup=False, highlight=False)

    res = science_lossless(vol.data.transpose(perm), encode, lambda b: decompress_vxf(b).data.transpose(perm),
                           spacing, resolution, threshold=threshold, tolerance=tol, on_probe=show)
    if res.blob is None:
        raise TargetNotMet(f"{name}: even {res.probes[0].target:g}x loses FSC {threshold:g} out to {resolution:g} Å")
    return res.blob, (f"{name}, science-lossless: highest ratio keeping FSC >= {threshold:g} to {resolution:g} Å "
                      f"(lowest FSC {res.min_fsc:.4f}; {len(res.probes)} compressions tried)")


def decompress(
    input: Annotated[Path, typer.Argument(help=".vxf file made by voxfield compress.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file; its suffix picks the format [default: the original name with .decoded].")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")] = False,
    member: Annotated[str | None, typer.Option("--member", help="A set made by compress-set: the map to restore, by number counted from 1 (as `voxfield info` lists them) or by name.")] = None,
) -> None:
    """Decode a .vxf file back to the original format (or the format of -o's suffix)."""
    from voxfield.compress.cryo_pe_set import member_header

    require_vxf(input)
    with container.VxfReader(input) as reader:
        out = output or output_name(member_header(reader.header, member, input), input)
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
