"""Forged, structure-aware mutators of the fuzzer (:mod:`voxfield.bench.fuzz_mutate`).

* ``.vxf`` — ``forge-json`` replaces a leaf or subtree of the parsed header (weighted toward
  shapes, widths, levels, counts, sizes, bits, names...) with an absurd value, deletes a key or
  swaps its type, re-serialises (plain or zstd JSON) and recomputes the header CRC-32;
  ``forge-text`` mutates the JSON text itself (deep nesting, huge numbers, broken syntax)
  under a valid CRC; ``forge-section`` changes bytes inside one section and fixes that
  section's size and CRC in the table; ``forge-fixed`` edits the fixed part (versions,
  encoding, header length) without touching the checksums;
* MRC (also inside ``.gz``) header fields, NPY header dictionaries (also inside NPZ and
  cryoSPARC ``.cs``), TIFF IFD entries, HDF5 attributes, OME-Zarr JSON metadata, STAR
  numbers/columns/lines, cryoSPARC fields and cryoDRGN pickles.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import struct
import zipfile
import zlib
from random import Random
from typing import Any

import numpy as np

from voxfield.bench.fuzz_bytes import (
    BLIND,
    FIXED,
    MAGIC,
    MutContext,
    _short,
    bitflip,
    forge_json_value,
    json_text,
    overwrite,
    truncate,
)


# ------------------------------------------------------------------------ .vxf structure
def parse_vxf(data: bytes) -> tuple[tuple[Any, ...], Any, list[bytes]]:
    """(fixed fields, header JSON, section bytes) of a valid ``.vxf`` file."""
    fixed = FIXED.unpack(data[: FIXED.size])
    hlen, enc = fixed[3], fixed[5]
    stored = data[FIXED.size:FIXED.size + hlen]
    import zstandard

    text = zstandard.ZstdDecompressor().decompress(stored, max_output_size=1 << 28) if enc == 1 else stored
    header = json.loads(text)
    sections, off = [], FIXED.size + hlen
    for s in header["sections"]:
        sections.append(data[off:off + int(s["size"])])
        off += int(s["size"])
    return fixed, header, sections


def vxf_damage(data: bytes) -> str:
    """Why ``data`` breaks the container's integrity rules (magic, versions, header CRC,
    JSON, section sizes and CRCs, total length), or '' when it keeps them."""
    if len(data) < FIXED.size or not data.startswith(MAGIC):
        return "bad magic or short fixed part"
    _, major, _, hlen, crc, enc = FIXED.unpack(data[: FIXED.size])
    stored = data[FIXED.size:FIXED.size + hlen]
    if major != 1 or enc not in (0, 1) or len(stored) != hlen or zlib.crc32(stored) != crc:
        return "fixed part or header checksum"
    try:
        _, head, sections = parse_vxf(data)
        off = FIXED.size + hlen
        for entry, sec in zip(head["sections"], sections):
            if len(sec) != int(entry["size"]) or zlib.crc32(sec) != int(entry["crc32"]):
                return f"section {entry.get('name')!r} checksum"
            off += len(sec)
    except Exception as exc:  # noqa: BLE001
        return f"header unreadable ({type(exc).__name__})"
    return "" if off == len(data) else "length"


def pack_vxf(text: bytes, sections: list[bytes], *, zstd: bool = False, major: int = 1, minor: int = 0) -> bytes:
    """A ``.vxf`` file from raw header text (with a valid CRC) and section bytes."""
    if zstd:
        import zstandard

        text = zstandard.ZstdCompressor(level=3).compress(text)
    return FIXED.pack(MAGIC, major, minor, len(text), zlib.crc32(text), 1 if zstd else 0) + text + b"".join(sections)


def _resync_sections(header: Any, sections: list[bytes]) -> None:
    if isinstance(header, dict) and isinstance(header.get("sections"), list):
        for entry, sec in zip(header["sections"], sections):
            if isinstance(entry, dict):
                entry["size"], entry["crc32"] = len(sec), zlib.crc32(sec)


def forge_vxf_json(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    fixed, header, sections = parse_vxf(data)
    skip = () if rng.random() < 0.05 else ("sections",)
    descs = []
    for _ in range(rng.choice([1, 1, 1, 1, 2, 3])):  # several forgings can get past consistency checks
        header, desc, _ = forge_json_value(rng, header, ctx, skip)
        descs.append(desc)
    return pack_vxf(json_text(header), sections, zstd=rng.random() < 0.3), "header " + "; ".join(descs)


def forge_vxf_text(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    _, header, sections = parse_vxf(data)
    text = json_text(header)
    nums = [m.span() for m in re.finditer(rb"(?<=[:\[,])-?\d+(\.\d+)?([eE][-+]?\d+)?(?=[,\]}])", text)]
    r = rng.random()
    if r < 0.25 and nums:
        a, b = rng.choice(nums)
        new = rng.choice([b"9" * 5000, b"1e999999", b"-1e999999", b"NaN", b"Infinity", b"-0", b"0x10", b"1_000",
                          b"\"1\"", b"[]", b"00012", b"1.5e-400"])
        text, desc = text[:a] + new + text[b:], f"number at {a} -> {new[:12]!r}"
    elif r < 0.45:
        depth = rng.choice([1000, 100_000])
        p = text.index(b":") + 1
        text, desc = text[:p] + b"[" * depth + b"1" + b"]" * depth + b"," + text[p:].split(b",", 1)[-1], \
            f"value nested {depth} deep"
    elif r < 0.6:
        k = text.index(b"{") + 1
        text, desc = text[:k] + b"\"volume\":{},\"method\":null," + text[k:], "duplicate keys volume/method first"
    elif r < 0.8:
        text, desc = bitflip(rng, text, ctx)
    else:
        n = rng.randrange(len(text))
        text, desc = text[:n], f"JSON cut at {n}"
    return pack_vxf(text, sections, zstd=rng.random() < 0.3), f"header text: {desc}"


def forge_vxf_section(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    _, header, sections = parse_vxf(data)
    if not sections:
        return forge_vxf_json(rng, data, ctx)
    i = rng.randrange(len(sections))
    name = header["sections"][i].get("name")
    op = rng.choice(["bitflip", "overwrite", "truncate", "splice-insert", "splice-delete", "splice-dup"])
    sections[i], desc = BLIND[op](rng, sections[i], ctx)
    _resync_sections(header, sections)
    return pack_vxf(json_text(header), sections), f"section {name!r} ({op}: {desc}), CRC fixed"


def forge_vxf_fixed(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    magic, major, minor, hlen, crc, enc = FIXED.unpack(data[: FIXED.size])
    field_name = rng.choice(["major", "minor", "hlen", "enc", "crc"])
    value = {"major": rng.choice([0, 2, 65535]), "minor": rng.choice([1, 7, 65535]),
             "hlen": rng.choice([0, 1, hlen - 1, hlen + 1, 2**31, 2**32 - 1]),
             "enc": rng.choice([1 - enc, 2, 255]), "crc": rng.choice([0, crc ^ 1])}[field_name]
    vals = {"major": major, "minor": minor, "hlen": hlen, "enc": enc, "crc": crc, field_name: value}
    head = FIXED.pack(magic, vals["major"], vals["minor"], vals["hlen"] & 0xFFFFFFFF, vals["crc"], vals["enc"])
    return head + data[FIXED.size:], f"fixed part {field_name} = {value}"


# ------------------------------------------------------------------------ MRC, NPY, NPZ
_MRC_INT = {"nx": 0, "ny": 4, "nz": 8, "mode": 12, "nxstart": 16, "nystart": 20, "nzstart": 24, "mx": 28,
            "my": 32, "mz": 36, "mapc": 64, "mapr": 68, "maps": 72, "ispg": 88, "nsymbt": 92, "nversion": 108,
            "nlabl": 220}
_MRC_FLOAT = {"cella.x": 40, "cella.y": 44, "cella.z": 48, "cellb.alpha": 52, "dmin": 76, "dmax": 80,
              "dmean": 84, "origin.x": 196, "origin.y": 200, "origin.z": 204, "rms": 216}


def forge_mrc(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    if len(data) < 1024:
        return truncate(rng, data, ctx)
    b = bytearray(data)
    if rng.random() < 0.65:
        name = rng.choice(list(_MRC_INT))
        v = rng.choice([0, -1, 1, 2, 3, 4, 5, 6, 12, 16, 101, 2**31 - 1, -2**31, 2**20, 65536, 1024, len(data)])
        struct.pack_into("<i", b, _MRC_INT[name], v)
    elif rng.random() < 0.8:
        name = rng.choice(list(_MRC_FLOAT))
        v = rng.choice([0.0, -1.0, math.nan, math.inf, -math.inf, 3.4e38, 1e-45, -0.0])
        struct.pack_into("<f", b, _MRC_FLOAT[name], v)
    else:
        name, v = rng.choice([("map", b"MAP\x00"), ("machst", b"\x11\x11\x00\x00"), ("exttyp", b"FEI1"),
                              ("labels", b"\xff" * 80)])
        off = {"map": 208, "machst": 212, "exttyp": 104, "labels": 224}[name]
        b[off:off + len(v)] = v
    return bytes(b), f"MRC {name} = {v!r}"


def forge_mrcgz(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    try:
        inner = gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return bitflip(rng, data, ctx)
    new, desc = (forge_mrc if rng.random() < 0.7 else rng.choice([truncate, bitflip, overwrite]))(rng, inner, ctx)
    return gzip.compress(new or b"", mtime=0), f"inside gzip: {desc}"


_NPY_DESCR = ["<f16", "|O", "<U99999999", "|V0", "|V7", "<i0", "bogus", "[('a', '<f4')]", ">f4", "<c8", "<M8[s]",
              "<f4", "|b1", "<f2", "|S0", "{'names':['a'],'formats':['<f4']}"]
_NPY_SHAPE = ["()", "(0,)", "(-1,)", "(2**40,)", "(1099511627776,)", "(2147483648, 2147483648)", "(20, 20, 20, 20)",
              "(24, 24)", "(1, 1, 1, 1, 1, 1, 1)", "('a',)", "(1.5,)", "(0, 0, 0)", "(9223372036854775807,)",
              "None", "[24, 24, 24]"]


def forge_npy(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        return bitflip(rng, data, ctx)
    major = data[6]
    hl_size = 2 if major == 1 else 4
    hlen = int.from_bytes(data[8:8 + hl_size], "little")
    start = 8 + hl_size
    text = data[start:start + hlen].decode("latin1")
    body = data[start + hlen:]
    r = rng.random()
    if r < 0.35:
        new = rng.choice(_NPY_DESCR)
        text, desc = re.sub(r"'descr': [^,]*(\]|\))?,", f"'descr': {new!r},", text, count=1), f"descr {new}"
        if new.startswith(("[", "{")):
            text = text.replace(repr(new), new)
    elif r < 0.7:
        new = rng.choice(_NPY_SHAPE)
        text, desc = re.sub(r"'shape': \([^)]*\)", f"'shape': {new}", text, count=1), f"shape {new}"
    elif r < 0.8:
        new = rng.choice(["True", "1", "'yes'", "None"])
        text, desc = text.replace("'fortran_order': False", f"'fortran_order': {new}"), f"fortran_order {new}"
    elif r < 0.9:
        text, desc = rng.choice([("{}", "empty dict"), ("{'descr': '<f4'}", "dict without shape"),
                                 ("[1, 2]", "a list"), ("__import__('os')", "a call"), ("{" * 200, "unbalanced"),
                                 ("(" * 10000 + ")" * 10000, "deep nesting")])
    else:
        hl_new = rng.choice([0, 1, hlen + 16, 2**(8 * hl_size) - 1])
        hdr = data[:8] + hl_new.to_bytes(hl_size, "little")
        return hdr + data[start:], f"NPY header length {hl_new}"
    raw = text.rstrip().encode("latin1") + b"\n"
    if major == 1 and len(raw) > 65535:
        major, hl_size = 2, 4
    pad = (-(8 + hl_size + len(raw))) % 64 if rng.random() < 0.8 else 0
    raw = raw[:-1] + b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes([major, 0]) + len(raw).to_bytes(hl_size, "little") + raw + body, f"NPY {desc}"


def forge_npz(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return bitflip(rng, data, ctx)
    name = rng.choice(sorted(members))
    r = rng.random()
    if r < 0.6:
        members[name], desc = forge_npy(rng, members[name], ctx)
    elif r < 0.8:
        members[name], desc = rng.choice([truncate, bitflip, overwrite])(rng, members[name], ctx)
    elif r < 0.9:
        members[rng.choice(["../x.npy", "/abs/x.npy", "data.npy", "a" * 300 + ".npy"])] = members.pop(name)
        desc = "member renamed"
    else:
        members = {}
        desc = "no members"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in members.items():
            zf.writestr(zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0)), d)
    return buf.getvalue(), f"NPZ member {name}: {desc}"


# ------------------------------------------------------------------------ TIFF, HDF5
def forge_tiff(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    """Change the value of one entry of the first IFD (classic TIFF, either byte order)."""
    if len(data) < 16 or data[:2] not in (b"II", b"MM") or struct.unpack(data[:2] == b"II" and "<H" or ">H",
                                                                          data[2:4])[0] != 42:
        return bitflip(rng, data, ctx)
    e = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(e + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return bitflip(rng, data, ctx)
    n = struct.unpack(e + "H", data[ifd:ifd + 2])[0]
    entries = [ifd + 2 + 12 * i for i in range(n) if ifd + 2 + 12 * i + 12 <= len(data)]
    if not entries:
        return bitflip(rng, data, ctx)
    off = rng.choice(entries)
    tag, typ, count = struct.unpack(e + "HHI", data[off:off + 8])
    b = bytearray(data)
    what = rng.random()
    if what < 0.6:
        v = rng.choice([0, 1, 3, 7, 8, 16, 64, 255, 65535, 2**31 - 1, 2**32 - 1, len(data), len(data) + 1])
        if typ == 3 and count == 1:
            struct.pack_into(e + "HH", b, off + 8, v & 0xFFFF, 0)
        else:
            struct.pack_into(e + "I", b, off + 8, v & 0xFFFFFFFF)
        desc = f"tag {tag} value = {v}"
    elif what < 0.8:
        v = rng.choice([0, 1, 2**20, 2**31 - 1, 2**32 - 1])
        struct.pack_into(e + "I", b, off + 4, v)
        desc = f"tag {tag} count = {v}"
    else:
        v = rng.choice([0, 2, 5, 12, 13, 16, 99])
        struct.pack_into(e + "H", b, off + 2, v)
        desc = f"tag {tag} type = {v}"
    return bytes(b), f"TIFF IFD {desc}"


def forge_h5(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    """Rewrite an attribute of (or replace) the first dataset of an HDF5 file."""
    import h5py

    buf = io.BytesIO(data)
    try:
        with h5py.File(buf, "r+") as f:
            names: list[str] = []
            f.visit(lambda n: names.append(n) if isinstance(f[n], h5py.Dataset) else None)
            if not names:
                return bitflip(rng, data, ctx)
            ds = f[names[0]]
            keys = sorted(ds.attrs.keys()) + ["axes", "spacing", "origin", "unit", "element_size_um", "DIMENSION_LABELS"]
            key = rng.choice(keys)
            value = rng.choice(["", "ZYXC", "QQQ", "A" * 5000, np.array([np.nan, np.inf, -1.0]), np.array([0.0] * 3),
                                np.array([2**40] * 5), np.int64(-1), np.array([], dtype=np.float64), "{not json",
                                "../x.mrc", ctx.escape_abs, np.array([[1, 2], [3, 4]])])
            if rng.random() < 0.15:
                shape = rng.choice([(0,), (1, 1, 1, 1, 1, 1), (3,), (2, 2, 2, 2, 2)])
                del f[names[0]]
                f.create_dataset(names[0], data=np.zeros(shape, np.float32))
                desc = f"dataset {names[0]} replaced by zeros{shape}"
            else:
                ds.attrs[key] = value
                desc = f"attribute {key} = {_short(value.tolist() if isinstance(value, np.ndarray) else value)}"
    except Exception:  # noqa: BLE001 - h5py cannot parse it: fall back to blind bytes
        return bitflip(rng, data, ctx)
    return buf.getvalue(), f"HDF5 {desc}"


# ------------------------------------------------------------------------ text and pickles
def forge_zarr_json(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    try:
        doc = json.loads(data)
    except ValueError:
        return bitflip(rng, data, ctx)
    if rng.random() < 0.85:
        doc, desc, _ = forge_json_value(rng, doc, ctx)
        return json_text(doc), f"JSON {desc}"
    text, desc = rng.choice([(b"{", "unbalanced"), (b"[" * 100_000, "deep nesting"), (b"null", "null"),
                             (b"\xff\xfe", "not UTF-8")])
    return text, f"JSON text {desc}"


def forge_star(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    lines = data.decode("utf-8", "replace").split("\n")
    rows = [i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith(("_", "data_", "loop_", "#"))]
    labels = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("_")]
    r = rng.random()
    if r < 0.4 and rows:
        i = rng.choice(rows)
        toks = lines[i].split()
        j = rng.randrange(len(toks))
        if "@" in toks[j] and rng.random() < 0.7:
            new = rng.choice(["999999@stack.mrcs", "0@stack.mrcs", "-1@stack.mrcs", "1@../x.mrcs", f"1@{ctx.escape_abs}",
                              "1@stack.mrcs:mrcs", "1@", "@stack.mrcs", "1@missing.mrcs", "99999999999999999999@stack.mrcs"])
        else:
            new = rng.choice(["nan", "inf", "-inf", "-1", "0", "1e308", "-1e308", "99999999999", "abc", "\"\"", "1e-320"])
        desc = f"line {i} field {j}: {toks[j]} -> {new}"
        toks[j] = new
        lines[i] = " ".join(toks)
    elif r < 0.55 and rows:
        i = rng.choice(rows)
        del lines[i]
        desc = f"row line {i} deleted"
    elif r < 0.65 and rows:
        i = rng.choice(rows)
        lines.insert(i, lines[i])
        desc = f"row line {i} duplicated"
    elif r < 0.75 and labels:
        i = rng.choice(labels)
        desc = f"column label {lines[i].strip()} " + rng.choice(["deleted", "duplicated"])
        if desc.endswith("deleted"):
            del lines[i]
        else:
            lines.insert(i, lines[i])
    elif r < 0.85 and rows:
        i = rng.choice(rows)
        lines[i] = lines[i][: rng.randrange(max(1, len(lines[i])))]
        desc = f"row line {i} cut"
    else:
        i = rng.randrange(len(lines))
        lines[i] = rng.choice(["data_", "loop_", "_rlnImageName #99", "data_optics", "x" * 100_000, "\x00"])
        desc = f"line {i} replaced"
    return "\n".join(lines).encode("utf-8"), f"STAR {desc}"


def forge_cs(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        names = list(arr.dtype.names or ())
    except Exception:  # noqa: BLE001
        return forge_npy(rng, data, ctx)
    if not names or rng.random() < 0.4:
        return forge_npy(rng, data, ctx)
    name = rng.choice(names)
    if rng.random() < 0.25:
        keep = [n for n in names if n != name]
        arr = arr[keep] if keep else arr[:0]
        desc = f"field {name} dropped"
    else:
        a = arr.copy()
        col = a[name]
        if col.dtype.kind == "S":
            v: Any = rng.choice([b"", b">../x.mrcs", b">" + ctx.escape_abs.encode()[:15], b">missing.mrcs", b"\xff\xfe"])
        elif col.dtype.kind in "iu":
            v = rng.choice([0, np.iinfo(col.dtype).max, 2**16, np.iinfo(col.dtype).min])
        else:
            v = rng.choice([np.nan, np.inf, -1.0, 0.0, 1e30])
        a[name] = v
        arr, desc = a, f"field {name} = {v!r}"
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue(), f"cryoSPARC {desc}"


def forge_pkl(rng: Random, data: bytes, ctx: MutContext) -> tuple[bytes, str]:
    import pickle

    try:
        obj = pickle.loads(data)  # noqa: S301 - our own seed file
    except Exception:  # noqa: BLE001
        return bitflip(rng, data, ctx)
    choices: list[tuple[Any, str]] = [(None, "None"), ({"rot": 1}, "a dict"), ("poses", "a string"), ([], "an empty list"),
                                      (np.zeros((0, 9), np.float32), "empty array"),
                                      (np.full((6, 9), np.nan, np.float32), "all-NaN (6, 9)"),
                                      (np.zeros((6, 3, 3, 1), np.float32), "(6,3,3,1)"),
                                      (np.zeros((2**20, 0), np.float32), "(2**20, 0)"),
                                      (np.ones((6, 9), np.complex64), "complex"),
                                      (np.ones((6,), dtype=object), "object array")]
    if isinstance(obj, tuple) and obj:
        parts = list(obj)
        i = rng.randrange(len(parts) + 1)
        if i == len(parts):
            parts.append(np.zeros(3))
            desc = "extra tuple element"
        else:
            parts[i], what = rng.choice(choices + [(parts[i][:-1], "one row less"), (parts[i].T, "transposed")])
            desc = f"element {i} -> {what}"
        new: Any = tuple(parts)
    elif isinstance(obj, np.ndarray):
        new, desc = rng.choice(choices + [(obj[:-1], "one row less"), (obj[:, :5], "5 columns"),
                                          (obj.astype(np.float16), "float16"), ((obj, obj), "a tuple")])
    else:
        new, desc = rng.choice(choices)
    return pickle.dumps(new, protocol=4), f"pickle {desc}"
