"""The 3D U-Net voxel classifier (paper 003: a 3D U-Net with padded convolutions so the
output has the input's size), and loading/saving its weights as safetensors.

Output: one logit per voxel; ``sigmoid(logit)`` is the probability that the voxel is
*structure* (the paper's prediction value: voxels below the threshold are noise).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voxfield.errors import FormatError


@dataclass(frozen=True)
class UNetConfig:
    """Architecture: ``channels`` per level (each level: two 3x3x3 conv + BatchNorm + ReLU;
    2x max-pool down, 2x transposed conv up, skip concatenation)."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    resolution_input: bool = False

    @property
    def in_channels(self) -> int:
        """1 (the map), or 3 with the resolution input (a known/unknown flag and
        :func:`resolution_code`, both constant over the tile)."""
        return 3 if self.resolution_input else 1

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this (2 ** number of poolings)."""
        return 2 ** (len(self.channels) - 1)


def resolution_code(resolution: float) -> float:
    """The network's resolution input: ``log2(R / 5 Å)`` (2.5 Å -> -1, 20 Å -> 2)."""
    return float(math.log2(float(resolution) / 5.0))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class UNet3D(nn.Module):
    """3D U-Net, one output logit per voxel; the input is the map, plus the resolution
    when the configuration has ``resolution_input``."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        ch = list(config.channels)
        self.down = nn.ModuleList()
        c = config.in_channels
        for k in ch:
            self.down.append(_block(c, k))
            c = k
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for k in reversed(ch[:-1]):
            self.up.append(nn.ConvTranspose3d(c, k, 2, stride=2))
            self.dec.append(_block(2 * k, k))
            c = k
        self.head = nn.Conv3d(c, 1, 1)

    def forward(self, x: torch.Tensor, resolution: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (batch, 1, D, H, W) with D, H, W multiples of ``config.multiple``;
        ``resolution`` (batch,) in Å, NaN where unknown (ignored by a model without the
        resolution input). Returns logits of the same shape as ``x``."""
        if self.config.resolution_input:
            b = x.shape[0]
            if resolution is None:
                resolution = torch.full((b,), float("nan"))
            r = torch.as_tensor(resolution, dtype=x.dtype, device=x.device).reshape(b)
            known = torch.isfinite(r) & (r > 0)
            code = torch.where(known, torch.log2(torch.where(known, r, torch.ones_like(r)) / 5.0), torch.zeros_like(r))
            shape = (b, 1, *x.shape[2:])
            x = torch.cat([x, known.to(x.dtype).view(b, 1, 1, 1, 1).expand(shape),
                           code.view(b, 1, 1, 1, 1).expand(shape)], dim=1)
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = nn.functional.max_pool3d(x, 2)
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)


def save_weights(model: UNet3D, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """Write the weights (float32) and ``meta`` (JSON, with the architecture) as a
    safetensors file, atomically."""
    from safetensors.torch import save_file

    from voxfield.io.atomic import atomic_path

    info = dict(meta)
    info["config"] = asdict(model.config)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
             if v.dtype.is_floating_point}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"voxfield": json.dumps(info)})


def load_weights(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[UNet3D, dict[str, Any]]:
    """Read a safetensors file written by :func:`save_weights`: the model (eval mode) and
    its metadata (thresholds, training record)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    p = Path(path)
    if not p.is_file():
        raise FormatError("weights file not found", p)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("voxfield", "{}"))
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise FormatError(f"not a voxfield denoiser weights file: {e}", p) from None
    if "config" not in meta:
        raise FormatError("weights file has no voxfield architecture record", p)
    cfg = UNetConfig(channels=tuple(int(c) for c in meta["config"]["channels"]),
                     resolution_input=bool(meta["config"].get("resolution_input", False)))
    model = UNet3D(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.endswith("num_batches_tracked")]
    if bad or unexpected:
        raise FormatError(f"weights do not match the architecture ({len(bad)} missing, {len(unexpected)} unexpected tensors)", p)
    return model.to(device).eval(), meta


#: The shipped family, chosen by the map's resolution: ``unet_v1`` (trained from scratch on
#: 2.5-10 Å, map only) up to :data:`SPECIALIST_UP_TO` Å, ``unet_v2`` (resolution-aware,
#: 2.5-20 Å) beyond it and when the resolution is not given. The model card says why.
SPECIALIST = "unet_v1.safetensors"
GENERALIST = "unet_v2.safetensors"
SPECIALIST_UP_TO = 10.0


def default_weights_path(resolution: float | None = None) -> Path:
    """The shipped weights for a map of ``resolution`` Å (None: unknown); see
    :data:`SPECIALIST_UP_TO`."""
    known = resolution is not None and math.isfinite(resolution) and resolution > 0
    name = SPECIALIST if known and resolution <= SPECIALIST_UP_TO else GENERALIST
    return Path(__file__).with_name("weights") / name


def widen_to_resolution_input(model: UNet3D) -> UNet3D:
    """A copy of a map-only ``model`` with the resolution input added; the new input
    weights are zero, so it predicts exactly as ``model`` until trained."""
    new = UNet3D(UNetConfig(model.config.channels, resolution_input=True))
    state = model.state_dict()
    key = "down.0.0.weight"
    w = state[key]
    state[key] = torch.cat([w, torch.zeros((w.shape[0], 2, *w.shape[2:]), dtype=w.dtype)], dim=1)
    new.load_state_dict(state)
    return new


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def channels_from_text(text: str) -> Sequence[int]:
    """``"16,32,64,128"`` -> (16, 32, 64, 128)."""
    return tuple(int(t) for t in text.replace("-", ",").split(",") if t.strip())
