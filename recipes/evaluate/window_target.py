"""Evaluation targets cut out of photos with defect masks: windows without defect pixels are the
normals, the window with the most defect pixels of each test photo its anomaly. Two sources here:

``--bsdata``: a fourth target, kept out of every choice of default: ball-screw spindles (BSData pitting).
Grid, hazelnut and KolektorSDD chose the defaults (leave one target out); this turns the BSData photos
of ../shared/data into a ``--target folder`` set so a default can be *confirmed* on a target it was
never chosen on. Only the photos of the one spindle type with a fixed camera (``01_<time>_<pos>_
<angle>_crop_<k>``, 1130 x 460 and 1540 x 645) are used; the other type (``KGT*``) has 55 image sizes.
Each spindle position (``<pos>_<angle>``, a wear sequence photographed over time, both crops) goes
wholly to training or to testing, so no test image shows a surface seen in training: sorted
positions, every third (index % 3 == 1) is a test position.

``--crackforest ROOT``: a sixth target, road cracks (CrackForest's 118 photos, 480 x 320, with their
``.mat`` ground truth); each photo is its own group. Run it with ``--window 128`` (a 320 px window holds
a crack in every photo; 128 px windows leave 661 crack-free ones) and ``--exclude-source
crackforest,cracks_mixed`` (the CFD photos are in both crack sources), so the anomaly set holds no crack.

``--neu ROOT``: a seventh target, hot-rolled steel strip (NEU-Seg, ``ROOT/JPEGImages`` +
``SegmentationClass``, 1341 grey photos 200 x 200 with inclusions, patches and scratches); each photo is
its own group, its defects of all classes one mask. Run it with ``--window 100 --size 200`` and
``--exclude-source neu_seg`` (71% of the shared-sources DAAD's rows are NEU defects: what is left is
cracks, potholes, pits and stains).

``--fabric ROOT``: an eighth target, stains on grey fabric (the fabric-stain samples, ``ROOT/images`` +
``ROOT/annotations``, 26 photos 512 x 512, one without a stain); each photo is its own group. Run it with
``--window 256 --size 256 --test-every 2`` and ``--exclude-source fabric_hsst`` (the anomaly set's only
stains left are MVTec carpet's).

``--pavement ROOT``: a ninth target, pavement cracks photographed by other sensors than CrackForest's
(the mixed crack set's AigleRN, ESAR, LCMS and TEMPEST2 photos, Supervisely export, 187-1000 px; its
CrackForest re-annotations and numbered photos are left out); a group is one sensor's photo number (the
GT and noGT copies of a TEMPEST2 photo share it), photos with the same pixels are kept once. Run it with
``--window 128 --size 256`` and ``--exclude-source crackforest,cracks_mixed`` (the anomaly set then holds
no crack, as for ``--crackforest``). Its masks are polygons several px wider than the cracks.

``--mvtec ROOT --category C --defect D``: the anomalous test photos of one MVTec AD defect type (e.g.
the 17 carpet ``color`` stains ../shared/data holds, which have no ``train/good``); each photo is its
own group, every ``--test-every``-th (index % K == 1) a test photo.

Windows: as long as the photo's short side (or ``--window`` px) along its long side, at ``ceil(L /
window) + 1`` evenly spaced positions (they overlap); ``--aspect A`` makes them 1/A as high, on a grid
of evenly spaced rows too (a non-square part, where the scale reference matters: ``--scale-reference
along`` and ``long`` give the same bytes on a square foreground). A window with no defect pixel within
``margin`` px is a normal image; the window holding the most defect pixels of a test photo is its
anomalous test image. Training normals are spread evenly over the training windows (``--normals``);
normal test windows likewise (``--test-normals``). Every window is resized to ``--size`` px high
(area interpolation; masks: area, then >= 0.5).

    python recipes/evaluate/window_target.py --bsdata ../shared/data/sources/bsdata_pitting --out runs/bsdata
    cai-hub evaluate --target folder --root runs/bsdata/normals --test-root runs/bsdata/test \\
        --exclude-source bsdata_pitting --daad runs/daad --synth cai --seeds 3 --out runs/bs_cai

``--exclude-source bsdata_pitting`` (``mvtec_ad`` for MVTec photos) keeps the target's own defects out
of the anomaly set (the folder target's guard only knows the folder's name). With ``--daad DAAD`` and
``--bsdata`` the recipe also writes two oracle anomaly sets that never hold a pit of a test position:
``oracle_daad/`` (DAAD without those pits) and ``oracle_pits/`` (only the BSData pits of the training
positions and of the other spindle type); run them without ``--exclude-source``. Caveat: BSData is
labelled for pitting only; other marks (soiling, scratches) in normal windows are unlabelled, as on a
real line.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from cai.layouts import crackforest, mvtec, neu_seg, pairs, supervisely
from cai.layouts.labelme import iter_anomalies

NAME = re.compile(r"^01_(\d{12})_(\d+_\d{3})_crop_(\d)$")
PAVEMENT_NAME = re.compile(r"^Im_(?:no)?GT_(AIGLE_RN|ESAR|LCMS|TEMPEST2)_([A-Z]?\d+)")


def _starts(extent: int, length: int) -> list[int]:
    """``ceil(extent / length) + 1`` evenly spaced starts of a window of ``length`` in ``extent`` (one if
    it fits exactly)."""
    if length >= extent:
        return [0]
    n = math.ceil(extent / length) + 1
    return sorted({round(i * (extent - length) / (n - 1)) for i in range(n)})


def windows(height: int, width: int, aspect: float = 1.0, side: int | None = None) -> list[tuple[int, int, int, int]]:
    """Windows ``(y0, x0, y1, x1)`` ``side`` px long (default and at most: the photo's short side) along
    the photo's long side and ``side / aspect`` across, on an evenly spaced grid (:func:`_starts` along
    each axis), row by row."""
    side = min(height, width) if side is None else min(side, height, width)
    across = int(round(side / aspect))
    if width >= height:
        return [(y, x, y + across, x + side) for y in _starts(height, across) for x in _starts(width, side)]
    return [(y, x, y + side, x + across) for y in _starts(height, side) for x in _starts(width, across)]


def split_windows(mask: np.ndarray, margin: int, aspect: float = 1.0,
                  side: int | None = None) -> tuple[list[int], int | None]:
    """Indices of the defect-free windows (no defect pixel within ``margin`` px) and the index of the
    window with the most defect pixels (None if the mask is empty). ``mask``: (H, W) bool."""
    near = cv2.dilate(mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0 if margin else mask
    boxes = windows(*mask.shape, aspect, side)
    free = [i for i, (y0, x0, y1, x1) in enumerate(boxes) if not near[y0:y1, x0:x1].any()]
    counts = [int(mask[y0:y1, x0:x1].sum()) for (y0, x0, y1, x1) in boxes]
    return free, (int(np.argmax(counts)) if max(counts) > 0 else None)


def spread(items: list, n: int) -> list:
    """At most ``n`` items taken evenly from a sorted list (all of them if there are fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i * len(items) / n)] for i in range(n)]


