"""Decoding and describing ``.vxf`` files of any method.

Methods are dispatched through :mod:`voxfield.compress.registry` on
``header["method"]["name"]``, so that files written today keep decoding after new methods
are added, and a method added by another package decodes like a built-in one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.compress import container, guard, registry
from voxfield.compress.defaults import CLASSIC_RTOL, NEURAL_RTOL
from voxfield.compress.modes import ebound
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet, VoxfieldError
from voxfield.io.volume import Volume


def decompress(source: str | os.PathLike[str] | bytes, member: int | str | None = None) -> Volume:
    """Decode a whole ``.vxf`` file (path or bytes) to a :class:`Volume` with the original
    shape, dtype, axes, spacing, origin and format header.

    A set of maps (``voxfield compress-set``) needs ``member``: its number counted from 1,
    or its name (:func:`voxfield.compress.cryo_pe_set.member_index`)."""
    with guard.decoding(source), container.VxfReader(source) as reader:
        method = registry.method_for_header(reader.header, reader.path)
        if method.kind == "set" or member is not None:
            from voxfield.compress import cryo_pe_set

            vol = cryo_pe_set.decode_member(reader, member)
        else:
            vol = method.decode(reader)
            if "ebound" in reader.header:
                vol = Volume(ebound.correct(reader, vol.data), vol.axes, vol.spacing, vol.unit, vol.origin,
                             vol.meta)
            guard.check_decoded(vol.data, reader.spec.shape, reader.spec.dtype, reader.path)
        guard.check_decoded(vol.data, None, None, reader.path)
        return vol


def describe(path: str | os.PathLike[str], *, quick: bool = False) -> dict[str, Any]:
    """Summary of a ``.vxf`` file without decoding: method, original volume, sizes.

    The header is validated (:mod:`voxfield.compress.schema`) and, unless ``quick``, every
    section's checksum is verified, so that a damaged file is reported here rather than at
    decoding time."""
    with guard.decoding(path), container.VxfReader(path) as reader:
        if not quick:
            reader.verify()
        head = reader.header
        vol = head.get("volume", {})
        shape = vol.get("shape", [])
        nbytes = int(np.prod(shape)) * np.dtype(vol.get("dtype", "u1")).itemsize if shape else 0
        method = head.get("method", {})
        summary: dict[str, Any] = {"name": method.get("name")}
        members = None
        try:
            handler = registry.method_for_header(head, reader.path)
        except FormatError:
            handler = None  # a method this voxfield does not know: show the header as it is
        if handler is None:
            summary.update({k: v for k, v in method.items() if k != "name"})
        else:
            summary.update(handler.summary(reader))
            if handler.kind == "set":
                from voxfield.compress import cryo_pe_set

                members = cryo_pe_set.describe_members(reader)
                nbytes = sum(m["original_bytes"] for m in members)
        if "ebound" in head:
            summary["max_abs_error"] = head["ebound"].get("max_abs_error")
        out: dict[str, Any] = {
            "file": str(Path(path)),
            "file_bytes": reader.size,
            "container_version": ".".join(map(str, reader.version)),
            "written_by": head.get("voxfield"),
            "method": summary,
            "original_name": vol.get("name"),
            "original_format": vol.get("meta", {}).get("format"),
            "shape": shape,
            "dtype": np.dtype(vol["dtype"]).name if vol.get("dtype") else None,
            "axes": vol.get("axes"),
            "spacing": vol.get("spacing"),
            "unit": vol.get("unit"),
            "origin": vol.get("origin"),
            "original_bytes": nbytes,
            "ratio": nbytes / reader.size if reader.size else None,
            "sections": {n: reader.section_info(n).size for n in reader.section_names},
        }
        if members is not None:
            out["members"] = members
        return out


# ---------------------------------------------------------------------------- compress
#: Method of :func:`compress` without ``method``/``codec``.
DEFAULT_METHOD = "auto"


@dataclass
class CompressResult:
    """What :func:`compress` made: the ``.vxf`` bytes (``payload``), the file written
    (``path``, None without ``output``), the measured ``ratio`` (original bytes / bytes of
    the file), the method's ``report``, a one-line ``description``, and, when checked, the
    decoded volume's PSNR (data range) and largest absolute error."""

    payload: bytes
    path: Path | None
    original_bytes: int
    ratio: float
    method: str
    description: str
    voxels: int
    report: Any = None
    seconds: float = 0.0
    psnr_db: float | None = None
    max_abs_error: float | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of the ``.vxf`` file."""
        return len(self.payload)

    @property
    def bits_per_voxel(self) -> float:
        return 8 * len(self.payload) / max(self.voxels, 1)


def _as_volume(data: Any, axes: str | None) -> Volume:
    """A path, a :class:`Volume` or a numpy array as a Volume (``axes`` overrides)."""
    from voxfield.io import read_volume
    from voxfield.io.numpy_io import axes_for_ndim

    if isinstance(data, Volume):
        return data if axes is None else Volume(data.data, axes, data.spacing, data.unit, data.origin, data.meta)
    if isinstance(data, np.ndarray):
        return Volume(data, axes or axes_for_ndim(data.ndim, None))
    return read_volume(data, axes=axes)


def resolve_method(method: str | None, codec: str | None) -> tuple[str, dict[str, Any]]:
    """``(registry name, settings it implies)`` of a method spelling: ``"sci"``,
    ``"hybrid:sz3"``, ``"classic:sperr"``, or ``codec="sperr"``; None: the default."""
    if method is not None and codec is not None:
        raise OptionError("give a method or a codec, not both")
    if codec is not None:
        return "classic", {"codec": codec}
    name = method or DEFAULT_METHOD
    base, sep, arg = name.partition(":")
    if base == "classic":
        if not arg:
            raise OptionError("classic:CODEC needs a codec name, e.g. classic:sperr")
        return "classic", {"codec": arg}
    if base == "hybrid":
        from voxfield.compress.hybrid_names import parse_method

        prior = parse_method(name)
        return "hybrid", ({"prior": prior} if prior else {})
    if sep:
        raise OptionError(f"method {name!r}: only hybrid:PRIOR and classic:CODEC take a ':' argument")
    return name, {}


def compress(data: Any, *, method: str | None = None, codec: str | None = None, ratio: float | None = None,
             max_error: float | None = None, rel_error: float | None = None, psnr: float | None = None,
             lossless: bool = False, fsc_target: float | None = None, resolution: float | None = None,
             tolerance: float | None = None, output: str | os.PathLike[str] | None = None, overwrite: bool = False,
             device: str | None = None, steps: int | None = None, time_budget: float | None = None,
             seed: int | None = None,
             guide: str | None = None, guide_weight: float | None = None, guide_threshold: float | None = None,
             guide_channel: int | None = None, guide_mask: np.ndarray | None = None, axes: str | None = None,
             apix: float | None = None, check: bool = True, progress: Any = None, on_probe: Any = None,
             **settings: Any) -> CompressResult:
    """Compress a volume (a file path, a :class:`Volume` or a numpy array) into ``.vxf``
    bytes, and write them to ``output`` when given (atomically; the file is decoded first
    when ``check``, so a file that does not decode is never written).

    ``method``: a registered method (``"sci"``, ``"siren"``, ``"grid"``, ``"cryo-pe"``,
    ``"hybrid"``/``"hybrid:PRIOR"``, ``"auto"`` (hybrid with the prior picked by a probe of
    every classic codec), ``"classic:CODEC"``, or one added through
    :mod:`voxfield.compress.registry`), or ``codec`` for a classic codec; default
    :data:`DEFAULT_METHOD`. One target: ``ratio``, ``psnr`` (classic codecs),
    ``lossless``, ``max_error``/``rel_error`` (every voxel within the bound: the codec's
    own mode, or any method plus an entropy-coded residual, ``ratio`` then being the
    base's), or ``fsc_target`` with ``resolution`` (Å; the highest ratio keeping the FSC).
    ``tolerance``: accepted relative deviation from a ratio (default 0.02 neural, 0.03
    classic). ``device``, ``steps``, ``time_budget``, ``seed`` and ``**settings`` (any key
    of the method's config) tune neural methods; ``guide*`` add application guidance.
    ``progress(stage, fraction)`` reports the stages of a fit, ``on_probe(text)`` each
    probe of an error-bound or FSC search. Returns a :class:`CompressResult`.
    """
    import time

    from voxfield.io import check_writable
    from voxfield.io.atomic import write_bytes_atomic
    from voxfield.io.volume import with_voxel_size

    name, implied = resolve_method(method, codec)
    m = registry.get_method(name)
    if m.kind == "set":
        raise OptionError(f"method {name!r} compresses several maps: use compress-set")
    out = Path(output) if output is not None else None
    if out is not None:
        if out.suffix.lower() != container.SUFFIX:
            raise OptionError(f"output must end in {container.SUFFIX} (got {out.name})")
        check_writable(out, overwrite=overwrite)
    classic_codec = None
    if m.kind == "classic":
        from voxfield.codecs.registry import get_codec

        classic_codec = get_codec(implied["codec"])
    tol = tolerance if tolerance is not None else (CLASSIC_RTOL if classic_codec is not None else NEURAL_RTOL)
    bounded = max_error is not None or rel_error is not None
    wrap_bound = bounded and (classic_codec is None or "max_abs_error" not in classic_codec.targets)
    target = _target(ratio, max_error, rel_error, psnr, lossless, tol, wrap_bound, fsc_target, resolution)
    if apix is not None and not apix > 0:
        raise OptionError(f"--apix must be > 0 Å, got {apix:g}")
    guided = any(v is not None for v in (guide_weight, guide_threshold, guide_channel, guide_mask))
    if guided and guide is None:
        raise OptionError("--guide-weight/--guide-threshold/--guide-channel/--guide-mask go with --guide")
    if guide is not None and classic_codec is not None:
        raise OptionError("--guide works with neural and hybrid methods, not classic codecs")
    extra: dict[str, Any] = {**implied, **settings} if classic_codec is None else {}
    if guide is not None:
        extra.update({k: v for k, v in (("guide", guide), ("guide_weight", guide_weight),
                                        ("guide_threshold", guide_threshold)) if v is not None})
        if guide_channel is not None:
            if m.kind == "hybrid":
                raise OptionError("--guide-channel works with the neural methods; for the hybrid method pass "
                                  "--guide-mask")
            extra["guide_channel"] = guide_channel
    if classic_codec is None:
        extra.update({k: v for k, v in (("device", device), ("steps", steps), ("time_budget", time_budget),
                                        ("seed", seed)) if v is not None})
        config = m.config(**extra)  # unknown keys fail before reading
    else:
        if settings:
            raise OptionError(f"classic codecs take no settings (got {', '.join(sorted(settings))})")
        config = m.config(codec=implied["codec"])
        if wrap_bound and not classic_codec.available():
            raise OptionError(f"codec {classic_codec.name} is unavailable on this machine")
    vol = _as_volume(data, axes)
    if apix is not None:
        vol = with_voxel_size(vol, apix)
    mask_arr = _guide_mask(guide_mask, guide, guide_channel, vol)
    t0 = time.perf_counter()
    opts = {"guide_mask": mask_arr} if mask_arr is not None else {}
    report: Any = None

    def encode_with(tgt: Any) -> bytes:
        nonlocal report
        blob, report = m.encode(vol, tgt, config, progress=progress, **opts)
        return blob

    if fsc_target is not None:
        assert resolution is not None
        blob, what = _science_lossless(vol, name if classic_codec is None else classic_codec.name, encode_with,
                                       fsc_target, resolution, tol, on_probe)
    elif wrap_bound:
        from voxfield.compress.modes.bounded import error_bounded, make_encoder

        encode_base = make_encoder(vol, codec=classic_codec, method=m, config=config, target=target, tol=tol,
                                   loose=True, guide_mask=mask_arr, progress=progress)
        from voxfield.compress.modes import ebound as eb

        bound = eb.absolute_bound(vol.data, max_error, rel_error)
        searchable = classic_codec is not None or m.kind == "hybrid"

        def probe(r: float, base: int, total: int) -> None:
            if on_probe is not None:
                on_probe(f"base at {r:.1f}x: {base:,} B, estimated total {total:,} B")

        if searchable and ratio is None and on_probe is not None:
            on_probe("searching the base ratio that makes the smallest error-bounded file…")
        blob, what, _ = error_bounded(vol, encode_base, bound, search=searchable, ratio=ratio, on_probe=probe)
    else:
        blob = encode_with(target)
        what = m.describe(report)
    seconds = time.perf_counter() - t0
    res = CompressResult(blob, None, vol.data.nbytes, vol.data.nbytes / len(blob), name, what, vol.data.size, report,
                         seconds)
    if check:
        from voxfield.metrics import max_abs_error as max_err
        from voxfield.metrics import psnr as psnr_of

        try:
            dec = decompress(blob)
        except VoxfieldError as exc:
            raise DataError(f"the compressed file does not decode ({exc.message}); nothing was written",
                            vol.meta.get("source")) from None
        res.psnr_db = float(psnr_of(vol.data, dec.data))
        res.max_abs_error = float(max_err(vol.data, dec.data))
    if out is not None:
        write_bytes_atomic(out, blob, overwrite=overwrite)
        res.path = out
    return res


def _target(ratio: float | None, max_error: float | None, rel_error: float | None, psnr: float | None,
            lossless: bool, tol: float, wrap_bound: bool, fsc_target: float | None,
            resolution: float | None) -> Any:
    """The one target of a :func:`compress` call (None: the method's default)."""
    from voxfield.codecs.base import Target

    if wrap_bound:
        if psnr is not None or lossless or fsc_target is not None:
            raise OptionError("an error bound goes with --ratio (the base's ratio) only")
        if max_error is not None and rel_error is not None:
            raise OptionError("give --max-error or --rel-error, not both")
        for flag, value in (("--max-error", max_error), ("--rel-error", rel_error)):
            if value is not None and not value > 0:
                raise OptionError(f"{flag} must be > 0, got {value:g}")
        target = Target.ratio(ratio, tol) if ratio is not None else None
    else:
        given = [(k, v) for k, v in (("ratio", ratio), ("max_abs_error", max_error), ("rel_error", rel_error),
                                     ("psnr", psnr)) if v is not None]
        if lossless:
            given.append(("lossless", None))
        if len(given) > 1:
            raise OptionError("give one target: --ratio, --max-error, --rel-error, --psnr or --lossless")
        target = None
        if given:
            kind, value = given[0]
            if kind == "ratio" and value is not None and value <= 1:
                raise OptionError(f"--ratio must be > 1 (got {value:g})")
            target = Target(kind, value, tol)  # type: ignore[arg-type]
    if fsc_target is not None and (target is not None or resolution is None):
        raise OptionError("--fsc-target needs --resolution and no other target (--ratio, --max-error, ...)")
    if fsc_target is None and resolution is not None:
        raise OptionError("--resolution goes with --fsc-target")
    return target


def _guide_mask(mask: Any, guide: str | None, channel: int | None, vol: Volume) -> np.ndarray | None:
    """The reference mask of segmentation guidance (a path or an array), as booleans."""
    if mask is None:
        return None
    if guide != "segmentation":
        raise OptionError("--guide-mask goes with --guide segmentation")
    if not isinstance(mask, np.ndarray):
        from voxfield.io import read_volume

        mask = read_volume(mask).data
    if mask.shape != vol.data.shape and not (channel is not None and mask.ndim == vol.data.ndim - 1):
        raise OptionError(f"--guide-mask has shape {mask.shape}, the data {vol.data.shape}")
    return np.asarray(mask) > 0


def _science_lossless(vol: Volume, name: str, encode: Any, threshold: float, resolution: float, tol: float,
                      on_probe: Any) -> tuple[bytes, str]:
    """The FSC-target search (:mod:`voxfield.compress.modes.science`): best file and summary."""
    from voxfield.codecs.base import Target
    from voxfield.compress.modes.science import Probe, science_lossless
    from voxfield.io.volume import angstrom_frame

    spacing, _ = angstrom_frame(vol)
    perm = [vol.axes.index(a) for a in "ZYX"]

    def show(p: Probe) -> None:
        if on_probe is None:
            return
        got = "not reached" if p.ratio is None else f"ratio {p.ratio:.1f}"
        fsc_txt = "" if p.min_fsc is None else f", lowest FSC to {resolution:g} Å {p.min_fsc:.4f}"
        on_probe(f"{name} at {p.target:.1f}x: {got}{fsc_txt} -> {'keeps' if p.passed else 'loses'} FSC {threshold:g}")

    def enc(target: Target) -> bytes:
        return encode(target)

    res = science_lossless(vol.data.transpose(perm), enc, lambda b: decompress(b).data.transpose(perm),
                           spacing, resolution, threshold=threshold, tolerance=tol, on_probe=show)
    if res.blob is None:
        raise TargetNotMet(f"{name}: even {res.probes[0].target:g}x loses FSC {threshold:g} out to {resolution:g} Å")
    return res.blob, (f"{name}, science-lossless: highest ratio keeping FSC >= {threshold:g} to {resolution:g} Å "
                      f"(lowest FSC {res.min_fsc:.4f}; {len(res.probes)} compressions tried)")
