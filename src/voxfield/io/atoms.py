"""Atomic models (PDB or mmCIF, optionally gzipped) read into numpy arrays.

:func:`read_atom_table` is the one atom reader of voxfield: the molmap simulation
(:mod:`voxfield.denoise.molmap`) and the particle simulation (:mod:`voxfield.reconstruct.simulate`)
both read their models through it.

Elements
--------
The element of an atom comes from the file's element column (PDB columns 77-78, mmCIF
``_atom_site.type_symbol``). Where a PDB line has no element column (CHARMM, NAMD and old
files) the element is inferred from the atom name:

* in standard amino-acid and nucleic-acid residues (those gemmi tabulates as such, plus
  CHARMM/AMBER variants such as ``HSD``, ``CYX``, ``ADE``) and in waters, from the first letter
  of the name: ``CA`` → C, ``CB`` → C, ``OG`` → O, ``HG1`` → H, ``1HB`` → H (``SE`` is selenium).
  Reading the name as PDB-aligned would make a left-justified ``CA`` calcium, ``HG1`` mercury,
  ``OG`` oganesson and ``CE`` cerium;
* in other residues (ligands, ions), the PDB rule that gemmi applies: a two-letter element
  starts in column 13 (``CA`` in residue ``CA`` is calcium), a one-letter element in column 14.

gemmi reads no atoms from an mmCIF file without ``_atom_site.type_symbol`` (the file is then
reported as holding no atoms).

Only the first model is read. Hydrogens (H and D) and atoms of zero occupancy are dropped
unless asked for. Alternate locations are all kept, each with its own occupancy.

``io`` modules import nothing from voxfield but :mod:`voxfield.errors` and each other; gemmi
is imported when a file is read.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from voxfield.errors import FormatError

__all__ = ["AtomTable", "read_atom_table", "polymer_element"]

#: Residue names whose atoms get the element of their name's first letter (when the file has
#: no element column) besides those gemmi tabulates as amino or nucleic acids: CHARMM/AMBER
#: protonation variants, CHARMM nucleic-acid names and waters.
POLYMER_EXTRA = frozenset(
    {"HSD", "HSE", "HSP", "HID", "HIE", "HIP", "CYX", "CYM", "ASH", "GLH", "LYN",
     "ADE", "GUA", "CYT", "THY", "URA",
     "HOH", "WAT", "H2O", "DOD", "TIP", "TIP3", "TIP4", "SOL", "SPC"}
)  # fmt: skip

#: Atom names of polymer residues whose element has two letters.
_TWO_LETTER_NAMES = {"SE": "Se", "BR": "Br"}

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class AtomTable:
    """Atoms of one model, one row each, in file order.

    ``xyz`` (n, 3) float64 coordinates (x, y, z) in Å; ``element`` (n,) symbols as written in
    the periodic table (``"C"``, ``"Ca"``; ``"X"`` when unknown); ``atomic_number`` (n,) int
    (0 for unknown); ``b_factor`` and ``occupancy`` (n,) float32; ``residue_index`` (n,) int64,
    a running index over the residues of all chains (counting residues whose atoms were all
    dropped); ``chain``, ``residue_name``, ``atom_name``, ``insertion_code`` (n,) str and
    ``residue_number`` (n,) int64; ``source``: the file read."""

    xyz: np.ndarray
    element: np.ndarray
    atomic_number: np.ndarray
    b_factor: np.ndarray
    occupancy: np.ndarray
    residue_index: np.ndarray
    chain: np.ndarray
    residue_number: np.ndarray
    insertion_code: np.ndarray
    residue_name: np.ndarray
    atom_name: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def zyx(self) -> np.ndarray:
        """Coordinates as (z, y, x) Å, the order of voxfield's volumes."""
        return self.xyz[:, ::-1]

    def keys(self) -> list[tuple[str, int, str, str, str]]:
        """``(chain, residue number, insertion code, residue name, atom name)`` of every atom."""
        return [
            (str(c), int(n), str(i), str(r), str(a))
            for c, n, i, r, a in zip(self.chain, self.residue_number, self.insertion_code, self.residue_name, self.atom_name)
        ]


@lru_cache(maxsize=4096)
def _is_polymer(res_name: str) -> bool:
    import gemmi

    if res_name in POLYMER_EXTRA:
        return True
    info = gemmi.find_tabulated_residue(res_name)
    return info is not None and (info.is_amino_acid() or info.is_nucleic_acid())


