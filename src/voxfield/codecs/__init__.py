"""Array codecs: the classic baselines and the interface the neural codec shares.

Lossless: ``raw``, ``gzip``, ``zstd``. Lossy: ``quant`` (uniform quantisation + zstd),
``sz3``, ``sperr``, ``zfp`` (error-bounded/scientific codecs), ``jpeg2k``, ``jpegxl``
(2-D image codecs on slice mosaics), ``hevc`` (x265 over slices). Every codec encodes a
numpy array to self-describing bytes for a :class:`Target` (ratio, bytes, error bound,
PSNR...) and decodes to the original shape and dtype. See each module's docstring for
its knob, targets, dtype handling and layout.
"""

from voxfield.codecs.base import Codec, Target, as_float, frame, restore_dtype, unframe, value_range
from voxfield.codecs.hevc import HevcCodec
from voxfield.codecs.jpeg2k import Jpeg2kCodec
from voxfield.codecs.jpegxl import JpegxlCodec
from voxfield.codecs.lossless import GzipCodec, RawCodec, ZstdCodec
from voxfield.codecs.quantize import QuantCodec
from voxfield.codecs.registry import (
    CODECS,
    available_codecs,
    codec_from_config,
    codec_names,
    get_codec,
    register_codec,
)
from voxfield.codecs.search import search_size
from voxfield.codecs.sperr import SperrCodec
from voxfield.codecs.sz3 import Sz3Codec
from voxfield.codecs.zfp import ZfpCodec

__all__ = [
    "CODECS",
    "Codec",
    "GzipCodec",
    "HevcCodec",
    "Jpeg2kCodec",
    "JpegxlCodec",
    "QuantCodec",
    "RawCodec",
    "SperrCodec",
    "Sz3Codec",
    "Target",
    "ZfpCodec",
    "ZstdCodec",
    "as_float",
    "available_codecs",
    "codec_from_config",
    "codec_names",
    "frame",
    "get_codec",
    "register_codec",
    "restore_dtype",
    "search_size",
    "unframe",
    "value_range",
]
