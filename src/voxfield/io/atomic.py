"""Write-to-temporary-then-rename, so that a failed or interrupted write never leaves a
partial output file behind.

Temporary files and folders are named ``.voxfield-<kind>-<pid>.<start>-<random>-<name>``,
where ``pid`` and ``start`` identify the writing process (its id and, where ``/proc``
exists, its start time). A process killed outright (SIGKILL, power loss) cannot remove its
temporaries, so every later write into the same folder (:func:`check_writable`) removes
those whose process no longer runs (:func:`clean_stale`). ``O_TMPFILE`` is not used: the
format writers (tifffile, zarr, h5py, mrcfile) open outputs by name, and OME-Zarr outputs
are folders.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from voxfield.errors import OutputError, VoxfieldError

#: Temporaries of any kind: ``.voxfield-<kind>-<pid>.<start>-...``.
_TEMP = re.compile(r"^\.voxfield-(tmp|old|decode)-(\d+)\.(\d+)-")
#: Where process start times are unknown (no ``/proc``), temporaries older than this are
#: removed even if their process id is in use again.
STALE_AFTER = 24 * 3600.0


def _start_time(pid: int) -> int:
    """Start time of process ``pid`` in clock ticks since boot (0 where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return 0


def temp_prefix(kind: str) -> str:
    """Name prefix of this process's temporaries of ``kind`` (tmp, old or decode)."""
    pid = os.getpid()
    return f".voxfield-{kind}-{pid}.{_start_time(pid)}-"


def _alive(pid: int, start: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        pass
    return not (start and _start_time(pid) not in (0, start))


def clean_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries that killed voxfield processes left in ``folder``; returns
    what was removed. Entries of running processes are left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None:
            continue
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
        except OSError:
            continue
        pid, start = int(m.group(2)), int(m.group(3))
        if not _alive(pid, start) or (old and start == 0 and pid != os.getpid()):
            p = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
            except OSError:
                continue
    return removed


def _os_error(exc: OSError, path: Path) -> OutputError:
    reason = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "operation not permitted", errno.EFBIG: "file too large for the file system",
              errno.ENAMETOOLONG: "file name too long"}.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputError(f"cannot write: {reason}", path)


def check_writable(path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be created (its folder exists and is
    writable; it is not a folder unless a folder is expected; it does not exist when
    ``overwrite`` is false; an existing output is a regular file or folder, never a
    device, pipe or socket). Call this before long work, so that a bad output path fails
    in a second, not after an hour of fitting. Temporaries that killed runs left in the
    output folder are removed here (:func:`clean_stale`)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not p.name or p.name in (".", ".."):
        raise OutputError("output must name a file", p)
    if not parent.exists():
        raise OutputError("output folder does not exist", parent)
    if not parent.is_dir():
        raise OutputError("output folder is not a folder", parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError("output folder is not writable", parent)
    if os.path.lexists(p):
        if not overwrite:
            raise OutputError("output exists (use --force to overwrite)", p)
        mode = os.lstat(p).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise OutputError("output exists and is not a regular file (a device, pipe, socket or link)", p)
        if not os.access(p, os.W_OK):
            raise OutputError("output exists and is not writable", p)
    clean_stale(parent)
    return p


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary name ends with the final file name, so libraries that pick behaviour by
    suffix (``.gz``, ``.ome.tif``, ``.zarr``) see the right one. On any exception the
    temporary file or folder is removed and ``path`` is left untouched.
    """
    final = check_writable(path, overwrite=overwrite)
    tmp = final.parent / f"{temp_prefix('tmp')}{secrets.token_hex(4)}-{final.name}"
    try:
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
        except VoxfieldError:
            raise
        except OSError as exc:
            raise _os_error(exc, final) from None
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            tmp.unlink()
        raise


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename folder ``tmp`` onto ``final`` (a folder store such as OME-Zarr)."""
    if final.exists():
        old = final.parent / f"{temp_prefix('old')}{secrets.token_hex(4)}-{final.name}"
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
