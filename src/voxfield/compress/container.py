"""The ``.vxf`` container: one self-describing file per compressed volume.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"\\x89VXF\\r\\n\\x1a\\n"   (PNG-style: catches text-mode mangling)
    8       2     format major version (readers refuse a newer major)
    10      2     format minor version (additions only; older readers ignore them)
    12      4     header length H (bytes, as stored)
    16      4     CRC-32 of the stored header bytes
    20      1     header encoding: 0 = UTF-8 JSON, 1 = zstd-compressed UTF-8 JSON
    21      H     header
    21+H    ...   sections, back to back, in the order the header lists them

The header is a JSON object. Required keys: ``"voxfield"`` (writer version), ``"volume"``
(shape, dtype, axes, spacing, unit, origin, format header ``meta``, original file name),
``"method"`` (name and configuration of the codec that made the payload) and
``"sections"`` (a list of ``{"name", "size", "crc32"}``). Methods add their own keys
(block table, quantisation parameters...). There is no pickle anywhere: a ``.vxf`` file is
data, never code.

Reading checks the magic, the version, the header checksum, the total length (a truncated
or padded file is refused) and each section's checksum when the section is read.
:class:`VxfReader` reads sections lazily from disk, so that decoding a region touches only
the sections it needs.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from voxfield.codecs.lossless import zstd_compress, zstd_decompress
from voxfield.compress import schema
from voxfield.errors import FormatError
from voxfield.io import metajson
from voxfield.io.atomic import write_bytes_atomic

MAGIC = b"\x89VXF\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
SUFFIX = ".vxf"

_FIXED = struct.Struct("<8sHHIIB")
_ENC_JSON, _ENC_ZSTD = 0, 1
#: Largest header accepted (a corrupt length field must not make us allocate gigabytes).
_MAX_HEADER = 256 * 1024 * 1024


@dataclass(frozen=True)
class SectionInfo:
    """Where a section lies in the file."""

    name: str
    offset: int
    size: int
    crc32: int


def is_vxf(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file that starts with the ``.vxf`` magic."""
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(len(MAGIC)) == MAGIC


def _encode_header(header: Mapping[str, Any]) -> tuple[bytes, int]:
    text = metajson.dumps(header).encode("utf-8")
    packed = zstd_compress(text, 19)
    if len(packed) < len(text):
        return packed, _ENC_ZSTD
    return text, _ENC_JSON


def dumps(header: Mapping[str, Any], sections: Mapping[str, bytes]) -> bytes:
    """Serialise a header and named sections to the bytes of a ``.vxf`` file.

    ``header["sections"]`` is filled in here (names, sizes, CRC-32s, in the order of
    ``sections``); any value given for it is replaced."""
    head = dict(header)
    head["sections"] = [
        {"name": str(name), "size": len(data), "crc32": zlib.crc32(data)} for name, data in sections.items()
    ]
    stored, enc = _encode_header(head)
    out = io.BytesIO()
    out.write(_FIXED.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, len(stored), zlib.crc32(stored), enc))
    out.write(stored)
    for data in sections.values():
        out.write(data)
    return out.getvalue()


def write(path: str | os.PathLike[str], header: Mapping[str, Any], sections: Mapping[str, bytes],
          *, overwrite: bool = True) -> int:
    """Write a ``.vxf`` file atomically; returns its size in bytes."""
    blob = dumps(header, sections)
    write_bytes_atomic(path, blob, overwrite=overwrite)
    return len(blob)


def overhead(header: Mapping[str, Any], section_names: list[str], *, margin: int = 24) -> int:
    """Bytes the container adds around sections of the given names: fixed part + header.

    Computed by serialising the header with empty sections; ``margin`` covers the extra
    digits that real section sizes and checksums take in the header."""
    return len(dumps(header, {n: b"" for n in section_names})) + margin


