"""Conformational and compositional states built from one atomic model, for CryoBench-style
heterogeneity benchmarks (issue 19).

* :func:`hinge_states` — a one-dimensional continuous motion: one domain turned rigidly
  about a hinge axis through a range of angles (like the Fab of IgG-1D). Every state has the
  same atoms in the same order.
* :func:`composition_states` — discrete compositional heterogeneity: subunits present or
  absent (like Ribosembly's assembly intermediates). States differ in their atoms.

Selections are written ``"A"`` (chain A), ``"A:30-60"`` (residues 30 to 60 of chain A) or
several of those joined by ``+`` (``"A:1-20+B"``); they are matched against the atom keys
``(chain, residue number, insertion code, residue name, atom name)`` of
:func:`voxfield.reconstruct.simulate.read_model`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from voxfield.denoise.molmap import Atoms
from voxfield.errors import OptionError

__all__ = ["select", "hinge_axis", "hinge_states", "composition_states"]


def select(keys: Sequence[tuple], selection: str) -> np.ndarray:
    """Boolean mask of the atoms (by their keys) that ``selection`` names (module
    docstring); :class:`OptionError` for a malformed selection or one that names no atom."""
    chains = np.array([str(k[0]) for k in keys])
    resnum = np.array([int(k[1]) for k in keys])
    mask = np.zeros(len(keys), dtype=bool)
    for part in str(selection).split("+"):
        part = part.strip()
        if not part:
            raise OptionError(f"empty part in the selection {selection!r}")
        chain, _, rng = part.partition(":")
        sel = chains == chain.strip()
        if rng:
            try:
                lo_s, _, hi_s = rng.partition("-")
                lo = int(lo_s)
                hi = int(hi_s) if hi_s else lo
            except ValueError:
                raise OptionError(f"selection {part!r}: residues must be 'FIRST-LAST', e.g. A:30-60") from None
            if hi < lo:
                raise OptionError(f"selection {part!r}: the last residue comes before the first")
            sel &= (resnum >= lo) & (resnum <= hi)
        if not sel.any():
            raise OptionError(f"selection {part!r} names no atom of the model")
        mask |= sel
    return mask


def hinge_axis(atoms: Atoms, domain: np.ndarray, contact: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """A hinge axis for turning ``domain`` (bool mask) away from the rest of the model:
    ``(point, unit direction)`` in (z, y, x) Å. The point is the centroid of the domain's
    atoms within ``contact`` Å of the rest (the interface); the direction is perpendicular to
    both the interface→domain and interface→rest directions, so the turn opens or closes
    the angle between the two parts."""
    from scipy.spatial import cKDTree

    dom, rest = atoms.zyx[domain], atoms.zyx[~domain]
    if len(dom) == 0 or len(rest) == 0:
        raise OptionError("the hinge domain must hold some but not all atoms of the model")
    near = cKDTree(rest).query(dom, distance_upper_bound=contact)[0] < np.inf
    if not near.any():
        raise OptionError(f"the domain does not touch the rest of the model (no atom within {contact:g} Å)")
    p = dom[near].mean(axis=0)
    a, b = dom.mean(axis=0) - p, rest.mean(axis=0) - p
    d = np.cross(a, b)
    if np.linalg.norm(d) < 1e-6:  # collinear: any direction perpendicular to a
        d = np.cross(a, np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 * np.linalg.norm(a) else np.array([0.0, 1.0, 0.0]))
    return p, d / np.linalg.norm(d)


def hinge_states(atoms: Atoms, domain: np.ndarray, angles_deg: Sequence[float],
                 axis: tuple[np.ndarray, np.ndarray] | None = None) -> list[Atoms]:
    """One state per angle: the ``domain`` atoms turned rigidly by that angle (degrees)
    about ``axis`` (``(point, direction)``, default :func:`hinge_axis`), the rest fixed."""
    dom = np.asarray(domain, dtype=bool)
    if dom.shape != (len(atoms),):
        raise OptionError(f"the domain mask has {dom.shape} entries for {len(atoms)} atoms")
    angles = [float(a) for a in angles_deg]
    if not angles or not all(math.isfinite(a) for a in angles):
        raise OptionError("give at least one finite hinge angle")
    p, d = hinge_axis(atoms, dom) if axis is None else (np.asarray(axis[0], float), np.asarray(axis[1], float))
    d = d / np.linalg.norm(d)
    out = []
    for ang in angles:
        r = Rotation.from_rotvec(math.radians(ang) * d)
        zyx = atoms.zyx.copy()
        zyx[dom] = r.apply(zyx[dom] - p) + p
        out.append(Atoms(zyx, atoms.number, atoms.residue, f"{atoms.name} hinge {ang:+.1f} deg"))
    return out


def composition_states(atoms: Atoms, keys: Sequence[tuple], groups: Sequence[str],
                       patterns: Sequence[Sequence[bool]]) -> list[Atoms]:
    """One state per pattern: the atoms outside every group, plus the groups (selections)
    whose flag in the pattern is true. Every group must name atoms; groups must not
    overlap; a pattern needs one flag per group."""
    masks = [select(keys, g) for g in groups]
    if not masks:
        raise OptionError("give at least one subunit group")
    cover = np.sum(masks, axis=0)
    if (cover > 1).any():
        raise OptionError("subunit groups overlap: each atom may belong to one group only")
    core = cover == 0
    out = []
    for k, pat in enumerate(patterns):
        flags = [bool(f) for f in pat]
        if len(flags) != len(masks):
            raise OptionError(f"state {k}: {len(flags)} flags for {len(masks)} groups")
        keep = core.copy()
        for m, f in zip(masks, flags):
            if f:
                keep |= m
        if not keep.any():
            raise OptionError(f"state {k} holds no atom")
        present = "+".join(g for g, f in zip(groups, flags) if f) or "core"
        out.append(Atoms(atoms.zyx[keep], atoms.number[keep], atoms.residue[keep], f"{atoms.name} [{present}]"))
    return out
