"""How the shipped denoiser weights were made (issue 5), end to end and reproducible.

1. Training cubes: ``make-dataset`` on the eight models of ``atomic_models/general`` and
   ``conformations/adk_closed.pdb`` *except* the two held out for validation (4E43, 1OSM);
   the models of the test pairs (5ME2/5NI1 of EMD-3488, 6VYB of EMD-21457) are never used.
2. Validation cubes: the same simulator on 4E43 and 1OSM (a different seed).
3. Stage 1: ``train`` from scratch on the stage-1 simulator (``SimConfig()``); the
   thresholds are chosen on the validation cubes by G-mean.
4. Stage 2 (``--stage2-steps`` > 0): fine-tune from stage 1 on cubes of the stage-2
   simulator (stronger sharpening, noise out to Nyquist in half of the cubes), at a lower
   learning rate; thresholds again from its own validation cubes.
5. The last stage's weights are copied into the package as ``unet_v1`` when ``--install`` is given.

CPU by default; ``--device auto`` takes a GPU when there is one.

    python benchmarks/train_denoiser.py --work /tmp/dn --install
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from voxfield.bench.datasets import find_data_root
from voxfield.compress.neural import resolve_device
from voxfield.denoise.dataset import make_dataset
from voxfield.denoise.simulate import SimConfig
from voxfield.denoise.train import TrainConfig, train
from voxfield.denoise.unet import SPECIALIST, default_weights_path

TRAIN_MODELS = ["general/19hc.pdb.gz", "general/1BD2.cif.gz", "general/1YJP.cif", "general/1a28.pdb.gz",
                "general/1hvr.pdb", "general/5a7u.pdb", "general/adk_open_4AKE.pdb", "conformations/adk_closed.pdb"]
VAL_MODELS = ["general/4E43.pdb", "general/1osm.pdb.gz"]
STAGE1 = SimConfig()
STAGE2 = SimConfig(sharpen=10.0, p_hf_noise=0.5, p_sharpen=0.6)


def datasets(models: Path, work: Path, cfg: SimConfig, seed: int, samples: int, val_samples: int) -> tuple[Path, Path]:
    """(train, val) dataset folders, simulated unless already there."""
    val, trn = work / "val", work / "train"
    if not (val / "dataset.json").exists():
        make_dataset([models / m for m in VAL_MODELS], val, n_samples=val_samples, seed=seed + 1, config=cfg)
    if not (trn / "dataset.json").exists():
        make_dataset([models / m for m in TRAIN_MODELS], trn, n_samples=samples, seed=seed, config=cfg)
    return trn, val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder for the datasets and the run")
    ap.add_argument("--samples", type=int, default=800)
    ap.add_argument("--val-samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--stage2-steps", type=int, default=1200)
    ap.add_argument("--stage2-lr", type=float, default=3e-4)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--install", action="store_true", help="copy the weights into the package")
    args = ap.parse_args()
    models = find_data_root() / "atomic_models"
    t0 = time.perf_counter()

    def progress(step: int, total: int, last: dict) -> None:
        if step % args.eval_every == 0:
            print(f"step {step}/{total}  {time.perf_counter() - t0:.0f} s  {last}", flush=True)

    dev = resolve_device(args.device)
    trn, val = datasets(models, args.work / "stage1", STAGE1, 0, args.samples, args.val_samples)
    path = train(trn, args.work / "stage1" / "run", val_dir=val, device=dev, progress=progress,
                 config=TrainConfig(steps=args.steps, eval_every=args.eval_every))
    print(f"stage 1: {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.stage2_steps > 0:
        trn, val = datasets(models, args.work / "stage2", STAGE2, 10, args.samples, args.val_samples)
        path = train(trn, args.work / "stage2" / "run", val_dir=val, device=dev, progress=progress, init_weights=path,
                     config=TrainConfig(steps=args.stage2_steps, eval_every=args.eval_every, lr=args.stage2_lr))
        print(f"stage 2: {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.install:
        dst = default_weights_path(None).with_name(SPECIALIST)  # unet_v1, the family's 2.5-10 Å member
        shutil.copyfile(path, dst)
        print(f"installed as {dst}")


if __name__ == "__main__":
    main()
