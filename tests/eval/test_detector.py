"""Detector networks, focal loss and training on toy data."""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cai.eval import detector as det


# ----------------------------------------------------------------------------- focal loss
def test_focal_loss_hand_cases():
    zero = torch.zeros(1)
    # p = 0.5: (1 - 0.5)^2 * ln 2 for either label
    assert float(det.focal_loss(zero, torch.ones(1))) == pytest.approx(0.25 * math.log(2))
    assert float(det.focal_loss(zero, torch.zeros(1))) == pytest.approx(0.25 * math.log(2))
    # logit ln 3 -> p = 0.75; anomalous: (0.25)^2 * -ln 0.75; normal: (0.75)^2 * -ln 0.25
    z = torch.tensor([math.log(3.0)])
    assert float(det.focal_loss(z, torch.ones(1))) == pytest.approx(0.0625 * -math.log(0.75))
    assert float(det.focal_loss(z, torch.zeros(1))) == pytest.approx(0.5625 * -math.log(0.25))
    # alpha weights the anomalous term by alpha and the normal term by 1 - alpha
    assert float(det.focal_loss(zero, torch.ones(1), alpha=0.25)) == pytest.approx(0.25 * 0.25 * math.log(2))
    assert float(det.focal_loss(zero, torch.zeros(1), alpha=0.25)) == pytest.approx(0.75 * 0.25 * math.log(2))
    # soft target 0.5 at p = 0.5: half of each term
    assert float(det.focal_loss(zero, torch.full((1,), 0.5))) == pytest.approx(0.25 * math.log(2))
    # confident and right: ~0; no overflow for huge logits
    assert float(det.focal_loss(torch.tensor([50.0]), torch.ones(1))) < 1e-20
    assert math.isfinite(float(det.focal_loss(torch.tensor([-200.0]), torch.ones(1))))


def test_focal_gamma_zero_is_bce_and_reductions():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(4, 1, 8, 8, generator=g) * 3, (torch.rand(4, 1, 8, 8, generator=g) > 0.7).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    assert float(det.focal_loss(logits, target, gamma=0.0)) == pytest.approx(float(bce), rel=1e-6)
    per_pixel = det.focal_loss(logits, target, reduction="none")
    assert per_pixel.shape == logits.shape
    assert float(det.focal_loss(logits, target, reduction="sum")) == pytest.approx(float(per_pixel.sum()), rel=1e-6)
    # focusing lowers the loss of easy pixels most
    assert float(det.focal_loss(logits, target, gamma=2.0)) < float(bce)
    with pytest.raises(ValueError, match="shape"):
        det.focal_loss(logits, target[:, :, :4])
    with pytest.raises(ValueError, match="reduction"):
        det.focal_loss(logits, target, reduction="max")


# ----------------------------------------------------------------------------- networks
def test_draem_unet_shapes():
    net = det.DraemDiscriminative(3, width=4)
    assert net(torch.zeros(2, 3, 64, 96)).shape == (2, 1, 64, 96)
    assert len(net.encoders) == 6 and net.encoders[-1][0].out_channels == 32  # widths b .. 8b


def test_lite0_head_shapes():
    head = det.Lite0SegHead((24, 40, 112), width=8)
    feats = [torch.zeros(2, 24, 16, 24), torch.zeros(2, 40, 8, 12), torch.zeros(2, 112, 4, 6)]
    assert head(feats, (64, 96)).shape == (2, 1, 64, 96)


def test_input_shape_and_config_checks():
    assert det.input_shape((1024, 1024), 160) == (160, 160)
    assert det.input_shape((1263, 500), 160) == (416, 160)  # aspect kept, multiples of 32
    with pytest.raises(ValueError, match="multiple of 32"):
        det.DetectorConfig(size=100)
    with pytest.raises(ValueError, match="normal_fraction"):
        det.DetectorConfig(normal_fraction=1.0)
    with pytest.raises(ValueError, match="unknown profile"):
        det.get_profile("gpu")
    assert det.get_profile("paper").epochs == 200 and det.get_profile("paper").width == 64
    assert det.get_profile("cpu", epochs=3, size=None).epochs == 3


