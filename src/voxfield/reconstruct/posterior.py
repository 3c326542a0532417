"""Closed-form per-image basis weights: the posterior of the linear decoder given each image.

The decoder is linear in its weights: an image's central slice is ``X = A s + a_0`` with
``A [P, K]`` the slices of the ``K`` basis volumes at the image's pose and ``a_0`` that of
the bias volume. With the CTF ``C`` and Gaussian noise of variance ``σ²`` per real component
(in the spectrally normalised units of training, one ``σ²`` per Fourier shell: normalising by
``σ̄_y``, which the signal dominates at low frequency, leaves the noise coloured), the weights
``s`` of one image have a Gaussian posterior under a Gaussian prior ``N(μ, Σ)``:

    Λ = Mᵀ Π M / f + Σ⁻¹,   ŝ = Λ⁻¹ (Mᵀ Π (y − C a_0) / f + Σ⁻¹ μ),   M = C A,   Π = diag(1 / σ²)

(complex quantities stacked as real and imaginary parts). This is RECOVAR's per-image
embedding (a regularised projection onto a linear basis, with the pose and CTF of each image)
applied to voxfield's learnt basis. ``σ²`` of each shell is the mean squared residual of the
encoder's reconstruction in that shell.

**The imprint, and the readout band.** The basis was fitted to these very images, so it carries
a little of each image's noise: an image's own weights fit its noise better than the noise level
predicts. The imprint adds up coherently over an image's pixels and is largest where the basis
holds least signal, at high frequency. On the four CryoBench-style sets (5,000 images, 5 epochs;
``benchmarks/results/readout_band/``), the least-squares weights of the training images vary
5.8–6.5 times more than predicted along directions without signal when every shell is used,
against 1.05–1.07 times on 5,000 images of the same simulations that training never saw; up to
shell 10–12 of 32 the training images' factor is 1.3–1.5 while most of the signal is kept. So
the readout uses the pixels up to a shell cutoff (``band``), chosen from the data:

* for each candidate cutoff (:func:`band_candidates`) the least-squares weights ``S`` of a
  calibration sample are whitened by their predicted noise covariance ``P̄`` (mean of
  ``(MᵀΠM)⁻¹``); the eigenvalues ``λ`` of their covariance are ``1 + signal`` per direction
  when the prediction holds, and the directions without signal sit at the **noise floor**
  ``f`` (their median, with at least :data:`MIN_K_FLOOR` basis volumes; 1 with fewer);
* the score ``Σ max(λ/f − 1, 0)``, the signal-to-noise summed over directions, is computed
  for each cutoff; the widest cutoff within :data:`BAND_TOLERANCE` of the best is used.

The prior is then the **noise-corrected moment prior** of that band (``prior="moment"``, the
default): ``μ`` the mean of ``S`` and ``Σ = P̄^½ V diag(max(λ − f, 10⁻³ f)) Vᵀ P̄^½``; the
likelihood is divided by the floor ``f`` (the noise the data show, not the one predicted).
``prior="encoder"`` uses the mean and covariance of the encoder's weights ``s(z)`` instead.

The result ``ŝ`` [N, K] serves as a latent (its principal components for plots, k-means for
discrete states) and decodes to a volume with :meth:`voxfield.reconstruct.run.Run.volume_from_weights`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from voxfield.errors import DataError, OptionError

from .estep import design, shell_sums
from .fourier import slice_basis_columns, slice_coords
from .run import Run
from .train import BatchPrep, enc_box

#: Images that choose the band and give the moment prior (a seeded sample when there are more).
CALIBRATION_IMAGES = 5000
#: Cutoffs whose score is within this fraction of the best count as equal; the widest is used.
BAND_TOLERANCE = 0.05
#: With fewer basis volumes there are too few directions without signal to measure the noise
#: floor: the floor is then 1 (the predicted noise) and ``band="auto"`` uses every shell.
MIN_K_FLOOR = 8
#: Priors by name (or give ``(mean, cov)``).
PRIORS = ("moment", "encoder")


def band_candidates(max_shell: int, first: int = 4, ratio: float = 1.2) -> list[int]:
    """Shell cutoffs that ``band="auto"`` compares: ``first`` to ``max_shell``, about ``ratio`` apart."""
    out: list[int] = []
    c = min(int(first), int(max_shell))
    while c < max_shell:
        out.append(c)
        c = max(c + 1, int(round(c * ratio)))
    out.append(int(max_shell))
    return out


@dataclass
class MomentFit:
    """The noise-corrected moment prior of one band (module docstring): ``score`` (summed
    signal-to-noise), ``floor`` ``f``, prior ``mean [K]`` and ``cov [K, K]``, and the whitened
    eigenvalues ``eig [K]`` (descending)."""

    score: float
    floor: float
    mean: np.ndarray
    cov: np.ndarray
    eig: np.ndarray


def moment_prior(G: np.ndarray, b: np.ndarray, *, measure_floor: bool = True) -> MomentFit:
    """The noise-corrected moment prior from per-image normal equations ``G [n, K, K]``
    (``MᵀΠM``) and ``b [n, K]`` (``MᵀΠr``): see the module docstring. ``measure_floor=False``
    takes the floor as 1 (the predicted noise)."""
    G = np.asarray(G, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n, K = b.shape
    if n < 2:
        raise DataError("posterior_weights: at least 2 images are needed for the moment prior")
    ridge = 1e-6 * max(float(np.trace(G.mean(0))) / K, 1e-30)
    H = G + ridge * np.eye(K)
    S = np.linalg.solve(H, b[..., None])[..., 0]
    pbar = np.linalg.inv(H).mean(0)
    e, Q = np.linalg.eigh((pbar + pbar.T) / 2)
    e = np.clip(e, 1e-30, None)
    wh, whi = (Q * e**-0.5) @ Q.T, (Q * e**0.5) @ Q.T
    lam, V = np.linalg.eigh(wh @ np.cov(S.T, bias=True).reshape(K, K) @ wh)
    lam, V = lam[::-1], V[:, ::-1]
    f = max(float(np.median(lam)), 1e-6) if measure_floor else 1.0
    cov = whi @ (V * np.clip(lam - f, 1e-3 * f, None)) @ V.T @ whi
    score = float(np.clip(lam / f - 1.0, 0.0, None).sum())
    return MomentFit(score, f, S.mean(0), (cov + cov.T) / 2, lam)


def choose_band(fits: list[MomentFit], tolerance: float = BAND_TOLERANCE) -> int:
    """Index of the widest band whose score is within ``tolerance`` of the best (the last,
    widest, band when no band shows any signal)."""
    scores = np.array([f.score for f in fits])
    best = float(scores.max()) if len(scores) else 0.0
    if not best > 0:
        return len(fits) - 1
    return int(np.nonzero(scores >= (1.0 - tolerance) * best)[0].max())


def solve_weights(G: np.ndarray, b: np.ndarray, prior_mean: np.ndarray, prior_cov: np.ndarray,
                  floor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and standard deviations ``[n, K]`` from per-image normal equations
    ``G [n, K, K]``, ``b [n, K]``, the prior ``N(prior_mean, prior_cov)`` and the noise floor
    (the likelihood is divided by it)."""
    P = np.linalg.inv(np.asarray(prior_cov, dtype=np.float64))
    lam = np.asarray(G, dtype=np.float64) / floor + P
    rhs = np.asarray(b, dtype=np.float64) / floor + np.asarray(prior_mean, dtype=np.float64) @ P
    L = np.linalg.cholesky(lam)
    mean = np.linalg.solve(lam, rhs[..., None])[..., 0]
    Linv = np.linalg.inv(L)
    std = np.sqrt((Linv**2).sum(1))  # diag(Λ⁻¹) = column sums of L⁻¹ squared
    return mean, std


