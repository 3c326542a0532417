"""The ``cryo-pe-set`` method: one ``cryo-pe`` network shared by several maps (paper 000,
section 3.3: "multiple files are trained simultaneously", told apart by a learnable 64-D
latent vector per file).

Everything per map is as in :mod:`voxfield.compress.cryo_pe`: each map keeps its own
threshold (given, or its own automatic contour), its own losslessly coded occupancy map
(coder chosen per map), its own below-threshold constant, peak (the network predicts
``value / peak`` of that map) and clamp range, and its own volume header (shape, dtype,
voxel size, origin, format header). What is shared is the network: the positional
encoding of the coordinates concatenated with **the map's latent vector** (one learnable
``latent_dim`` vector per map, initialised uniform in [-1, 1]) feeds one residual
LeakyReLU MLP. The latents cannot be folded into a bias as for one map, so the file stores
them (``K x latent_dim`` numbers) and the full first layer; decoding one member folds that
member's latent into the first bias at load time, exactly as ``cryo-pe`` does with
``fold_latent=False``, so decoding stays exact and order-independent per member.

Choices the paper leaves open:

* **coordinates** -- each map's voxel indices are scaled to [0, 1] over its own box
  (``i / (n - 1)`` per axis), whatever its shape. Maps of different voxel sizes are
  accepted: the network sees index positions, not Å, and each member's voxel size stays in
  its header (the report and the header's ``notes`` say when the sizes differ).
* **sampling** -- ``sampling="proportional"`` (default, the paper's: the occupied voxels of
  all maps are pooled and drawn uniformly, so a map gets training in proportion to its
  occupied voxels, which is what the total squared error over the set rewards) or
  ``"balanced"`` (every chunk holds the same number of points from every map, drawn with
  replacement from a map with fewer occupied voxels than its share: small maps get as much
  training as big ones).
* **training** -- chunked and memory-mapped as for one map: every map's occupied voxels
  (flat indices and targets) go to memory-mapped files slab by slab; a chunk of
  ``chunk_points`` is drawn across the maps (by the rule above) and one pass of random
  batches runs over it (:func:`voxfield.compress.cryo_pe.train_chunked`). The weighted
  loss's ``E[|y|]`` is the chunk's, over all maps.
* **ratio** -- the sum of the maps' original bytes over the file bytes, within the
  target's tolerance (default 64, ±2 %).

File layout (``.vxf``): the top-level ``volume`` entry is ``{"set": true, "names": [...]}``
(a set is not one volume); ``method`` holds the shared network (``widths``, ``residual``,
``bits``, ``frac_bits``, ``clip``...) and ``members``, one entry per map (its ``volume``
header, ``layout``, threshold, fill, peak, clamp range, occupancy coder, occupied count and
the name of its occupancy section). Sections: ``occupancy.1`` ... ``occupancy.K``,
``tables`` (weight quantisation table) and ``weights`` (the latents, then the layers).

Members are numbered **from 1** (``--member 1`` is the first map given to
``compress-set``), or named by their file name; :func:`member_index` resolves either.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from voxfield import __version__
from voxfield.codecs.base import Target
from voxfield.compress import container, rate, tables
from voxfield.compress.classic import volume_header
from voxfield.compress.cryo_pe import (
    CryoPEConfig,
    CryoPEField,
    _auto_widths,
    _coords01,
    _encode_weights,
    _land_bits,
    _Samples,
    decode_occupancy,
    exact_network,
    fixed_point_for,
    plan_occupancy,
    train_chunked,
)
from voxfield.compress.cryo_pe import _check_volume as _check_map
from voxfield.compress.defaults import default_target
from voxfield.compress.entropy import weights as weight_coding
from voxfield.compress.field_layout import FieldLayout
from voxfield.errors import DataError, FormatError, OptionError, TargetNotMet
from voxfield.fields.nerf import NerfMLP, encoding_size, layer_plan, param_count
from voxfield.io.volume import Volume

METHOD = "cryo-pe-set"
SAMPLINGS = ("proportional", "balanced")
_SECTION = "occupancy.{}"


@dataclass(frozen=True)
class CryoPESetConfig(CryoPEConfig):
    """:class:`~voxfield.compress.cryo_pe.CryoPEConfig` for a set of maps, plus
    ``sampling`` (module docstring). ``threshold`` applies to every map when given
    (per-map thresholds: the ``thresholds`` argument of :func:`compress_set`);
    ``fold_latent`` is always False (every map's latent is stored)."""

    method: str = METHOD
    fold_latent: bool = False
    sampling: str = "proportional"  # proportional | balanced

    METHOD_NAME: ClassVar[str] = METHOD

    def validate(self) -> None:
        """Raise :class:`OptionError` for an inconsistent configuration."""
        super().validate()
        if self.fold_latent:
            raise OptionError("fold_latent does not apply to a set: every map's latent vector is stored")
        if self.latent_dim < 1:
            raise OptionError("a set needs latent_dim >= 1 (the latent vectors tell the maps apart)")
        if self.sampling not in SAMPLINGS:
            raise OptionError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")


@dataclass
class MemberReport:
    """One map of a set: its threshold, occupancy and size."""

    name: str = ""
    shape: list[int] = field(default_factory=list)
    spacing: list[float] = field(default_factory=list)
    threshold: float = 0.0
    threshold_source: str = ""
    fill: float = 0.0
    occupied: int = 0
    occupied_fraction: float = 0.0
    occupancy_coder: str = ""
    occupancy_bytes: int = 0
    original_bytes: int = 0


@dataclass
class CryoPESetReport:
    """What happened during a ``cryo-pe-set`` compression (for the CLI and benchmarks)."""

    method: str = METHOD
    members: list[MemberReport] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    residual: list[int] = field(default_factory=list)
    n_params: int = 0
    steps: int = 0
    bits: float = 0.0
    loss: str = ""
    sampling: str = ""
    final_loss: float = float("nan")
    train_seconds: float = 0.0
    total_seconds: float = 0.0
    weight_bytes: int = 0
    file_bytes: int = 0
    original_bytes: int = 0
    attempts: int = 1
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- training form
class JointNerf(nn.Module):
    """One :class:`~voxfield.fields.nerf.NerfMLP` shared by ``n_maps`` maps, with one
    learnable latent vector per map (``latents``, ``(n_maps, latent_dim)``, uniform in
    [-1, 1] from ``seed``); the NerfMLP's own latent is unused (frozen)."""

    def __init__(self, widths: Sequence[int], residual: Sequence[int], n_maps: int, *, n_freq: int = 10,
                 latent_dim: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.net = NerfMLP(widths, residual, n_freq=n_freq, latent_dim=latent_dim, seed=seed)
        self.net.latent.requires_grad_(False)
        gen = torch.Generator().manual_seed(int(seed) + 7919)
        self.latents = nn.Parameter(torch.rand(int(n_maps), int(latent_dim), generator=gen) * 2 - 1)

    def forward(self, coords: torch.Tensor, member: torch.Tensor, *, record: list[float] | None = None) -> torch.Tensor:
        """``(N, 3)`` coordinates in [0, 1] of the maps ``member`` (``(N,)`` 0-based) -> ``(N,)``."""
        return self.net(coords, latent=self.latents[member], record=record)

    def stored_tensors(self, fold_latent: bool = False) -> list[np.ndarray]:
        """Tensors in file order: the latents ``(K * latent_dim,)``, then per layer the
        weight ``(in, out)`` and the bias (``fold_latent`` must be False)."""
        if fold_latent:
            raise ValueError("a set's latents cannot be folded")
        out = self.net.stored_tensors(False)
        out[0] = self.latents.detach().cpu().numpy().astype(np.float32).reshape(-1)
        return out


class _SetSamples:
    """The occupied voxels of every map on disk (one :class:`~voxfield.compress.cryo_pe._Samples`
    per map) and the draw of training chunks across maps (module docstring)."""

    def __init__(self, parts: list[_Samples], shapes: list[tuple[int, ...]], balanced: bool) -> None:
        self.parts, self.shapes, self.balanced = parts, shapes, balanced
        self.counts = np.array([p.n for p in parts], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.n = int(self.counts.sum())

    def chunk(self, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``size`` points: coordinates in [0, 1] ``(n, 3)`` float64, targets ``(n,)``
        float32 and 0-based map numbers ``(n,)`` int64."""
        k_maps = len(self.parts)
        picks: list[np.ndarray] = []
        if self.balanced:
            for k in range(k_maps):
                share = size // k_maps + (1 if k < size % k_maps else 0)
                n_k = int(self.counts[k])
                if n_k <= share:  # every point once, topped up with repeats
                    pick = np.concatenate([np.arange(n_k), rng.choice(n_k, size=share - n_k, replace=True)])
                else:
                    pick = rng.choice(n_k, size=share, replace=False)
                picks.append(np.sort(pick))
        else:
            if self.n <= size:
                glob = np.arange(self.n)
            else:
                glob = np.sort(rng.choice(self.n, size=size, replace=False))
            member = np.searchsorted(self.offsets, glob, side="right") - 1
            for k in range(k_maps):
                picks.append(glob[member == k] - self.offsets[k])
        coords, ys, ids = [], [], []
        for k, pick in enumerate(picks):
            if not len(pick):
                continue
            flat = np.asarray(self.parts[k].index[pick])
            coords.append(_coords01(flat, self.shapes[k]))
            ys.append(np.asarray(self.parts[k].y[pick]))
            ids.append(np.full(len(pick), k, dtype=np.int64))
        return np.concatenate(coords), np.concatenate(ys), np.concatenate(ids)

    def close(self) -> None:
        for p in self.parts:
            p.close()


# ---------------------------------------------------------------------------- compress
def _member_name(vol: Volume, k: int) -> str:
    source = vol.meta.get("source")
    return Path(str(source)).name if source else f"map{k + 1}"


def compress_set(vols: Sequence[Volume], cfg: CryoPESetConfig | None = None, target: Target | None = None, *,
                 thresholds: Sequence[float | None] | None = None, names: Sequence[str] | None = None,
                 progress: Callable[[str, float], None] | None = None,
                 report: CryoPESetReport | None = None) -> bytes:
    """Compress several 3-D maps (axes ZYX; shapes and voxel sizes may differ) into one
    ``.vxf`` with one shared ``cryo-pe`` network and one latent vector per map; returns the
    bytes, within ``target.rtol`` of the ratio (sum of the original bytes over the file
    bytes; default 64, ±2 %) or size target.

    ``thresholds`` gives one threshold per map (None: that map's automatic contour; default:
    ``cfg.threshold`` for every map). ``names`` names the members (default: the source
    file names, else ``map1``, ``map2``...).

    Raises :class:`DataError` for an empty list, a non-3-D or constant map, NaN/Inf, or a
    threshold that leaves no occupied voxel (naming the map); :class:`TargetNotMet` when the
    occupancy maps and the smallest network do not fit in the budget."""
    from voxfield.compress.neural import default_time_budget, resolve_device

    cfg = cfg or CryoPESetConfig()
    cfg.validate()
    t_start = time.perf_counter()
    vols = list(vols)
    if not vols:
        raise DataError("cryo-pe-set needs at least one map")
    k_maps = len(vols)
    if thresholds is not None and len(thresholds) != k_maps:
        raise OptionError(f"give one threshold per map ({k_maps}), got {len(thresholds)}")
    if names is not None and len(names) != k_maps:
        raise OptionError(f"give one name per map ({k_maps}), got {len(names)}")
    target = target or default_target()
    if target.kind not in ("ratio", "bytes"):
        raise OptionError(f"the cryo-pe-set method aims for a ratio or a size, not {target.kind}")
    rep = report or CryoPESetReport()
    rep.members, rep.notes, rep.loss, rep.sampling = [], [], cfg.loss, cfg.sampling
    member_names = [str(n) for n in names] if names is not None else [_member_name(v, k) for k, v in enumerate(vols)]

    # --- per map: checks, threshold, occupancy, constants
    entries: list[dict[str, Any]] = []
    masks: list[np.ndarray] = []
    occ_payloads: list[bytes] = []
    for k, vol in enumerate(vols):
        label = f"map {k + 1} ({member_names[k]})"
        try:
            _check_map(vol)
        except DataError as exc:
            raise DataError(f"{label}: {exc.message}", exc.path) from None
        if tuple(vol.axes) != ("Z", "Y", "X"):
            raise DataError(f"{label}: cryo-pe-set expects axes ZYX, got {vol.axes!r} (transpose the map first)")
        layout = FieldLayout.plan(vol.axes, vol.data)
        if layout.constant:
            raise DataError(f"{label} is constant ({layout.lo:g}): compress it alone (cryo-pe stores it exactly)")
        thr = thresholds[k] if thresholds is not None else cfg.threshold
        try:
            occ = plan_occupancy(vol, thr, cfg.occupancy_coder)
        except DataError as exc:
            raise DataError(f"{label}: {exc.message}") from None
        entries.append({"name": member_names[k], "volume": volume_header(vol), "layout": layout.to_dict(),
                        "threshold": occ.threshold, "threshold_source": occ.source, "fill": occ.fill,
                        "peak": occ.peak, "y_range": list(occ.y_range), "occupancy_coder": occ.coder,
                        "occupied": occ.occupied, "section": _SECTION.format(k + 1)})
        masks.append(occ.mask)
        occ_payloads.append(occ.payload)
        rep.members.append(MemberReport(member_names[k], list(vol.shape), list(vol.spacing), occ.threshold,
                                        occ.source, occ.fill, occ.occupied, occ.occupied / vol.data.size, occ.coder,
                                        len(occ.payload), int(vol.data.nbytes)))
        if progress is not None:
            progress("occupancy", (k + 1) / k_maps)
    spacings = {tuple(round(float(s), 4) for s in v.spacing) for v in vols}
    if len(spacings) > 1:
        rep.notes.append("voxel sizes differ between maps (" + "; ".join(
            f"{m.name}: {'x'.join(f'{s:.4g}' for s in m.spacing)} {vols[i].unit}" for i, m in enumerate(rep.members))
            + "): coordinates are scaled to [0, 1] over each map's own box, the latent vectors tell the maps "
              "apart, and every map keeps its own voxel size in its header")
    if len({tuple(v.shape) for v in vols}) > 1:
        rep.notes.append("shapes differ between maps: coordinates are scaled to [0, 1] over each map's own box")

    total_bytes = int(sum(v.data.nbytes for v in vols))
    total_voxels = int(sum(v.data.size for v in vols))
    rep.original_bytes = total_bytes
    device = resolve_device(cfg.device)
    size_goal = rate.SizeGoal.of(target, total_bytes, METHOD)
    goal, tol = size_goal.goal, size_goal.tol
    n_pe = encoding_size(3, cfg.frequencies)
    n_in = n_pe + cfg.latent_dim
    n_latent = k_maps * cfg.latent_dim
    occ_total = sum(len(p) for p in occ_payloads)
    budget_s = cfg.time_budget if cfg.time_budget is not None else default_time_budget(total_voxels)
    section_names = [e["section"] for e in entries] + ["tables", "weights"]

    def header(extra: dict[str, Any]) -> dict[str, Any]:
        conf = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items() if k != "device"}
        return {"voxfield": __version__, "volume": {"set": True, "names": member_names},
                "method": {"name": METHOD, "config": conf, "members": entries, "notes": rep.notes, **extra}}

    def sizing_header(widths: Sequence[int], res: Sequence[int]) -> dict[str, Any]:
        return header({"widths": list(widths), "residual": list(res), "bits": 12.3456789, "frac_bits": 20,
                       "clip": 1024.0, "steps": 1234567, "final_loss": 0.123456789})

    bpp = cfg.bits_per_param
    with tempfile.TemporaryDirectory(prefix="voxfield-cryo-pe-set-") as folder:
        parts: list[_Samples] = []
        try:
            for k, (vol, mask) in enumerate(zip(vols, masks, strict=True)):
                sub = Path(folder) / str(k)
                sub.mkdir()
                parts.append(_Samples(vol.data, mask, float(entries[k]["peak"]), str(sub)))
            samples = _SetSamples(parts, [tuple(int(n) for n in v.shape) for v in vols], cfg.sampling == "balanced")
            for attempt in range(1, 4):
                rep.attempts = attempt
                probe_res = cfg.residual_for(len(cfg.widths) if cfg.widths else 4)
                probe_w = cfg.widths or (4096, 2048, 1024, 512)
                n_tensors = len(layer_plan(n_in, probe_w, probe_res)) * 2 + 1
                probe_tab = tables.pack({"codes": np.random.default_rng(0).random((n_tensors, 5)).astype(np.float32)})
                over = container.overhead(sizing_header(probe_w, probe_res), section_names)
                weight_bytes = goal - over - len(probe_tab) - occ_total
                if weight_bytes < 64:
                    raise TargetNotMet(
                        f"ratio {total_bytes / goal:.4g} is out of reach for cryo-pe-set: the file may hold {goal:.0f} "
                        f"bytes, the {k_maps} occupancy maps take {occ_total} and the container "
                        f"{over + len(probe_tab)}; the highest reachable ratio here is about "
                        f"{total_bytes / (over + len(probe_tab) + occ_total + 1024):.4g}")
                if cfg.widths is not None:
                    widths, res = tuple(cfg.widths), cfg.residual_for(len(cfg.widths))
                else:
                    widths, res = _auto_widths(int(weight_bytes * 8 / bpp) - n_latent, n_in,
                                               replace(cfg, fold_latent=True))  # latents counted apart
                net = JointNerf(widths, res, k_maps, n_freq=cfg.frequencies, latent_dim=cfg.latent_dim,
                                seed=cfg.seed).to(device)
                t0 = time.perf_counter()
                train_budget = max(budget_s - (t0 - t_start), 5.0) * 0.85
                n_chunk = min(cfg.chunk_points, samples.n)

                def draw(rng: np.random.Generator, n_chunk: int = n_chunk) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
                    x, y, ids = samples.chunk(n_chunk, rng)
                    return ((torch.as_tensor(x, dtype=torch.float32, device=device),
                             torch.as_tensor(ids, device=device)),
                            torch.as_tensor(y, dtype=torch.float32, device=device))

                steps, last = train_chunked(net, draw, n_chunk, cfg, device, train_budget, progress)
                rep.train_seconds += time.perf_counter() - t0
                net = net.cpu()
                bits, payload, codes = _land_bits(net, False, weight_bytes, tol)
                if payload is None:
                    if cfg.widths is not None:
                        raise TargetNotMet(f"cryo-pe-set: widths {','.join(map(str, widths))} need more than the "
                                           f"{weight_bytes:.0f} bytes the target leaves for weights even at 8 bits; "
                                           "lower the ratio or the widths")
                    bpp *= len(_encode_weights(net, False, weight_coding.MIN_BITS)[0]) / weight_bytes * 1.02
                    continue
                assert codes is not None
                x, _, ids = samples.chunk(1 << 16, np.random.default_rng(0))
                rec: list[float] = [1.0]
                with torch.no_grad():
                    net(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(ids), record=rec)
                frac_bits, clip = fixed_point_for(rec, n_in, widths)
                extra = {"widths": list(widths), "residual": list(res), "frac_bits": frac_bits, "clip": clip,
                         "steps": int(steps), "final_loss": last}
                occ_sections = {e["section"]: p for e, p in zip(entries, occ_payloads, strict=True)}
                blob, bits, payload, codes = rate.land_weights(
                    lambda b, p, c: container.dumps(header({**extra, "bits": float(b)}),
                                                    {**occ_sections, "tables": tables.pack({"codes": c}),
                                                     "weights": p}),
                    lambda b: _encode_weights(net, False, b), bits, payload, codes, size_goal)
                rep.widths, rep.residual = list(widths), list(res)
                rep.n_params = param_count(n_in, widths, res, n_latent)
                rep.steps, rep.bits, rep.final_loss = steps, float(bits), last
                rep.weight_bytes, rep.file_bytes = len(payload), len(blob)
                if size_goal.hit(len(blob)):
                    rep.total_seconds = time.perf_counter() - t_start
                    return blob
                if len(blob) < goal and cfg.widths is None:  # even 16-bit weights leave room: plan bigger
                    bpp = bpp * len(payload) / weight_bytes * 0.98
                    continue
                break
        finally:
            for p in parts:
                p.close()
    raise size_goal.missed(None, rep.file_bytes)


# ---------------------------------------------------------------------------- members
def is_set(header: dict[str, Any]) -> bool:
    """Whether a ``.vxf`` header is a set of maps (``cryo-pe-set``)."""
    method = header.get("method")
    return isinstance(method, dict) and method.get("name") == METHOD


def _members(header: dict[str, Any], path: Any = None) -> list[dict[str, Any]]:
    members = header.get("method", {}).get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
        raise FormatError("corrupt cryo-pe-set header (no member list)", path)
    return members


def member_list(header: dict[str, Any]) -> str:
    """``1 a.mrc, 2 b.mrc, ...`` for messages."""
    return ", ".join(f"{i + 1} {m.get('name', '?')}" for i, m in enumerate(_members(header)))


def member_index(header: dict[str, Any], member: int | str | None, path: Any = None) -> int:
    """0-based position of ``member`` in a set: an integer counted **from 1** (a string of
    digits counts as one) or a member's name. Raises :class:`OptionError` naming the members
    when ``member`` is None (a set needs a choice), out of range or unknown, or when the file
    is not a set."""
    if not is_set(header):
        raise OptionError("--member applies to sets made by voxfield compress-set; this file holds one volume", path)
    members = _members(header, path)
    n = len(members)
    if member is None:
        raise OptionError(f"this file is a set of {n} maps: pick one with --member N (member=N in Python), "
                          f"N in 1..{n}: {member_list(header)}", path)
    if isinstance(member, str) and member.strip().lstrip("+-").isdigit():
        member = int(member.strip())
    if isinstance(member, (int, np.integer)) and not isinstance(member, bool):
        if not 1 <= int(member) <= n:
            raise OptionError(f"member {int(member)} is out of range: members are numbered 1..{n}: "
                              f"{member_list(header)}", path)
        return int(member) - 1
    hits = [i for i, m in enumerate(members) if m.get("name") == str(member)]
    if len(hits) == 1:
        return hits[0]
    what = "names more than one member" if hits else "is not a member"
    raise OptionError(f"{member!r} {what}; pick by number 1..{n}: {member_list(header)}", path)


def member_header(header: dict[str, Any], member: int | str | None, path: Any = None) -> dict[str, Any]:
    """The header seen by whole-file tools for one member: ``volume`` replaced by the
    member's. A single-volume header is returned as is when ``member`` is None."""
    if member is None and not is_set(header):
        return header
    k = member_index(header, member, path)
    return {**header, "volume": _members(header, path)[k]["volume"]}


# ---------------------------------------------------------------------------- decode
def load_member_field(reader: container.VxfReader, member: int | str | None) -> tuple[CryoPEField, FieldLayout]:
    """The random-access field (:class:`~voxfield.compress.cryo_pe.CryoPEField`) and
    layout of one member of a set (``member`` as in :func:`member_index`)."""
    k = member_index(reader.header, member, reader.path)
    m = reader.header["method"]
    entry = _members(reader.header, reader.path)[k]
    try:
        layout = FieldLayout.from_dict(entry["layout"])
        conf = dict(m["config"])
        n_freq, latent_dim = int(conf["frequencies"]), int(conf["latent_dim"])
        n_maps = len(m["members"])
        widths = [int(w) for w in m["widths"]]
        res = [int(r) for r in m["residual"]]
        shape = layout.coord_shape
        if len(shape) != 3 or layout.n_out != 1 or latent_dim < 1:
            raise ValueError("not a 3-D map")
        mask = decode_occupancy(reader.section(str(entry["section"])), str(entry["occupancy_coder"]), shape)
        if int(np.count_nonzero(mask)) != int(entry["occupied"]):
            raise ValueError("occupancy map does not match the header")
        n_pe = encoding_size(3, n_freq)
        plan = layer_plan(n_pe + latent_dim, widths, res)
        counts = [n_maps * latent_dim] + [n for _, i, o in plan for n in (i * o, o)]
        rows = tables.unpack(reader.section("tables"))["codes"]
        if len(rows) != len(counts):
            raise ValueError("weight tables do not match the network")
        codes = [replace(weight_coding.TensorCode.from_row(r), count=n) for r, n in zip(rows, counts, strict=True)]
        syms = weight_coding.decode_symbols(reader.section("weights"), codes, limit=reader.alloc_limit)
        latent = (syms[0].astype(np.float64) * codes[0].step).reshape(n_maps, latent_dim)[k]
        # this member's constant latent is folded into the first bias, once (as cryo-pe)
        net = exact_network(plan, syms, codes, 1, latent, n_pe, n_freq, int(m["frac_bits"]), float(m["clip"]))
        y_range = (float(entry["y_range"][0]), float(entry["y_range"][1]))
        fld = CryoPEField(mask, net, layout, float(entry["fill"]), float(entry["peak"]), y_range)
    except FormatError as exc:
        raise FormatError(exc.message, reader.path) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FormatError(f"corrupt cryo-pe-set model ({exc})", reader.path) from None
    return fld, layout


def decode_member(reader: container.VxfReader, member: int | str | None) -> Volume:
    """Decode one member of a set to a Volume (its own shape, dtype, voxel size and header)."""
    fld, layout = load_member_field(reader, member)
    desc = member_header(reader.header, member, reader.path)["volume"]
    data = layout.from_field(fld.evaluate_region([slice(0, n) for n in layout.coord_shape]), desc["dtype"])
    return Volume.from_description(desc, data)


def set_summary(method: dict[str, Any]) -> dict[str, Any]:
    """The shared network of a set, for ``voxfield info``."""
    conf = method.get("config", {})
    n_maps = len(method.get("members") or [])
    latent_dim = int(conf.get("latent_dim", 0))
    widths, res = method.get("widths") or [], method.get("residual") or []
    n_in = encoding_size(3, int(conf.get("frequencies", 10))) + latent_dim
    params = param_count(n_in, widths, res, n_maps * latent_dim) if widths and len(widths) == len(res) else None
    return {"maps": n_maps, "widths": widths, "residual": res, "latent_dim": latent_dim, "parameters": params,
            "weight_bits": method.get("bits"), "steps": method.get("steps"), "loss": conf.get("loss"),
            "sampling": conf.get("sampling"), "notes": method.get("notes") or []}


def describe_members(reader: container.VxfReader) -> list[dict[str, Any]]:
    """One summary per member of a set (numbered from 1), for ``voxfield info``."""
    out = []
    for i, m in enumerate(_members(reader.header, reader.path)):
        vol = m.get("volume", {})
        shape = [int(n) for n in vol.get("shape", [])]
        dtype = np.dtype(vol["dtype"]) if vol.get("dtype") else None
        sec = str(m.get("section", ""))
        out.append({"member": i + 1, "name": m.get("name"), "shape": shape,
                    "dtype": dtype.name if dtype is not None else None, "spacing": vol.get("spacing"),
                    "unit": vol.get("unit"), "origin": vol.get("origin"),
                    "original_bytes": int(np.prod(shape)) * dtype.itemsize if shape and dtype is not None else 0,
                    "threshold": m.get("threshold"), "occupied": m.get("occupied"),
                    "occupancy_coder": m.get("occupancy_coder"),
                    "occupancy_bytes": reader.section_info(sec).size if sec in reader.section_names else None})
    return out
