"""Names and choices of the ``hybrid`` method, without importing its implementation
(:mod:`voxfield.compress.hybrid` brings torch): the command line lists them in its help."""

from __future__ import annotations

from voxfield.errors import OptionError

METHOD = "hybrid"
#: Prior codecs a hybrid can use, default first.
PRIORS = ("sperr", "sz3", "hevc", "jpeg2k", "zfp", "jpegxl")
RESIDUALS = ("filter", "field", "none")
SELECTIONS = ("psnr", "ssim", "segmentation")
#: What each prior needs on the machine.
PRIOR_NEEDS = {
    "sperr": "imagecodecs built with SPERR",
    "sz3": "imagecodecs built with SZ3",
    "zfp": "imagecodecs built with ZFP",
    "jpeg2k": "imagecodecs built with OpenJPEG",
    "jpegxl": "imagecodecs built with libjxl",
    "hevc": "the ffmpeg binary of imageio-ffmpeg (with libx265)",
}


def parse_method(name: str) -> str | None:
    """``"hybrid"`` -> None (default prior), ``"hybrid:hevc"`` -> ``"hevc"``; anything
    else is not a hybrid method (raises)."""
    head, _, prior = name.partition(":")
    if head != METHOD:
        raise OptionError(f"not a hybrid method: {name!r}")
    if prior and prior not in PRIORS:
        raise OptionError(f"unknown hybrid prior {prior!r} (hybrid:{', hybrid:'.join(PRIORS)})")
    return prior or None
