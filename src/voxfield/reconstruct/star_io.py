"""RELION STAR files: read particle metadata (poses, CTF, optics) and write them back.

Reads RELION 3.0 (one data block with everything per particle; pixel size from
``rlnDetectorPixelSize``/``rlnMagnification`` when ``rlnImagePixelSize`` is absent),
RELION 3.1 and RELION 5 (``data_optics`` + ``data_particles``; optics-group values such as
pixel size, voltage, Cs, amplitude contrast and image size are merged onto every particle
through ``rlnOpticsGroup``). Conventions are cryoDRGN's, see :mod:`voxfield.reconstruct.poses`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from voxfield.errors import DataError, FormatError, VoxfieldError
from voxfield.io.validate import describe_exception, memory_error, one_line
from voxfield.reconstruct.poses import euler_to_rot, rot_to_euler

_F = TypeVar("_F", bound=Callable[..., Any])


def guard_reader(what: str) -> Callable[[_F], _F]:
    """Decorator for a public reader whose first argument is the file it reads (or an
    object standing for it): :class:`~voxfield.errors.VoxfieldError` passes through, a
    :class:`MemoryError` becomes a one-line :class:`DataError`, and any other exception (a
    library failing on a damaged file: pandas, starfile, numpy, pickle...) becomes
    ``FormatError("cannot read <what>: corrupt or unsupported file (<type>: <message>)")``
    naming the file, so that the command line prints one line instead of a traceback."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def guarded(source: Any, *args: Any, **kwargs: Any) -> Any:
            where = str(source) if isinstance(source, (str, os.PathLike)) else what
            try:
                return fn(source, *args, **kwargs)
            except VoxfieldError:
                raise
            except MemoryError as exc:
                raise memory_error(exc, where, f"read the {what}") from None
            except Exception as exc:  # noqa: BLE001 - the safety net of a public reader
                raise FormatError(f"cannot read {what}: corrupt or unsupported file ({describe_exception(exc)})",
                                  where) from None

        return guarded  # type: ignore[return-value]

    return wrap

__all__ = [
    "StarMetadata",
    "read_star",
    "read_star_metadata",
    "write_relion31_star",
    "add_star_columns",
    "ANGLE_COLUMNS",
    "CTF_STAR_COLUMNS",
]

ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
#: STAR columns that fill cryoDRGN CTF columns 2..8 (phase shift is optional, default 0).
CTF_STAR_COLUMNS = (
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnPhaseShift",
)
_CTF_REQUIRED = CTF_STAR_COLUMNS[:6]


def _strip(name: str) -> str:
    return name[1:] if name.startswith("_") else name


@guard_reader("STAR file")
def read_star(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, pd.DataFrame]]:
    """Read a STAR file: ``(particles, optics or None, all_blocks)``.

    The particle table is ``data_particles`` if present, else the largest other loop block
    (RELION 3.0 ``data_``, ``data_images`` ...). Column names have no leading underscore.
    """
    import starfile

    p = Path(path)
    if not p.is_file():
        raise FormatError("STAR file not found", p)
    try:
        blocks = starfile.read(p, always_dict=True)
    except MemoryError as exc:
        raise memory_error(exc, p, "parse the STAR file") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise FormatError(f"cannot parse STAR file: {describe_exception(exc)}", p) from None
    if not isinstance(blocks, dict):
        raise FormatError("cannot parse STAR file: no data blocks", p)
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    optics = tables.get("optics")
    if "particles" in tables:
        particles = tables["particles"]
    else:
        others = [(len(v), k) for k, v in tables.items() if k != "optics"]
        if not others:
            raise FormatError("STAR file has no particle table (no data loop other than data_optics)", p)
        particles = tables[max(others)[1]]
    if len(particles) == 0:
        raise DataError("STAR file has no particle rows", p)
    return particles, optics, blocks


@dataclass
class StarMetadata:
    """Per-particle metadata of a STAR file, in cryoDRGN's conventions.

    ``rot`` (N,3,3) float32 or None when the file has no Euler angles; ``trans_px`` (N,2)
    float32 in pixels of the file's pixel size, or None when the file has no origin columns;
    ``ctf`` (N,9) float32 cryoDRGN layout, or None when the file has no CTF columns (columns
    0/1, D and Apix, are NaN where unknown); ``apix``/``D`` per particle (NaN / 0 where
    unknown); ``image_names`` the raw ``rlnImageName`` values or None; ``table`` the particle
    rows with the optics values merged in.
    """

    n: int
    image_names: list[str] | None
    rot: np.ndarray | None
    trans_px: np.ndarray | None
    ctf: np.ndarray | None
    apix: np.ndarray
    D: np.ndarray
    optics_group: np.ndarray | None
    table: pd.DataFrame
    optics: pd.DataFrame | None
    source: str


