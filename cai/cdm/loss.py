"""The CDM's mask-weighted diffusion loss (Eq. 5 of Wang, Hu et al. 2025) and the latent-grid mask.

Only the anomaly region teaches the embedding: the squared error between the true noise and the
UNet's prediction is weighted by the pseudo mask, resized to the latent grid, and normalised by the
mask's area.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def latent_mask(mask: torch.Tensor, size) -> torch.Tensor:
    """The pseudo mask y_loc on the latent grid, by area interpolation.

    Parameters
    ----------
    mask : (B, 1, H, W) or (B, H, W) tensor, values in [0, 1] (bool allowed)
        Pseudo mask at image resolution.
    size : (int, int)
        (rows, cols) of the latent grid, e.g. (H / 8, W / 8) for Stable Diffusion.

    Returns
    -------
    (B, 1, h, w) float32 tensor in [0, 1]
        Each latent cell holds the share of its image pixels that are defect, so a thin crack
        narrower than one latent cell keeps a fractional weight instead of vanishing (nearest) or
        spreading over the neighbours (bilinear). Area interpolation keeps the mean, so the mask's
        area in latent cells is its pixel area divided by the downsampling factor squared.

    Raises
    ------
    ValueError
        If ``mask`` is not 3-D or 4-D with one channel, or holds values outside [0, 1].
    """
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W) or (B, H, W), got shape {tuple(mask.shape)}")
    mask = mask.float()
    if mask.numel() and (mask.min() < 0 or mask.max() > 1):
        raise ValueError("mask values must lie in [0, 1]")
    return F.interpolate(mask, size=tuple(int(s) for s in size), mode="area")


def masked_diffusion_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                          eps: float = 1e-6) -> torch.Tensor:
    """Eq. 5: ``|| y_loc * (target - pred) ||^2``, normalised by the mask area.

    For sample b with latent mask y_b (values in [0, 1]) and C latent channels::

        loss_b = sum_{c,h,w} (y_b[h, w] * (target - pred)[b, c, h, w])^2 / (C * sum_{h,w} y_b[h, w])

    i.e. the mean squared error per latent channel over the defect area (for a binary mask, exactly
    the MSE over the masked cells); the returned loss is the mean of ``loss_b`` over the samples
    whose mask is not empty (``sum y_b > eps``). Normalising each sample by its own area keeps small
    defects from being drowned by large ones. Samples with an empty mask teach nothing: they are
    left out; if every mask in the batch is empty the loss is ``0 * pred.sum()`` (zero, with a
    zero gradient, still attached to the graph so distributed training does not hang).

    ``target`` is the noise epsilon for an epsilon-prediction model (Eq. 5) or the velocity for a
    v-prediction model; the weighting is the same.

    Parameters
    ----------
    pred, target : (B, C, h, w) float tensor
    mask : (B, 1, h, w) or (B, h, w) float tensor in [0, 1]
        y_loc on the latent grid (see :func:`latent_mask`).

    Returns
    -------
    0-d float32 tensor

    Raises
    ------
    ValueError
        If the shapes disagree.

    Example
    -------
    >>> pred = torch.zeros(1, 4, 2, 2); target = torch.ones(1, 4, 2, 2)
    >>> m = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    >>> float(masked_diffusion_loss(pred, target, m))
    1.0
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target must be equal (B, C, h, w) tensors, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.shape != (pred.shape[0], 1, *pred.shape[2:]):
        raise ValueError(f"mask must be (B, 1, h, w) = {(pred.shape[0], 1, *pred.shape[2:])}, "
                         f"got {tuple(mask.shape)}")
    mask = mask.float()
    err = (mask * (target.float() - pred.float())) ** 2
    area = mask.sum(dim=(1, 2, 3))
    keep = area > eps
    if not bool(keep.any()):
        return pred.sum() * 0.0
    per_sample = err.sum(dim=(1, 2, 3))[keep] / (pred.shape[1] * area[keep])
    return per_sample.mean()
