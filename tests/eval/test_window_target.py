"""recipes/evaluate/window_target.py: square windows, defect-free normals, one test window per photo,
spindle positions never split between training and testing."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

@pytest.fixture(scope="module")
def recipe(evaluate_recipe):
    return evaluate_recipe("window_target")


def test_windows_cover_the_long_side_evenly(recipe):
    assert recipe.windows(40, 100) == [(0, 0, 40, 40), (0, 20, 40, 60), (0, 40, 40, 80), (0, 60, 40, 100)]
    assert recipe.windows(30, 30) == [(0, 0, 30, 30)]
    assert recipe.windows(90, 40) == [(0, 0, 40, 40), (17, 0, 57, 40), (33, 0, 73, 40), (50, 0, 90, 40)]  # 50/3 rounded
    # aspect 2: 20 px high rows at y 0, 10, 20 (ceil(40 / 20) + 1 = 3), 40 px wide at the same x
    wide = recipe.windows(40, 100, aspect=2)
    assert len(wide) == 12 and wide[:4] == [(0, 0, 20, 40), (0, 20, 20, 60), (0, 40, 20, 80), (0, 60, 20, 100)]
    assert sorted({w[0] for w in wide}) == [0, 10, 20] and all(w[2] - w[0] == 20 for w in wide)


def test_split_windows_keeps_a_margin_and_picks_the_fullest_window(recipe):
    mask = np.zeros((40, 100), bool)
    mask[10:14, 85:88] = True  # x 85..87: only window 3 (x 60..100)
    free, worst = recipe.split_windows(mask, margin=0)
    assert free == [0, 1, 2] and worst == 3
    free, _ = recipe.split_windows(mask, margin=6)  # dilated to x >= 79: touches window 2 (x < 80)
    assert free == [0, 1]
    assert recipe.split_windows(np.zeros((40, 100), bool), 4) == ([0, 1, 2, 3], None)


def _photo(root: Path, stamp: str, pos: str, box) -> None:
    rng = np.random.default_rng(int(stamp[-3:]))
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "label").mkdir(parents=True, exist_ok=True)
    name = f"01_{stamp}_{pos}_crop_1"
    cv2.imwrite(str(root / "data" / f"{name}.jpg"), rng.integers(0, 255, (40, 100, 3), np.uint8))
    y0, x0, y1, x1 = box
    doc = {"shapes": [{"label": "Pitting", "shape_type": "polygon", "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}],
           "imagePath": f"{name}.jpg", "imageData": None, "imageHeight": 40, "imageWidth": 100}
    (root / "label" / f"{name}.json").write_text(json.dumps(doc))


def test_main_writes_a_folder_target_without_sharing_positions(recipe, tmp_path):
    src = tmp_path / "bs"
    for i, pos in enumerate(["100000_000", "200000_090", "300000_180", "400000_270"]):
        for t in range(2):
            _photo(src, f"2009010100{i}{t}", pos, (10, 5 + 20 * t, 16, 12 + 20 * t))
    out = tmp_path / "target"
    assert recipe.main(["--bsdata", str(src), "--out", str(out), "--size", "32", "--margin", "2"]) == 0
    info = json.loads((out / "target.json").read_text())
    assert info["test_positions"] == ["200000_090"]  # sorted positions, index % 3 == 1
    tests = sorted(p.name for p in (out / "test" / "images" / "pitting").iterdir())
    assert len(tests) == 2 and all("_200000_090_" in n for n in tests)
    assert not any("_200000_090_" in p.name for p in (out / "normals").iterdir())
    assert len(list((out / "normals").iterdir())) == info["written_train"] > 0
    for name in tests:
        mask = cv2.imread(str(out / "test" / "masks" / "pitting" / name), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (32, 32) and set(np.unique(mask)) == {0, 255}
    wide = tmp_path / "wide"
    assert recipe.main(["--bsdata", str(src), "--out", str(wide), "--size", "16", "--aspect", "2"]) == 0
    for image in (wide / "normals").iterdir():
        assert cv2.imread(str(image)).shape == (16, 32, 3)
    with pytest.raises(SystemExit, match="not empty"):
        recipe.main(["--bsdata", str(src), "--out", str(out)])


def test_oracle_sets_drop_every_pit_of_a_test_position(recipe, tmp_path):
    import datasets
    rows = {"image": [b"x"] * 5, "mask": [b"y"] * 5,
            "anomaly_class": ["pits", "pits", "pits", "crack", "pits"],
            "source": ["bsdata_pitting", "bsdata_pitting", "bsdata_pitting", "cracks_mixed", "bsdata_pitting"],
            "original_file": ["data/01_200901010000_100000_000_crop_1.jpg", "data/01_200901010000_200000_090_crop_2.jpg",
                              "data/KGT2-V-331-A09_crop_3.jpg", "cracks/200000_090.png",
                              "data/01_200901020000_200000_090_crop_1.jpg"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "daad"))
    counts = recipe.write_oracle_sets(str(tmp_path / "daad"), ["200000_090"], tmp_path / "out")
    assert counts == {"oracle_daad_rows": 3, "oracle_pits_rows": 2, "daad_rows": 5}
    daad = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "oracle_daad" / "data"), split="train")
    pits = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out" / "oracle_pits" / "data"), split="train")
    assert daad["original_file"] == [rows["original_file"][i] for i in (0, 2, 3)]  # the crack with a look-alike name stays
    assert pits["original_file"] == [rows["original_file"][i] for i in (0, 2)]


def test_windows_of_a_given_length_on_a_square_photo(recipe):
    # 100 x 100 photo, 40 px windows: ceil(100 / 40) + 1 = 4 starts per axis (0, 20, 40, 60)
    boxes = recipe.windows(100, 100, side=40)
    assert len(boxes) == 16 and boxes[0] == (0, 0, 40, 40) and boxes[-1] == (60, 60, 100, 100)
    assert recipe.windows(30, 50, side=100) == recipe.windows(30, 50)  # never longer than the short side


def test_mvtec_defect_photos_make_a_target(recipe, tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "mvtec"
    (root / "carpet" / "test" / "color").mkdir(parents=True)
    (root / "carpet" / "ground_truth" / "color").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(root / "carpet" / "test" / "color" / f"{i:03d}.png"), rng.integers(0, 255, (64, 64, 3), np.uint8))
        mask = np.zeros((64, 64), np.uint8)
        mask[5 + 10 * i:12 + 10 * i, 40:50] = 255
        cv2.imwrite(str(root / "carpet" / "ground_truth" / "color" / f"{i:03d}_mask.png"), mask)
    out = tmp_path / "target"
    assert recipe.main(["--mvtec", str(root), "--category", "carpet", "--defect", "color", "--window", "32",
                        "--test-every", "2", "--size", "16", "--margin", "1", "--out", str(out)]) == 0
    tests = sorted(p.name for p in (out / "test" / "images" / "color").iterdir())
    assert [n.rsplit("_w", 1)[0] for n in tests] == ["carpet_color_001", "carpet_color_003"]  # index % 2 == 1
    assert not any(p.name.startswith(("carpet_color_001", "carpet_color_003")) for p in (out / "normals").iterdir())
    for name in tests:
        mask = cv2.imread(str(out / "test" / "masks" / "color" / name), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (16, 16) and mask.max() == 255
    with pytest.raises(SystemExit, match="--category and --defect"):
        recipe.main(["--mvtec", str(root), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="for --bsdata only"):
        recipe.main(["--mvtec", str(root), "--category", "carpet", "--defect", "color", "--daad", "d",
                     "--out", str(tmp_path / "y")])


def test_crackforest_photos_make_a_target_without_the_unreadable_or_unlabelled(recipe, tmp_path):
    import scipy.io
    rng = np.random.default_rng(5)
    root = tmp_path / "cfd"
    (root / "image").mkdir(parents=True)
    (root / "groundTruth").mkdir()
    for i in range(1, 7):
        cv2.imwrite(str(root / "image" / f"{i:03d}.jpg"), rng.integers(0, 255, (32, 48, 3), np.uint8))
        segmentation = np.ones((32, 48), np.uint8)
        segmentation[20:23, 2:20] = 2  # a crack in the lower left: the upper right windows are free
        if i != 6:  # 006 has no ground truth: skipped, counted
            scipy.io.savemat(str(root / "groundTruth" / f"{i:03d}.mat"),
                             {"groundTruth": {"Segmentation": segmentation}})
    (root / "groundTruth" / "005.mat").write_bytes(b"not a mat file")  # unreadable: counted, not guessed
    out = tmp_path / "target"
    assert recipe.main(["--crackforest", str(root), "--window", "16", "--test-every", "2", "--size", "16",
                        "--margin", "1", "--out", str(out)]) == 0
    info = json.loads((out / "target.json").read_text())
    assert (info["photos"], info["mask_unreadable"], info["skipped_no_mask"]) == (4, 1, 1)
    assert info["test_positions"] == ["cfd_002", "cfd_004"]  # sorted photos 001-004, index % 2 == 1
    tests = sorted(p.name for p in (out / "test" / "images" / "crack").iterdir())
    assert [n.rsplit("_w", 1)[0] for n in tests] == ["cfd_002", "cfd_004"]
    assert {p.name.rsplit("_w", 1)[0] for p in (out / "normals").iterdir()} == {"cfd_001", "cfd_003"}
    for name in tests:
        mask = cv2.imread(str(out / "test" / "masks" / "crack" / name), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (16, 16) and mask.max() == 255


def test_neu_photos_join_every_class_into_one_mask(recipe, tmp_path):
    rng = np.random.default_rng(7)
    root = tmp_path / "neu"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    for i in range(1, 5):
        cv2.imwrite(str(root / "JPEGImages" / f"{i:06d}.jpg"), rng.integers(0, 255, (40, 40), np.uint8))
        labels = np.zeros((40, 40), np.uint8)
        labels[30:34, 2:8] = 1   # an inclusion in the lower left
        labels[30:38, 12:14] = 3  # a scratch beside it
        cv2.imwrite(str(root / "SegmentationClass" / f"{i:06d}.png"), labels)
    photos, counts = recipe.neu_photos(root)
    assert counts == {"photos": 4} and [p[0] for p in photos] == [f"neu_{i:06d}" for i in range(1, 5)]
    assert int(photos[0][2].sum()) == 4 * 6 + 8 * 2  # both classes in the one mask
    out = tmp_path / "target"
    assert recipe.main(["--neu", str(root), "--window", "20", "--size", "20", "--margin", "1", "--out", str(out)]) == 0
    tests = sorted(p.name for p in (out / "test" / "images" / "steel_defect").iterdir())
    assert [n.rsplit("_w", 1)[0] for n in tests] == ["neu_000002"]  # sorted photos, index % 3 == 1
    mask = cv2.imread(str(out / "test" / "masks" / "steel_defect" / tests[0]), cv2.IMREAD_GRAYSCALE)
    assert mask.max() == 255
    trained_on = {p.name.rsplit("_w", 1)[0] for p in (out / "normals").iterdir()}
    assert trained_on == {"neu_000001", "neu_000003", "neu_000004"}


def test_fabric_photos_a_stainless_photo_gives_normal_windows_only(recipe, tmp_path):
    rng = np.random.default_rng(9)
    root = tmp_path / "fabric"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i in range(1, 5):
        cv2.imwrite(str(root / "images" / f"f{i}.jpg"), rng.integers(0, 255, (40, 40, 3), np.uint8))
        mask = np.zeros((40, 40), np.uint8)
        if i != 2:  # f2: no stain
            mask[4:9, 30:36] = 255  # a stain in the upper right
        cv2.imwrite(str(root / "annotations" / f"f{i}.png"), mask)
    cv2.imwrite(str(root / "images" / "f5.jpg"), rng.integers(0, 255, (40, 40, 3), np.uint8))  # no mask: counted
    photos, counts = recipe.fabric_photos(root)
    assert counts == {"photos": 4, "skipped_no_mask": 1}
    assert [p[0] for p in photos] == [f"fabric_f{i}" for i in range(1, 5)] and not photos[1][2].any()
    out = tmp_path / "target"
    assert recipe.main(["--fabric", str(root), "--window", "20", "--size", "20", "--test-every", "2",
                        "--margin", "1", "--out", str(out)]) == 0
    info = json.loads((out / "target.json").read_text())
    assert info["test_positions"] == ["fabric_f2", "fabric_f4"]
    # f2 has no stain: normal test windows only; f4's stained window is the one anomalous test image
    assert [p.name.rsplit("_w", 1)[0] for p in (out / "test" / "images" / "stain").iterdir()] == ["fabric_f4"]
    assert "fabric_f2" in {p.name.rsplit("_w", 1)[0] for p in (out / "test" / "images" / "good").iterdir()}
    assert {p.name.rsplit("_w", 1)[0] for p in (out / "normals").iterdir()} == {"fabric_f1", "fabric_f3"}


def test_pavement_photos_other_sensors_grouped_and_deduplicated(recipe, tmp_path):
    rng = np.random.default_rng(11)
    root = tmp_path / "cracks"
    (root / "ds" / "img").mkdir(parents=True)
    (root / "ds" / "masks_machine").mkdir()
    (root / "meta.json").write_text('{"classes": [{"title": "background"}, {"title": "crack"}]}')

    def photo(stem, crack=True, pixels=None):
        image = rng.integers(0, 255, (40, 40, 3), np.uint8) if pixels is None else pixels
        cv2.imwrite(str(root / "ds" / "img" / f"{stem}.png"), image)
        mask = np.zeros((40, 40, 3), np.uint8)
        if crack:
            mask[30:33, 2:20] = 2  # a crack in the lower left
        cv2.imwrite(str(root / "ds" / "masks_machine" / f"{stem}.png"), mask)
        return image

    photo("001")  # a CrackForest photo: left out
    photo("Im_GT_AIGLE_RN_F01aor")
    photo("Im_GT_AIGLE_RN_F01bor")  # the same photo number: the same group
    same = photo("Im_GT_TEMPEST2_00auor")
    photo("Im_noGT_TEMPEST2_00aor", pixels=same)  # the same pixels: kept once
    photo("Im_GT_ESAR_21a", crack=False)  # no crack: normal windows only
    photo("Im_GT_LCMS_23aor")
    photos, counts = recipe.pavement_photos(root)
    assert [p[0] for p in photos] == ["pave_Im_GT_AIGLE_RN_F01aor", "pave_Im_GT_AIGLE_RN_F01bor", "pave_Im_GT_ESAR_21a",
                                      "pave_Im_GT_LCMS_23aor", "pave_Im_GT_TEMPEST2_00auor"]
    assert [p[3] for p in photos] == ["AIGLE_RN_F01", "AIGLE_RN_F01", "ESAR_21", "LCMS_23", "TEMPEST2_00"]
    assert counts == {"photos": 5, "same_pixels_skipped": 1, "empty_masks": 1, "groups": 4}
    assert int(photos[0][2].sum()) == 3 * 18
    out = tmp_path / "target"
    assert recipe.main(["--pavement", str(root), "--window", "20", "--size", "20", "--test-every", "2",
                        "--margin", "1", "--out", str(out)]) == 0
    info = json.loads((out / "target.json").read_text())
    assert info["test_positions"] == ["ESAR_21", "TEMPEST2_00"]  # sorted groups, index % 2 == 1
    tested = {p.name.rsplit("_w", 1)[0] for p in (out / "test" / "images" / "crack").iterdir()}
    assert tested == {"pave_Im_GT_TEMPEST2_00auor"}  # ESAR_21 has no crack
    trained_on = {p.name.rsplit("_w", 1)[0] for p in (out / "normals").iterdir()}
    assert trained_on == {"pave_Im_GT_AIGLE_RN_F01aor", "pave_Im_GT_AIGLE_RN_F01bor", "pave_Im_GT_LCMS_23aor"}
