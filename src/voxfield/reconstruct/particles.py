"""Particle stacks for heterogeneous reconstruction: images + poses + CTF, cryoDRGN conventions.

:func:`load_particles` reads what RELION (3.0, 3.1, 5 ``.star``), cryoSPARC (``.cs``) and
cryoDRGN (``.mrcs`` + pose/CTF pickles) users have and returns a :class:`ParticleStack`:

* ``images`` — a lazy :class:`ImageSource` over memory-mapped MRC stacks;
* ``rot`` — ``(N, 3, 3)`` float32, exactly the matrices of a cryoDRGN pose pickle (for
  RELION angles: RELION's ``Euler_angles2matrix``; see :mod:`voxfield.reconstruct.poses`);
* ``trans`` — ``(N, 2)`` float32 in **pixels of the images** (cryoDRGN's pickle value × D),
  sign as stored by RELION/cryoSPARC (cryoDRGN does not flip it either);
* ``ctf`` — ``(N, 9)`` float32 in cryoDRGN's layout
  ``D, Apix, dfU (Å), dfV (Å), dfAng (deg), kV, Cs (mm), w, phase shift (deg)``.

When the stacks hold images of another box size than the metadata describe (downsampled
particles), the CTF pixel size is scaled by ``D_meta / D_images`` and ``D`` set to the image
box (as cryoDRGN's ``load_ctf_for_training``), and STAR shifts in pixels are scaled by
``D_images / D_meta`` (cryoDRGN stores them as box fractions, which downsampling keeps).

Every problem with the input is raised before training as one-line
:class:`~voxfield.errors.DataError` (bad content) or :class:`~voxfield.errors.FormatError`
(unknown extension, unreadable or corrupt file).
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxfield.errors import DataError, FormatError
from voxfield.io.validate import describe_exception, memory_error, one_line
from voxfield.reconstruct.poses import csparc_pose_to_rot
from voxfield.reconstruct.star_io import (
    StarMetadata,
    add_star_columns,
    guard_reader,
    read_star_metadata,
    write_relion31_star,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ImageSource",
    "ParticleStack",
    "load_particles",
    "read_star_metadata",
    "check_images",
    "load_pose_pkl",
    "load_ctf_pkl",
    "write_cryodrgn_pkls",
    "write_relion31_star",
    "add_star_columns",
    "parse_image_name",
]

PathLike = str | os.PathLike[str]
_STACK_EXTS = (".mrcs", ".mrc", ".st", ".map")


# ----------------------------------------------------------------------------- image source


@dataclass(frozen=True)
class _StackInfo:
    path: Path
    nx: int
    ny: int
    nz: int
    voxel: float


def _read_stack_header(path: Path) -> _StackInfo:
    import mrcfile
    from mrcfile.utils import data_dtype_from_header

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                h = mrc.header
                nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
                nsym = int(h.nsymbt)
                dtype = data_dtype_from_header(h)
                voxel = float(mrc.voxel_size.x)
    except Exception as exc:  # noqa: BLE001 - anything unreadable is a bad file
        raise FormatError(f"cannot read MRC header: {exc}", path) from exc
    if nx <= 0 or ny <= 0 or nz <= 0:
        raise FormatError(f"MRC header has a bad shape nx={nx} ny={ny} nz={nz}", path)
    expected = 1024 + nsym + nx * ny * nz * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size < expected:
        raise FormatError(f"MRC stack is truncated: {size} bytes, header promises {expected}", path)
    return _StackInfo(path, nx, ny, nz, voxel)


class ImageSource:
    """Lazy particle images: memory-mapped MRC stacks, read on indexing.

    ``len(src)`` particles of ``src.D × src.D`` pixels; ``src[idx]`` with an index array,
    boolean mask or slice returns float32 ``[n, D, D]`` (an integer gives ``[D, D]``). Reads
    are grouped by stack; at most ``max_open`` stacks are kept open. Picklable (for data
    loader workers): open handles are not pickled.

    The pages of a memory-mapped stack count in the process's resident memory once read, so a
    pass over a large stack would hold all of it; every ``release_bytes`` of images read (256
    MiB by default) the stacks are closed, which unmaps them (they reopen on the next read).

    ``stacks`` are the stack files, ``stack_ids[i]`` / ``indices[i]`` the stack and 0-based
    image of particle ``i``. The constructor reads every stack header and raises
    :class:`DataError` for non-square or odd-sized images, box sizes that differ between
    stacks and indices beyond a stack's length.
    """

    def __init__(
        self,
        stacks: Sequence[PathLike],
        stack_ids: np.ndarray,
        indices: np.ndarray,
        *,
        source: str = "",
        max_open: int = 64,
        release_bytes: int = 256 << 20,
    ) -> None:
        self.stacks = [Path(s) for s in stacks]
        self.stack_ids = np.asarray(stack_ids, dtype=np.int64).reshape(-1)
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self.source = source or (str(self.stacks[0]) if self.stacks else "")
        self.max_open = max(1, int(max_open))
        self.release_bytes = max(1, int(release_bytes))
        self._read_since_release = 0
        if len(self.stack_ids) != len(self.indices):
            raise DataError(f"{len(self.stack_ids)} stack ids but {len(self.indices)} indices", self.source)
        if len(self.indices) == 0:
            raise DataError("no particle images", self.source)
        self._handles: OrderedDict[int, Any] = OrderedDict()
        infos = [_read_stack_header(s) for s in self.stacks]
        first = infos[int(self.stack_ids[0])]
        for info in infos:
            if info.nx != info.ny:
                raise DataError(f"images are {info.nx}x{info.ny} pixels, not square", info.path)
            if info.nx != first.nx:
                raise DataError(
                    f"stacks have different box sizes: {first.path.name} {first.nx} px, {info.path.name} {info.nx} px",
                    info.path,
                )
        if first.nx % 2:
            raise DataError(f"box size D={first.nx} is odd; D must be even (crop or pad the particles)", first.path)
        nz = np.array([i.nz for i in infos], dtype=np.int64)
        bad = (self.indices < 0) | (self.indices >= nz[self.stack_ids])
        if bad.any():
            i = int(np.argmax(bad))
            info = infos[int(self.stack_ids[i])]
            raise DataError(
                f"particle {i}: image {int(self.indices[i]) + 1} (1-based) is beyond the stack's "
                f"{info.nz} images ({int(bad.sum())} such particles)",
                info.path,
            )
        self.D = int(first.nx)
        self.header_apix = float(first.voxel) if first.voxel > 0 else None

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"ImageSource(n={len(self)}, D={self.D}, stacks={len(self.stacks)}, source={self.source!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def close(self) -> None:
        """Close all open stacks (they are reopened on the next read)."""
        self._read_since_release = 0
        while self._handles:
            _, mrc = self._handles.popitem()
            mrc.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def _data(self, sid: int) -> np.ndarray:
        import mrcfile

        mrc = self._handles.get(sid)
        if mrc is None:
            path = self.stacks[sid]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    mrc = mrcfile.mmap(path, mode="r", permissive=True)
            except Exception as exc:  # noqa: BLE001
                raise FormatError(f"cannot open MRC stack: {exc}", path) from exc
            if mrc.data is None:
                mrc.close()
                raise FormatError("cannot read image data (corrupt or truncated stack)", path)
            self._handles[sid] = mrc
            while len(self._handles) > self.max_open:
                _, old = self._handles.popitem(last=False)
                old.close()
        else:
            self._handles.move_to_end(sid)
        data = mrc.data
        return data[None] if data.ndim == 2 else data

    def _normalize(self, key: Any) -> tuple[np.ndarray, bool]:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            idx = np.array([int(key)], dtype=np.int64)
            scalar = True
        elif isinstance(key, slice):
            return np.arange(n)[key], False
        else:
            arr = np.asarray(key)
            if arr.dtype == bool:
                if arr.shape != (n,):
                    raise IndexError(f"boolean mask of shape {arr.shape} for {n} particles")
                return np.nonzero(arr)[0], False
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                raise IndexError(f"particle indices must be integers, got {arr.dtype}")
            idx = arr.astype(np.int64).reshape(-1)
            scalar = False
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"particle index out of range for {n} particles")
        return np.where(idx < 0, idx + n, idx), scalar

    def __getitem__(self, key: Any) -> np.ndarray:
        idx, scalar = self._normalize(key)
        out = np.empty((len(idx), self.D, self.D), dtype=np.float32)
        if len(idx):
            sid = self.stack_ids[idx]
            loc = self.indices[idx]
            for s in np.unique(sid):
                sel = np.nonzero(sid == s)[0]
                order = np.argsort(loc[sel], kind="stable")
                sel = sel[order]
                out[sel] = self._data(int(s))[loc[sel]]
            self._read_since_release += out.nbytes
            if self._read_since_release >= self.release_bytes:
                self.close()
        return out[0] if scalar else out

    def describe(self, i: int) -> str:
        """Where particle ``i`` lives, for messages: ``"image 3 of /path/stack.mrcs"``."""
        return f"image {int(self.indices[i]) + 1} of {self.stacks[int(self.stack_ids[i])]}"


# ---------------------------------------------------------------------------- the dataset


@dataclass
class ParticleStack:
    """Particle images with poses and CTF in cryoDRGN's conventions (see the module docstring).

    ``images`` is None when loaded with ``images=False`` (metadata only); ``rot`` is None when
    the input has no poses (only with ``require_poses=False``); ``trans`` None means no
    shifts (zero); ``ctf`` None means no CTF. ``apix`` is the image pixel size in Å (the
    median over particles when optics groups differ; ``ctf[:, 1]`` keeps each particle's).
    """

    images: ImageSource | None
    rot: np.ndarray | None
    trans: np.ndarray | None
    ctf: np.ndarray | None
    apix: float
    source: str
    table: pd.DataFrame | None = None
    D: int | None = None
    optics_group: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        if self.images is not None:
            return len(self.images)
        for a in (self.rot, self.ctf, self.trans):
            if a is not None:
                return len(a)
        return 0 if self.table is None else len(self.table)

    @property
    def trans_frac(self) -> np.ndarray | None:
        """Shifts as a fraction of the box (the value stored in cryoDRGN pose pickles)."""
        if self.trans is None or not self.D:
            return None
        return (self.trans / self.D).astype(np.float32)


def parse_image_name(name: str) -> tuple[int, str]:
    """Split a RELION ``rlnImageName`` ``"000012@path/stack.mrcs"`` into ``(11, "path/stack.mrcs")``
    (0-based index). A name without ``@`` is a single-image file (index 0)."""
    if "@" not in name:
        return 0, name
    left, right = name.split("@", 1)
    try:
        k = int(left)
    except ValueError:
        raise DataError(f"bad rlnImageName {name!r}: {left!r} is not an image number") from None
    if k < 1:
        raise DataError(f"bad rlnImageName {name!r}: image numbers are 1-based")
    return k - 1, right


def _resolve(names: Sequence[str], base: Path, datadir: Path | None, own_dir: Path, source: str) -> list[Path]:
    """Resolve stack names (relative to ``base``; basename in ``datadir`` or beside the file as
    fallbacks, as cryoDRGN). Raise one DataError naming the first missing stack and the count."""
    out: list[Path] = []
    missing: list[Path] = []
    for name in names:
        p = Path(name)
        cands = [p] if p.is_absolute() else [base / p]
        cands.append(base / p.name)
        if datadir is not None and not p.is_absolute():
            cands.append(own_dir / p)
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            missing.append(cands[0])
            out.append(cands[0])
        else:
            out.append(hit)
    if missing:
        hint = "" if datadir is not None else "; pass datadir= the folder holding the stacks"
        raise DataError(
            f"{len(missing)} of {len(names)} image stack(s) not found, first: {missing[0]} (looked in {base}){hint}",
            source,
        )
    return out


def _source_from_names(
    names: Sequence[str], *, base: Path, datadir: Path | None, own_dir: Path, source: str
) -> ImageSource:
    idx = np.empty(len(names), dtype=np.int64)
    stack_of: dict[str, int] = {}
    sids = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        try:
            k, stack = parse_image_name(name)
        except DataError as exc:
            raise DataError(f"particle {i}: {exc.message}", source) from exc
        idx[i] = k
        sids[i] = stack_of.setdefault(stack, len(stack_of))
    paths = _resolve(list(stack_of), base, datadir, own_dir, source)
    return ImageSource(paths, sids, idx, source=source)


def _whole_stacks(paths: Sequence[Path], source: str) -> ImageSource:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} of {len(paths)} image stack(s) not found, first: {missing[0]}", source)
    counts = [_read_stack_header(p).nz for p in paths]
    sids = np.concatenate([np.full(c, i, dtype=np.int64) for i, c in enumerate(counts)])
    idx = np.concatenate([np.arange(c, dtype=np.int64) for c in counts])
    return ImageSource(paths, sids, idx, source=source)


# ---------------------------------------------------------------------------------- pickles


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays and plain containers (no code execution)."""

    _ALLOWED_BUILTINS = {"tuple", "list", "dict", "set", "frozenset", "int", "float", "complex", "bytes", "slice"}
    #: What pickled arrays, dtypes and scalars refer to (numpy 1 and 2 spellings); any other
    #: numpy callable (``numpy.save``, ``numpy.load``...) would let a pickle act on files.
    _NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> Any:
        numpy_ok = module.split(".")[0] == "numpy" and (
            name in self._NUMPY_NAMES or (module == "numpy.dtypes" and name.endswith("DType")))
        if numpy_ok or (module, name) in {
            ("_codecs", "encode"),
            ("copyreg", "_reconstructor"),
            ("copy_reg", "_reconstructor"),
        }:
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__") and name in self._ALLOWED_BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")


