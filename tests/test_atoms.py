"""voxfield.io.atoms: the one atom reader (PDB/mmCIF, gzipped or not)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from voxfield.errors import DataError, FormatError
from voxfield.io.atoms import polymer_element, read_atom_table

DATA = Path(__file__).parent / "data"

# CHARMM-style: left-justified names, no element column (columns 73-76 hold a segment id).
# A PDB-aligned reading makes CA calcium, HG1 mercury and OG oganesson.
CHARMM_PDB = """\
ATOM      1 N    SER A   1      10.000  11.000  12.000  1.00 20.00      PROT
ATOM      2 CA   SER A   1      11.000  11.000  12.000  1.00 21.00      PROT
ATOM      3 CB   SER A   1      12.000  11.000  12.000  1.00 22.00      PROT
ATOM      4 OG   SER A   1      13.000  11.000  12.000  1.00 23.00      PROT
ATOM      5 HG1  SER A   1      14.000  11.000  12.000  1.00 24.00      PROT
ATOM      6 1HB  SER A   1      15.000  11.000  12.000  1.00 25.00      PROT
ATOM      7 CE   MET A   2      16.000  11.000  12.000  0.50 26.00      PROT
ATOM      8 SD   MET A   2      17.000  11.000  12.000  0.00 27.00      PROT
HETATM    9 CA    CA B 101       1.000   2.000   3.000  1.00 30.00          CA
END
"""

MMCIF = """\
data_test
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_atom_id
_atom_site.label_alt_id
_atom_site.label_comp_id
_atom_site.label_asym_id
_atom_site.label_entity_id
_atom_site.label_seq_id
_atom_site.pdbx_PDB_ins_code
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.occupancy
_atom_site.B_iso_or_equiv
_atom_site.auth_seq_id
_atom_site.auth_asym_id
_atom_site.pdbx_PDB_model_num
ATOM   1 N  N   . GLY A 1 1 ? 1.0 2.0 3.0 1.0 10.0 1 A 1
ATOM   2 C  CA  . GLY A 1 1 ? 2.0 2.0 3.0 1.0 11.0 1 A 1
ATOM   3 H  HA2 . GLY A 1 1 ? 3.0 2.0 3.0 1.0 12.0 1 A 1
HETATM 4 CA CA  . CA  B 2 . ? 4.0 5.0 6.0 1.0 13.0 201 A 1
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_charmm_names_without_element_column(tmp_path):
    t = read_atom_table(_write(tmp_path, "charmm.pdb", CHARMM_PDB))
    # HG1 and 1HB are hydrogens (dropped), SD has occupancy 0 (dropped)
    assert t.atom_name.tolist() == ["N", "CA", "CB", "OG", "CE", "CA"]
    assert t.element.tolist() == ["N", "C", "C", "O", "C", "Ca"]  # the last is the real calcium ion
    assert t.atomic_number.tolist() == [7, 6, 6, 8, 6, 20]
    assert t.residue_name.tolist()[-1] == "CA" and t.chain.tolist()[-1] == "B"
    assert t.residue_number.tolist() == [1, 1, 1, 1, 2, 101]
    np.testing.assert_allclose(t.xyz[0], [10.0, 11.0, 12.0])
    np.testing.assert_allclose(t.zyx[0], [12.0, 11.0, 10.0])
    np.testing.assert_allclose(t.b_factor, [20, 21, 22, 23, 26, 30])
    np.testing.assert_allclose(t.occupancy, [1, 1, 1, 1, 0.5, 1])
    assert t.residue_index.tolist() == [0, 0, 0, 0, 1, 2]
    assert t.keys()[1] == ("A", 1, "", "SER", "CA")


def test_keep_hydrogens_and_unoccupied(tmp_path):
    p = _write(tmp_path, "charmm.pdb", CHARMM_PDB)
    t = read_atom_table(p, keep_hydrogens=True, keep_unoccupied=True)
    assert len(t) == 9
    assert dict(zip(t.atom_name.tolist()[:8], t.element.tolist()[:8])) == {
        "N": "N", "CA": "C", "CB": "C", "OG": "O", "HG1": "H", "1HB": "H", "CE": "C", "SD": "S"
    }  # fmt: skip


