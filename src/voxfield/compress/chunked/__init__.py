"""Chunked compression of inputs of any size into OME-Zarr, on Dask.

:func:`compress_to_zarr` reads the input region by region (:mod:`.source`), lays out
chunks, shards and pyramid levels (:mod:`.plan`), picks one codec for the array
(:mod:`.probe`), and runs one task per shard (:mod:`.tasks`) inline or on a Dask cluster
(:mod:`.executor`). Each chunk is coded by the ``voxfield`` zarr codec
(:mod:`voxfield.compress.zarr_codec`), so any zarr reader with voxfield installed decodes
the store.
"""

from __future__ import annotations

from voxfield.compress.chunked.write import ChunkedResult, compress_to_zarr, describe_store, is_unfinished

__all__ = ["ChunkedResult", "describe_store", "compress_to_zarr", "is_unfinished"]
