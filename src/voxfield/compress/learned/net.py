"""The learned prior's network: a small 3-D convolutional enhancer that maps a classic
codec's decode back towards the original, conditioned (FiLM) on the codec family and the
bits per voxel the codec spent.

Shape: two 3×3×3 convolutions at full resolution, a stride-2 step down, two 3×3×3
convolutions at half resolution, a transposed step up added to the full-resolution
features, one more 3×3×3 convolution, and a 1×1×1 head to one channel:
``out = x + head(features(x))``. About 70 k weights; ~22 k multiply-adds per voxel.

The head is linear in the last features, so the per-volume adaptation (:mod:`.adapt`)
refits it in closed form at encode time and stores its ``width + 1`` numbers in the file.

Inputs are normalised by the decode's own mean and standard deviation (per batch item);
2-D images run as depth-1 volumes (replicate padding makes the 3-D kernels act as 2-D
ones). Odd edges are padded by one replicated voxel and cropped back.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from voxfield.compress.learned import DOMAINS
from voxfield.errors import FormatError

__all__ = ["COND_DIM", "DOMAINS", "FAMILIES", "HALO", "EnhanceNet", "NetConfig", "condition", "load_weights",
           "n_parameters", "pad_even", "save_weights", "weights_path"]

#: Codec families the network is conditioned on (one-hot); anything else uses the last slot.
FAMILIES = ("sperr", "hevc", "jpegxl", "jpeg2k", "sz3", "zfp", "other")
#: Conditioning vector: one-hot family + scaled log2 bits per voxel + its square.
COND_DIM = len(FAMILIES) + 2
#: Voxels of context each output reads on each side (receptive-field radius, rounded up).
HALO = 12


@dataclass(frozen=True)
class NetConfig:
    """Widths of the enhancer: ``width`` at full resolution, ``deep`` at half."""

    width: int = 16
    deep: int = 32


def condition(family: str, bits_per_voxel: float) -> torch.Tensor:
    """The conditioning vector ``(COND_DIM,)`` of a decode made by codec ``family``
    spending ``bits_per_voxel`` bits on each voxel."""
    v = torch.zeros(COND_DIM)
    v[FAMILIES.index(family) if family in FAMILIES else len(FAMILIES) - 1] = 1.0
    b = (math.log2(max(float(bits_per_voxel), 1e-4)) + 3.0) / 3.0
    v[len(FAMILIES)] = b
    v[len(FAMILIES) + 1] = b * b
    return v


class EnhanceNet(nn.Module):
    """The enhancer (module docstring). ``forward(x, cond)``: ``x`` (N, 1, D, H, W) with
    even D, H, W (see :func:`run`), ``cond`` (N, COND_DIM)."""

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        w, d = config.width, config.deep
        self.config = config

        def conv(cin: int, cout: int) -> nn.Conv3d:
            return nn.Conv3d(cin, cout, 3, padding=1, padding_mode="replicate")

        self.inp = conv(1, w)
        self.e2 = conv(w, w)
        self.down = nn.Conv3d(w, d, 2, stride=2)
        self.m1 = conv(d, d)
        self.m2 = conv(d, d)
        self.up = nn.ConvTranspose3d(d, w, 2, stride=2)
        self.f1 = conv(w, w)
        self.head = nn.Conv3d(w, 1, 1)
        self.film = nn.Linear(COND_DIM, 2 * (w + d + d + w))
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def _films(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        w, d = self.config.width, self.config.deep
        p = self.film(cond)
        out, i = [], 0
        for n in (w, d, d, w):
            g, b = p[:, i:i + n], p[:, i + n:i + 2 * n]
            out.append((g[:, :, None, None, None], b[:, :, None, None, None]))
            i += 2 * n
        return out

    def features(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The last features ``(N, width, D, H, W)`` the head reads."""
        act = F.leaky_relu
        fs = self._films(cond)

        def film(h: torch.Tensor, k: int) -> torch.Tensor:
            g, b = fs[k]
            return h * (1 + g) + b

        h = act(self.inp(x), 0.1)
        h = act(film(self.e2(h), 0), 0.1)
        m = act(self.down(h), 0.1)
        m = act(film(self.m1(m), 1), 0.1)
        m = act(film(self.m2(m), 2), 0.1)
        h = h + self.up(m)
        return act(film(self.f1(h), 3), 0.1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return x + self.head(self.features(x, cond))


def n_parameters(model: nn.Module) -> int:
    """Number of weights."""
    return sum(p.numel() for p in model.parameters())


def pad_even(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``x`` (N, C, D, H, W) padded by one replicated voxel on each odd edge (depth 1 becomes
    2), and the original spatial shape."""
    shape = tuple(int(n) for n in x.shape[2:])
    pad: list[int] = []
    for n in reversed(shape):
        pad += [0, n % 2]
    if any(pad):
        x = F.pad(x, pad, mode="replicate")
    return x, shape  # type: ignore[return-value]


def save_weights(model: EnhanceNet, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    """Write the weights (float32) and ``meta`` (JSON, with the architecture) as safetensors,
    atomically."""
    from safetensors.torch import save_file

    from voxfield.io.atomic import atomic_path

    info = {**meta, "config": asdict(model.config), "family_order": list(FAMILIES)}
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"voxfield": json.dumps(info)})


def load_weights(path: str | os.PathLike[str]) -> tuple[EnhanceNet, dict[str, Any]]:
    """Read weights written by :func:`save_weights`: the model (eval mode, CPU) and its
    metadata. :class:`FormatError` naming the file when it is not such a file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    p = Path(path)
    if not p.is_file():
        raise FormatError("learned-prior weights not found", p)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("voxfield", "{}"))
        state = load_file(str(p))
        model = EnhanceNet(NetConfig(**meta["config"]))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError, json.JSONDecodeError) as e:
        raise FormatError(f"not a voxfield learned-prior weights file: {e}", p) from None
    if list(meta.get("family_order", [])) != list(FAMILIES):
        raise FormatError("weights were trained with another codec-family order", p)
    return model.eval(), meta


def weights_path(domain: str) -> Path:
    """The shipped weights of ``domain`` (one of :data:`DOMAINS`)."""
    from voxfield.compress.learned import WEIGHTS_VERSION

    return Path(__file__).with_name("weights") / f"{domain}_{WEIGHTS_VERSION}.safetensors"
