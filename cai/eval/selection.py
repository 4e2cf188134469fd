"""Choosing a synthesizer on a few real defects: how often the choice holds on the rest of them.

A user with k real defective images of their own part can score candidate synthesizers on those k
(``cai-hub evaluate`` with them as the test set) and keep the best. :func:`few_defect_choice` measures
what that is worth from evaluation runs already made on a larger test set: it draws k defective
images (or k clusters of images showing the same defect) as the user's validation defects, chooses the
candidate with the best pixel AP there (mean over the detector seeds), and scores the choice and a fixed
default on every *other* test image. Repeated over many draws, this gives the distribution of the
held-out gain of choosing over keeping the default.

Inputs are the per-image score histograms of :mod:`cai.eval.bootstrap` (one ``(pos, neg)`` pair per
seed, as :class:`cai.eval.collect.SynthRuns` holds them), so a draw costs a few matrix products.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bootstrap import _seed_mean_ap  # (R,) seed-mean pixel AP of each row of an (R, n) image weighting
from .bootstrap import cluster_codes


@dataclass(frozen=True)
class ChoiceDraws:
    """Outcome of :func:`few_defect_choice` over ``n`` draws of ``k`` validation units.

    chosen : (n,) int ndarray — index into ``candidates`` of each draw's choice.
    best : (n,) int ndarray — index of the candidate with the best held-out AP in each draw.
    held_out_ap : (n, c) float ndarray — every candidate's held-out pixel AP in [0, 1] (seed mean).
    default : int — index of the default candidate.
    validation : (n, n_images) bool ndarray — the test images each draw used for the choice (the others
    are held out).
    candidates : tuple of str.
    units : int — validation units available (defective images, or clusters holding one).
    """

    chosen: np.ndarray
    best: np.ndarray
    held_out_ap: np.ndarray
    default: int
    validation: np.ndarray
    candidates: tuple
    units: int

    @property
    def gain(self) -> np.ndarray:
        """(n,) held-out AP of the choice minus that of the default, in [−1, 1]."""
        rows = np.arange(len(self.chosen))
        return self.held_out_ap[rows, self.chosen] - self.held_out_ap[:, self.default]

    def summary(self, loss: float = 0.05) -> dict:
        """``picked_best`` (share of draws whose choice is the held-out best), ``gain_mean``, ``gain_p05``,
        ``gain_p95`` (held-out gain over the default, AP in [0, 1] units), ``loss_share`` (share of draws
        losing more than ``loss`` to the default), ``chosen`` (candidate -> share of draws)."""
        gain = self.gain
        counts = np.bincount(self.chosen, minlength=len(self.candidates)) / len(self.chosen)
        return {"draws": int(len(gain)), "units": int(self.units),
                "picked_best": float(np.mean(self.chosen == self.best)),
                "gain_mean": float(np.mean(gain)), "gain_p05": float(np.quantile(gain, 0.05)),
                "gain_p95": float(np.quantile(gain, 0.95)), "loss_share": float(np.mean(gain < -loss)),
                "chosen": {c: float(s) for c, s in zip(self.candidates, counts)}}


def few_defect_choice(runs: dict, k: int, default: str, n_draws: int = 2000, seed: int = 0,
                      clusters=None, margin: float = 0.0) -> ChoiceDraws:
    """Draw ``k`` validation units, choose on them, score the choice on the other test images.

    Parameters
    ----------
    runs : dict str -> sequence of (pos, neg)
        Candidate name -> its per-seed histograms, each ``pos``/``neg`` an (n_images, n_bins) count array
        over the same test images; every candidate has the same number of seeds (paired seeds). The
        order of the dict breaks ties in the choice.
    k : int
        Validation units per draw, 1 <= k < the number of units.
    default : str
        The candidate kept without a choice (one of ``runs``).
    clusters : sequence of hashable, one per test image, or None
        Images sharing a label form one unit (the same defect photographed again); a unit is drawn with
        all its images, defective or not, and none of them is held out. None: every image is its own
        unit. Only units holding a defective image are drawn.
    margin : float
        AP in [0, 1] by which the best candidate on the validation units must beat the default there to
        be chosen instead of it (0: the best is chosen, ties going to the first in ``runs``' order).

    Returns
    -------
    ChoiceDraws
        Draws are without replacement inside each draw; a draw whose held-out images hold no defect
        cannot occur (``k`` is below the number of units).
    """
    names = list(runs)
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if default not in runs:
        raise ValueError(f"default {default!r} is not among the candidates {names}")
    seeds = {len(r) for r in runs.values()}
    if len(seeds) != 1 or 0 in seeds:
        raise ValueError(f"every candidate needs the same (non-zero) number of seeds, got {sorted(seeds)}")
    first_pos = next(iter(runs.values()))[0][0]
    n = first_pos.shape[0]
    if any(pos.shape[0] != n or neg.shape[0] != n for r in runs.values() for pos, neg in r):
        raise ValueError("candidates were scored on different test sets")
    labels = cluster_codes(clusters, n)
    units = np.unique(labels[first_pos.sum(axis=1) > 0])  # units holding a defective image
    if not 1 <= k < len(units):
        raise ValueError(f"k must be in [1, {len(units) - 1}] ({len(units)} defective units), got {k}")
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(units, size=k, replace=False) for _ in range(n_draws)])  # (R, k)
    in_val = np.zeros((n_draws, labels.max() + 1), bool)
    np.put_along_axis(in_val, picks, True, axis=1)
    validation = in_val[:, labels]  # (R, n)
    val, held = validation.astype(np.float64), (~validation).astype(np.float64)  # image weights
    val_ap = np.stack([_seed_mean_ap(runs[c], val) for c in names], axis=1)  # (R, C)
    held_ap = np.stack([_seed_mean_ap(runs[c], held) for c in names], axis=1)
    chosen = np.argmax(np.nan_to_num(val_ap, nan=-np.inf), axis=1)  # argmax: the first of ties
    d = names.index(default)
    if margin > 0:  # the default is kept unless the best beats it by more than the margin
        lead = val_ap[np.arange(n_draws), chosen] - val_ap[:, d]
        chosen = np.where(np.nan_to_num(lead, nan=0.0) > margin, chosen, d)
    return ChoiceDraws(chosen=chosen, best=np.argmax(held_ap, axis=1), held_out_ap=held_ap,
                       default=d, validation=validation, candidates=tuple(names),
                       units=len(units))


__all__ = ["ChoiceDraws", "few_defect_choice"]
