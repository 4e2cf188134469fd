"""recipes/evaluate/diagnose_injection.py: the texture null of a footprint, against a brute-force reference."""
import numpy as np


def test_texture_contrasts_equal_the_contrast_of_the_moved_mask(evaluate_recipe):
    module = evaluate_recipe("diagnose_injection")
    rng = np.random.default_rng(3)
    normal = rng.integers(0, 255, (64, 80), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[30:33, 20:40] = True  # a 3 x 20 scratch
    fg = np.ones((64, 80), bool)
    fg[:, 70:] = False  # placements reaching the right edge leave the part
    got = module.texture_contrasts(normal, mask, fg, np.random.default_rng(7), n=40)
    # brute force: the same draws, the mask moved there, module.contrast on the whole image
    draw = np.random.default_rng(7)
    h, w = 3 + 10, 20 + 10
    tops, lefts = draw.integers(0, 64 - h + 1, 40), draw.integers(0, 80 - w + 1, 40)
    want = []
    for top, left in zip(tops, lefts):
        if left + w > 70:
            continue
        moved = np.zeros_like(mask)
        moved[top + 5:top + 8, left + 5:left + 25] = True
        want.append(abs(module.contrast(normal, moved)))
    assert len(want) >= 5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    flat = module.texture_contrasts(np.full((64, 80), 90, np.uint8), mask, fg, np.random.default_rng(7))
    assert flat.size and np.all(flat == 0)
    assert module.texture_contrasts(normal, np.ones((64, 80), bool), fg, np.random.default_rng(7)).size == 0