def _merge_optics(parts: pd.DataFrame, optics: pd.DataFrame | None, path: Path) -> pd.DataFrame:
    """Particle table with every optics column copied onto the particles (optics wins, as RELION)."""
    if optics is None or len(optics) == 0:
        return parts.copy()
    if "rlnOpticsGroup" in parts.columns and "rlnOpticsGroup" in optics.columns:
        try:
            groups = parts["rlnOpticsGroup"].to_numpy().astype(np.int64)
            table_ids = optics["rlnOpticsGroup"].to_numpy().astype(np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"rlnOpticsGroup is not an integer column: {one_line(exc)}", path) from None
        pos = {int(g): i for i, g in enumerate(table_ids)}
        unknown = sorted({int(g) for g in groups} - set(pos))
        if unknown:
            raise DataError(
                f"particles refer to optics group(s) {unknown} not in data_optics (groups {sorted(pos)})", path
            )
        rows = np.array([pos[int(g)] for g in groups], dtype=np.int64)
    elif len(optics) == 1:
        rows = np.zeros(len(parts), dtype=np.int64)
    else:
        raise DataError(f"data_optics has {len(optics)} groups but particles have no rlnOpticsGroup column", path)
    merged = parts.copy()
    for col in optics.columns:
        if col in ("rlnOpticsGroup",):
            continue
        merged[col] = optics[col].to_numpy()[rows]
    return merged


def _numeric(table: pd.DataFrame, cols: Sequence[str], path: Path) -> np.ndarray:
    try:
        arr = np.stack([pd.to_numeric(table[c]).to_numpy(dtype=np.float64) for c in cols], axis=1)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"non-numeric values in column(s) {', '.join(cols)}: {one_line(exc)}", path) from None
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"non-finite value in column {cols[c]} at particle row {r} (0-based)", path)
    return arr


