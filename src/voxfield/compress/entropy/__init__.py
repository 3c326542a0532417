"""The entropy coders of voxfield's own payloads, one module per kind of symbol:

* :mod:`~voxfield.compress.entropy.weights` — quantised network weights (sci, siren, grid's
  synthesis network, cryo-pe, the hybrid filter): per-tensor Gaussian/Laplace/uniform ANS;
* :mod:`~voxfield.compress.entropy.latents` — the integer latent pyramid of ``grid``:
  context-conditioned quantised-Laplace ANS, and its differentiable rate for fitting;
* :mod:`~voxfield.compress.entropy.occupancy` — boolean occupancy maps (cryo-pe):
  gzip, zstd or adaptive context-coded bits;
* :mod:`~voxfield.compress.entropy.residual` — integer residual indices of the
  error-bounded mode: two-pass checkerboard context ANS with escapes.

All use ``constriction``'s ANS coder; general-purpose byte streams (zstd, gzip) go through
:mod:`voxfield.codecs.lossless`. Decoding is exact and deterministic; damaged streams raise
:class:`~voxfield.errors.FormatError`. Modules are imported on use (``weights`` and
``latents`` bring torch).
"""