def bsdata_photos(src: Path) -> tuple[list, dict]:
    """The ``01_*`` BSData photos as ``(stem, image_path, mask, group)`` (group: the spindle position)."""
    records = [r for r in iter_anomalies(src, labels="label", images="data") if NAME.match(Path(r.image_path).stem)]
    photos = [(Path(r.image_path).stem, r.image_path, r.mask, NAME.match(Path(r.image_path).stem).group(2))
              for r in records]
    return photos, {"photos": len(photos), "positions": len({p[3] for p in photos})}


def own_groups(prefix: str, photos) -> list:
    """``(name, image_path, mask, group)`` per ``(image_path, mask)``, each photo its own group named
    ``<prefix>_<stem>``, sorted by name."""
    named = ((f"{prefix}_{Path(path).stem}", Path(path), mask) for path, mask in photos)
    return sorted(((name, path, mask, name) for name, path, mask in named), key=lambda p: p[0])


def mvtec_photos(root: Path, category: str, defect: str) -> tuple[list, dict]:
    """The test photos of one MVTec AD defect type as ``(name, image_path, mask, group)``, each its own
    group (read with :mod:`cai.layouts.mvtec`)."""
    records = [r for r in mvtec.iter_anomalies(root, categories=[category]) if r.original_label == defect]
    if not records:
        raise SystemExit(f"no test/{defect} images under {root / category}")
    missing = [str(r.image_path) for r in records if r.mask is None]
    if missing:
        raise SystemExit(f"no ground-truth mask for {missing[0]} (and {len(missing) - 1} more)")
    photos = own_groups(f"{category}_{defect}", ((r.image_path, r.mask) for r in records))
    return photos, {"photos": len(photos)}


