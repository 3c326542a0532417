"""Symmetric assemblies and ideal nucleic-acid duplexes built from atomic models, for the
denoiser's training corpus (issue 18): cyclic rings, dihedral pairs of rings, helical
filaments, and B-form DNA.

Every builder takes and returns an :class:`~voxfield.io.atoms.AtomTable`; copies of a
subunit get new chain names (``A`` copy 3 becomes ``A3``) and the residue index keeps
running over all copies. The geometry is chosen so that neighbouring subunits touch
without overlapping much: a subunit is treated as a sphere of radius ``sqrt(5/3) Rg``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from voxfield.errors import OptionError
from voxfield.io.atoms import AtomTable

__all__ = ["subunit_radius", "replicate", "cyclic", "dihedral", "helical", "bdna_duplex"]


def subunit_radius(table: AtomTable) -> float:
    """Radius (Å) of the sphere with the subunit's radius of gyration: ``sqrt(5/3) Rg``."""
    c = table.xyz - table.xyz.mean(axis=0)
    return float(math.sqrt(5.0 / 3.0) * math.sqrt(float((c**2).sum(axis=1).mean())))


def replicate(table: AtomTable, rotations: np.ndarray, shifts: np.ndarray, name: str = "") -> AtomTable:
    """Copies of ``table`` centred at the origin, each rotated by ``rotations[k]`` (3x3)
    and moved by ``shifts[k]`` (x, y, z Å)."""
    rot = np.asarray(rotations, np.float64).reshape(-1, 3, 3)
    sh = np.asarray(shifts, np.float64).reshape(-1, 3)
    if len(rot) != len(sh) or len(rot) == 0:
        raise OptionError("replicate needs as many rotations as shifts (at least one)")
    c = table.xyz - table.xyz.mean(axis=0)
    nres = int(table.residue_index.max()) + 1 if len(table) else 0
    parts = {k: [] for k in ("xyz", "chain", "residue_index")}
    for k, (r, s) in enumerate(zip(rot, sh)):
        parts["xyz"].append(c @ r.T + s)
        parts["chain"].append(np.char.add(table.chain.astype(str), str(k)))
        parts["residue_index"].append(table.residue_index + k * nres)
    n = len(rot)
    return replace(
        table,
        xyz=np.concatenate(parts["xyz"]),
        chain=np.concatenate(parts["chain"]),
        residue_index=np.concatenate(parts["residue_index"]),
        element=np.tile(table.element, n),
        atomic_number=np.tile(table.atomic_number, n),
        b_factor=np.tile(table.b_factor, n),
        occupancy=np.tile(table.occupancy, n),
        residue_number=np.tile(table.residue_number, n),
        insertion_code=np.tile(table.insertion_code, n),
        residue_name=np.tile(table.residue_name, n),
        atom_name=np.tile(table.atom_name, n),
        source=name or table.source,
    )


def _about_z(angle: float) -> np.ndarray:
    return Rotation.from_euler("z", angle).as_matrix()


def cyclic(table: AtomTable, n: int, rng: np.random.Generator, contact: float = 0.9) -> AtomTable:
    """A ring of ``n`` copies (Cn symmetry about z) of the subunit in a random orientation,
    placed so that neighbours' spheres overlap by ``1 - contact``."""
    if n < 2:
        raise OptionError(f"a cyclic assembly needs n >= 2, got {n}")
    base = Rotation.random(random_state=rng).as_matrix()
    radius = contact * subunit_radius(table) / math.sin(math.pi / n)
    rots, shifts = [], []
    for k in range(n):
        rz = _about_z(2 * math.pi * k / n)
        rots.append(rz @ base)
        shifts.append(rz @ np.array([radius, 0.0, 0.0]))
    return replicate(table, np.array(rots), np.array(shifts), f"C{n}")


def dihedral(table: AtomTable, n: int, rng: np.random.Generator, contact: float = 0.9) -> AtomTable:
    """Two stacked Cn rings related by 2-fold axes perpendicular to z (Dn symmetry)."""
    ring = cyclic(table, n, rng, contact)
    d = contact * subunit_radius(table)
    flip = Rotation.from_euler("x", math.pi).as_matrix()
    xyz = ring.xyz - ring.xyz.mean(axis=0)
    top = xyz + np.array([0.0, 0.0, d])
    bottom = (xyz + np.array([0.0, 0.0, d])) @ flip.T
    both = replicate(replace(ring, xyz=xyz), np.stack([np.eye(3)] * 2), np.zeros((2, 3)), f"D{n}")
    return replace(both, xyz=np.concatenate([top, bottom]))


def helical(table: AtomTable, rng: np.random.Generator, length: float = 160.0,
            units_per_turn: float | None = None) -> AtomTable:
    """A helical filament about z, about ``length`` Å long: ``units_per_turn`` subunits per
    turn (random in 1.8-14 when not given, either hand); the rise makes subunits one turn
    apart just touch, so thin two-start filaments (actin-like, ~2.2 per turn) and wide tubes
    (~13 per turn) both come out."""
    u = float(units_per_turn) if units_per_turn is not None else float(rng.uniform(1.8, 14.0))
    if u < 1.0:
        raise OptionError(f"units per turn must be >= 1, got {u}")
    twist = 2 * math.pi / u * (1 if rng.random() < 0.5 else -1)
    d = 2 * subunit_radius(table)
    radius = 0.45 * d / math.sin(math.pi / u) if u >= 2 else 0.4 * d
    rise = d * float(rng.uniform(0.8, 1.0)) / u
    n = max(2, int(math.ceil(length / max(rise, 1.0))))
    n = min(n, 400)
    base = Rotation.random(random_state=rng).as_matrix()
    rots, shifts = [], []
    for k in range(n):
        rz = _about_z(k * twist)
        rots.append(rz @ base)
        shifts.append(rz @ np.array([radius, 0.0, 0.0]) + np.array([0.0, 0.0, k * rise]))
    return replicate(table, np.array(rots), np.array(shifts), f"helix{u:.1f}")


