"""The atomic-model corpus the denoiser is trained on (issue 18): curation, identity
clusters, a split by identity, and writing models as minimal mmCIF.

* :func:`curate` keeps the first model's heavy atoms without waters, and describes the
  polymer content (residues of amino and nucleic acids, one sequence per chain);
* :func:`identity_clusters` groups models whose chains share sequence: two chains are the
  same identity when the Jaccard index of their k-mer sets (3-mers of protein, 8-mers of
  nucleic acid) reaches ``min_jaccard`` (0.3 joins homologues down to roughly 40-50 %
  identity; the split is therefore stricter than one by PDB code);
* :func:`split_for` assigns each cluster to ``train``, ``val`` or ``test`` from a hash of
  its smallest member's key, so the split does not depend on the order models are found;
* :func:`write_cif` writes an :class:`~voxfield.io.atoms.AtomTable` as an mmCIF file that
  :func:`~voxfield.io.atoms.read_atom_table` (gemmi) reads back.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from voxfield.io.atoms import AtomTable

WATERS = frozenset({"HOH", "WAT", "H2O", "DOD", "TIP", "TIP3", "TIP4", "SOL", "SPC"})

__all__ = ["ModelSummary", "curate", "identity_clusters", "split_for", "write_cif", "WATERS"]


@lru_cache(maxsize=4096)
def _residue_kind(name: str) -> tuple[str, str]:
    """("protein" | "nucleic" | "other", one-letter code) of a residue name."""
    import gemmi

    info = gemmi.find_tabulated_residue(name)
    if info is None:
        return "other", ""
    if info.is_amino_acid():
        return "protein", (info.one_letter_code.upper() or "X")
    if info.is_nucleic_acid():
        return "nucleic", (info.one_letter_code.upper() or "N")
    return "other", ""


@dataclass
class ModelSummary:
    """What a model holds: heavy atoms, residues of protein and nucleic acid, chains, and
    one sequence per polymer chain (``kind`` of each: ``protein`` or ``nucleic``)."""

    atoms: int
    protein_residues: int
    nucleic_residues: int
    chains: int
    sequences: dict[str, str] = field(default_factory=dict)
    chain_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``protein``, ``nucleic``, ``protein-nucleic`` or ``other``."""
        p, n = self.protein_residues > 0, self.nucleic_residues > 0
        return "protein-nucleic" if p and n else "protein" if p else "nucleic" if n else "other"


def curate(table: AtomTable) -> tuple[AtomTable, ModelSummary]:
    """``table`` without waters (and atoms of unknown element), and its summary."""
    keep = ~np.isin(np.char.upper(table.residue_name.astype(str)), list(WATERS)) & (table.atomic_number > 0)
    t = replace(table, **{k: getattr(table, k)[keep] for k in (
        "xyz", "element", "atomic_number", "b_factor", "occupancy", "residue_index", "chain", "residue_number",
        "insertion_code", "residue_name", "atom_name")})
    seqs: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    prot = nuc = 0
    seen: set[int] = set()
    for i in np.unique(t.residue_index, return_index=True)[1]:
        r = int(t.residue_index[i])
        if r in seen:
            continue
        seen.add(r)
        kind, code = _residue_kind(str(t.residue_name[i]).strip().upper())
        if kind == "other":
            continue
        ch = str(t.chain[i])
        seqs.setdefault(ch, []).append(code)
        kinds.setdefault(ch, kind)
        prot += kind == "protein"
        nuc += kind == "nucleic"
    summary = ModelSummary(len(t), prot, nuc, len(np.unique(t.chain)) if len(t) else 0,
                           {c: "".join(s) for c, s in seqs.items()}, kinds)
    return t, summary


def _kmers(seq: str, kind: str) -> frozenset[str]:
    k = 3 if kind == "protein" else 8
    return frozenset(seq[i : i + k] for i in range(max(0, len(seq) - k + 1)))


def identity_clusters(summaries: Mapping[str, ModelSummary], min_jaccard: float = 0.3,
                      min_length: int = 20) -> dict[str, str]:
    """Model key -> cluster key (the alphabetically first member). Models are joined when
    any of their chains (of at least ``min_length`` residues) are similar (module docstring);
    a model without such a chain is its own cluster."""
    keys = sorted(summaries)
    parent = {k: k for k in keys}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    chains: list[tuple[str, frozenset[str]]] = []
    for k in keys:
        s = summaries[k]
        for ch, seq in s.sequences.items():
            if len(seq) >= min_length:
                km = _kmers(seq, s.chain_kinds[ch])
                if km:
                    chains.append((k, km))
    for i in range(len(chains)):
        ki, a = chains[i]
        for j in range(i + 1, len(chains)):
            kj, b = chains[j]
            if find(ki) == find(kj):
                continue
            inter = len(a & b)
            if inter and inter / len(a | b) >= min_jaccard:
                ri, rj = find(ki), find(kj)
                parent[max(ri, rj)] = min(ri, rj)
    return {k: find(k) for k in keys}


def split_for(cluster: str, fractions: tuple[float, float] = (0.12, 0.08), salt: str = "voxfield-denoise-v2") -> str:
    """``test``, ``val`` or ``train`` for a cluster key, from a SHA-256 of the key: about
    ``fractions[0]`` of the clusters go to test, ``fractions[1]`` to validation."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{cluster}".encode()).digest()[:8], "big") / 2.0**64
    if h < fractions[0]:
        return "test"
    if h < fractions[0] + fractions[1]:
        return "val"
    return "train"


def _cif_value(v: str) -> str:
    s = str(v)
    if not s or s.isspace():
        return "."
    if any(c in s for c in " '\"#") or s[0] in "_$;[]":
        return '"' + s.replace('"', "'") + '"' if "'" in s else "'" + s + "'"
    return s


def write_cif(table: AtomTable, path: str | os.PathLike[str], name: str = "model") -> None:
    """Write ``table`` as a minimal mmCIF ``_atom_site`` loop (gzipped when the name ends in
    ``.gz``), with elements, occupancies and B-factors; atomically."""
    from voxfield.io.atomic import atomic_path

    lines = [f"data_{_cif_value(name).strip(chr(39))}", "#", "loop_"]
    # gemmi builds no model from an _atom_site loop without label_alt_id
    cols = ["group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id", "label_asym_id",
            "label_entity_id",
            "label_seq_id", "Cartn_x", "Cartn_y", "Cartn_z", "occupancy", "B_iso_or_equiv", "auth_seq_id",
            "auth_asym_id", "pdbx_PDB_model_num"]
    lines += [f"_atom_site.{c}" for c in cols]
    rows: Iterable[str] = (
        f"ATOM {i + 1} {_cif_value(e)} {_cif_value(a)} . {_cif_value(r)} {_cif_value(c)} 1 {int(n)} "
        f"{x:.3f} {y:.3f} {z:.3f} {o:.2f} {b:.2f} {int(n)} {_cif_value(c)} 1"
        for i, (e, a, r, c, n, (x, y, z), o, b) in enumerate(zip(
            table.element, table.atom_name, table.residue_name, table.chain, table.residue_number, table.xyz,
            table.occupancy, table.b_factor))
    )
    text = "\n".join([*lines, *rows, "#", ""])
    with atomic_path(path) as tmp:
        data = text.encode()
        if os.fspath(path).endswith(".gz"):
            data = gzip.compress(data, mtime=0)
        with open(tmp, "wb") as fh:
            fh.write(data)
