"""Denoising cryo-EM maps (paper 003, DeepTracer-Denoising): a 3D U-Net voxel classifier
with shipped weights, tiled prediction, a map simulator and training pipeline, ChimeraX
hide dust and the confusion-matrix evaluation against atomic models.

Modules: :mod:`~voxfield.denoise.grid` (1 Å working grid), :mod:`~voxfield.denoise.molmap`
(simulated maps and 3-sigma labels), :mod:`~voxfield.denoise.simulate` (noisy training
cubes), :mod:`~voxfield.denoise.dataset`, :mod:`~voxfield.denoise.unet`,
:mod:`~voxfield.denoise.train`, :mod:`~voxfield.denoise.predict`,
:mod:`~voxfield.denoise.dust`, :mod:`~voxfield.denoise.confusion`,
:mod:`~voxfield.denoise.similarity`, :mod:`~voxfield.denoise.evaluate`,
:mod:`~voxfield.denoise.plots`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voxfield._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from voxfield.denoise.dust import dust_mask, hide_dust
    from voxfield.denoise.predict import Prediction, apply_mask, predict_map, resolve_threshold
    from voxfield.denoise.unet import UNet3D, UNetConfig, default_weights_path, load_weights

__all__ = [
    "Prediction",
    "UNet3D",
    "UNetConfig",
    "apply_mask",
    "default_weights_path",
    "dust_mask",
    "hide_dust",
    "load_weights",
    "predict_map",
    "resolve_threshold",
]


#: Re-exported name -> the submodule that defines it, imported on first use so that
#: importing this package stays light (start-up time, issue 15).
_LAZY = {
    "dust_mask": "voxfield.denoise.dust",
    "hide_dust": "voxfield.denoise.dust",
    "Prediction": "voxfield.denoise.predict",
    "apply_mask": "voxfield.denoise.predict",
    "predict_map": "voxfield.denoise.predict",
    "resolve_threshold": "voxfield.denoise.predict",
    "UNet3D": "voxfield.denoise.unet",
    "UNetConfig": "voxfield.denoise.unet",
    "default_weights_path": "voxfield.denoise.unet",
    "load_weights": "voxfield.denoise.unet",
}


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY, globals())


from voxfield._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__)  # `voxfield.denoise(...)` calls voxfield.api.denoise