def test_polymer_element_rule():
    assert polymer_element("ALA", "CA") == "C"
    assert polymer_element("THR", "HG1") == "H"
    assert polymer_element("HSD", "NE2") == "N"  # CHARMM histidine
    assert polymer_element("MSE", "SE") == "Se"
    assert polymer_element("CA", "CA") is None  # not a polymer residue: PDB alignment decides


def test_mmcif(tmp_path):
    t = read_atom_table(_write(tmp_path, "model.cif", MMCIF))
    assert t.element.tolist() == ["N", "C", "Ca"]  # HA2 dropped
    np.testing.assert_allclose(t.xyz[-1], [4.0, 5.0, 6.0])
    assert t.b_factor.tolist() == [10.0, 11.0, 13.0]
    assert len(read_atom_table(tmp_path / "model.cif", keep_hydrogens=True)) == 4


def test_mmcif_without_type_symbol(tmp_path):
    lines = [ln for ln in MMCIF.splitlines() if ln != "_atom_site.type_symbol"]
    lines[-4:] = [" ".join(w for i, w in enumerate(ln.split()) if i != 2) for ln in lines[-4:]]
    with pytest.raises(FormatError, match="no atoms"):  # gemmi needs the element column of mmCIF
        read_atom_table(_write(tmp_path, "bare.cif", "\n".join(lines) + "\n"))


def test_gzipped_pdb_and_same_as_mmcif(tmp_path):
    t = read_atom_table(DATA / "6vyb_Ndom.pdb.gz")
    assert len(t) > 1000
    assert set(t.element.tolist()) <= {"C", "N", "O", "S"}
    # the same model written as (gzipped) mmCIF reads the same
    import gemmi

    st = gemmi.read_structure(str(DATA / "6vyb_Ndom.pdb.gz"))
    cif = st.make_mmcif_document().as_string()
    gz = tmp_path / "6vyb.cif.gz"
    gz.write_bytes(gzip.compress(cif.encode()))
    c = read_atom_table(gz)
    np.testing.assert_allclose(c.xyz, t.xyz, atol=1e-3)
    assert c.element.tolist() == t.element.tolist()
    assert c.keys() == t.keys()


@pytest.mark.parametrize(
    "name, data",
    [
        ("garbage.pdb", bytes(range(256)) * 8),
        ("truncated.pdb.gz", gzip.compress(CHARMM_PDB.encode(), mtime=0)[:20]),
        ("broken.cif", b"data_x\nloop_\n_atom_site.id\n_atom_site.type_symbol\n'unterminated\n"),
        ("empty.pdb", b""),
    ],
    ids=["garbage", "truncated-gz", "broken-cif", "empty"],  # fixed ids: parallel workers must collect the same
)
def test_corrupt_file_is_format_error(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(FormatError) as info:
        read_atom_table(p)
    assert name in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FormatError, match="not found"):
        read_atom_table(tmp_path / "nope.pdb")
    with pytest.raises(FormatError, match="folder"):
        read_atom_table(tmp_path)


def test_callers_use_the_reader(tmp_path):
    from voxfield.denoise.molmap import read_atoms
    from voxfield.reconstruct.simulate import read_model

    p = _write(tmp_path, "charmm.pdb", CHARMM_PDB)
    a = read_atoms(p)
    m, keys = read_model(p)
    assert a.number.tolist() == m.number.tolist() == [7, 6, 6, 8, 6, 20]
    np.testing.assert_allclose(a.zyx, m.zyx)
    assert a.name == "charmm.pdb" and keys[-1] == ("B", 101, "", "CA", "CA")
    only_h = _write(tmp_path, "h.pdb", "ATOM      1  H   GLY A   1       1.000   1.000   1.000  1.00  0.00           H\nEND\n")
    with pytest.raises(DataError, match="no non-hydrogen"):
        read_atoms(only_h)
    with pytest.raises(DataError, match="no non-hydrogen"):
        read_model(only_h)