def _load_pickle(path: PathLike, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{what} pickle not found", p)
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
        return _NumpyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except MemoryError as exc:
        raise memory_error(exc, p, f"read the {what} pickle") from None
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or foreign pickle
        raise FormatError(f"cannot read {what} pickle ({describe_exception(exc)})", p) from None


@guard_reader("pose pickle")
def load_pose_pkl(poses: PathLike | Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A cryoDRGN pose pickle (or the object itself): ``rot`` ``(N, 3, 3)`` or a tuple
    ``(rot, trans)`` with ``trans`` ``(N, 2)`` as a fraction of the box. Returns float32
    ``(rot, trans_frac or None)``."""
    where = str(poses) if isinstance(poses, (str, os.PathLike)) else "poses"
    obj = _load_pickle(poses, "pose") if isinstance(poses, (str, os.PathLike)) else poses
    if isinstance(obj, (tuple, list)):
        if len(obj) not in (1, 2):
            raise DataError(f"pose pickle holds a {len(obj)}-tuple, expected (rot, trans)", where)
        rot, trans = obj[0], (obj[1] if len(obj) == 2 else None)
    else:
        rot, trans = obj, None
    rot = np.asarray(rot)
    if rot.ndim != 3 or rot.shape[1:] != (3, 3) or not np.issubdtype(rot.dtype, np.number):
        raise DataError(f"pose rotations must be a (N, 3, 3) array, got shape {rot.shape}", where)
    rot = rot.astype(np.float32)
    if trans is not None:
        trans = np.asarray(trans)
        if trans.shape != (len(rot), 2):
            raise DataError(f"pose translations must be ({len(rot)}, 2), got {trans.shape}", where)
        trans = trans.astype(np.float32)
    for name, arr in (("rotations", rot), ("translations", trans)):
        if arr is not None and not np.all(np.isfinite(arr)):
            i = int(np.argmax(~np.isfinite(arr.reshape(len(arr), -1)).any(axis=1)))
            raise DataError(f"pose {name} contain NaN/Inf (first at particle {i})", where)
    return rot, trans


@guard_reader("CTF pickle")
def load_ctf_pkl(ctf: PathLike | Any) -> np.ndarray:
    """A cryoDRGN CTF pickle (or the array itself): ``(N, 9)`` float32."""
    where = str(ctf) if isinstance(ctf, (str, os.PathLike)) else "ctf"
    obj = _load_pickle(ctf, "CTF") if isinstance(ctf, (str, os.PathLike)) else ctf
    arr = np.asarray(obj)
    if arr.ndim != 2 or arr.shape[1] != 9 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"CTF parameters must be a (N, 9) array, got shape {arr.shape}", where)
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        i = int(np.argmax(~np.isfinite(arr).all(axis=1)))
        raise DataError(f"CTF parameters contain NaN/Inf (first at particle {i})", where)
    return arr


def write_cryodrgn_pkls(
    poses_path: PathLike | None,
    ctf_path: PathLike | None,
    rot: np.ndarray | None,
    trans_px: np.ndarray | None,
    ctf: np.ndarray | None,
    D: int,
) -> None:
    """Write cryoDRGN pickles atomically: ``poses_path`` gets ``(rot float32 (N,3,3), trans
    float32 (N,2) = trans_px / D)``; ``ctf_path`` gets ``ctf`` float32 ``(N, 9)``. A ``None``
    path is skipped."""
    from voxfield.io.atomic import atomic_path

    if poses_path is not None:
        if rot is None:
            raise DataError("no rotations to write", poses_path)
        r = np.asarray(rot, dtype=np.float32)
        t = np.zeros((len(r), 2), np.float32) if trans_px is None else np.asarray(trans_px, np.float64) / float(D)
        if t.shape != (len(r), 2):
            raise DataError(f"trans_px must be ({len(r)}, 2), got {t.shape}", poses_path)
        with atomic_path(poses_path) as tmp, open(tmp, "wb") as fh:
            pickle.dump((r, t.astype(np.float32)), fh, protocol=4)
    if ctf_path is not None:
        if ctf is None:
            raise DataError("no CTF parameters to write", ctf_path)
        c = np.asarray(ctf, dtype=np.float32)
        if c.ndim != 2 or c.shape[1] != 9:
            raise DataError(f"ctf must be (N, 9), got {c.shape}", ctf_path)
        with atomic_path(ctf_path) as tmp, open(tmp, "wb") as fh:
            pickle.dump(c, fh, protocol=4)


# ------------------------------------------------------------------------------- cryoSPARC


def _read_cs(path: Path) -> np.ndarray:
    """The structured array of a cryoSPARC ``.cs`` file (an ``.npy`` file), after checking
    its header: one dimension, named fields, no more data bytes than the file holds."""
    from voxfield.io.numpy_io import NPY_MAGIC, _read_npy_header

    if not path.is_file():
        raise FormatError("cryoSPARC file not found", path)
    try:
        with open(path, "rb") as fh:
            if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise FormatError("cannot read cryoSPARC .cs file (no NumPy array header)", path)
            fh.seek(0)
            shape, _, dtype = _read_npy_header(fh, path)
            header_len = fh.tell()
        size = path.stat().st_size
    except OSError as exc:
        raise FormatError(f"cannot read cryoSPARC .cs file ({one_line(exc.strerror or exc)})", path) from None
    if dtype.names is None:
        raise FormatError(f"not a cryoSPARC .cs file (array of {dtype}, not a table of named fields)", path)
    if len(shape) != 1:
        raise FormatError(f"not a cryoSPARC .cs file (array of shape {shape}, expected one row per particle)",
                          path)
    if dtype.hasobject:
        raise FormatError("cryoSPARC .cs file holds Python objects (pickle); voxfield never loads pickles", path)
    need = shape[0] * dtype.itemsize
    if shape[0] < 0 or need > size - header_len:
        raise FormatError(f"truncated or corrupt: header declares {shape[0]} rows ({need} bytes), the file "
                          f"holds {size - header_len}", path)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"cannot read cryoSPARC .cs file ({describe_exception(exc)})", path) from None
    if not isinstance(data, np.ndarray) or data.dtype.names is None or data.ndim != 1:
        raise FormatError("not a cryoSPARC .cs file (no one-dimensional structured array)", path)
    if len(data) == 0:
        raise DataError("cryoSPARC file has no particles", path)
    return data


def _cs_field(data: np.ndarray, name: str, path: Path, width: int | None = None) -> np.ndarray:
    """Field ``name`` as float64, ``(N,)`` or ``(N, width)``; DataError when it is not
    numeric or has another shape."""
    raw = np.asarray(data[name])
    n = len(data)
    if raw.dtype.kind not in "biuf":
        raise DataError(f"cryoSPARC field {name} is not numeric ({raw.dtype})", path)
    want = (n,) if width is None else (n, width)
    try:
        out = raw.astype(np.float64).reshape(want)
    except ValueError:
        raise DataError(f"cryoSPARC field {name} has shape {raw.shape}, expected {want}", path) from None
    return out


def _cs_metadata(data: np.ndarray, path: Path, require_poses: bool) -> dict[str, Any]:
    names = set(data.dtype.names or ())
    out: dict[str, Any] = {"rot": None, "trans": None, "ctf": None, "apix": None, "D": None}
    if "blob/psize_A" in names:
        out["apix"] = _cs_field(data, "blob/psize_A", path)
    if "blob/shape" in names:
        shp = np.asarray(data["blob/shape"])
        if shp.dtype.kind not in "iu" or shp.size < len(data) or shp.size % len(data):
            raise DataError(f"cryoSPARC field blob/shape has type {shp.dtype} and shape {shp.shape}, expected "
                            "integer (N, 2)", path)
        out["D"] = shp.reshape(len(data), -1)[:, 0].astype(np.int64)
    for prefix in ("alignments3D", "alignments_class_0"):
        if f"{prefix}/pose" in names:
            pose = _cs_field(data, f"{prefix}/pose", path, 3)
            if not np.all(np.isfinite(pose)):
                raise DataError(f"cryoSPARC field {prefix}/pose contains NaN/Inf", path)
            out["rot"] = csparc_pose_to_rot(pose).astype(np.float32)
            if f"{prefix}/shift" in names:
                out["trans"] = _cs_field(data, f"{prefix}/shift", path, 2).astype(np.float32)
            break
    else:
        if require_poses:
            raise DataError("cryoSPARC file is missing required field alignments3D/pose", path)
    fields = ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast")
    have = [f for f in fields if f in names]
    if have:
        missing = [f for f in fields if f not in names]
        if missing:
            raise DataError(f"cryoSPARC file is missing CTF field(s) {', '.join(missing)}", path)
        n = len(data)
        ctf = np.empty((n, 9), dtype=np.float64)
        ctf[:, 0] = out["D"] if out["D"] is not None else np.nan
        ctf[:, 1] = out["apix"] if out["apix"] is not None else np.nan
        ctf[:, 2] = _cs_field(data, "ctf/df1_A", path)
        ctf[:, 3] = _cs_field(data, "ctf/df2_A", path)
        ctf[:, 4] = np.rad2deg(_cs_field(data, "ctf/df_angle_rad", path))
        ctf[:, 5] = _cs_field(data, "ctf/accel_kv", path)
        ctf[:, 6] = _cs_field(data, "ctf/cs_mm", path)
        ctf[:, 7] = _cs_field(data, "ctf/amp_contrast", path)
        ctf[:, 8] = (np.rad2deg(_cs_field(data, "ctf/phase_shift_rad", path))
                     if "ctf/phase_shift_rad" in names else 0.0)
        out["ctf"] = ctf.astype(np.float32)
    return out


# ----------------------------------------------------------------------------------- entry


@guard_reader("particle file")
def load_particles(
    path: PathLike,
    *,
    datadir: PathLike | None = None,
    poses: PathLike | Any | None = None,
    ctf: PathLike | Any | None = None,
    apix: float | None = None,
    images: bool = True,
    require_poses: bool = True,
) -> ParticleStack:
    """Load a particle set for training.

    ``path``: ``.star`` (RELION 3.0/3.1/5), ``.cs`` (cryoSPARC), ``.mrcs``/``.mrc`` (one
    stack, all images) or ``.txt`` (one stack path per line). ``rlnImageName`` /
    ``blob/path`` stacks are resolved relative to ``datadir`` if given, else to the metadata
    file's folder; the bare file name in that folder is tried as a fallback.

    ``poses``: a cryoDRGN pose pickle (``rot`` or ``(rot, trans_fraction)``), overriding the
    file's poses; ``ctf``: a cryoDRGN CTF pickle ``(N, 9)``, overriding the file's CTF.
    ``apix``: pixel size (Å) used where the input records none. ``images=False`` reads
    metadata only (no stack is opened; ``D`` comes from the metadata). With
    ``require_poses`` (default) inputs without poses are refused.

    Raises :class:`DataError` / :class:`FormatError` with a one-line message on bad input;
    any other exception a library raises on a damaged file becomes a :class:`FormatError`
    naming ``path`` (and a :class:`MemoryError` a :class:`DataError`).
    """
    p = Path(path)
    src_name = str(p)
    ext = p.suffix.lower()
    dd = Path(datadir) if datadir is not None else None
    base = dd if dd is not None else p.parent
    if dd is not None and not dd.is_dir():
        raise DataError("datadir is not a folder", dd)

    table = None
    groups = None
    meta_D: np.ndarray | None = None
    meta_apix: np.ndarray | None = None
    rot = trans = ctf_arr = None
    need_file_poses = require_poses and poses is None
    src: ImageSource | None = None

    if ext == ".star":
        meta: StarMetadata = read_star_metadata(p, apix=apix, require_poses=need_file_poses, require_images=images)
        table, groups = meta.table, meta.optics_group
        rot, trans, ctf_arr = meta.rot, meta.trans_px, meta.ctf
        meta_D, meta_apix = meta.D, meta.apix
        if images:
            assert meta.image_names is not None
            src = _source_from_names(meta.image_names, base=base, datadir=dd, own_dir=p.parent, source=src_name)
    elif ext == ".cs":
        data = _read_cs(p)
        cs = _cs_metadata(data, p, need_file_poses)
        rot, trans, ctf_arr = cs["rot"], cs["trans"], cs["ctf"]
        meta_D, meta_apix = cs["D"], cs["apix"]
        if images:
            if "blob/path" not in (data.dtype.names or ()) or "blob/idx" not in (data.dtype.names or ()):
                raise DataError("cryoSPARC file is missing required field(s) blob/path, blob/idx", p)
            idx = np.asarray(data["blob/idx"])
            if idx.dtype.kind not in "iu" or idx.shape != (len(data),):
                raise DataError(f"cryoSPARC field blob/idx has type {idx.dtype} and shape {idx.shape}, expected "
                                f"integer ({len(data)},)", p)
            raw = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in data["blob/path"]]
            raw = [x[1:] if x.startswith(">") else x for x in raw]
            names = [f"{int(i) + 1}@{r}" for i, r in zip(idx, raw)]
            src = _source_from_names(names, base=base, datadir=dd, own_dir=p.parent, source=src_name)
    elif ext in _STACK_EXTS or ext == ".txt":
        if not p.is_file():
            raise DataError("particle file not found", p)
        if ext == ".txt":
            lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            stacks = [Path(ln) if Path(ln).is_absolute() else base / ln for ln in lines]
            if not stacks:
                raise DataError("stack list is empty", p)
        else:
            stacks = [p]
        if not images:
            raise DataError(f"images=False makes no sense for a {ext} stack: there is no other metadata", p)
        src = _whole_stacks(stacks, src_name)
        if need_file_poses:
            raise DataError(f"a {ext} stack has no poses: pass poses= a cryoDRGN pose pickle", p)
    else:
        raise FormatError(
            f"unknown particle file extension {ext or '(none)'!r} (expected .star, .cs, .mrcs, .mrc or .txt)", p
        )

    n = len(src) if src is not None else _metadata_count(rot, trans, ctf_arr, table)
    D_img = src.D if src is not None else _single_D(meta_D)

    # D of the metadata, for rescaling pixel shifts to the image box
    D_meta = _single_D(meta_D)
    if trans is not None and D_img and D_meta and D_meta != D_img:
        trans = (trans * (D_img / D_meta)).astype(np.float32)

    # pickles override
    if poses is not None:
        rot, frac = load_pose_pkl(poses)
        _check_count("poses", len(rot), n, src_name)
        if frac is not None:
            if not D_img:
                raise DataError("pose translations are box fractions; the box size is unknown (load images)", p)
            trans = (frac.astype(np.float64) * D_img).astype(np.float32)
        else:
            trans = None
    if ctf is not None:
        ctf_arr = load_ctf_pkl(ctf)
    for name, arr in (("poses", rot), ("translations", trans), ("CTF parameters", ctf_arr)):
        if arr is not None:
            _check_count(name, len(arr), n, src_name)
    if table is not None and len(table) != n:
        _check_count("STAR rows", len(table), n, src_name)

    # pixel size of the images
    header_apix = src.header_apix if src is not None else None
    if ctf_arr is not None:
        ctf_arr = ctf_arr.copy()
        dcol = ctf_arr[:, 0]
        if D_img:
            dcol[~np.isfinite(dcol) | (dcol <= 0)] = D_img
        fill_apix = apix if apix is not None else header_apix
        if fill_apix is not None:
            ctf_arr[~np.isfinite(ctf_arr[:, 1]), 1] = fill_apix
        if not np.all(np.isfinite(ctf_arr[:, 1])):
            raise DataError("the pixel size is unknown (not in the metadata nor the MRC header): pass apix=", p)
        if not np.all(np.isfinite(ctf_arr[:, 0])):
            raise DataError("the box size is unknown (not in the metadata): load the images", p)
        if D_img and np.any(ctf_arr[:, 0] != D_img):
            # downsampled images: keep the physical box (cryoDRGN load_ctf_for_training)
            ctf_arr[:, 1] *= ctf_arr[:, 0] / D_img
            ctf_arr[:, 0] = D_img
        px = float(np.median(ctf_arr[:, 1]))
    else:
        px = None
        if meta_apix is not None and np.all(np.isfinite(meta_apix)):
            px = float(np.median(meta_apix))
            if D_img and D_meta:
                px *= D_meta / D_img
        if px is None:
            px = apix if apix is not None else header_apix
        if px is None:
            px = 1.0
            warnings.warn(f"{src_name}: pixel size unknown, assuming 1 Å (pass apix=)", stacklevel=2)

    return ParticleStack(
        images=src,
        rot=None if rot is None else np.ascontiguousarray(rot, dtype=np.float32),
        trans=None if trans is None else np.ascontiguousarray(trans, dtype=np.float32),
        ctf=ctf_arr,
        apix=float(px),
        source=src_name,
        table=table,
        D=D_img or None,
        optics_group=groups,
    )


def _single_D(values: np.ndarray | None) -> int | None:
    if values is None:
        return None
    v = np.asarray(values)
    v = v[v > 0]
    if len(v) == 0:
        return None
    u = np.unique(v)
    if len(u) > 1:
        return None
    return int(u[0])


def _metadata_count(*arrays: Any) -> int:
    for a in arrays:
        if a is not None:
            return len(a)
    return 0


def _check_count(what: str, got: int, n: int, source: str) -> None:
    if got != n:
        raise DataError(f"{got} {what} for {n} particle images: counts must match", source)


def check_images(stack: ParticleStack | ImageSource, chunk: int = 512) -> None:
    """Scan all images in chunks of ``chunk`` and raise :class:`DataError` naming the first
    particle with NaN or Inf pixels. Call it once before training (it reads every image)."""
    src = stack.images if isinstance(stack, ParticleStack) else stack
    if src is None:
        raise DataError("no images loaded (metadata only)", getattr(stack, "source", None))
    chunk = max(1, int(chunk))
    for start in range(0, len(src), chunk):
        block = src[start : start + chunk]
        ok = np.isfinite(block).all(axis=(1, 2))
        if not ok.all():
            i = start + int(np.argmin(ok))
            raise DataError(f"particle {i} ({src.describe(i)}) contains NaN/Inf pixels", src.source)