@guard_reader("STAR file")
def read_star_metadata(
    path: str | os.PathLike[str],
    *,
    apix: float | None = None,
    D: int | None = None,
    require_poses: bool = False,
    require_ctf: bool = False,
    require_images: bool = False,
) -> StarMetadata:
    """Read poses, CTF and optics of a RELION STAR file without touching the image stacks.

    ``apix`` / ``D`` fill in the pixel size (Å) and box size when the file does not record
    them (RELION 3.0 files often lack both). Missing required columns raise
    :class:`DataError` naming them: ``require_images`` → ``rlnImageName``, ``require_poses``
    → the three Euler angles, ``require_ctf`` → the defocus/voltage/Cs/amplitude-contrast
    columns. A *partial* set of CTF or origin columns is always an error.

    Rotation: ``rot = euler_to_rot((rlnAngleRot, rlnAngleTilt, rlnAnglePsi))`` (RELION's
    ``Euler_angles2matrix``, identical to cryoDRGN ``parse_pose_star``). Translation, in
    pixels, sign as stored: ``(rlnOriginX, rlnOriginY)`` or
    ``(rlnOriginXAngst, rlnOriginYAngst) / rlnImagePixelSize`` (the file's pixel size).
    """
    p = Path(path)
    parts, optics, _ = read_star(p)
    table = _merge_optics(parts, optics, p)
    cols = set(table.columns)
    n = len(table)

    image_names = None
    if "rlnImageName" in cols:
        image_names = [str(x) for x in table["rlnImageName"].tolist()]
    elif require_images:
        raise DataError("STAR file is missing required column rlnImageName", p)

    # pixel size and box size per particle
    file_apix = np.full(n, np.nan)
    if "rlnImagePixelSize" in cols:
        file_apix = _numeric(table, ["rlnImagePixelSize"], p)[:, 0]
    elif "rlnDetectorPixelSize" in cols and "rlnMagnification" in cols:
        det, mag = _numeric(table, ["rlnDetectorPixelSize", "rlnMagnification"], p).T
        with np.errstate(divide="ignore", invalid="ignore"):
            file_apix = np.where(mag > 0, det * 1e4 / mag, np.nan)
    apix_arr = file_apix.copy()
    if apix is not None:
        apix_arr = np.where(np.isfinite(apix_arr), apix_arr, float(apix))
    if np.any(np.isfinite(apix_arr) & (apix_arr <= 0)):
        raise DataError("pixel size must be positive", p)
    d_arr = np.zeros(n, dtype=np.int64)
    if "rlnImageSize" in cols:
        d_arr = _numeric(table, ["rlnImageSize"], p)[:, 0].astype(np.int64)
    elif D is not None:
        d_arr[:] = int(D)

    # rotations
    rot = None
    present = [c for c in ANGLE_COLUMNS if c in cols]
    if len(present) == 3:
        rot = euler_to_rot(_numeric(table, ANGLE_COLUMNS, p)).astype(np.float32)
    elif require_poses:
        missing = [c for c in ANGLE_COLUMNS if c not in cols]
        raise DataError(f"STAR file is missing required pose column(s) {', '.join(missing)}", p)

    # translations
    trans = None
    if "rlnOriginX" in cols or "rlnOriginY" in cols:
        if not {"rlnOriginX", "rlnOriginY"} <= cols:
            raise DataError("STAR file has only one of rlnOriginX / rlnOriginY", p)
        trans = _numeric(table, ["rlnOriginX", "rlnOriginY"], p)
    elif "rlnOriginXAngst" in cols or "rlnOriginYAngst" in cols:
        if not {"rlnOriginXAngst", "rlnOriginYAngst"} <= cols:
            raise DataError("STAR file has only one of rlnOriginXAngst / rlnOriginYAngst", p)
        conv = np.where(np.isfinite(file_apix), file_apix, apix_arr)
        if not np.all(np.isfinite(conv)):
            raise DataError("rlnOriginXAngst/YAngst need a pixel size: the file has none, pass apix=", p)
        trans = _numeric(table, ["rlnOriginXAngst", "rlnOriginYAngst"], p) / conv[:, None]
    if trans is not None:
        trans = trans.astype(np.float32)

    # CTF
    ctf = None
    have = [c for c in _CTF_REQUIRED if c in cols]
    if have or require_ctf:
        missing = [c for c in _CTF_REQUIRED if c not in cols]
        if missing:
            raise DataError(f"STAR file is missing required CTF column(s) {', '.join(missing)}", p)
        vals = _numeric(table, list(_CTF_REQUIRED), p)
        phase = _numeric(table, ["rlnPhaseShift"], p)[:, 0] if "rlnPhaseShift" in cols else np.zeros(n)
        ctf = np.empty((n, 9), dtype=np.float64)
        ctf[:, 0] = np.where(d_arr > 0, d_arr, np.nan)
        ctf[:, 1] = apix_arr
        ctf[:, 2:8] = vals
        ctf[:, 8] = phase
        ctf = ctf.astype(np.float32)

    groups = None
    if "rlnOpticsGroup" in parts.columns:
        try:
            groups = pd.to_numeric(parts["rlnOpticsGroup"]).to_numpy().astype(np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"rlnOpticsGroup is not an integer column: {one_line(exc)}", p) from None
    return StarMetadata(
        n=n,
        image_names=image_names,
        rot=rot,
        trans_px=trans,
        ctf=ctf,
        apix=apix_arr,
        D=d_arr,
        optics_group=groups,
        table=parts,
        optics=optics,
        source=str(p),
    )


# ---------------------------------------------------------------------------------- writing


def _write_blocks(path: str | os.PathLike[str], blocks: Mapping[str, pd.DataFrame]) -> Path:
    import starfile

    from voxfield.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        starfile.write(dict(blocks), tmp, float_format="%.9g", sep=" ")
    return Path(path)


def _column_items(columns: Mapping[str, np.ndarray] | None, n: int) -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for name, values in (columns or {}).items():
        arr = np.asarray(values)
        if arr.shape[:1] != (n,) or arr.ndim > 2:
            raise DataError(
                f"column {name!r} has shape {arr.shape}, expected ({n},) or ({n}, k) to match {n} particles"
            )
        name = _strip(str(name))
        if arr.ndim == 1:
            out.append((name, arr))
        else:
            out.extend((f"{name}{j + 1}", arr[:, j]) for j in range(arr.shape[1]))
    return out