def crackforest_photos(root: Path) -> tuple[list, dict]:
    """The CrackForest photos with ground truth as ``(name, image_path, mask, group)``, each its own
    group (read with :mod:`cai.layouts.crackforest`: crack label 2 only)."""
    stats: dict = {}
    records = list(crackforest.iter_anomalies(root, stats=stats))
    unreadable = sum(r.mask is None for r in records)  # an unreadable .mat: counted, not guessed
    photos = own_groups("cfd", ((r.image_path, r.mask) for r in records if r.mask is not None))
    if not photos:
        raise SystemExit(f"no CrackForest photo with ground truth under {root}")
    return photos, {"photos": len(photos), "mask_unreadable": unreadable,
                    "skipped_no_mask": stats.get("skipped_no_mask", 0)}


def union_masks(records) -> dict:
    """``{image path: the union of its records' masks}`` (records without a mask are skipped)."""
    masks: dict = {}
    for r in records:
        if r.mask is not None:
            path = Path(r.image_path)
            masks[path] = masks[path] | r.mask if path in masks else r.mask.copy()
    return masks


def neu_photos(root: Path) -> tuple[list, dict]:
    """The NEU-Seg photos as ``(name, image_path, mask, group)``, each its own group, the mask the union
    of its defects of every class (read with :mod:`cai.layouts.neu_seg`, one record per class)."""
    masks = union_masks(neu_seg.iter_anomalies(root))
    if not masks:
        raise SystemExit(f"no NEU-Seg photo with a defect under {root}")
    photos = own_groups("neu", masks.items())
    return photos, {"photos": len(photos)}


def fabric_photos(root: Path) -> tuple[list, dict]:
    """The fabric-stain photos as ``(name, image_path, mask, group)``, each its own group (read with
    :mod:`cai.layouts.pairs`, masks in ``annotations/``; a photo with an empty mask gives normal windows only)."""
    stats: dict = {}
    photos = own_groups("fabric", ((r.image_path, r.mask) for r in pairs.iter_anomalies(
        root, masks="annotations", stats=stats) if r.mask is not None))
    if not photos:
        raise SystemExit(f"no fabric photo with a mask under {root}")
    return photos, {"photos": len(photos), "skipped_no_mask": stats["skipped_no_mask"]}


def pavement_photos(root: Path) -> tuple[list, dict]:
    """The mixed crack set's photos of other sensors than CrackForest as ``(name, image_path, mask,
    group)`` (read with :mod:`cai.layouts.supervisely`, the union of every class's mask; group: sensor and
    photo number). A photo whose pixels equal an earlier one's (by name) is left out."""
    from daad_tools.qa import image_hash

    masks = union_masks(r for r in supervisely.iter_anomalies(root) if PAVEMENT_NAME.match(Path(r.image_path).stem))
    photos, seen, duplicates = [], set(), 0
    for path in sorted(masks, key=lambda p: p.stem):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {path}")
        digest = image_hash(image)
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        sensor, number = PAVEMENT_NAME.match(path.stem).groups()
        photos.append((f"pave_{path.stem}", path, masks[path], f"{sensor}_{number}"))
    if not photos:
        raise SystemExit(f"no AigleRN / ESAR / LCMS / TEMPEST2 photo with a mask under {root}")
    return photos, {"photos": len(photos), "same_pixels_skipped": duplicates,
                    "empty_masks": sum(not p[2].any() for p in photos), "groups": len({p[3] for p in photos})}


