"""Application guidance (segmentation / MS-SSIM losses in the neural fit) and the task metric
``segmentation_agreement`` (Dice, IoU, object counts), with ``voxfield metrics --segment``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from voxfield.cli.main import main
from voxfield.codecs.base import Target
from voxfield.compress.api import decompress
from voxfield.compress.container import VxfReader
from voxfield.compress.modes.guidance import (
    GuideConfig,
    ms_ssim,
    ms_ssim_loss,
    segmentation_reference,
    soft_segmentation_loss,
)
from voxfield.compress.neural import NeuralConfig, compress_neural
from voxfield.errors import DataError, OptionError
from voxfield.io import Volume
from voxfield.metrics import count_objects, segmentation_agreement


def two_level(shape: tuple[int, ...] = (12, 12, 12), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A volume of two intensity levels (10 and 50, slight noise) and its true foreground."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, bool)
    truth[2:7, 3:9, 4:10] = True
    data = np.where(truth, 50.0, 10.0) + rng.normal(0, 1.0, shape)
    return data.astype(np.float32), truth


def blobs(n: int = 24, seed: int = 2) -> np.ndarray:
    """Gaussian blobs of mixed brightness: several peak close to the Otsu level."""
    rng = np.random.default_rng(seed)
    g = np.mgrid[:n, :n, :n].astype(np.float32)
    d = np.zeros((n, n, n), np.float32)
    for _ in range(12):
        c, r, a = rng.random(3) * n, rng.uniform(1.8, 3.0), rng.uniform(0.4, 1.0)
        d += a * np.exp(-((g - c[:, None, None, None]) ** 2).sum(0) / (2 * r * r))
    return d


# ---------------------------------------------------------------------------- reference
def test_otsu_reference_of_two_level_volume():
    data, truth = two_level()
    ref, t = segmentation_reference(data)
    assert data[~truth].max() <= t < data[truth].min()  # in the gap between the levels
    assert ref.dtype == bool and np.array_equal(ref, truth)
    ref2, t2 = segmentation_reference(data, threshold=30)
    assert t2 == 30.0 and np.array_equal(ref2, truth)
    labels = truth.astype(np.int32) * 3  # a label image: label > 0
    labels[0, 0, 0] = 7
    ref3, t3 = segmentation_reference(data, mask=labels)
    assert t3 == pytest.approx(t) and ref3.sum() == truth.sum() + 1


def test_reference_errors():
    data, truth = two_level()
    with pytest.raises(DataError, match=r"shape \(12, 12\).*\(12, 12, 12\)"):
        segmentation_reference(data, mask=truth[0])
    with pytest.raises(DataError, match="guidance needs"):
        segmentation_reference(np.full((4, 4, 4), 3.0))
    with pytest.raises(DataError, match="guidance needs.*no foreground"):
        segmentation_reference(data, threshold=1e6)
    with pytest.raises(DataError, match="guidance needs.*no background"):
        segmentation_reference(data, threshold=-1e6)


# ---------------------------------------------------------------------------- losses
def test_soft_segmentation_loss_decreases_toward_the_right_side():
    ref = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0]) > 0.5
    wrong = torch.tensor([-0.05, 0.3, 0.02, -0.4, -0.01, 0.01])  # voxels 0, 2, 4, 5 on the wrong side of 0
    better = torch.where(ref, wrong + 0.05, wrong - 0.05)
    right = torch.where(ref, torch.tensor(0.5), torch.tensor(-0.5))
    losses = [float(soft_segmentation_loss(p, ref, 0.0, 0.04)) for p in (wrong, better, right)]
    assert losses[0] > losses[1] > losses[2] >= 0
    assert losses[2] < 1e-3
    p = wrong.clone().requires_grad_(True)
    soft_segmentation_loss(p, ref, 0.0, 0.04).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    # descending the gradient moves foreground voxels up and background voxels down
    assert p.grad[0] < 0 and p.grad[4] < 0 and p.grad[2] > 0 and p.grad[5] > 0
    # weights and any shape
    w = torch.tensor([1.0, 2.0])[:, None, None]
    p2 = wrong.reshape(2, 3, 1).clone().requires_grad_(True)
    out = soft_segmentation_loss(p2, ref.reshape(2, 3, 1), 0.0, 0.04, weights=w)
    out.backward()
    assert out.ndim == 0 and p2.grad is not None and p2.grad.abs().sum() > 0
    with pytest.raises(OptionError):
        soft_segmentation_loss(wrong, ref, 0.0, 0.0)


@pytest.mark.parametrize("shape", [(3, 1, 32, 32), (2, 1, 16, 16, 16), (2, 1, 64, 64)])
def test_ms_ssim_loss(shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d if len(shape) == 4 else torch.nn.functional.avg_pool3d
    target = x(torch.rand(shape, generator=gen), 3, stride=1, padding=1) * 2 - 1  # smooth-ish, in [-1, 1]
    assert float(ms_ssim_loss(target, target.clone(), 2.0)) == pytest.approx(0.0, abs=1e-5)
    little = target + 0.02 * torch.randn(shape, generator=gen)
    much = target + 0.3 * torch.randn(shape, generator=gen)
    l_little, l_much = float(ms_ssim_loss(little, target, 2.0)), float(ms_ssim_loss(much, target, 2.0))
    assert 0 < l_little < l_much <= 2
    pred = much.clone().requires_grad_(True)
    ms_ssim_loss(pred, target, 2.0).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert ms_ssim(much, target, 2.0).shape == (shape[0],)


def test_ms_ssim_bad_shapes():
    with pytest.raises(DataError):
        ms_ssim_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), 2.0)
    with pytest.raises(DataError):
        ms_ssim_loss(torch.zeros(8, 8), torch.zeros(8, 8), 2.0)


# ---------------------------------------------------------------------------- settings
def test_guide_config_validation():
    assert GuideConfig("segmentation", 0.5).weight == 0.5
    with pytest.raises(OptionError, match="segmentation, ssim"):
        GuideConfig("lpips", 0.1)
    for w in (0, -1.0, float("nan")):
        with pytest.raises(OptionError, match="guide_weight"):
            GuideConfig("ssim", w)
    with pytest.raises(OptionError, match="guide_channel"):
        GuideConfig("segmentation", 0.1, channel=-1)
    with pytest.raises(OptionError, match="guide_weight"):
        NeuralConfig.preset("sci", guide="segmentation", guide_weight=0).validate()
    with pytest.raises(OptionError, match="segmentation, ssim"):
        NeuralConfig.preset("siren", guide="edges").validate()
    with pytest.raises(OptionError, match="go with guide"):
        NeuralConfig.preset("sci", guide_threshold=3.0).validate()


def test_bad_guidance_inputs_in_compress():
    data, truth = two_level((16, 16, 16))
    vol = Volume(data, "ZYX")
    fast = {"steps": 2, "seed": 0, "samples": 512}
    with pytest.raises(OptionError, match="has no channel axis"):
        compress_neural(vol, NeuralConfig.preset("sci", guide="segmentation", guide_channel=0, **fast),
                        Target.ratio(8, 0.02))
    with pytest.raises(DataError, match="guide mask has shape"):
        compress_neural(vol, NeuralConfig.preset("sci", guide="segmentation", **fast), Target.ratio(8, 0.02),
                        guide_mask=truth[:8])
    with pytest.raises(OptionError, match="guide=segmentation"):
        compress_neural(vol, NeuralConfig.preset("sci", **fast), Target.ratio(8, 0.02), guide_mask=truth)
    four = Volume(np.stack([data, data[::-1]]), "CZYX")
    with pytest.raises(OptionError, match="out of range"):
        compress_neural(four, NeuralConfig.preset("sci", guide="segmentation", guide_channel=2, **fast),
                        Target.ratio(8, 0.02))


# ---------------------------------------------------------------------------- task metric
def test_segmentation_agreement_hand_built():
    orig = np.zeros((10, 12), np.float32)
    orig[1:4, 1:4] = 1.0  # object 1: 9 voxels
    orig[6:9, 6:9] = 1.0  # object 2: 9 voxels
    dec = np.zeros_like(orig)
    dec[1:4, 1:4] = 0.9  # kept
    dec[0, 10:12] = 0.8  # a 2-voxel speck (below min_size 8: not an object)
    s = segmentation_agreement(orig, dec, threshold=0.5)
    # reference 18 voxels, decoded 11, overlap 9
    assert s["dice"] == pytest.approx(18 / 29) and s["iou"] == pytest.approx(9 / 20)
    assert (s["n_reference"], s["n_decoded"]) == (18, 11)
    assert (s["objects_reference"], s["objects_decoded"]) == (2, 1)
    assert s["objects_rel_diff"] == pytest.approx(-0.5)
    assert s["threshold"] == 0.5 and s["threshold_source"] == "given" and s["reference"] == "threshold"
    otsu = segmentation_agreement(orig, dec)
    assert 0 < otsu["threshold"] < 1 and otsu["threshold_source"] == "otsu" and otsu["dice"] == s["dice"]
    assert segmentation_agreement(orig, dec, threshold=0.5, min_size=2)["objects_decoded"] == 2
    same = segmentation_agreement(orig, orig)
    assert same["dice"] == 1.0 and same["iou"] == 1.0 and same["objects_rel_diff"] == 0.0
    # a reference mask instead of the thresholded original
    m = np.zeros(orig.shape, np.uint8)
    m[1:4, 1:4] = 5
    sm = segmentation_agreement(orig, dec, threshold=0.5, mask=m)
    assert sm["reference"] == "mask" and sm["dice"] == pytest.approx(18 / 20) and sm["objects_reference"] == 1
    json.dumps(s)


def test_object_connectivity_and_channels():
    m = np.zeros((6, 6), bool)
    m[0:3, 0:3] = True
    m[3:6, 3:6] = True  # touches the first square at one corner
    assert count_objects(m, min_size=1) == 1  # full connectivity by default
    assert count_objects(m, min_size=1, connectivity=1) == 2
    orig = np.zeros((2, 6, 6), np.float32)
    orig[1] = m
    dec = orig.copy()
    dec[1, 0:3, 0:3] = 0
    s = segmentation_agreement(orig, dec, threshold=0.5, channel=1, channel_axis=0, min_size=1)
    assert s["channel"] == 1 and s["dice"] == pytest.approx(2 * 9 / 27)
    with pytest.raises(OptionError, match="has no channel axis"):
        segmentation_agreement(orig, dec, channel=1)
    with pytest.raises(OptionError, match="out of range"):
        segmentation_agreement(orig, dec, channel=2, channel_axis=0)
    with pytest.raises(DataError, match="shape"):
        segmentation_agreement(orig, dec, mask=np.zeros((3, 3), bool))
    with pytest.raises(DataError, match="constant"):
        segmentation_agreement(np.ones((4, 4)), np.ones((4, 4)))


def test_metrics_cli_segment(tmp_path: Path, capsys):
    data, truth = two_level((16, 16, 16))
    dec = data.copy()
    dec[2:7, 3:9, 4:6] = 10.0  # erase a slab of the object
    a, b, m = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "m.npy"
    np.save(a, data)
    np.save(b, dec)
    np.save(m, truth.astype(np.uint8))
    assert main(["metrics", str(a), str(b), "--segment", "otsu", "--json"]) == 0
    seg = json.loads(capsys.readouterr().out)["segmentation"]
    assert seg["dice"] == pytest.approx(2 * 120 / (180 + 120)) and seg["objects_reference"] == 1
    assert main(["metrics", str(a), str(b), "--segment", "30", "--segment-mask", str(m)]) == 0
    text = capsys.readouterr().out
    assert "segmentation" in text and "Dice 0.8000" in text and "reference mask" in text
    assert main(["metrics", str(a), str(b), "--segment", "edges"]) == 2
    assert main(["metrics", str(a), str(b), "--segment-channel", "0"]) == 2
    assert main(["metrics", str(a), str(b), "--segment", "otsu", "--segment-channel", "0"]) == 2


# ---------------------------------------------------------------------------- fitting
def _fit(data: np.ndarray, axes: str = "ZYX", ratio: float = 12, method: str = "sci", **cfg) -> bytes:
    settings = {"steps": 150, "seed": 0, "optimizer": "adam", "lr": 1e-3, **cfg}
    return compress_neural(Volume(data, axes), NeuralConfig.preset(method, **settings), Target.ratio(ratio, 0.02))


def test_guide_none_is_the_default_byte_for_byte():
    data = blobs(16)
    fast = {"steps": 8, "seed": 0, "samples": 1024}
    default = compress_neural(Volume(data, "ZYX"), NeuralConfig.preset("sci", **fast), Target.ratio(8, 0.02))
    explicit = compress_neural(Volume(data, "ZYX"), NeuralConfig.preset("sci", guide=None, guide_weight=0.5, **fast),
                               Target.ratio(8, 0.02))
    assert default == explicit
    assert not any(k.startswith("guide") for k in VxfReader(default).header["method"]["config"])


def test_segmentation_guidance_keeps_the_segmentation():
    # a strong weight, so that 150 steps show it on every data seed tried (0-4: +0.01..+0.02
    # Dice); the default weight's gain is smaller than the noise of such a short fit
    data = blobs()
    plain = decompress(_fit(data)).data
    blob = _fit(data, guide="segmentation", guide_weight=3.0)
    guided = decompress(blob).data
    d_plain, d_guided = (segmentation_agreement(data, x)["dice"] for x in (plain, guided))
    assert d_guided > d_plain
    head = VxfReader(blob).header["method"]
    assert head["config"]["guide"] == "segmentation" and head["guide"]["reference"] == "otsu"


def test_ssim_guidance_2d_and_channel_guidance_run():
    rng = np.random.default_rng(0)
    img = np.cumsum(np.cumsum(rng.normal(size=(48, 48)), 0), 1).astype(np.float32)
    blob = _fit(img, "YX", ratio=6, method="siren", guide="ssim", steps=10)
    assert decompress(blob).shape == img.shape
    assert VxfReader(blob).header["method"]["guide"] == {"kind": "ssim", "weight": 0.3, "channel": None,
                                                         "threshold": None, "reference": None}
    data = blobs(16)
    two = np.stack([data, data[::-1].copy()])
    mask = two[1] > 0.3
    blob = _fit(two, "CZYX", ratio=8, guide="segmentation", guide_channel=1, steps=10, samples=2048)
    head = VxfReader(blob).header["method"]["guide"]
    assert head["channel"] == 1 and head["reference"] == "otsu"
    blob = compress_neural(Volume(two, "CZYX"), NeuralConfig.preset("sci", guide="segmentation", guide_channel=1,
                                                                    steps=5, seed=0), Target.ratio(8, 0.02),
                           guide_mask=mask)
    assert VxfReader(blob).header["method"]["guide"]["reference"] == "mask"
