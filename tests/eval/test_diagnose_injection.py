"""recipes/evaluate/diagnose_injection.py: the real defects' figures, against hand-computed values."""
import cv2
import numpy as np
import pytest

from cai.eval.targets import load_eval_target


def test_real_defects_contrast_and_label_area(evaluate_recipe, tmp_path):
    module = evaluate_recipe("diagnose_injection")
    (tmp_path / "normals").mkdir()
    cv2.imwrite(str(tmp_path / "normals" / "n0.png"), np.full((256, 256, 3), 100, np.uint8))
    for sub in ("images/dent", "masks/dent", "images/good"):
        (tmp_path / "test" / sub).mkdir(parents=True)
    image = np.full((256, 256, 3), 100, np.uint8)
    mask = np.zeros((256, 256), np.uint8)
    mask[100:132, 60:124] = 255  # 32 x 64 = 2048 px = 3.125 % of the image
    image[mask > 0] = 40
    cv2.imwrite(str(tmp_path / "test/images/dent/d0.png"), image)
    cv2.imwrite(str(tmp_path / "test/masks/dent/d0.png"), mask)
    cv2.imwrite(str(tmp_path / "test/images/good/g0.png"), np.full((256, 256, 3), 100, np.uint8))
    target = load_eval_target("folder", tmp_path / "normals", test_root=str(tmp_path / "test"))
    contrasts, areas = module.real_defects(target)
    assert contrasts == [pytest.approx(60.0, abs=1e-3)]  # |40 - 100|, the normal image skipped
    assert areas == [pytest.approx(3.125)]