# --<flag> ROOT: (photos of ROOT, name of the test defect folder); --mvtec takes --category and --defect too
PHOTO_SOURCES = {"bsdata": (bsdata_photos, "pitting"), "crackforest": (crackforest_photos, "crack"),
                 "neu": (neu_photos, "steel_defect"), "fabric": (fabric_photos, "stain"),
                 "pavement": (pavement_photos, "crack")}


def collect(photos: list, margin: int, aspect: float = 1.0, side: int | None = None,
            test_every: int = 3) -> tuple[list, list, list, dict]:
    """Windows of ``photos`` (``(stem, image_path, mask, group)``): (train normals, test normals, test
    anomalies) as lists of ``(name, image_path, box, mask or None)``, and the test groups. Sorted
    groups, index % ``test_every`` == 1, are test groups."""
    train, test_normal, test_anomalous = [], [], []
    groups = sorted({p[3] for p in photos})
    test_groups = {g for i, g in enumerate(groups) if i % test_every == 1}
    for stem, path, mask, group in sorted(photos, key=lambda p: p[0]):
        free, worst = split_windows(mask, margin, aspect, side)
        boxes = windows(*mask.shape, aspect, side)
        is_test = group in test_groups
        for i in free:
            (test_normal if is_test else train).append((f"{stem}_w{i}", path, boxes[i], None))
        if is_test and worst is not None:
            test_anomalous.append((f"{stem}_w{worst}", path, boxes[worst], mask))
    counts = {"test_positions": sorted(test_groups), "train_windows": len(train),
              "test_normal_windows": len(test_normal), "test_anomalous_windows": len(test_anomalous)}
    return train, test_normal, test_anomalous, counts


def write_oracle_sets(daad: str, test_positions, out: Path) -> dict:
    """DAAD without the BSData rows of ``test_positions`` (``out/oracle_daad``) and those BSData rows
    alone (``out/oracle_pits``), as parquet folders ``cai-hub`` reads with ``--daad``; row counts."""
    from cai.anomaly_set import load_anomaly_set
    rows = load_anomaly_set(daad)
    keep, pits = [], []
    for i, (source, original) in enumerate(zip(rows["source"], rows["original_file"])):
        if source == "bsdata_pitting":
            if any(f"_{p}_" in str(original) for p in test_positions):
                continue
            pits.append(i)
        keep.append(i)
    for name, index in (("oracle_daad", keep), ("oracle_pits", pits)):
        (out / name / "data").mkdir(parents=True)
        rows.select(index).to_parquet(str(out / name / "data" / "train-00000-of-00001.parquet"))
    return {"oracle_daad_rows": len(keep), "oracle_pits_rows": len(pits), "daad_rows": len(rows)}


