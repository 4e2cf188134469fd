"""Eq. 5's mask-weighted loss and the latent-grid mask, against hand cases and a brute-force reference."""
import numpy as np
import pytest
import torch

from cai.cdm.loss import latent_mask, masked_diffusion_loss


def _reference_loss(pred, target, mask):
    """Brute force of the documented definition: per sample, sum over channels and cells of
    (y * (target - pred))^2 divided by C * sum(y); mean over samples with sum(y) > 0."""
    pred, target, mask = (np.asarray(a, dtype=np.float64) for a in (pred, target, mask))
    B, C, H, W = pred.shape
    values = []
    for b in range(B):
        area = sum(mask[b, 0, r, c] for r in range(H) for c in range(W))
        if area <= 1e-6:
            continue
        total = 0.0
        for ch in range(C):
            for r in range(H):
                for c in range(W):
                    total += (mask[b, 0, r, c] * (target[b, ch, r, c] - pred[b, ch, r, c])) ** 2
        values.append(total / (C * area))
    return float(np.mean(values)) if values else 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_pixels_outside_the_mask_do_not_count(dtype):
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(2, 4, 6, 6, generator=gen).to(dtype)
    pred = torch.randn(2, 4, 6, 6, generator=gen).to(dtype)
    mask = torch.zeros(2, 1, 6, 6)
    mask[0, 0, 1:3, 2:5] = 1
    mask[1, 0, 4, 0] = 1
    changed = pred.clone()
    outside = (mask == 0).expand_as(pred)
    changed[outside] = 1000.0  # a wildly different prediction wherever the mask is 0
    assert masked_diffusion_loss(pred, target, mask) == masked_diffusion_loss(changed, target, mask)
    inside = pred.clone()
    inside[0, 0, 1, 2] += 1  # but one change inside the mask does count
    assert masked_diffusion_loss(inside, target, mask) != masked_diffusion_loss(pred, target, mask)


def test_hand_cases():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2)
    one_cell = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(masked_diffusion_loss(pred, target, one_cell)) == pytest.approx(1.0)
    # error 3 in one cell of one channel only: (3^2) / (C=2 * area 1)
    target2 = torch.zeros(1, 2, 2, 2)
    target2[0, 1, 0, 0] = 3
    assert float(masked_diffusion_loss(pred, target2, one_cell)) == pytest.approx(4.5)
    # normalised by area: the same per-cell error over 1 or 4 cells gives the same loss
    full = torch.ones(1, 1, 2, 2)
    assert float(masked_diffusion_loss(pred, target, full)) == pytest.approx(1.0)
    # a half-weight cell (area interpolation of a thin defect): (0.5 * 1)^2 / 0.5 = 0.5
    half = torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]])
    assert float(masked_diffusion_loss(pred, target, half)) == pytest.approx(0.5)


def test_small_and_large_defects_weigh_the_same_per_sample():
    pred = torch.zeros(2, 1, 4, 4)
    target = torch.ones(2, 1, 4, 4)
    target[1] = 2.0
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, 0, 0] = 1      # 1-cell defect, error 1
    mask[1] = 1               # 16-cell defect, error 2 -> 4
    assert float(masked_diffusion_loss(pred, target, mask)) == pytest.approx((1 + 4) / 2)


def test_empty_masks_are_left_out_and_all_empty_gives_zero_with_zero_grad():
    pred = torch.zeros(2, 4, 3, 3, requires_grad=True)
    target = torch.ones(2, 4, 3, 3)
    mask = torch.zeros(2, 1, 3, 3)
    mask[1, 0, 1, 1] = 1
    assert float(masked_diffusion_loss(pred, target, mask).detach()) == pytest.approx(1.0)  # sample 0 excluded
    empty = masked_diffusion_loss(pred, target, torch.zeros(2, 1, 3, 3))
    assert float(empty.detach()) == 0.0
    empty.backward()
    assert pred.grad is not None and torch.count_nonzero(pred.grad) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64)
    target = torch.randn(3, 4, 5, 5, generator=gen, dtype=torch.float64)
    mask = (torch.rand(3, 1, 5, 5, generator=gen, dtype=torch.float64) > 0.6).double()
    mask[2] = 0  # one empty sample
    mask[1] *= 0.5
    assert float(masked_diffusion_loss(pred, target, mask)) == pytest.approx(_reference_loss(pred, target, mask),
                                                                            rel=1e-6)


def test_gradient_reaches_only_cells_inside_the_mask():
    pred = torch.zeros(1, 4, 4, 4, requires_grad=True)
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 2:, :2] = 1
    masked_diffusion_loss(pred, torch.ones(1, 4, 4, 4), mask).backward()
    assert torch.count_nonzero(pred.grad[:, :, mask[0, 0] == 0]) == 0
    assert torch.all(pred.grad[:, :, mask[0, 0] == 1] != 0)


@pytest.mark.parametrize("form", ["float", "bool", "3d"])
def test_latent_mask_keeps_area_and_thin_lines(form):
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 5, :] = 1  # a 1-pixel line: nearest downsampling would lose it
    given = mask.bool() if form == "bool" else mask[:, 0] if form == "3d" else mask
    small = latent_mask(given, (4, 4))
    assert small.shape == (1, 1, 4, 4)
    assert float(small.sum()) == pytest.approx(float(mask.sum()) / 16)
    assert torch.allclose(small[0, 0, 1], torch.full((4,), 0.25))
    assert float(small[0, 0, [0, 2, 3]].sum()) == 0


def test_shape_and_value_errors():
    with pytest.raises(ValueError, match="pred and target"):
        masked_diffusion_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 3), torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="mask must be"):
        masked_diffusion_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        latent_mask(torch.full((1, 1, 4, 4), 2.0), (2, 2))
    with pytest.raises(ValueError, match="mask must be"):
        latent_mask(torch.zeros(1, 2, 4, 4), (2, 2))
