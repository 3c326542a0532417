"""Heterogeneous cryo-EM reconstruction from particle images with known poses and CTF.

The structural-basis VAE of paper 004 (Kimanius, Jamali & Scheres, "Sparse Fourier
Backpropagation in Cryo-EM Reconstruction"), CPU or CUDA, in pure PyTorch:

* :mod:`~voxfield.reconstruct.particles`, :mod:`~voxfield.reconstruct.star_io`,
  :mod:`~voxfield.reconstruct.poses` — RELION 3.0/3.1/5 STAR + MRCS, cryoSPARC ``.cs`` and
  cryoDRGN pickles, in cryoDRGN's pose/CTF conventions;
* :mod:`~voxfield.reconstruct.ctf` — the contrast transfer function;
* :mod:`~voxfield.reconstruct.fourier` — the half-sphere basis layout, sparse trilinear slice
  extraction with sparse gradients, full-volume synthesis;
* :mod:`~voxfield.reconstruct.model`, :mod:`~voxfield.reconstruct.train`,
  :mod:`~voxfield.reconstruct.run` — the VAE, its training loop (checkpoints, resume) and a
  trained run (encode particles, decode volumes);
* :mod:`~voxfield.reconstruct.projection`, :mod:`~voxfield.reconstruct.simulate` — projectors
  and the ground-truth particle simulator;
* :mod:`~voxfield.reconstruct.evaluate`, :mod:`~voxfield.reconstruct.analysis` — FSC, AU-FSC,
  latent–truth correlation, PCA/UMAP/k-means analysis.
"""

from __future__ import annotations

from voxfield.reconstruct.particles import ParticleStack, load_particles
from voxfield.reconstruct.run import Run, load_run
from voxfield.reconstruct.train import TrainConfig, train

__all__ = ["ParticleStack", "load_particles", "Run", "load_run", "TrainConfig", "train"]

from voxfield._callable import make_callable as _make_callable  # noqa: E402

_make_callable(__name__)  # `voxfield.reconstruct(...)` calls voxfield.api.reconstruct