def polymer_element(res_name: str, atom_name: str) -> str | None:
    """Element symbol of atom ``atom_name`` of a standard amino/nucleic-acid residue or water
    ``res_name`` inferred from its name (``CA`` → ``"C"``, ``HG1`` → ``"H"``, ``1HB`` → ``"H"``,
    ``SE`` → ``"Se"``); ``None`` for other residues or a name without letters."""
    if not _is_polymer(res_name.strip().upper()):
        return None
    name = atom_name.strip().upper()
    if name in _TWO_LETTER_NAMES:
        return _TWO_LETTER_NAMES[name]
    letters = [ch for ch in name if ch.isalpha()]
    return letters[0] if letters else None


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    # PDB/mmCIF are ASCII; latin-1 reads any byte, so stray characters in remarks do not stop
    # the reader (a binary file then parses to no atoms and is reported as such).
    return raw.decode("latin-1")


def _is_cif(text: str) -> bool:
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        return s.lower().startswith(("data_", "global_"))
    return False


def _fill_pdb_elements(text: str) -> str:
    """``text`` with the element column (77-78) of ATOM/HETATM lines that lack one filled in
    for polymer residues (:func:`polymer_element`); other lines unchanged (gemmi infers those
    elements from the PDB alignment of the name)."""
    out = []
    changed = False
    for line in text.splitlines():
        if line.startswith(("ATOM  ", "HETATM")) and not line[76:78].strip():
            el = polymer_element(line[17:21], line[12:16])
            if el is not None:
                line = f"{line[:76]:<76}{el:>2}{line[78:]}"
                changed = True
        out.append(line)
    return "\n".join(out) + "\n" if changed else text


def _parse(path: str):
    """gemmi.Structure of the file at ``path``."""
    import gemmi

    text = _read_text(path)
    if text.lstrip().startswith("{"):  # mmJSON: gemmi reads it from the file
        return gemmi.read_structure(path)
    if _is_cif(text):
        doc = gemmi.cif.read_string(text)
        if len(doc) == 0:
            raise ValueError("no data block")
        st = gemmi.make_structure_from_block(doc[0])  # no atoms without _atom_site.type_symbol
    else:
        st = gemmi.read_pdb_string(_fill_pdb_elements(text))
    st.merge_chain_parts()  # as gemmi.read_structure does
    return st


def read_atom_table(
    path: str | os.PathLike[str],
    *,
    keep_hydrogens: bool = False,
    keep_unoccupied: bool = False,
) -> AtomTable:
    """Atoms of the first model of a PDB or mmCIF file (gzipped or not) as an :class:`AtomTable`.

    Elements come from the element column, else from the atom name (see the module docstring:
    ``CA`` of an amino acid is carbon, ``CA`` of a calcium ion is calcium). Hydrogens are
    dropped unless ``keep_hydrogens``; atoms with occupancy <= 0 unless ``keep_unoccupied``.
    The table may be empty when every atom was dropped.

    Raises :class:`~voxfield.errors.FormatError` naming the file when it does not exist, is a
    folder, cannot be parsed or holds no atoms.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FormatError("atomic model file not found", p)
    if os.path.isdir(p):
        raise FormatError("is a folder, not an atomic model file", p)
    try:
        import gemmi  # noqa: F401 - a dependency; fail here, not mid-parse
    except ImportError as e:  # pragma: no cover
        raise FormatError("reading atomic models needs gemmi (pip install gemmi)", p) from e
    try:
        st = _parse(p)
    except (RuntimeError, ValueError, OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
        raise FormatError(f"cannot read the atomic model (PDB/mmCIF expected): {e}", p) from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise FormatError("no atoms found (not a PDB/mmCIF model file?)", p)

    xyz, element, number, bfac, occ, res_idx = [], [], [], [], [], []
    chain, resnum, icode, resname, atomname = [], [], [], [], []
    r = 0
    for ch in st[0]:
        for res in ch:
            for a in res:
                if not keep_unoccupied and a.occ <= 0:
                    continue
                el = a.element
                if not keep_hydrogens and el.name in ("H", "D"):
                    continue
                xyz.append((a.pos.x, a.pos.y, a.pos.z))
                element.append(el.name)
                number.append(el.atomic_number)
                bfac.append(a.b_iso)
                occ.append(a.occ)
                res_idx.append(r)
                chain.append(ch.name)
                resnum.append(res.seqid.num)
                icode.append(res.seqid.icode.strip())
                resname.append(res.name)
                atomname.append(a.name)
            r += 1
    return AtomTable(
        xyz=np.asarray(xyz, np.float64).reshape(-1, 3),
        element=np.asarray(element, dtype=str),
        atomic_number=np.asarray(number, np.int64),
        b_factor=np.asarray(bfac, np.float32),
        occupancy=np.asarray(occ, np.float32),
        residue_index=np.asarray(res_idx, np.int64),
        chain=np.asarray(chain, dtype=str),
        residue_number=np.asarray(resnum, np.int64),
        insertion_code=np.asarray(icode, dtype=str),
        residue_name=np.asarray(resname, dtype=str),
        atom_name=np.asarray(atomname, dtype=str),
        source=p,
    )