def _write(item, size: int, image_out: Path, mask_out: Path | None) -> None:
    """Crop the window, resize it to ``size`` px high (width in proportion), write image (and mask)."""
    name, path, (y0, x0, y1, x1), mask = item
    shape = (round(size * (x1 - x0) / (y1 - y0)), size)
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise SystemExit(f"cannot read {path}")
    image_out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(image_out), cv2.resize(photo[y0:y1, x0:x1], shape, interpolation=cv2.INTER_AREA))
    if mask_out is not None:
        crop = mask[y0:y1, x0:x1].astype(np.float32)
        small = cv2.resize(crop, shape, interpolation=cv2.INTER_AREA) >= 0.5
        mask_out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(mask_out), small.astype(np.uint8) * 255)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--bsdata", help="the BSData folder (label/*.json, data/*.jpg)")
    source.add_argument("--mvtec", help="an MVTec AD root (with --category and --defect)")
    source.add_argument("--crackforest", help="the CrackForest folder (image/*.jpg, groundTruth/*.mat)")
    source.add_argument("--neu", help="the NEU-Seg folder (JPEGImages/*.jpg, SegmentationClass/*.png)")
    source.add_argument("--fabric", help="the fabric-stain folder (images/*.jpg, annotations/*.png)")
    source.add_argument("--pavement", help="the mixed pavement-crack set (meta.json, ds/img, ds/masks_machine)")
    ap.add_argument("--category", help="--mvtec: the category, e.g. carpet")
    ap.add_argument("--defect", help="--mvtec: the defect type, e.g. color")
    ap.add_argument("--window", type=int, help="window length in photo px [the photo's short side]")
    ap.add_argument("--test-every", type=int, default=3, help="every K-th group (index %% K == 1) tests [3]")
    ap.add_argument("--out", required=True, help="new folder: normals/ and test/{images,masks}/")
    ap.add_argument("--normals", type=int, default=30, help="training normals [30]")
    ap.add_argument("--test-normals", type=int, default=12, help="normal test images [12]")
    ap.add_argument("--size", type=int, default=320, help="height of the written windows [320]")
    ap.add_argument("--aspect", type=float, default=1.0, help="window width / height (>= 1; the height shrinks) [1: square]")
    ap.add_argument("--margin", type=int, default=8, help="px a normal window keeps from any pit [8]")
    ap.add_argument("--daad", help="--bsdata: also write the oracle anomaly sets from this anomaly set (see above)")
    args = ap.parse_args(argv)
    if args.aspect < 1:
        raise SystemExit(f"--aspect must be >= 1, got {args.aspect}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty; choose a new folder")
    if args.mvtec and not (args.category and args.defect):
        raise SystemExit("--mvtec needs --category and --defect")
    if args.daad and not args.bsdata:
        raise SystemExit("--daad (the oracle sets) is for --bsdata only")
    if args.test_every < 2:
        raise SystemExit(f"--test-every must be >= 2, got {args.test_every}")
    # the one source given: its photos, and the name of its test defect folder
    flag, root = next((f, getattr(args, f)) for f in (*PHOTO_SOURCES, "mvtec") if getattr(args, f))
    photos, counts = (mvtec_photos(Path(root), args.category, args.defect) if flag == "mvtec"
                      else PHOTO_SOURCES[flag][0](Path(root)))
    defect = args.defect if flag == "mvtec" else PHOTO_SOURCES[flag][1]
    train, test_normal, test_anomalous, found = collect(photos, args.margin, args.aspect, args.window, args.test_every)
    counts.update(found)
    if not train or not test_anomalous:
        raise SystemExit(f"nothing to write from {root}: {counts}")
    train, test_normal = spread(train, args.normals), spread(test_normal, args.test_normals)
    for item in train:
        _write(item, args.size, out / "normals" / f"{item[0]}.png", None)
    for item in test_normal:
        _write(item, args.size, out / "test" / "images" / "good" / f"{item[0]}.png", None)
    for item in test_anomalous:
        _write(item, args.size, out / "test" / "images" / defect / f"{item[0]}.png",
               out / "test" / "masks" / defect / f"{item[0]}.png")
    (out / "test" / "masks").mkdir(parents=True, exist_ok=True)
    counts.update(written_train=len(train), written_test_normal=len(test_normal),
                  written_test_anomalous=len(test_anomalous))
    if args.daad:
        counts.update(write_oracle_sets(args.daad, counts["test_positions"], out))
    counts["args"] = vars(args)
    (out / "target.json").write_text(json.dumps(counts, indent=1))
    print(json.dumps({k: v for k, v in counts.items() if k != "args"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
