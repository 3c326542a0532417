"""Cases and their execution for the fuzzer (:mod:`voxfield.bench.fuzz`).

:func:`plan_case` turns ``(seed, case number)`` into a :class:`Case` (target seed, file,
mutator, operation and its arguments) with nothing else involved. :class:`Executor` runs
one case in a fresh sandbox (``box/in/<file>``, ``box/out/``) inside a watched root folder,
with stdout/stderr captured at the file-descriptor level, and classifies the outcome:

``ok`` (exit 0), ``clean`` (exit 2 with one ``voxfield: error:`` line naming the file, or a
VoxfieldError from a Python API call), ``traceback``, ``bad-exit``, ``unnamed``,
``silent-wrong``, ``wrote-outside``, ``debris`` — ``abort`` and ``hang`` are decided by the
parent (:mod:`voxfield.bench.fuzz_run`), which watches the worker process.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from voxfield.bench.fuzz_mutate import LENIENT, Mutation, MutContext, mutate, parse_vxf, pick_mutator, vxf_damage
from voxfield.bench.fuzz_seeds import Corpus, Seed

#: Outcomes, most severe first; everything before "unnamed" (inclusive) is a failure.
OUTCOMES = ("abort", "hang", "traceback", "bad-exit", "wrote-outside", "silent-wrong", "debris", "unnamed",
            "clean", "ok")
FAILURES = OUTCOMES[:8]
#: Share of control cases (no mutation): the unmutated seed must give "ok".
CONTROL_SHARE = 0.02
#: Planted failures for testing the instrument: ``VOXFIELD_FUZZ_INJECT="3:abort,5:hang"``.
INJECT: dict[int, str] = {int(k): v for k, _, v in (item.partition(":") for item in
                                                    os.environ.get("VOXFIELD_FUZZ_INJECT", "").split(",") if item)}
_KIND_WEIGHT = {"vxf": 1.0, "input": 1.6, "particles": 2.0}
_OUT_EXT = {"decompress-npy": ".npy", "decompress-mrc": ".mrc", "decompress-tif": ".tif", "decompress-h5": ".h5",
            "decompress-zarr": ".ome.zarr"}


@dataclass
class Case:
    """A planned case, fully determined by (seed, number)."""

    number: int
    seed: int
    target: str  # seed name
    family: str
    file: str  # mutated file, relative to the seed folder
    ftype: str
    mutator: str
    op: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """What one case did."""

    case: Case
    outcome: str
    findings: list[tuple[str, str]]  # (outcome, signature)
    mutation: str = ""
    rc: int | None = None
    stderr: str = ""
    detail: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # worth a look, not failures

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.case), "outcome": self.outcome, "findings": self.findings, "mutation": self.mutation,
                "rc": self.rc, "stderr": _clip(self.stderr), "detail": self.detail, "seconds": round(self.seconds, 3),
                "notes": self.notes}


def _clip(text: str, n: int = 1200) -> str:
    return text if len(text) <= 2 * n else f"{text[:n]}\n[… {len(text)} characters in all …]\n{text[-n:]}"


def plan_case(corpus: Corpus, seed: int, number: int) -> Case:
    """The case ``number`` of a run with ``seed``."""
    rng = Random(f"vxfuzz:{seed}:{number}")
    seeds = corpus.seeds
    s = rng.choices(seeds, [_KIND_WEIGHT.get(x.kind, 1.0) for x in seeds])[0]
    files = sorted(s.mutables)
    weights = [5.0 if s.mutables[f] == "zarrjson" else 1.0 for f in files]
    rel = rng.choices(files, weights)[0]
    ftype = s.mutables[rel]
    mutator = "none" if rng.random() < CONTROL_SHARE else pick_mutator(rng, ftype)
    op = rng.choice(s.ops)
    args: dict[str, Any] = {"mut_seed": f"vxfuzz:{seed}:{number}:m"}
    if s.members:
        k = rng.randint(1, s.members)
        names = s.extra.get("member_names", [])
        by_name = rng.random() < 0.3 and len(names) >= k
        args["member"] = (names[k - 1] if by_name else str(k)) if rng.random() < 0.9 else None
        args["member_index"] = str(k) if args["member"] else None
    args["pick"] = rng.random()
    return Case(number, seed, s.name, s.family, rel, ftype, mutator, op, args)


# --------------------------------------------------------------------------- helpers
def _innermost(tb: Any) -> str:
    """``file:line (function)`` of the innermost voxfield frame (fuzzer frames excluded)."""
    frames = traceback.extract_tb(tb) if tb is not None else []
    for fr in reversed(frames):
        if "voxfield" in fr.filename and "/bench/fuzz" not in fr.filename:
            return f"{_short_file(fr.filename)}:{fr.lineno} ({fr.name})"
    if frames:
        fr = frames[-1]
        return f"{_short_file(fr.filename)}:{fr.lineno} ({fr.name})"
    return "?"


def _short_file(path: str) -> str:
    p = path.replace("\\", "/")
    i = p.rfind("/voxfield/")
    return p[i + len("/voxfield/"):] if i >= 0 else "/".join(p.split("/")[-2:])


def faulthandler_frame(text: str) -> str:
    """The innermost voxfield frame of a faulthandler dump (most recent call first)."""
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', text)
    for f, line, fn in frames:
        if "voxfield" in f and "/bench/fuzz" not in f:
            return f"{_short_file(f)}:{line} ({fn})"
    return f"{_short_file(frames[0][0])}:{frames[0][1]} ({frames[0][2]})" if frames else "no Python frame"


def normalize(msg: str, box: str = "") -> str:
    """A message with paths, numbers and long quotes folded, for grouping signatures."""
    if box:
        msg = msg.replace(box, "<box>")
    msg = re.sub(r"/[^\s:'\"]*", "<path>", msg)
    msg = re.sub(r"'[^']{24,}'", "'…'", msg)
    msg = re.sub(r"0x[0-9a-fA-F]+|-?\d+(\.\d+)?([eE][-+]?\d+)?", "N", msg)
    return msg[:140]


def _same(a: np.ndarray, b: np.ndarray) -> str:
    """'' when ``a`` and ``b`` agree (shape, dtype, values; NaN == NaN), else why not."""
    if a.shape != b.shape:
        if a.squeeze().shape == b.squeeze().shape:
            a, b = a.squeeze(), b.squeeze()
        else:
            return f"shape {a.shape} != reference {b.shape}"
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} != reference {b.dtype}"
    if a.dtype.kind == "f":
        x, y = a.astype(np.float64), b.astype(np.float64)
        rng = float(np.nanmax(y) - np.nanmin(y)) if np.isfinite(y).any() else 1.0
        if not np.allclose(x, y, rtol=1e-5, atol=1e-6 * max(rng, 1e-30), equal_nan=True):
            return f"values differ (max |diff| {float(np.nanmax(np.abs(x - y))):.3g})"
        return ""
    return "" if np.array_equal(a, b) else "values differ"


def _key_shape(shape: list[int], key: tuple[Any, ...]) -> tuple[int, ...]:
    out: list[int] = []
    for k, n in zip(key, shape):
        if isinstance(k, slice):
            out.append(len(range(*k.indices(n))))
    return tuple(out) + tuple(shape[len(key):])


def _tree(root: Path) -> set[str]:
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for n in dirnames + filenames:
            out.add(os.path.normpath(os.path.join(rel, n)))
    return out


# --------------------------------------------------------------------------- executor
def sandbox(root: Path, number: int) -> Path:
    """The sandbox folder of case ``number`` in a worker's ``root`` (three levels down, so
    that outputs escaping by a few ``../`` still land inside the watched root)."""
    return root / "a" / "b" / "c" / f"case{number}"


class Executor:
    """Runs cases inside ``root`` (one per worker process)."""

    def __init__(self, corpus: Corpus, root: Path, cap_fd: int | None = None) -> None:
        self.corpus = corpus
        self.root = root
        self.box = sandbox(root, -1)
        self.escape = root / "escape"
        self.cwd = root / "cwd"
        for d in (self.escape, self.cwd):
            d.mkdir(parents=True, exist_ok=True)
        self.cap_fd = cap_fd
        self._in_names: set[str] = set()
        self.refs: dict[tuple[str, str], np.ndarray] = {}
        for s in corpus.seeds:
            for k, rel in s.refs.items():
                self.refs[(s.name, k)] = np.load(corpus.root / "seeds" / s.name / rel)
        self._donors = [p for p in (corpus.root / "seeds").rglob("*") if p.is_file() and not p.name.startswith("ref")]
        self._donors.sort()

    def context(self) -> MutContext:
        return MutContext(str(self.escape / "x.mrc"), lambda r: r.choice(self._donors).read_bytes())

    # ------------------------------------------------------------------ setup
    def prepare(self, case: Case) -> tuple[Seed, Mutation | None, Path]:
        """Fresh sandbox with the (mutated) seed; returns the seed, mutation and entry path."""
        if self.box.exists():  # the previous case's (kept until now for --replay --keep)
            shutil.rmtree(self.box)
        # a fresh path per case: nothing cached by path in this process can leak between cases
        self.box = sandbox(self.root, case.number)
        if self.box.exists():
            shutil.rmtree(self.box)
        (self.box / "in").mkdir(parents=True)
        (self.box / "out").mkdir()
        (self.box / "aux").mkdir()
        seed = self.corpus.seed(case.target)
        src = self.corpus.root / "seeds" / seed.name
        for p in src.iterdir():
            if p.name.startswith("ref") and p.suffix == ".npy":
                continue
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, self.box / "in" / p.name)
        mut = None
        if case.mutator != "none":
            target = self.box / "in" / case.file
            new, mut = mutate(Random(case.args["mut_seed"]), case.ftype, target.read_bytes(), self.context(),
                              case.file, case.mutator)
            if new is None:
                target.unlink()
            else:
                target.write_bytes(new)
        self._in_names = {p.name for p in (self.box / "in").iterdir()}
        return seed, mut, self.box / "in" / seed.entry

    # ------------------------------------------------------------------ run
    def run(self, case: Case, on_ready: Any = None) -> Result:
        t0 = time.perf_counter()
        try:
            seed, mut, entry = self.prepare(case)
        except Exception as exc:  # noqa: BLE001 - a mutator bug must not look like a voxfield bug
            return Result(case, "ok", [], f"mutator failed: {type(exc).__name__}: {exc}", seconds=0.0)
        mdesc = "none" if mut is None else mut.desc
        if on_ready is not None:
            on_ready(mdesc)
        forged = mut is not None and mut.forged
        before = _tree(self.root)
        res = Result(case, "ok", [], mdesc)
        self._capture_start()
        data: Any = None
        err: BaseException | None = None
        try:
            data = self._op(case, seed, entry, res)
        except BaseException as exc:  # noqa: BLE001 - classify everything
            err = exc
        finally:
            res.stderr = self._capture_end()
        if err is not None:
            self._classify_exception(res, err, case)
        elif res.rc is not None:
            self._classify_rc(res, entry, case)
        if not res.findings and err is None and res.rc in (None, 0) and data is not None:
            self._check_data(res, case, seed, data, forged, entry)
        self._check_files(res, case, before)
        if case.op in ("info", "info-json") and seed.kind == "vxf" and res.rc == 0 and mut is not None:
            why = vxf_damage(entry.read_bytes()) if entry.is_file() else "missing"
            if why:
                res.notes.append(f"info exit 0 on a damaged .vxf ({normalize(why)})")
        res.findings.sort(key=lambda f: OUTCOMES.index(f[0]))
        res.outcome = res.findings[0][0] if res.findings else res.outcome
        if mut is None and res.outcome == "clean" and case.op not in seed.extra.get("refuses", []) and \
                not (seed.members and not case.args.get("member")):
            why = res.stderr.strip()[-200:] or res.detail
            res.notes.append(f"control case (unmutated seed) refused by {case.op}: {normalize(why)}")
        res.seconds = time.perf_counter() - t0
        return res

    def _capture_start(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        if self.cap_fd is not None:
            os.ftruncate(self.cap_fd, 0)

    def _capture_end(self) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        if self.cap_fd is None:
            return ""
        os.lseek(self.cap_fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            b = os.read(self.cap_fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        text = b"".join(chunks).decode("utf-8", "replace")
        return text

    # ------------------------------------------------------------------ operations
    def _op(self, case: Case, seed: Seed, entry: Path, res: Result) -> Any:
        """Run the operation; returns data to compare (array, path or list of paths) or None."""
        from voxfield.cli.main import main as cli_main

        def main(argv: list[str]) -> int:
            case.args["argv"] = "voxfield " + " ".join(argv)
            return cli_main(argv)

        if case.number in INJECT:
            return self._inject(INJECT[case.number], case, res)
        rng = Random(case.args["mut_seed"] + ":op")
        out, member = self.box / "out", case.args.get("member")
        mem = ["--member", member] if member else []
        op = case.op
        os.chdir(self.cwd)
        if op in _OUT_EXT:
            dst = out / f"x{_OUT_EXT[op]}"
            res.rc = main(["decompress", str(entry), "-o", str(dst), "--force", *mem])
            return dst
        if op == "decompress-noout":
            res.rc = main(["decompress", str(entry), *mem])
            return "noout"
        if op in ("info", "info-json"):
            res.rc = main(["info", str(entry)] + (["--json"] if op == "info-json" else []))
            return ("input", None) if seed.kind == "input" else None
        if op == "compress-zstd":
            dst = out / "x.vxf"
            res.rc = main(["compress", str(entry), "-o", str(dst), "--codec", "zstd", "--force"])
            return ("compressed", dst)
        if op == "particles":
            return self._particles(seed, entry, res)
        ref = self.refs.get((seed.name, case.args.get("member_index") or ""))
        if ref is None:
            ref = self.refs[(seed.name, "1")]
        key = self._key(op, ref, seed, rng)
        case.args["key"] = repr(key)
        if op.startswith("decode-"):
            dst = out / ("v.npy" if op == "decode-coords" else "x.npy")
            extra: list[str]
            if op == "decode-coords":
                pts = np.stack(np.meshgrid(*[np.arange(0, n, 5) for n in self._spatial_shape(ref, seed)],
                                           indexing="ij"), -1).reshape(-1, len(self._spatial_shape(ref, seed)))
                np.save(self.box / "aux" / "points.npy", pts.astype(np.float64))
                extra = ["--coords", str(self.box / "aux" / "points.npy")]
                case.args["key"] = "points every 5 voxels"
            elif op == "decode-roi":
                extra = ["--roi", ",".join(f"{k.start}:{k.stop}" if isinstance(k, slice) and k.start is not None
                                           else ":" for k in key)]
            elif op == "decode-slice":
                ax = next(i for i, k in enumerate(key) if isinstance(k, int))
                extra = ["--slice", f"{seed.axes[ax].lower()}={key[ax]}"]
            else:
                extra = ["--step", str(next(k.step for k in key if isinstance(k, slice) and k.step))]
            res.rc = main(["decode", str(entry), "-o", str(dst), "--force", *extra, *mem])
            return ("decode", dst, key, pts if op == "decode-coords" else None)
        import voxfield
        from voxfield.errors import VoxfieldError

        try:
            arr = voxfield.open(str(entry), (int(member) if member.isdigit() else member) if member else None)
            got = np.asarray(arr[key])
        except VoxfieldError as exc:
            res.detail = f"API: {type(exc).__name__}: {exc}"
            res.findings.append(("clean", "api-error"))
            return None
        return ("api", got, key, tuple(arr.shape))

    def _inject(self, what: str, case: Case, res: Result) -> Any:
        """Self-test of the instrument: a planted failure instead of the operation."""
        if what == "abort":
            os.abort()
        if what == "hang":
            time.sleep(3600)
        if what == "traceback":
            return {}[what]
        if what == "escape":
            (self.escape / "x.mrc").write_bytes(b"escaped")
        if what == "debris":
            (self.box / "out" / ".voxfield-tmp-0000abcd-x.mrc").write_bytes(b"")
        if what in ("unnamed", "bad-exit"):
            print("voxfield: error: something is wrong", file=sys.stderr)
        if what == "leftover":
            (self.box / "out" / "x.npy").write_bytes(b"partial")
            print(f"voxfield: error: {self.box / 'out' / 'x.npy'}: failed", file=sys.stderr)
        res.rc = {"unnamed": 2, "bad-exit": 1, "leftover": 2}.get(what, 0)
        return None

    def _spatial_shape(self, ref: np.ndarray, seed: Seed) -> list[int]:
        return [n for n, a in zip(ref.shape, seed.axes) if a not in "CS"]

    def _key(self, op: str, ref: np.ndarray, seed: Seed, rng: Random) -> tuple[Any, ...]:
        spatial = [i for i, a in enumerate(seed.axes) if a not in "CS"]
        key: list[Any] = [slice(None)] * ref.ndim
        if op in ("decode-roi", "api-roi"):
            for i in spatial:
                a = rng.randrange(ref.shape[i])
                key[i] = slice(a, rng.randint(a + 1, ref.shape[i]))
                if op == "api-roi" and rng.random() < 0.25:  # numpy forms: negative bounds and steps
                    key[i] = rng.choice([slice(None, None, -1), slice(-a - 1, None), slice(None, -1, 2),
                                         slice(ref.shape[i] - 1, a - ref.shape[i] - 1, -2) if a else slice(None)])
        elif op in ("decode-slice", "api-plane"):
            i = rng.choice(spatial)
            key[i] = rng.randrange(ref.shape[i])
            if op == "api-plane" and rng.random() < 0.3:
                key[i] = -1 - key[i]
        elif op == "decode-step":
            s = rng.choice([2, 3])
            for i in spatial:
                key[i] = slice(None, None, s)
        return tuple(key)

    def _particles(self, seed: Seed, entry: Path, res: Result) -> None:
        from voxfield.errors import VoxfieldError
        from voxfield.reconstruct.particles import check_images, load_particles

        kw: dict[str, Any] = {}
        for k in ("poses", "ctf"):
            if k in seed.extra:
                kw[k] = self.box / "in" / seed.extra[k]
        try:
            stack = load_particles(entry, **kw)
            if stack.images is not None:
                check_images(stack)
                _ = stack.images[0: len(stack.images)]
        except VoxfieldError as exc:
            res.detail = f"API: {type(exc).__name__}: {exc}"
            res.findings.append(("clean", "api-error"))
        return None

    # ------------------------------------------------------------------ classification
    def _classify_exception(self, res: Result, exc: BaseException, case: Case) -> None:
        where = _innermost(exc.__traceback__)
        res.detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]
        res.findings.append(("traceback", f"{type(exc).__name__} @ {where}"))

    def _classify_rc(self, res: Result, entry: Path, case: Case) -> None:
        rc = res.rc
        errs = [ln for ln in res.stderr.splitlines() if ln.startswith("voxfield: error:")]
        if rc == 0:
            return
        if rc != 2:
            msg = errs[-1] if errs else (res.stderr.strip().splitlines() or ["(no message)"])[-1]
            res.findings.append(("bad-exit", f"bad-exit rc={rc}: {normalize(msg, str(self.box))}"))
            return
        if len(errs) != 1:
            res.findings.append(("bad-exit", f"rc=2 with {len(errs)} 'voxfield: error:' lines"))
            return
        line = errs[0]
        names = {str(entry), entry.name, case.file, Path(case.file).name, str(self.box / "in" / case.file)}
        names |= {str(p) for p in (self.box / "out").glob("*")} | {"x.npy", "x.mrc", "x.tif", "x.h5", "x.ome.zarr",
                                                                  "x.vxf", "v.npy", str(self.box / "out")}
        names = {n for n in names if len(n) >= 4 and not n.isdigit()}  # a chunk named "0" names nothing
        if any(n in line for n in names):
            res.findings.append(("clean", "clean"))
        else:
            res.findings.append(("unnamed", f"unnamed ({case.op}): {normalize(line[len('voxfield: error:'):])}"))

    def _check_data(self, res: Result, case: Case, seed: Seed, data: Any, forged: bool, entry: Path) -> None:

        def bad(reason: str) -> None:
            res.findings.append(("silent-wrong", f"silent-wrong ({case.op}, {case.family}): {normalize(reason)}"))
            res.detail = reason

        member = case.args.get("member_index")
        ref = self.refs.get((seed.name, member or ""))
        if isinstance(data, tuple) and data[0] == "input":
            return
        if isinstance(data, tuple) and data[0] == "compressed":
            self._check_compressed(data[1], entry, bad)
            return
        if seed.kind != "vxf" or ref is None:
            return
        head_shape = self._header_shape(entry, member)
        key: tuple[Any, ...] = (Ellipsis,)
        if isinstance(data, tuple) and data[0] == "api":
            got, key = data[1], data[2]
            if head_shape is not None and tuple(data[3]) != tuple(head_shape):
                bad(f"voxfield.open shape {data[3]} != header shape {head_shape}")
        elif isinstance(data, tuple) and data[0] == "decode":
            key = data[2]
            try:
                got = np.load(data[1]) if data[1].suffix == ".npy" else self._read_as(data[1], entry, seed, member)
            except Exception as exc:  # noqa: BLE001
                return bad(f"output unreadable: {type(exc).__name__}: {exc}")
            if data[3] is not None:
                pts = data[3].astype(int)
                want = ref[tuple(pts[:, i] for i in range(pts.shape[1]))] if ref.ndim == pts.shape[1] else None
                if want is None:
                    return
                return self._compare(np.asarray(got), want, forged, None, bad)
        else:
            outs = self._outputs(data)
            if len(outs) != 1:
                return bad(f"exit 0 but {len(outs)} output files")
            try:
                got = self._read_as(outs[0], entry, seed, member)
            except Exception as exc:  # noqa: BLE001
                return bad(f"output unreadable: {type(exc).__name__}: {exc}")
        want = ref[key]
        exp_shape = _key_shape(list(head_shape), key) if head_shape is not None and key != (Ellipsis,) else head_shape
        self._compare(np.asarray(got), want, forged, exp_shape, bad)

    def _compare(self, got: np.ndarray, want: np.ndarray, forged: bool, head_shape: Any, bad: Any) -> None:
        if forged:
            if head_shape is not None and tuple(got.shape) != tuple(head_shape) and \
                    got.squeeze().shape != np.empty(tuple(head_shape), dtype=np.uint8).squeeze().shape:
                bad(f"output shape {got.shape} != header shape {tuple(head_shape)}")
            elif np.isfinite(want).all() and got.dtype.kind in "fc" and not np.isfinite(got).all():
                bad(f"non-finite output ({int((~np.isfinite(got)).sum())} voxels) from a finite reference")
            return
        why = _same(got, want)
        if why:
            bad(why)

    def _read_as(self, path: Path, entry: Path, seed: Seed, member: str | None) -> np.ndarray:
        """An output volume's data with its axes in the order of the .vxf header (formats
        such as ImageJ TIFF store CZYX as ZCYX; the data are the same)."""
        from voxfield.io import read_volume

        vol = read_volume(path)
        want = seed.axes
        try:
            _, head, _ = parse_vxf(entry.read_bytes())
            vd = head["volume"] if not member else head["method"]["members"][int(member) - 1]["volume"]
            want = vd["axes"] if isinstance(vd.get("axes"), str) else want
        except Exception:  # noqa: BLE001
            pass
        data = np.asarray(vol.data)
        if vol.axes != want and sorted(vol.axes) == sorted(want) and len(vol.axes) == data.ndim:
            data = data.transpose([vol.axes.index(a) for a in want])
        return data

    def _header_shape(self, entry: Path, member: str | None) -> tuple[int, ...] | None:
        try:
            _, head, _ = parse_vxf(entry.read_bytes())
            vol = head["volume"] if not member else head["method"]["members"][int(member) - 1]["volume"]
            shape = tuple(vol["shape"])
            if all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in shape) and \
                    int(np.prod(shape, dtype=np.float64)) < 2**28:
                return shape
        except Exception:  # noqa: BLE001
            return None
        return None

    def _outputs(self, data: Any) -> list[Path]:
        if data == "noout":
            return [p for p in (self.box / "in").iterdir() if p.name not in self._in_names]
        return [Path(data)] if Path(data).exists() else []

    def _check_compressed(self, dst: Path, entry: Path, bad: Any) -> None:
        from voxfield.compress.api import decompress
        from voxfield.io import read_volume

        try:
            orig = np.asarray(read_volume(entry).data)
        except Exception as exc:  # noqa: BLE001
            return bad(f"compress exit 0 but the input reads as {type(exc).__name__}: {exc}")
        try:
            dec = np.asarray(decompress(dst).data)
        except Exception as exc:  # noqa: BLE001
            return bad(f"compressed file does not decode: {type(exc).__name__}: {exc}")
        why = _same(dec, orig)
        if why:
            return bad(f"lossless round trip: {why}")
        if dec.dtype.kind in "fc" and not np.isfinite(dec).all():
            bad("NaN/Inf input compressed without error")

    def _check_files(self, res: Result, case: Case, before: set[str]) -> None:
        after = _tree(self.root)
        new = sorted(after - before)
        box = os.path.relpath(self.box, self.root)
        allowed = [os.path.join(box, "out")] if case.op != "decompress-noout" else [os.path.join(box, "in")]
        if case.op in ("info", "info-json", "particles", "api-full", "api-roi", "api-plane"):
            allowed = []
        allowed.append(os.path.join(box, "aux"))
        outside = [p for p in new if not any(p == a or p.startswith(a + os.sep) for a in allowed)]
        if outside:
            res.findings.append(("wrote-outside", f"wrote-outside ({case.op}): {normalize(outside[0])}"))
            res.detail = (res.detail + f"\nnew files outside: {outside[:5]}").strip()
            for p in outside:
                q = self.root / p
                if q.exists() and not str(p).startswith(box):
                    shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink(missing_ok=True)
        if Path("/abs/dir/x.mrc").exists():
            res.findings.append(("wrote-outside", f"wrote-outside ({case.op}): /abs/dir/x.mrc"))
            Path("/abs/dir/x.mrc").unlink()
        for d in (self.box / "in", self.box / "out"):
            deb = [p.name for p in d.iterdir() if p.name.startswith(".voxfield")] if d.is_dir() else []
            if deb:
                name = normalize(re.sub(r"-[0-9a-f]{8}-", "-*-", deb[0]))
                res.findings.append(("debris", f"debris ({case.op}): {name}"))
        if res.rc not in (None, 0):  # a failed command leaves no output behind (README)
            folder = self.box / ("in" if case.op == "decompress-noout" else "out")
            left = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".voxfield")
                          and p.name not in self._in_names) if folder.is_dir() else []
            if left:
                res.findings.append(("debris", f"debris ({case.op}): output left behind after exit {res.rc}"))
                res.detail = (res.detail + f"\nleft after exit {res.rc}: {left[:5]}").strip()


def describe(case: Case) -> str:
    """A one-line description of a planned case."""
    return f"case {case.number} (seed {case.seed}): {case.op} on {case.target}/{case.file} after {case.mutator}"


__all__ = ["Case", "Executor", "FAILURES", "LENIENT", "OUTCOMES", "Result", "describe", "plan_case"]