class _Readout:
    """One run's per-batch data, slice columns and per-shell noise levels (module docstring),
    shared by the calibration and the readout passes."""

    @torch.no_grad()
    def __init__(self, run: Run, images: Any, rot: np.ndarray, trans: np.ndarray | None, ctf: np.ndarray | None,
                 z: np.ndarray | None, batch: int) -> None:
        if run.zdim == 0 or run.model.K == 0:
            raise DataError("this run is homogeneous (zdim 0): it has no basis weights")
        self.N = int(images.shape[0])
        if rot.shape[0] != self.N:
            raise DataError(f"{rot.shape[0]} poses for {self.N} images")
        self.run, self.images, self.rot, self.trans, self.ctf, self.bs = run, images, rot, trans, ctf, int(batch)
        self.dev, self.K = run.device, run.model.K
        self.prep = prep = BatchPrep(run.D, run.apix, self.dev, run.cfg.mask_radius, enc_box(run.D, run.cfg))
        self.n_shell = int(prep.shell.max()) + 1
        self.sig_p = torch.as_tensor(run.sigma, dtype=torch.float32, device=self.dev)[prep.shell]
        self.tb = run.model.tables(self.dev)
        self.W = run.model.basis.detach()
        if z is None:
            z = run.encode(images, trans, ctf)
        self.zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.dev)
        # noise level: residual of the encoder's reconstruction on a sample of images
        self.rng = np.random.default_rng(0)
        sample = np.sort(self.rng.choice(self.N, size=min(self.N, 512), replace=False))
        res2 = torch.zeros(self.n_shell, dtype=torch.float64, device=self.dev)
        cnt = torch.zeros(self.n_shell, dtype=torch.float64, device=self.dev)
        shell_px = 2 * torch.bincount(prep.shell, minlength=self.n_shell).double()  # real components per image
        for i in range(0, len(sample), self.bs):
            j = sample[i : i + self.bs]
            y, C, r = self.batch(j)
            X = run.model.slices(self.zt[j], r, prep.kxy, False)
            d = y - C * torch.complex(X[..., 0], X[..., 1])
            res2 += shell_sums(d.real**2 + d.imag**2, prep.shell, self.n_shell)
            cnt += len(j) * shell_px
        self.noise = float(res2.sum() / cnt.sum().clamp_min(1))
        self.noise_shell = torch.where(cnt > 0, res2 / cnt.clamp_min(1), torch.full_like(res2, self.noise)).clamp_min(1e-30)
        self.pix_prec = (1.0 / self.noise_shell[prep.shell]).float()

    def batch(self, j: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised data ``y``, CTF ``C`` and rotations of the images ``j``."""
        tr = None if self.trans is None else self.trans[j]
        y, C, _ = self.prep(self.images[j], tr, None if self.ctf is None else self.ctf[j], self.run.scale)
        return y / self.sig_p, C, torch.as_tensor(np.asarray(self.rot[j], dtype=np.float32), device=self.dev)

    def columns(self, r: torch.Tensor) -> torch.Tensor:
        """Slice columns ``[B, P, 2, K + 1]`` of the basis at rotations ``r``."""
        rows, wts, sgn = self.tb.neighbours(slice_coords(self.prep.kxy, r))
        return slice_basis_columns(self.W, rows, wts, sgn)

    def calibration(self) -> np.ndarray:
        """The images that calibrate (all, or a seeded sample of :data:`CALIBRATION_IMAGES`)."""
        if self.N <= CALIBRATION_IMAGES:
            return np.arange(self.N)
        return np.sort(self.rng.choice(self.N, CALIBRATION_IMAGES, replace=False))

    @torch.no_grad()
    def normal_equations(self, idx: np.ndarray, cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per-image ``G = MᵀΠM [len(cuts), n, K, K]`` and ``b = MᵀΠr [len(cuts), n, K]`` (float32)
        over the pixels up to each shell cutoff in ``cuts`` (ascending) for the images ``idx``."""
        shell, K = self.prep.shell, self.K
        order = torch.argsort(shell, stable=True)
        order = order[shell[order] <= cuts[-1]]
        bounds = torch.searchsorted(shell[order], torch.as_tensor(cuts, device=self.dev), right=True).tolist()
        w = self.pix_prec[order].double()
        w2 = torch.cat([w, w])[None, :, None]
        Gs = np.zeros((len(cuts), len(idx), K, K), dtype=np.float32)
        bs = np.zeros((len(cuts), len(idx), K), dtype=np.float32)
        for i in range(0, len(idx), self.bs):
            j = idx[i : i + self.bs]
            y, C, r = self.batch(j)
            M, rr = design(self.columns(r)[:, order], C[:, order], y[:, order])
            Mw, half = M * w2, M.shape[1] // 2
            G = torch.zeros(len(j), K, K, dtype=torch.float64, device=self.dev)
            bb = torch.zeros(len(j), K, dtype=torch.float64, device=self.dev)
            lo = 0
            for c, hi in enumerate(bounds):
                for off in (0, half):
                    part = slice(off + lo, off + hi)
                    G += Mw[:, part].transpose(1, 2) @ M[:, part]
                    bb += (Mw[:, part].transpose(1, 2) @ rr[:, part, None])[..., 0]
                Gs[c, i : i + len(j)] = G.cpu().numpy()
                bs[c, i : i + len(j)] = bb.cpu().numpy()
                lo = hi
        return Gs, bs


def check_band(band: Any) -> int | str | None:
    """A readout band as :func:`posterior_weights` takes it (``"auto"``, ``None`` or a shell
    ``>= 1``), normalised; an :class:`~voxfield.errors.OptionError` for anything else."""
    if band is None or band == "auto":
        return band
    if isinstance(band, (int, np.integer)) and not isinstance(band, bool) and int(band) >= 1:
        return int(band)
    raise OptionError(f"readout band must be 'auto', None (every shell) or a shell number >= 1, got {band!r}")


def _cuts(band: int | str | None, max_shell: int, K: int) -> list[int]:
    """The candidate cutoffs of a checked ``band`` (:func:`check_band`)."""
    if band is None:
        return [max_shell]
    if band == "auto":
        return band_candidates(max_shell) if K >= MIN_K_FLOOR else [max_shell]
    return [min(int(band), max_shell)]


def band_scan(run: Run, images: Any, rot: np.ndarray, trans: np.ndarray | None, ctf: np.ndarray | None,
              z: np.ndarray | None = None, *, cuts: list[int] | None = None, batch: int = 128) -> dict[str, Any]:
    """For diagnostics: every image's weights read out on each candidate band (default
    :func:`band_candidates`) with that band's moment prior and floor. Returns ``{"cuts",
    "fits"`` (:class:`MomentFit` per cut), ``"choice"`` (the index ``band="auto"`` picks),
    ``"weights" [len(cuts), N, K]}``. Holds ``N · len(cuts) · K²`` floats: meant for a few
    thousand images."""
    ro = _Readout(run, images, rot, trans, ctf, z, batch)
    cuts = sorted(set(cuts)) if cuts else band_candidates(ro.n_shell - 1)
    Gs, bs = ro.normal_equations(np.arange(ro.N), cuts)
    fits = [moment_prior(Gs[c], bs[c], measure_floor=ro.K >= MIN_K_FLOOR) for c in range(len(cuts))]
    weights = np.stack([solve_weights(Gs[c], bs[c], f.mean, f.cov, f.floor)[0] for c, f in enumerate(fits)])
    return {"cuts": cuts, "fits": fits, "choice": choose_band(fits), "weights": weights}


@torch.no_grad()
def posterior_weights(run: Run, images: Any, rot: np.ndarray, trans: np.ndarray | None, ctf: np.ndarray | None,
                      z: np.ndarray | None = None, *, batch: int = 128,
                      prior: str | tuple[np.ndarray, np.ndarray] | None = "moment", band: int | str | None = "auto",
                      prior_scale: float = 1.0,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Posterior-mean basis weights ``[N, K]`` of every image (module docstring).

    ``z`` [N, zdim]: the encoder's latents (``run.encode`` when omitted), which give the noise
    level per shell (and the ``"encoder"`` prior). ``prior``: ``"moment"`` (default; ``None``
    means the same), ``"encoder"`` (its covariance times ``prior_scale``), or ``(mean [K],
    cov [K, K])``. ``band``: ``"auto"`` (default), a shell cutoff (pixels up to that Fourier
    shell, in pixels of the box), or ``None`` for every shell. Returns ``{"weights" [N, K],
    "std" [N, K] (posterior standard deviations), "prior_mean" [K], "prior_cov" [K, K],
    "noise_var" (overall, 0-d), "noise_var_shell" [n_shells], "band_shell" (the cutoff used),
    "band_resolution" (Å), "noise_floor" (f; 1 when not measured), "band_candidates",
    "band_scores" (lists; empty unless ``band="auto"``)}``.
    """
    if prior is None:
        prior = "moment"
    if isinstance(prior, str) and prior not in PRIORS:
        raise OptionError(f"unknown prior {prior!r}: use {' or '.join(PRIORS)}, or give (mean, cov)")
    band = check_band(band)
    ro = _Readout(run, images, rot, trans, ctf, z, batch)
    K = ro.K
    cuts = _cuts(band, ro.n_shell - 1, K)
    fits: list[MomentFit] = []
    cal = np.zeros(0, dtype=np.int64)
    if prior == "moment" or len(cuts) > 1:  # calibration: the moment fit of each candidate band
        cal = ro.calibration()
        Gs, bs = ro.normal_equations(cal, cuts)
        fits = [moment_prior(Gs[c], bs[c], measure_floor=K >= MIN_K_FLOOR) for c in range(len(cuts))]
    pick = choose_band(fits) if len(cuts) > 1 else 0
    cut = cuts[pick]
    floor = fits[pick].floor if fits else 1.0
    if isinstance(prior, tuple):
        mu = np.asarray(prior[0], dtype=np.float64).reshape(K)
        cov = np.asarray(prior[1], dtype=np.float64).reshape(K, K)
        if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
            raise DataError("posterior_weights: prior has NaN or infinite values")
    elif prior == "encoder":
        s_enc = run.model.weights(ro.zt).double().cpu().numpy()  # [N, K]
        mu = s_enc.mean(0)
        cov = np.cov(s_enc.T).reshape(K, K) * float(prior_scale)
    else:
        mu, cov = fits[pick].mean, fits[pick].cov
    cov = cov + np.eye(K) * (1e-6 * float(np.trace(cov)) / K + 1e-12)
    out = np.zeros((ro.N, K), dtype=np.float32)
    std = np.zeros((ro.N, K), dtype=np.float32)
    if len(cal):  # the calibration images are already summed on every band
        out[cal], std[cal] = solve_weights(Gs[pick], bs[pick], mu, cov, floor)
        del Gs, bs
        if progress:
            progress(len(cal), ro.N)
    rest = np.setdiff1d(np.arange(ro.N), cal)
    chunk = max(batch, 16 * batch)
    for i in range(0, len(rest), chunk):
        j = rest[i : i + chunk]
        G, b = ro.normal_equations(j, [cut])
        out[j], std[j] = solve_weights(G[0], b[0], mu, cov, floor)
        if progress:
            progress(len(cal) + i + len(j), ro.N)
    return {"weights": out, "std": std, "prior_mean": mu.astype(np.float32),
            "prior_cov": cov.astype(np.float32), "noise_var": np.asarray(ro.noise),
            "noise_var_shell": ro.noise_shell.float().cpu().numpy(), "band_shell": int(cut),
            "band_resolution": float(run.D * run.apix / max(cut, 1)), "noise_floor": float(floor),
            "band_candidates": cuts if len(cuts) > 1 else [],
            "band_scores": [f.score for f in fits] if len(cuts) > 1 else []}
