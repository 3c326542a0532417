"""Write-to-temporary-then-rename, so that a failed or interrupted write never leaves a
partial output file behind."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from voxfield.errors import OutputError


def check_writable(path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be created (its folder exists and is
    writable; it is not a folder unless a folder is expected; it does not exist when
    ``overwrite`` is false). Call this before long work, so that a bad output path fails
    in a second, not after an hour of fitting."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError("output folder does not exist", parent)
    if not parent.is_dir():
        raise OutputError("output folder is not a folder", parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("output folder is not writable", parent)
    if p.exists() and not overwrite:
        raise OutputError("output exists (use --force to overwrite)", p)
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError("output exists and is not writable", p)
    return p


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name ends with the final file name, so libraries that pick behaviour by
    suffix (``.gz``, ``.ome.tif``, ``.zarr``) see the right one. On any exception the
    temporary file or folder is removed and ``path`` is left untouched.
    """
    final = check_writable(path, overwrite=overwrite)
    tmp = final.parent / f".voxfield-tmp-{secrets.token_hex(4)}-{final.name}"
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError("writer produced no output", final)
        if tmp.is_dir():
            _replace_dir(tmp, final)
        else:
            if final.is_dir():
                shutil.rmtree(final)
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename folder ``tmp`` onto ``final`` (a folder store such as OME-Zarr)."""
    if final.exists():
        old = final.parent / f".voxfield-old-{secrets.token_hex(4)}-{final.name}"
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.replace(tmp, final)


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes, *, overwrite: bool = True) -> Path:
    """Write ``payload`` to ``path`` atomically and return the path."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)