def test_profile_description_names_what_ran():
    from cai.eval.evaluate import describe_profile

    paper = describe_profile(det.get_profile("paper"))
    assert "base width 64" in paper and "256 px" in paper and paper.endswith("the paper's detector setting.")
    reduced = describe_profile(det.get_profile("paper", width=16, size=128, epochs=16))
    assert "base width 16" in reduced and "128 px" in reduced and "16 epochs" in reduced
    assert "paper's detector setting" not in reduced and "overrides (size 128, epochs 16, width 16)" in reduced
    cpu = describe_profile(det.get_profile("cpu"))
    assert "NOT the paper's" in cpu and "160 px" in cpu and "overrides" not in cpu


def test_epoch_order_normal_share():
    rng = np.random.default_rng(0)
    is_normal = np.array([True] * 5 + [False] * 40)
    order = det._epoch_order(is_normal, 0.2, rng)
    assert sorted(set(order[~is_normal[order]])) == list(range(5, 45))  # every anomaly once
    assert (~is_normal[order]).sum() == 40 and is_normal[order].sum() == 10  # 10 / 50 = 0.2
    assert det._epoch_order(is_normal, 0.0, rng).size == 40


# ----------------------------------------------------------------------------- training
def _toy_set(n_normal=6, n_anomalous=18, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n_normal + n_anomalous):
        image = rng.integers(90, 140, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), bool)
        if i >= n_normal:
            r, c = rng.integers(4, size - 20, 2)
            mask[r:r + 14, c:c + 14] = True
            image[mask] = 250
        images.append(image)
        masks.append(mask)
    return images, masks


@pytest.mark.parametrize("profile,overrides", [
    ("cpu", {"size": 64, "epochs": 6, "batch_size": 8, "width": 16}),
    ("paper", {"size": 64, "epochs": 4, "batch_size": 8, "width": 4, "lr": 1e-3}),
])
def test_training_reduces_loss_and_is_seeded(profile, overrides, tmp_path):
    images, masks = _toy_set()
    config = det.get_profile(profile, **overrides)
    log = tmp_path / "log.jsonl"
    d = det.train_detector(images, masks, config, seed=1, progress=False, log_path=log)
    losses = [h["loss"] for h in d.history]
    assert len(losses) == config.epochs and losses[-1] < 0.7 * losses[0]
    assert len(log.read_text().splitlines()) == config.epochs
    again = det.train_detector(images, masks, config, seed=1, progress=False)
    assert [h["loss"] for h in again.history] == pytest.approx(losses, rel=1e-5)
    maps = d.predict(images[-2:], [(100, 80), (64, 64)])
    assert [m.shape for m in maps] == [(100, 80), (64, 64)]
    assert all(m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1 for m in maps)


def test_trained_cpu_detector_localises_toy_defects():
    images, masks = _toy_set(seed=0)
    config = det.get_profile("cpu", size=64, epochs=15, batch_size=8, width=16)
    d = det.train_detector(images, masks, config, seed=0, progress=False)
    test_images, test_masks = _toy_set(n_normal=2, n_anomalous=4, seed=7)
    maps = d.predict(test_images)
    from cai.eval.metrics import pixel_metrics
    m = pixel_metrics(maps, test_masks)
    assert m["pixel_auroc"] > 0.95 and m["image_auroc"] == 1.0


def test_train_detector_checks_inputs():
    images, masks = _toy_set(2, 2)
    with pytest.raises(ValueError, match="as many masks"):
        det.train_detector(images, masks[:-1], det.get_profile("cpu", size=64, epochs=1))
    with pytest.raises(ValueError, match="uint8"):
        det.train_detector([im.astype(float) for im in images], masks, det.get_profile("cpu", size=64, epochs=1))
