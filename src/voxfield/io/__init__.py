"""Reading and writing volumes: MRC/CCP4/MRCS, TIFF/OME-TIFF, OME-Zarr, NPY/NPZ, HDF5."""

from voxfield.io.atomic import atomic_path, check_writable, write_bytes_atomic
from voxfield.io.atoms import AtomTable, read_atom_table
from voxfield.io.registry import FORMATS, detect_format, format_for_output, read_volume, write_volume
from voxfield.io.validate import check_array, check_dtype, check_finite, check_shape
from voxfield.io.volume import Volume, normalize_unit, unit_factor

__all__ = [
    "AtomTable",
    "FORMATS",
    "Volume",
    "atomic_path",
    "check_array",
    "check_dtype",
    "check_finite",
    "check_shape",
    "check_writable",
    "detect_format",
    "format_for_output",
    "normalize_unit",
    "read_atom_table",
    "read_volume",
    "unit_factor",
    "write_bytes_atomic",
    "write_volume",
]