# Cylindrical coordinates (radius Å, angle degrees, height Å) of the backbone atoms of one
# nucleotide of strand I of fibre B-DNA, rounded; the base pair lies in the plane z = 0
# between the two C1' atoms (10.5 Å apart, as in Watson-Crick pairs).
_BACKBONE = {
    "P": (8.9, 95.0, 2.9), "OP1": (9.9, 92.0, 3.7), "OP2": (8.9, 104.0, 2.1), "O5'": (7.7, 90.0, 2.2),
    "C5'": (7.7, 80.0, 2.8), "C4'": (7.8, 72.0, 1.9), "O4'": (6.6, 66.0, 1.5), "C3'": (8.6, 66.0, 1.0),
    "O3'": (8.4, 70.0, -0.3), "C2'": (7.6, 58.0, 0.9), "C1'": (5.9, 67.0, 0.3),
}
# strand I runs 5' to 3' towards -z: the next nucleotide is turned by -36° and lowered by
# 3.38 Å, which keeps the helix right-handed and puts its phosphate 1.7 Å from this O3'
_RISE, _TWIST = -3.38, -36.0
_PAIR = {"A": "T", "T": "A", "G": "C", "C": "G"}


def _cyl(r: float, phi_deg: float, z: float) -> np.ndarray:
    p = math.radians(phi_deg)
    return np.array([r * math.cos(p), r * math.sin(p), z])


def bdna_duplex(n_bp: int, rng: np.random.Generator) -> AtomTable:
    """An ideal B-form DNA duplex of ``n_bp`` base pairs with a random sequence (rise 3.38 Å,
    twist 36°, phosphates at 8.9 Å from the axis); each base pair is 20 or 21 base atoms
    laid on a 1.35 x 1.2 Å lattice of three rows between the C1' atoms. Heavy atoms only;
    chains ``A`` and ``B``."""
    if n_bp < 1:
        raise OptionError(f"a duplex needs at least one base pair, got {n_bp}")
    seq = rng.choice(list("ACGT"), size=n_bp)
    dyad = (_BACKBONE["C1'"][1] + (_BACKBONE["C1'"][1] - 125.0)) / 2.0
    xyz, el, chain, resnum, resname, aname = [], [], [], [], [], []

    def add(p: np.ndarray, e: str, ch: str, num: int, rn: str, an: str) -> None:
        xyz.append(p)
        el.append(e)
        chain.append(ch)
        resnum.append(num)
        resname.append(rn)
        aname.append(an)

    for i, b in enumerate(seq):
        rot = _about_z(math.radians(i * _TWIST))
        dz = np.array([0.0, 0.0, i * _RISE])
        c1 = []
        for strand, base in (("A", str(b)), ("B", _PAIR[str(b)])):
            num = i + 1 if strand == "A" else n_bp - i
            for name, (r, phi, z) in _BACKBONE.items():
                if strand == "B":
                    phi, z = 2 * dyad - phi, -z
                add(rot @ _cyl(r, phi, z) + dz, name.rstrip("'")[0] if name != "OP1" and name != "OP2" else "O",
                    strand, num, "D" + base, name)
            r, phi, z = _BACKBONE["C1'"]
            c1.append(_cyl(r, phi if strand == "A" else 2 * dyad - phi, 0.0))
        # base atoms: three rows along the C1'-C1' line
        a, bpt = c1
        u = (bpt - a) / np.linalg.norm(bpt - a)
        w = np.cross(np.array([0.0, 0.0, 1.0]), u)
        if w @ (a + bpt) < 0:  # the major groove is away from the axis-facing side
            w = -w
        n_atoms = 21 if str(b) in "AG" else 20
        for k in range(n_atoms):
            t = 1.2 + (k // 3) * 1.35
            off = -0.5 + 1.2 * (k % 3)
            e = "N" if k % 3 == 0 else ("O" if k % 7 == 5 else "C")
            strand = "A" if t < 5.25 else "B"
            base = str(b) if strand == "A" else _PAIR[str(b)]
            add(rot @ (a + t * u + off * w) + dz, e, strand, i + 1 if strand == "A" else n_bp - i, "D" + base,
                f"B{k}")
    n = len(xyz)
    num = {"C": 6, "N": 7, "O": 8, "P": 15}
    chain_a = np.asarray(chain, dtype=str)
    resn = np.asarray(resnum, np.int64)
    # residue index: strand A residues first, then strand B
    ridx = np.where(chain_a == "A", resn - 1, n_bp + (n_bp - resn))
    return AtomTable(
        xyz=np.asarray(xyz, np.float64), element=np.asarray(el, dtype=str),
        atomic_number=np.asarray([num[e] for e in el], np.int64), b_factor=np.full(n, 30.0, np.float32),
        occupancy=np.ones(n, np.float32), residue_index=ridx.astype(np.int64), chain=chain_a,
        residue_number=resn, insertion_code=np.full(n, "", dtype=str), residue_name=np.asarray(resname, dtype=str),
        atom_name=np.asarray(aname, dtype=str), source=f"bdna{n_bp}",
    )
