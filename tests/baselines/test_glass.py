"""GLASS local anomaly synthesis (glass-las): blend formula, masks, augmentations, determinism."""
import numpy as np
import pytest

from cai.baselines import make_synthesizer
from cai.baselines.glass import GLASS_AUGMENTERS, GLASSSynthesizer, glass_augment, glass_mask
from cai.engine.synthesizer import PseudoAnomaly


def _texture(h=40, w=48):
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_blend_follows_the_glass_formula_with_beta_in_range():
    normal = np.full((64, 64, 3), 100, np.uint8)
    tex = np.full((64, 64, 3), 200, np.uint8)
    synth = GLASSSynthesizer([tex], n_ops=0, per_image=20)
    results = synth.synthesize(normal, np.ones((64, 64), bool), 0, 3)
    assert all(isinstance(r, PseudoAnomaly) for r in results)
    for r in results:
        inside = r.image[r.mask]
        assert (r.image[~r.mask] == 100).all()
        # out = (1 - beta) * 200 + beta * 100 = 200 - 100 beta, beta in [0.2, 0.8]
        beta = (200.0 - inside.astype(float)) / 100.0
        assert np.ptp(beta) <= 0.011 and 0.195 <= beta.mean() <= 0.805


def test_masks_stay_in_the_foreground_and_are_never_empty():
    fg = np.zeros((64, 64), bool)
    fg[10:30, 20:50] = True
    synth = GLASSSynthesizer([_texture()])
    for r in synth.synthesize(np.zeros((64, 64, 3), np.uint8), fg, 1, 0):
        assert r.mask.any() and not (r.mask & ~fg).any()


def test_mask_combinations_cover_union_intersection_and_single():
    from cai.baselines.perlin import perlin_mask
    fg = np.ones((48, 48), bool)
    seen = set()
    for s in range(60):
        m = glass_mask((48, 48), fg, np.random.default_rng(s))
        rng = np.random.default_rng(s)  # replay the same draws
        first = perlin_mask((48, 48), rng, 0.5, 6, rotate=True)
        second = perlin_mask((48, 48), rng, 0.5, 6, rotate=True)
        u = rng.uniform()
        kind = "union" if u > 2 / 3 else ("intersection" if u > 1 / 3 else "single")
        expected = {"union": first | second, "intersection": first & second, "single": first}[kind]
        assert (m == expected).all()
        seen.add(kind)
    assert seen == {"union", "intersection", "single"}


def test_augment_draws_three_distinct_ops_and_keeps_shape():
    for s in range(20):
        out, ops = glass_augment(_texture(), rng=s)
        assert out.shape == (40, 48, 3) and out.dtype == np.uint8
        assert len(set(ops)) == 3 and set(ops) <= set(GLASS_AUGMENTERS)
    grey, ops = glass_augment(_texture()[..., 0], rng=1, n_ops=9)
    assert grey.shape == (40, 48) and len(ops) == 9


def test_same_seed_same_bytes_and_registry_name():
    normal = _texture(64, 64)
    a = make_synthesizer("glass-las").synthesize(normal, np.ones((64, 64), bool), 2, 9)
    b = make_synthesizer("glass-las").synthesize(normal, np.ones((64, 64), bool), 2, 9)
    assert [r.image.tobytes() for r in a] == [r.image.tobytes() for r in b]
    assert make_synthesizer("glass-las").name == "glass-las"
    with pytest.raises(ValueError, match="beta_range"):
        GLASSSynthesizer([_texture()], beta_range=(0.9, 0.1))