class VxfReader:
    """Random access to a ``.vxf`` file (from a path) or blob (from bytes).

    ``reader.header`` is the parsed header; ``reader.section(name)`` reads and verifies one
    section. Use as a context manager to close the file.

    The header is validated on opening (:func:`voxfield.compress.schema.validate_header`),
    before any decoder sees it; ``validate=False`` reads the container alone (for tools
    that handle the sections themselves), and leaves ``spec`` None and ``alloc_limit`` 0."""

    def __init__(self, source: str | os.PathLike[str] | bytes | bytearray | memoryview, *,
                 validate: bool = True) -> None:
        self._fh: BinaryIO
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.path: Path | None = None
            self._fh = io.BytesIO(bytes(source))
            total = len(source)
        else:
            self.path = Path(source)
            if not self.path.is_file():
                raise FormatError("no such file", self.path)
            self._fh = open(self.path, "rb")  # noqa: SIM115 (closed in close())
            total = self.path.stat().st_size
        try:
            self.header, self._sections, self.version = self._parse(total)
            #: The validated volume (for a set: its largest member), and the most items any
            #: array sized from this header may hold (see :func:`schema.alloc_limit`).
            self.spec: schema.VolumeSpec | None = None
            self.alloc_limit = 0
            if validate:
                self.spec = schema.validate_header(self.header, self.path)
                self.alloc_limit = schema.alloc_limit(self.spec)
        except BaseException:
            self.close()
            raise
        self.size = total

    # -------------------------------------------------------------- parsing
    def _fail(self, message: str) -> FormatError:
        return FormatError(message, self.path)

    def _parse(self, total: int) -> tuple[dict[str, Any], dict[str, SectionInfo], tuple[int, int]]:
        fixed = self._fh.read(_FIXED.size)
        if len(fixed) < len(MAGIC) or fixed[: len(MAGIC)] != MAGIC:
            raise self._fail("not a voxfield .vxf file (bad magic)")
        if len(fixed) < _FIXED.size:
            raise self._fail("truncated .vxf file (incomplete fixed header)")
        _, major, minor, hlen, hcrc, enc = _FIXED.unpack(fixed)
        if major > FORMAT_MAJOR:
            raise self._fail(
                f"written by a newer voxfield (container format {major}.{minor}; this voxfield reads "
                f"{FORMAT_MAJOR}.x): upgrade voxfield"
            )
        if major < 1:
            raise self._fail(f"unknown container format version {major}.{minor}")
        if hlen > _MAX_HEADER or _FIXED.size + hlen > total:
            raise self._fail("truncated or corrupt .vxf file (header length beyond end of file)")
        stored = self._fh.read(hlen)
        if zlib.crc32(stored) != hcrc:
            raise self._fail("corrupt .vxf file (header checksum mismatch)")
        try:
            if enc == _ENC_ZSTD:
                text = zstd_decompress(stored, _MAX_HEADER, what=".vxf header")
            elif enc == _ENC_JSON:
                text = stored
            else:
                raise self._fail(f"unknown header encoding {enc}")
            header = metajson.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._fail(f"corrupt .vxf header ({exc})") from None
        except RecursionError:
            raise self._fail("corrupt .vxf header (nested too deeply)") from None
        if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
            raise self._fail("corrupt .vxf header (no section table)")
        sections: dict[str, SectionInfo] = {}
        offset = _FIXED.size + hlen
        try:
            for entry in header["sections"]:
                info = SectionInfo(str(entry["name"]), offset, int(entry["size"]), int(entry["crc32"]))
                if info.size < 0:
                    raise ValueError("negative section size")
                sections[info.name] = info
                offset += info.size
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise self._fail(f"corrupt .vxf section table ({exc})") from None
        if offset > total:
            raise self._fail(f"truncated .vxf file ({total} bytes, sections end at {offset})")
        if offset < total:
            raise self._fail(f"corrupt .vxf file ({total - offset} unexpected bytes after the last section)")
        return header, sections, (major, minor)

    # -------------------------------------------------------------- access
    @property
    def section_names(self) -> list[str]:
        return list(self._sections)

    def section_info(self, name: str) -> SectionInfo:
        if name not in self._sections:
            raise self._fail(f"missing section {name!r}")
        return self._sections[name]

    def section(self, name: str) -> bytes:
        """Read section ``name`` and verify its checksum."""
        info = self.section_info(name)
        self._fh.seek(info.offset)
        data = self._fh.read(info.size)
        if len(data) != info.size:
            raise self._fail(f"truncated section {name!r}")
        if zlib.crc32(data) != info.crc32:
            raise self._fail(f"corrupt section {name!r} (checksum mismatch)")
        return data

    def verify(self) -> None:
        """Read every section and check its checksum (``voxfield info`` without ``--quick``)."""
        for name in self._sections:
            self.section(name)

    def close(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()

    def __enter__(self) -> VxfReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
