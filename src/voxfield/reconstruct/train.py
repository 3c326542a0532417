"""Training of the structural-basis VAE from particle images with known poses and CTF.

Per batch: images → ``rfft2`` (origin at pixel ``D/2``) → translation removed as a phase shift →
pixels of the half-plane within the Nyquist circle, divided by the spectral normalisation
``σ̄_y`` of their shell (paper 004, eq. 5: mean data power over mean squared CTF, estimated on a
sample of images before training). The encoder sees the CTF-sign-flipped, soft-masked real-space
image. The decoder's central slices are multiplied by the CTF and compared with the data:

    loss = Σ_p w_p |y'_p − C_p X_p|² / (2 σ_n²) + β · KL

with ``w_p ∝ σ̄_y²`` (``weighting="eq4"``: the paper's ``1 − λ ∝ σ̄_y²``, which undoes the
normalisation's reweighting, i.e. a plain squared error in data units; eq. 4's ``C²/σ_y²``
factor is read as the CTF-corrected form ``C²|y/C − X|²/σ_y² = |y − CX|²/σ_y²`` of the same
Gaussian likelihood) or ``w_p = 1`` (``weighting="white"``, the whitened likelihood), and
``σ_n²`` the mean weighted data power (a noise estimate at low SNR, which keeps the data term on
the scale of a log-likelihood against the KL term).

How the basis is fitted (``basis_fit``):

* ``"posterior"`` (default; stochastic EM): for each image the ``K`` basis weights have a
  closed-form Gaussian posterior given its pose, CTF and the current basis (prior ``N(0, I)``,
  a noise level per Fourier shell tracked from the residuals; :mod:`voxfield.reconstruct.estep`).
  The basis gets its gradient from the data term at one draw from that posterior, each shell
  weighted by its noise precision (the Gaussian likelihood; in the spectrally normalised units
  the noise is not white: low shells, where the signal dominates ``σ̄_y``, carry less noise
  than high ones), and the encoder and weight
  MLP get theirs from the data term at ``s(z)`` on the (detached) basis, plus ``β · KL``. The
  basis thus learns the directions of heterogeneity from every pixel with its noise weight,
  like a probabilistic PCA, whether or not the encoder can yet read them from a noisy image;
  the encoder then learns to predict them. One gather of the slice columns serves both terms.
* ``"encoder"``: the paper's VAE, the basis fitted through the encoder's sampled latent.

The basis is optimised with ``torch.optim.SparseAdam`` on sparse gradients (only the rows the
batch's slices touched; ``sparse=False`` uses dense gradients and ``Adam``), the networks with
``Adam``. A checkpoint (model, optimisers, RNG state, epoch) is written after every epoch and
training resumes from it.

Masks (:mod:`voxfield.reconstruct.masks`): every ``mask_every`` images the basis is projected
onto a real-space solvent mask (``mask="auto"``: built from the average volume after
``min(N, mask_after)`` images and rebuilt at every epoch end; ``"sphere"``, ``"none"`` or an
MRC file) and, for the heterogeneous volumes only, onto an optional focus mask. The final
masks are written to the run folder (``mask.mrc``, ``focus_mask.mrc``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxfield.errors import DataError, OptionError

from .ctf import ctf_from_table, half_grid_freqs
from .estep import batch_posterior, sample_posterior, shell_sums
from .fourier import gather_slice_columns, half_sphere, image_half_plane, slice_basis_from_columns, slice_coords
from .masks import MASK_FRACTION_RANGE, BasisProjector, auto_mask, describe, mask_fraction, read_mask, resolve_mask
from .model import StructuralBasisVAE, kl_divergence, n_parameters

#: Centring multiplies an image's transform by ``exp(TRANS_SIGN · 2πi k·t / D)`` (``k`` in pixels):
#: cryoDRGN's convention, the raw image is the projection shifted by ``−t`` (see
#: :mod:`voxfield.reconstruct.projection`), so centring shifts it by ``+t``.
TRANS_SIGN = -1.0

#: Mask projections at each epoch end (the saved basis): alternating projections between the
#: masked volumes and what decoding renders (within Nyquist) shrink the leakage at sharp mask edges.
FINAL_PROJECTIONS = 4

#: How the basis volumes are fitted (``TrainConfig.basis_fit``): through the encoder's sampled
#: latent (the VAE of paper 004), or through a draw from each image's closed-form posterior of
#: the basis weights (:mod:`voxfield.reconstruct.estep`; stochastic EM), the encoder then
#: learning to predict the weights on the fitted basis.
BASIS_FITS = ("encoder", "posterior")


@dataclass
class TrainConfig:
    """Training settings (all recorded in the run folder)."""

    zdim: int = 8
    K: int = 16
    epochs: int = 20
    batch: int = 32
    lr: float = 1e-3
    basis_lr: float = 3e-3
    beta: float = 0.05
    weighting: str = "white"
    sparse: bool = True
    enc_width: int = 256
    enc_blocks: int = 5
    dec_width: int = 64
    invert: bool = True
    mask_radius: float = 0.85
    sigma_images: int = 2000
    mask: str = "auto"
    focus_mask: str = ""
    mask_every: int = 640
    mask_after: int = 10000
    enc_box: int = 0
    basis_fit: str = "posterior"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class BatchPrep:
    """Turns raw images + poses + CTF into the tensors the model needs (see module docstring)."""

    def __init__(self, D: int, apix: float, device: torch.device, mask_radius: float = 0.85, enc_box: int = 0):
        self.D, self.apix, self.dev = D, float(apix), device
        self.enc_box = D if enc_box <= 0 or enc_box >= D else int(enc_box) - int(enc_box) % 2
        e = self.enc_box
        self.enc_rows = torch.as_tensor(np.r_[0 : e // 2, D - e // 2 : D], device=device)
        flat, kxy = image_half_plane(D)
        self.flat = torch.as_tensor(flat, device=device)
        self.kxy = torch.as_tensor(kxy, dtype=torch.float32, device=device)
        self.shell = torch.as_tensor(np.rint(np.hypot(kxy[:, 0], kxy[:, 1])).astype(np.int64), device=device)
        self.n_shells = D // 2 + 1
        full = half_grid_freqs(D, apix)  # [D, D//2+1, 2] in 1/Å
        self.freqs_full = torch.as_tensor(full.reshape(-1, 2), dtype=torch.float32, device=device)
        self.freqs = self.freqs_full[self.flat]
        kx = np.fft.rfftfreq(D) * D
        ky = np.fft.fftfreq(D) * D
        self.kx_full = torch.as_tensor(kx, dtype=torch.float32, device=device)
        self.ky_full = torch.as_tensor(ky, dtype=torch.float32, device=device)
        yy, xx = np.mgrid[:e, :e] - e // 2
        rr = np.hypot(yy, xx) / (e / 2)
        edge = 0.1
        m = np.clip((mask_radius + edge - rr) / edge, 0, 1)
        m = 0.5 - 0.5 * np.cos(np.pi * m)
        self.mask = torch.as_tensor(m, dtype=torch.float32, device=device)

    def transform(self, imgs: torch.Tensor, trans: torch.Tensor | None) -> torch.Tensor:
        """Centred half-plane transforms ``[B, D, D//2+1]`` (translation removed)."""
        F = torch.fft.rfft2(torch.fft.ifftshift(imgs, dim=(-2, -1)))
        if trans is not None:
            ph = (self.kx_full[None, None, :] * trans[:, 0, None, None] + self.ky_full[None, :, None] * trans[:, 1, None, None])
            F = F * torch.polar(torch.ones_like(ph), TRANS_SIGN * 2 * math.pi * ph / self.D)
        return F

    def ctf_full(self, ctf: torch.Tensor | None, B: int) -> torch.Tensor:
        if ctf is None:
            return torch.ones(B, self.freqs_full.shape[0], device=self.dev)
        return ctf_from_table(self.freqs_full, ctf)

    def __call__(self, imgs: np.ndarray, trans: np.ndarray | None, ctf: np.ndarray | None, scale: float):
        x = torch.as_tensor(np.asarray(imgs, dtype=np.float32), device=self.dev) / scale
        t = None if trans is None else torch.as_tensor(np.asarray(trans, dtype=np.float32), device=self.dev)
        c = None if ctf is None else torch.as_tensor(np.asarray(ctf, dtype=np.float32), device=self.dev)
        F = self.transform(x, t)
        B = x.shape[0]
        Cf = self.ctf_full(c, B)  # [B, D*(D//2+1)]
        Ff = F.reshape(B, -1)
        Fl = (Ff * torch.sign(Cf)).reshape(F.shape)
        e = self.enc_box
        if e < self.D:  # Fourier crop: the encoder sees the low frequencies only
            Fl = Fl[:, self.enc_rows, : e // 2 + 1] * (e * e / (self.D * self.D))
        flip = torch.fft.irfft2(Fl, s=(e, e))
        enc = (torch.fft.fftshift(flip, dim=(-2, -1)) * self.mask).reshape(B, -1)
        return Ff[:, self.flat], Cf[:, self.flat], enc


def spectral_sigma(prep: BatchPrep, images, trans, ctf, scale: float, idx: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``σ̄_y`` per integer shell (paper 004, eq. 5) from the images ``idx``."""
    num = torch.zeros(prep.n_shells + 1, dtype=torch.float64)
    den = torch.zeros(prep.n_shells + 1, dtype=torch.float64)
    for i in range(0, len(idx), chunk):
        j = np.sort(idx[i : i + chunk])
        y, C, _ = prep(images[j], None if trans is None else trans[j], None if ctf is None else ctf[j], scale)
        sh = prep.shell.cpu()
        num.index_add_(0, sh, (y.abs() ** 2).sum(0).double().cpu())
        den.index_add_(0, sh, (C**2).sum(0).double().cpu())
    sig2 = num / (den + 1e-3 * den.max())
    sig2 = torch.where(sig2 > 0, sig2, sig2[sig2 > 0].min() if (sig2 > 0).any() else torch.ones(()))
    return sig2.sqrt().numpy()


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_npy(arr: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def _write_masks(out: Path, proj: BasisProjector, apix: float) -> None:
    """``mask.mrc`` / ``focus_mask.mrc`` in the run folder (what the basis was projected onto)."""
    from voxfield.io import mrc
    from voxfield.io.volume import Volume

    for name, m in (("mask.mrc", proj.mask), ("focus_mask.mrc", proj.focus)):
        if m is None:
            continue
        vol = Volume(np.fft.fftshift(m.cpu().numpy()).astype(np.float32), "ZYX", (apix,) * 3, "Å", (0.0, 0.0, 0.0))
        tmp = out / f".{name}.tmp.mrc"
        mrc.write(vol, tmp)
        os.replace(tmp, out / name)


def enc_box(D: int, cfg: TrainConfig) -> int:
    """Box of the encoder's (Fourier-cropped) input image: ``cfg.enc_box`` when in ``(0, D)``, else ``D``."""
    return D if cfg.enc_box <= 0 or cfg.enc_box >= D else int(cfg.enc_box) - int(cfg.enc_box) % 2


def build_model(D: int, cfg: TrainConfig) -> StructuralBasisVAE:
    """The model for a box ``D`` and settings ``cfg``."""
    return StructuralBasisVAE(
        half_sphere(D), zdim=cfg.zdim, K=cfg.K, enc_in=enc_box(D, cfg) ** 2, enc_width=cfg.enc_width,
        enc_blocks=cfg.enc_blocks, dec_width=cfg.dec_width, seed=cfg.seed,
    )


def train(
    images: Any,
    rot: np.ndarray,
    trans: np.ndarray | None,
    ctf: np.ndarray | None,
    apix: float,
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig = TrainConfig(),
    *,
    device: torch.device | str = "cpu",
    resume: bool = True,
    source: dict[str, Any] | None = None,
    progress: Callable[[int, int, int, int, dict[str, Any]], None] | None = None,
    max_steps: int | None = None,
) -> Path:
    """Train on ``images`` (``[N, D, D]`` array-like), ``rot [N, 3, 3]``, ``trans [N, 2]`` (pixels),
    ``ctf [N, 9]`` (cryoDRGN layout). Writes ``out_dir/{config.json, checkpoint.pt, log.jsonl, z.npy}``
    and returns ``out_dir``. ``max_steps`` stops early (tests)."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cpu":
        # Adam moments of rarely touched weights decay into denormal floats, which are
        # very slow on x86; flush them to zero for the duration of training.
        torch.set_flush_denormal(True)
    try:
        return _train(images, rot, trans, ctf, apix, out_dir, cfg, dev, resume, source, progress, max_steps)
    finally:
        if dev.type == "cpu":
            torch.set_flush_denormal(False)


def _train(images, rot, trans, ctf, apix, out_dir, cfg, dev, resume, source, progress, max_steps) -> Path:
    N, D = int(images.shape[0]), int(images.shape[-1])
    if cfg.zdim < 0 or cfg.K < 1 or cfg.epochs < 1 or cfg.batch < 1:
        raise OptionError("--zdim must be >= 0 and --basis, --epochs, --batch >= 1")
    if cfg.weighting not in ("eq4", "white"):
        raise OptionError(f"unknown weighting {cfg.weighting!r}: use eq4 or white")
    if cfg.mask_every < 1 or cfg.mask_after < 1:
        raise OptionError("mask_every and mask_after must be >= 1")
    if cfg.basis_fit not in BASIS_FITS:
        raise OptionError(f"unknown basis fit {cfg.basis_fit!r}: use one of {', '.join(BASIS_FITS)}")
    mask_kind, mask = resolve_mask(cfg.mask, D)
    focus = read_mask(cfg.focus_mask, D) if cfg.focus_mask else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    prep = BatchPrep(D, apix, dev, cfg.mask_radius, enc_box(D, cfg))
    rot_t = np.asarray(rot, dtype=np.float32)
    state: dict[str, Any] | None = None
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state.get("config") != asdict(cfg):
            raise OptionError(f"{ckpt} was written with other settings; use a new output folder or --no-resume")
    if state is None:
        sub = rng.choice(N, size=min(N, 1000), replace=False)
        scale = float(np.std(np.asarray(images[np.sort(sub)], dtype=np.float64))) or 1.0
        scale = -scale if cfg.invert else scale  # images are divided by it: a negative scale inverts
        sidx = rng.choice(N, size=min(N, cfg.sigma_images), replace=False)
        sigma = spectral_sigma(prep, images, trans, ctf, scale, sidx)
    else:
        scale, sigma = float(state["scale"]), np.asarray(state["sigma"])
    if (scale < 0) != cfg.invert:
        raise OptionError("checkpoint inversion setting does not match")
    sig_p = torch.as_tensor(sigma, dtype=torch.float32, device=dev)[prep.shell]  # [P]
    if cfg.weighting == "eq4":
        w_p = sig_p**2 / (sig_p**2).mean()
    else:
        w_p = torch.ones_like(sig_p)
    model = build_model(D, cfg).to(dev)
    dense = model.dense_parameters()
    opt = torch.optim.Adam(dense, lr=cfg.lr) if dense else None
    opt_b = torch.optim.SparseAdam([model.basis], lr=cfg.basis_lr) if cfg.sparse else torch.optim.Adam([model.basis], lr=cfg.basis_lr)
    epoch = 0
    elapsed = 0.0
    noise = None
    if state is not None:
        model.load_state_dict(state["model"])
        if opt is not None:
            opt.load_state_dict(state["opt"])
        opt_b.load_state_dict(state["opt_basis"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        epoch, elapsed, noise = int(state["epoch"]), float(state["elapsed"]), float(state["noise"])
        if mask_kind == "auto" and state.get("mask") is not None:
            mask = np.asarray(state["mask"], dtype=np.float32)
    meta = {"config": asdict(cfg), "N": N, "D": D, "apix": float(apix), "scale": scale, "sigma": sigma.tolist(),
            "parameters": n_parameters(model), "source": source or {}, "device": str(dev)}
    tmp = out / ".config.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "config.json")
    if noise is None:  # mean weighted data power in normalised units: noise estimate at low SNR
        j = np.sort(rng.choice(N, size=min(N, 512), replace=False))
        y, _, _ = prep(images[j], None if trans is None else trans[j], None if ctf is None else ctf[j], scale)
        noise = float(((y.abs() ** 2) / sig_p**2 * w_p).mean())
    steps_per_epoch = math.ceil(N / cfg.batch)
    log = out / "log.jsonl"
    done_steps = 0
    proj = BasisProjector(model.hs, sigma, dev)
    proj.set_masks(mask, focus)
    project_steps = max(1, round(cfg.mask_every / cfg.batch))
    mask_after = min(N, cfg.mask_after)
    seen = epoch * N

    auto_pending = mask_kind == "auto" and mask is None
    posterior_fit = cfg.basis_fit == "posterior" and cfg.zdim > 0
    if posterior_fit:  # prior N(0, I) on the basis weights; the noise levels (overall, per shell) track the residuals
        tb = model.tables(dev)
        prior_prec = torch.eye(model.K, dtype=torch.float64, device=dev)
        prior_mean = torch.zeros(model.K, dtype=torch.float64, device=dev)
        noise_r = float(state["noise_r"]) if state is not None and "noise_r" in state else noise
        n_shell = int(prep.shell.max()) + 1
        shell_count = torch.bincount(prep.shell, minlength=n_shell).double()
        noise_sh = torch.full((n_shell,), noise_r, dtype=torch.float64, device=dev)
        if state is not None and state.get("noise_shell") is not None:
            noise_sh = torch.as_tensor(np.asarray(state["noise_shell"], dtype=np.float64), device=dev)

    def build_auto_mask(z_rows: np.ndarray) -> np.ndarray | None:
        """Auto mask from the average volume at the mean basis weights of latents ``z_rows``;
        ``None`` (no solvent mask) when the average cannot be thresholded into a plausible mask."""
        with torch.no_grad():
            zt = torch.as_tensor(z_rows, device=dev) if cfg.zdim > 0 and len(z_rows) else None
            sw = model.basis_weights(zt, max(1, len(z_rows))).mean(0)
            avg = proj.mean_volume(model.basis.detach(), sw)
        try:
            m = auto_mask(avg)
        except DataError:
            return None
        if not (MASK_FRACTION_RANGE[0] <= mask_fraction(m) <= MASK_FRACTION_RANGE[1]):
            return None  # the particle fills the box, or the average is still noise
        return m

    while epoch < cfg.epochs:
        t0 = time.perf_counter()
        perm = rng.permutation(N)
        z_mu = np.zeros((N, max(cfg.zdim, 0)), dtype=np.float32)
        tot = {"loss": 0.0, "data": 0.0, "kl": 0.0}
        model.train()
        for b in range(steps_per_epoch):
            idx = np.sort(perm[b * cfg.batch : (b + 1) * cfg.batch])
            y, C, enc = prep(images[idx], None if trans is None else trans[idx], None if ctf is None else ctf[idx], scale)
            y = y / sig_p
            r = torch.as_tensor(rot_t[idx], device=dev)
            if cfg.zdim > 0:
                mu, logvar = model.encoder(enc)
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
                kl = kl_divergence(mu, logvar).mean()
                z_mu[idx] = mu.detach().cpu().numpy()
            else:
                z, kl = None, torch.zeros((), device=dev)
            if posterior_fit:
                rows, wts, sgn = tb.neighbours(slice_coords(prep.kxy, r))
                acc, fac = gather_slice_columns(model.basis, rows, wts, sgn)
                B = len(idx)
                with torch.no_grad():
                    pix_noise = noise_sh[prep.shell].float()
                    s_hat, Lp = batch_posterior(acc, C, y, w_p * 2.0 / pix_noise, prior_prec, prior_mean)
                    s_draw = sample_posterior(s_hat, Lp).float()
                ones = model.basis.new_ones(B, 1)
                Xb = slice_basis_from_columns(torch.cat([s_draw, ones], 1), model.basis, acc, fac, rows, cfg.sparse)
                res_b = y - C * torch.complex(Xb[..., 0], Xb[..., 1])
                wres_b = (res_b.real**2 + res_b.imag**2) * w_p
                # the basis term is the Gaussian likelihood with each shell's noise level, on the
                # scale of the overall level (so the step size does not depend on the noise)
                data_b = (wres_b * (noise_r / pix_noise)).sum(1).mean() / (2 * noise)
                with torch.no_grad():
                    sh = shell_sums(wres_b.detach(), prep.shell, n_shell)
                    noise_sh = 0.95 * noise_sh + 0.05 * sh / (B * shell_count.clamp_min(1))
                s_full = torch.cat([model.weights(z), ones], 1)
                X = torch.bmm(acc.view(B, -1, acc.shape[-1]), s_full.unsqueeze(2)).view(B, -1, 2)
                noise_r = 0.95 * noise_r + 0.05 * float(wres_b.detach().mean())
            else:
                X = model.slices(z, r, prep.kxy, cfg.sparse)
                data_b = None
            Xc = torch.complex(X[..., 0], X[..., 1])
            res = y - C * Xc
            data = ((res.real**2 + res.imag**2) * w_p).sum(1).mean() / (2 * noise)
            loss = data + cfg.beta * kl if data_b is None else data + data_b + cfg.beta * kl
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            opt_b.zero_grad(set_to_none=True)
            loss.backward()
            if opt is not None:
                opt.step()
            opt_b.step()
            n = len(idx)
            seen += n
            if auto_pending and seen >= mask_after:
                auto_pending = False
                done_idx = perm[: b * cfg.batch + n]
                proj.set_masks(build_auto_mask(z_mu[done_idx]), focus)
                proj.project(model.basis.data)
            elif proj.active and (b + 1) % project_steps == 0:
                proj.project(model.basis.data)
            tot["loss"] += float(loss.detach()) * n
            tot["data"] += float(data.detach()) * n
            tot["kl"] += float(kl.detach()) * n
            done_steps += 1
            if progress:
                progress(epoch, cfg.epochs, b + 1, steps_per_epoch, {k: v / max(1, (b * cfg.batch + n)) for k, v in tot.items()})
            if max_steps is not None and done_steps >= max_steps:
                break
        if mask_kind == "auto" and not auto_pending:
            proj.set_masks(build_auto_mask(z_mu), focus)
        proj.project(model.basis.data, iterations=FINAL_PROJECTIONS)
        elapsed += time.perf_counter() - t0
        epoch += 1
        rec = {"epoch": epoch, **{k: v / N for k, v in tot.items()}, "elapsed_s": round(elapsed, 2),
               "mask": describe(mask_kind, None if proj.mask is None else np.fft.fftshift(proj.mask.cpu().numpy()))}
        with log.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        if cfg.zdim > 0:
            _atomic_npy(z_mu, out / "z.train.npy")
        _atomic_save({"model": model.state_dict(), "opt": None if opt is None else opt.state_dict(),
                      "opt_basis": opt_b.state_dict(), "rng": rng.bit_generator.state,
                      "torch_rng": torch.get_rng_state(), "epoch": epoch, "elapsed": elapsed, "noise": noise,
                      "noise_r": noise_r if posterior_fit else None,
                      "noise_shell": noise_sh.cpu().numpy() if posterior_fit else None,
                      "config": asdict(cfg), "scale": scale, "sigma": sigma, "D": D, "apix": float(apix),
                      "mask": None if proj.mask is None else np.fft.fftshift(proj.mask.cpu().numpy())}, ckpt)
        _write_masks(out, proj, float(apix))
        if max_steps is not None and done_steps >= max_steps:
            break
    return out
