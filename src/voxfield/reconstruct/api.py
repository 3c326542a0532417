"""``reconstruct``: one call from particle images with poses and CTF to a trained
structural-basis VAE run (the ``voxfield reconstruct train`` command is a thin layer)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxfield.errors import DataError, OptionError

#: Images are loaded into memory below this size (bytes); larger stacks are read lazily.
IN_MEMORY_LIMIT = 4 << 30


def load_stack(particles: str | os.PathLike[str], *, datadir: Any = None, poses: Any = None, ctf: Any = None,
               apix: float | None = None, progress: Callable[[str, int, int], None] | None = None) -> tuple[Any, Any]:
    """The particle stack (:func:`voxfield.reconstruct.particles.load_particles`) after
    checking every image, and its images (in memory when they fit :data:`IN_MEMORY_LIMIT`).
    ``progress(stage, done, total)``."""
    from voxfield.reconstruct.particles import check_images, load_particles

    stack = load_particles(particles, datadir=datadir, poses=poses, ctf=ctf, apix=apix)
    if stack.images is None or stack.rot is None:
        raise DataError(f"{particles}: no images or no poses to train on")
    n, d = len(stack.images), int(stack.images.D)
    check_images(stack)
    if progress is not None:
        progress("check images", n, n)
    images: Any = stack.images
    if n * d * d * 4 <= IN_MEMORY_LIMIT:
        images = np.empty((n, d, d), dtype=np.float32)
        for i in range(0, n, 4096):
            j = np.arange(i, min(n, i + 4096))
            images[j] = stack.images[j]
            if progress is not None:
                progress("read images", int(j[-1]) + 1, n)
    return stack, images


def reconstruct(particles: str | os.PathLike[str], output: str | os.PathLike[str], *, datadir: Any = None,
                poses: Any = None, ctf: Any = None, apix: float | None = None, device: str = "auto",
                resume: bool = True, progress: Callable[..., None] | None = None,
                on_note: Callable[[str], None] | None = None, readout_band: int | str | None = "auto",
                **config: Any) -> Any:
    """Train the structural-basis VAE on a particle stack (RELION ``.star``, cryoSPARC
    ``.cs``, or ``.mrcs`` with cryoDRGN ``poses``/``ctf`` pickles) into the run folder
    ``output`` (checkpoint every epoch; ``resume`` continues one), then, when the latent
    dimension is > 0, encode every particle to ``output/z.npy`` and write its closed-form
    basis weights (:func:`voxfield.reconstruct.posterior.posterior_weights`, ``[N, K]``) to
    ``output/weights.npy``: the latent ``analyze`` uses by default, read out on the Fourier
    band ``readout_band`` (``"auto"``: chosen from the data; ``None``: every shell; or a shell
    number; ``output/weights.json`` records the band and noise floor). Resuming a finished run
    only redoes the encoding and this readout. ``**config``: fields of
    :class:`voxfield.reconstruct.train.TrainConfig` (``zdim``, ``K``, ``epochs``, ``batch``,
    ``lr``, ``basis_lr``, ``beta``, ``weighting``, ``sparse``, ``invert``, ``seed``, ``mask``:
    ``"auto"``/``"sphere"``/``"none"``/MRC path, ``focus_mask``: MRC path or ``""``; see
    :mod:`voxfield.reconstruct.masks`; ``basis_fit``: ``"posterior"``, the default, or
    ``"encoder"``; see :mod:`voxfield.reconstruct.train`).
    ``progress(epoch, n_epochs, batch, n_batches, totals)`` reports training, ``on_note(text)``
    remarks on the input (e.g. no CTF).
    Returns the trained :class:`voxfield.reconstruct.run.Run`."""
    import dataclasses

    from voxfield.compress.neural import resolve_device
    from voxfield.reconstruct.run import load_run
    from voxfield.reconstruct.train import TrainConfig, _atomic_npy, train

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise OptionError(f"unknown training setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for name in ("mask", "focus_mask"):  # file masks are recorded by absolute path (resume checks the config)
        v = config.get(name)
        if v and str(v).lower() not in ("auto", "sphere", "none"):
            if not Path(v).is_file():
                raise OptionError(f"--{name.replace('_', '-')} {v}: no such file")
            config[name] = str(Path(v).resolve())
    from voxfield.reconstruct.posterior import check_band

    readout_band = check_band(readout_band)  # before any training
    cfg = TrainConfig(**config)
    for name in ("lr", "basis_lr"):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v <= 0:
            raise OptionError(f"--{name.replace('_', '-')} must be > 0, got {v}")
    if not math.isfinite(cfg.beta) or cfg.beta < 0:
        raise OptionError(f"--beta must be >= 0, got {cfg.beta}")
    if cfg.zdim < 0 or cfg.K < 1 or cfg.epochs < 1 or cfg.batch < 1:
        raise OptionError("--zdim must be >= 0, and --basis, --epochs, --batch >= 1")
    if cfg.weighting not in ("eq4", "white"):
        raise OptionError(f"--weighting must be eq4 or white, got {cfg.weighting!r}")
    out = Path(output)
    dev = resolve_device(device)
    stack, images = load_stack(particles, datadir=datadir, poses=poses, ctf=ctf, apix=apix)
    if stack.ctf is None and on_note is not None:
        on_note("note: no CTF in the input; images are treated as CTF-free")
    if not resume:
        for name in ("checkpoint.pt", "log.jsonl", "z.npy", "z.train.npy", "weights.npy", "weights.json", "mask.mrc",
                     "focus_mask.mrc"):
            (out / name).unlink(missing_ok=True)

    def resolved(p: Any) -> str | None:
        return None if p is None else str(Path(p).resolve())

    src = {"particles": resolved(particles), "datadir": resolved(datadir), "poses": resolved(poses),
           "ctf": resolved(ctf)}
    train(images, stack.rot, stack.trans, stack.ctf, stack.apix, out, cfg, device=dev, resume=resume, source=src,
          progress=progress)
    run = load_run(out, dev)
    if cfg.zdim > 0:
        from voxfield.reconstruct.posterior import posterior_weights

        z = run.encode(images, stack.trans, stack.ctf)
        _atomic_npy(z, out / "z.npy")
        post = posterior_weights(run, images, stack.rot, stack.trans, stack.ctf, z=z, band=readout_band)
        _atomic_npy(post["weights"], out / "weights.npy")
        info = {k: post[k] for k in ("band_shell", "band_resolution", "noise_floor", "band_candidates", "band_scores")}
        tmp = out / ".weights.json.tmp"
        tmp.write_text(json.dumps({"prior": "moment", "readout_band": readout_band, **info}, indent=1))
        os.replace(tmp, out / "weights.json")
    return run