def write_relion31_star(
    path: str | os.PathLike[str],
    *,
    rot: np.ndarray,
    trans_px: np.ndarray | None = None,
    ctf: np.ndarray | None = None,
    apix: float,
    D: int,
    image_names: Sequence[str] | None = None,
    stack: tuple[str, int] | None = None,
    extra_columns: Mapping[str, np.ndarray] | None = None,
    optics_group_name: str = "opticsGroup1",
) -> Path:
    """Write a RELION 3.1 STAR file (``data_optics`` + ``data_particles``), atomically.

    Give the images either as ``image_names`` (``"N@stack.mrcs"`` strings) or as
    ``stack=(stack_name, N)`` (images 1..N of one stack). ``rot`` is (N,3,3) in cryoDRGN's
    convention, ``trans_px`` (N,2) pixels, ``ctf`` (N,9) cryoDRGN layout (its Apix column gives
    the per-particle pixel size; ``apix`` is used without CTF). One optics group is written per
    distinct (pixel size, voltage, Cs, amplitude contrast); they hold ``rlnVoltage``,
    ``rlnSphericalAberration``, ``rlnAmplitudeContrast``, ``rlnImagePixelSize``,
    ``rlnImageSize`` (= ``D``) and ``rlnImageDimensionality`` (2). Particles hold the Euler
    angles, ``rlnOriginXAngst/YAngst`` (= ``trans_px * pixel size``), defocus U/V/angle and
    ``rlnPhaseShift``, then ``extra_columns`` (a 2-D array ``(N, k)`` becomes columns
    ``name1..namek``).
    """
    rot = np.asarray(rot, dtype=np.float64)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise DataError(f"rot must be (N, 3, 3), got {rot.shape}")
    n = len(rot)
    if image_names is not None:
        names = [str(x) for x in image_names]
    elif stack is not None:
        stack_name, count = stack
        names = [f"{i:06d}@{stack_name}" for i in range(1, int(count) + 1)]
    else:
        raise DataError("give image_names or stack=(stack_name, N)")
    if len(names) != n:
        raise DataError(f"{len(names)} image names but {n} poses")
    trans = np.zeros((n, 2)) if trans_px is None else np.asarray(trans_px, dtype=np.float64)
    if trans.shape != (n, 2):
        raise DataError(f"trans_px must be ({n}, 2), got {trans.shape}")
    if ctf is not None:
        ctf = np.asarray(ctf, dtype=np.float64)
        if ctf.shape != (n, 9):
            raise DataError(f"ctf must be ({n}, 9), got {ctf.shape}")
        px = ctf[:, 1]
        keys = np.stack([px, ctf[:, 5], ctf[:, 6], ctf[:, 7]], axis=1)
    else:
        px = np.full(n, float(apix))
        keys = px[:, None]
    uniq, group_of = np.unique(keys, axis=0, return_inverse=True)
    group_of = np.asarray(group_of).reshape(-1)
    ng = len(uniq)
    optics = {
        "rlnOpticsGroupName": [optics_group_name if ng == 1 else f"{optics_group_name}_{g + 1}" for g in range(ng)],
        "rlnOpticsGroup": np.arange(1, ng + 1),
    }
    if ctf is not None:
        optics["rlnVoltage"] = uniq[:, 1]
        optics["rlnSphericalAberration"] = uniq[:, 2]
        optics["rlnAmplitudeContrast"] = uniq[:, 3]
    optics["rlnImagePixelSize"] = uniq[:, 0]
    optics["rlnImageSize"] = np.full(ng, int(D))
    optics["rlnImageDimensionality"] = np.full(ng, 2)

    euler = rot_to_euler(rot)
    particles: dict[str, object] = {
        "rlnImageName": names,
        "rlnOpticsGroup": group_of + 1,
        "rlnAngleRot": euler[:, 0],
        "rlnAngleTilt": euler[:, 1],
        "rlnAnglePsi": euler[:, 2],
        "rlnOriginXAngst": trans[:, 0] * px,
        "rlnOriginYAngst": trans[:, 1] * px,
    }
    if ctf is not None:
        particles["rlnDefocusU"] = ctf[:, 2]
        particles["rlnDefocusV"] = ctf[:, 3]
        particles["rlnDefocusAngle"] = ctf[:, 4]
        particles["rlnPhaseShift"] = ctf[:, 8]
    for name, values in _column_items(extra_columns, n):
        if name in particles:
            raise DataError(f"extra column {name!r} would overwrite a standard column")
        particles[name] = values
    return _write_blocks(path, {"optics": pd.DataFrame(optics), "particles": pd.DataFrame(particles)})


@guard_reader("STAR file")
def add_star_columns(
    star_in: str | os.PathLike[str], star_out: str | os.PathLike[str], columns: Mapping[str, np.ndarray]
) -> Path:
    """Copy ``star_in`` to ``star_out`` with per-particle ``columns`` appended to the particle
    table (e.g. a latent ``z``: a ``(N, k)`` array named ``vfLatentZ`` gives ``vfLatentZ1..k``).
    Other blocks (``data_optics``) are kept; existing columns of the same name are replaced.
    The write is atomic (``star_out`` may equal ``star_in``)."""
    p = Path(star_in)
    parts, _, blocks = read_star(p)
    key = next(k for k, v in blocks.items() if v is parts)
    new = parts.copy()
    try:
        items = _column_items(columns, len(parts))
    except DataError as exc:
        raise DataError(exc.message, p) from exc
    for name, values in items:
        new[name] = values
    out = dict(blocks)
    out[key] = new
    return _write_blocks(star_out, out)
