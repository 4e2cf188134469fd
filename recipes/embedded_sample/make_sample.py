"""Rebuild the small real-image sample shipped as cai-hub's embedded default data.

Reads the CC BY 4.0 crack set (sources/cracks_mixed) and the Apache-2.0 fabric
stains (sources/fabric_hsst) from the shared data folder and writes:

    <out>/README.md                       the sample's card
    <out>/anomalies/images/<stem>.png     RGB, long side <= 320 px
    <out>/anomalies/masks/<stem>.png      single channel, values {0, 255}, same size
    <out>/anomalies/metadata.csv          stem,anomaly_class,source,license,original_file
    <out>/normals/images/<stem>.png       RGB 256x256 defect-free crops
    <out>/normals/metadata.csv            stem,source,license,original_file,crop

The selection below is fixed by hand (looked at, varied shapes / backgrounds);
everything else is deterministic, so re-running gives identical bytes.

    python recipes/embedded_sample/make_sample.py --shared ../shared/data --out cai/data/default
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import cv2
import numpy as np

CRACKS_DIR = "sources/cracks_mixed/ds"
FABRIC_DIR = "sources/fabric_hsst/dataset_samples"

# cracks_mixed images (only the IRIT "Im_GT_*" photos: the numbered 001-118 files
# are CrackForest photos, which are non-commercial and must not be shipped).
CRACKS = [
    "Im_GT_AIGLE_RN_F14bor.png",   # horizontal crack, coarse asphalt
    "Im_GT_AIGLE_RN_F05bor.png",   # branched horizontal crack
    "Im_GT_AIGLE_RN_F16aor.png",   # long thin crack, wide frame
    "Im_GT_ESAR_21a.jpg",          # wavy vertical crack
    "Im_GT_ESAR_30a.jpg",          # branching crack
    "Im_GT_ESAR_34a.jpg",          # straight diagonal crack
    "Im_GT_LCMS_24aor.png",        # dark crack with a side branch
    "Im_GT_LCMS_31cor.png",        # wide dark crack
    "Im_GT_TEMPEST2_89aaor.png",   # vertical crack on dark surface
    "Im_GT_TEMPEST2_92abor.png",   # crack network
]

# fabric_hsst images (all grey-level fabric; stains differ in size, shape, contrast)
STAINS = [
    "2024_12_10_13_13_40_804_256_128.jpg",  # thin streak, mid-grey fabric
    "2024_12_10_13_24_11_358_2816_128.jpg",  # many small blobs
    "2024_12_10_15_44_31_510_2432_0.jpg",   # blob with dark core
    "2024_12_10_15_46_32_747_3584_0.jpg",   # dark round stain, dark fabric
    "2024_12_10_15_5_31_369_512_512.jpg",   # square-ish dark stain
    "2024_9_11_14_10_49_983_3072_488.jpg",  # large streak, light fabric
    "2024_9_11_14_33_9_336_1024_128.jpg",   # narrow streak, creased fabric
    "2024_9_11_14_8_49_228_256_488.jpg",    # small dark spot, white fabric
]

# Normal crops: (source, file). None of these files is used as an anomaly above.
# Each crop was looked at (contrast-stretched) and shows no defect.
NORMALS = [
    ("fabric_hsst", "2024_12_10_13_40_23_621_384_0.jpg"),   # mid-grey fabric
    ("fabric_hsst", "2024_12_10_15_5_31_584_3072_0.jpg"),    # dark fabric
    ("fabric_hsst", "2024_9_11_14_7_38_898_128_488.jpg"),    # light fabric with folds
    ("cracks_mixed", "Im_GT_AIGLE_RN_F03bor.png"),  # coarse asphalt (its crack mask is empty)
    ("cracks_mixed", "Im_GT_ESAR_25a.jpg"),         # fine asphalt
    ("cracks_mixed", "Im_GT_LCMS_23aor.png"),       # dark road surface
]

LICENSES = {"cracks_mixed": "CC-BY-4.0", "fabric_hsst": "Apache-2.0"}
LONG_SIDE = 320          # anomalies: resize so the long side is at most this
MIN_FRACTION = 0.003     # anomalies: mask must cover >= 0.3 % of the pixels ...
MIN_COMPONENT = 30       # ... and have a connected component of >= 30 px
NORMAL_SIZE = 256        # normals: output side
CROP_SIZES = (512, 448, 384, 320, 256)  # normals: crop side in the original, largest that fits
MARGIN = 15              # normals: defect mask dilated by this many output pixels
STRIDE = 8               # normals: crop position search step (original pixels)
PNG = [cv2.IMWRITE_PNG_COMPRESSION, 9]


def source_paths(shared: Path, source: str, name: str) -> tuple[Path, Path]:
    """Image and mask path of one source file."""
    stem = Path(name).stem
    if source == "cracks_mixed":
        return shared / CRACKS_DIR / "img" / name, shared / CRACKS_DIR / "masks_machine" / f"{stem}.png"
    return shared / FABRIC_DIR / "images" / name, shared / FABRIC_DIR / "annotations" / f"{stem}.png"


def load(shared: Path, source: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (BGR uint8 image, bool defect mask) in original resolution."""
    img_path, mask_path = source_paths(shared, source, name)
    image = cv2.imread(str(img_path), cv2.IMREAD_COLOR)  # grey photos become 3 equal channels
    raw = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if image is None or raw is None:
        raise FileNotFoundError(f"cannot read {img_path} or {mask_path}")
    if raw.ndim == 3:
        raw = raw[..., 0]  # class-index PNG: the three channels are equal
    mask = raw == 2 if source == "cracks_mixed" else raw > 127  # crack = class 2; stains are {0,255}
    if mask.shape != image.shape[:2]:
        raise ValueError(f"{name}: mask {mask.shape} != image {image.shape[:2]}")
    return image, mask


def resize_pair(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shrink so the long side is <= LONG_SIDE; mask nearest-neighbour, re-thresholded to {0,255}."""
    h, w = mask.shape
    scale = min(1.0, LONG_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        mask8 = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_NEAREST)
    else:
        mask8 = mask.astype(np.uint8) * 255
    return image, np.where(mask8 > 127, 255, 0).astype(np.uint8)


def check_clear_defect(name: str, mask8: np.ndarray) -> None:
    fraction = float((mask8 > 0).mean())
    n, _, stats, _ = cv2.connectedComponentsWithStats((mask8 > 0).astype(np.uint8), connectivity=8)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
    if fraction < MIN_FRACTION or largest < MIN_COMPONENT:
        raise ValueError(f"{name}: defect too small after resizing ({fraction:.4f}, largest {largest} px)")


def find_crop(mask: np.ndarray) -> tuple[int, int, int]:
    """Largest square crop (side in CROP_SIZES) whose dilated defect mask is all zero.

    Among the valid positions (grid with step STRIDE), the one nearest the image
    centre wins; ties go to the smaller (row, col). Returns (row, col, side).
    """
    h, w = mask.shape
    for side in CROP_SIZES:
        if side > min(h, w):
            continue
        radius = int(np.ceil(MARGIN * side / NORMAL_SIZE))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        bad = cv2.dilate(mask.astype(np.uint8), kernel) > 0
        integral = cv2.integral(bad.astype(np.uint8), sdepth=cv2.CV_32S)
        best = None
        for row in sorted(set(range(0, h - side + 1, STRIDE)) | {h - side}):
            for col in sorted(set(range(0, w - side + 1, STRIDE)) | {w - side}):
                count = (integral[row + side, col + side] - integral[row, col + side]
                         - integral[row + side, col] + integral[row, col])
                if count:
                    continue
                dist = (row + side / 2 - h / 2) ** 2 + (col + side / 2 - w / 2) ** 2
                key = (dist, row, col)
                if best is None or key < best:
                    best = key
        if best is not None:
            return best[1], best[2], side
    raise ValueError("no defect-free crop found")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def rel(shared: Path, path: Path) -> str:
    return path.relative_to(shared).as_posix()


def build(shared: Path, out: Path) -> None:
    if out.exists():
        if any(out.iterdir()) and not (out / "anomalies").is_dir():
            raise SystemExit(f"{out} exists and does not look like a sample folder; not deleting it")
        shutil.rmtree(out)
    for sub in ("anomalies/images", "anomalies/masks", "normals/images"):
        (out / sub).mkdir(parents=True)

    anomaly_rows, used = [], set()
    selection = [("cracks_mixed", "crack", n) for n in CRACKS] + [("fabric_hsst", "stain", n) for n in STAINS]
    counters: dict[str, int] = {}
    for source, klass, name in selection:
        if source == "cracks_mixed" and not name.startswith("Im_GT_"):
            raise ValueError(f"{name}: only the IRIT Im_GT_* photos of cracks_mixed may be shipped")
        image, mask = load(shared, source, name)
        image, mask8 = resize_pair(image, mask)
        check_clear_defect(name, mask8)
        counters[klass] = counters.get(klass, 0) + 1
        stem = f"{klass}_{counters[klass]:02d}"
        cv2.imwrite(str(out / "anomalies/images" / f"{stem}.png"), image, PNG)
        cv2.imwrite(str(out / "anomalies/masks" / f"{stem}.png"), mask8, PNG)
        img_path, _ = source_paths(shared, source, name)
        anomaly_rows.append([stem, klass, source, LICENSES[source], rel(shared, img_path)])
        used.add((source, name))
    write_csv(out / "anomalies/metadata.csv",
              ["stem", "anomaly_class", "source", "license", "original_file"], anomaly_rows)

    normal_rows = []
    counters = {}
    for source, name in NORMALS:
        if (source, name) in used:
            raise ValueError(f"{name} is already an anomaly; normals must come from other images")
        image, mask = load(shared, source, name)
        row, col, side = find_crop(mask)
        crop = image[row:row + side, col:col + side]
        if side != NORMAL_SIZE:
            crop = cv2.resize(crop, (NORMAL_SIZE, NORMAL_SIZE), interpolation=cv2.INTER_AREA)
        kind = "fabric" if source == "fabric_hsst" else "pavement"
        counters[kind] = counters.get(kind, 0) + 1
        stem = f"{kind}_{counters[kind]:02d}"
        cv2.imwrite(str(out / "normals/images" / f"{stem}.png"), crop, PNG)
        img_path, _ = source_paths(shared, source, name)
        normal_rows.append([stem, source, LICENSES[source], rel(shared, img_path),
                            f"{row},{col},{side},{side}"])
    write_csv(out / "normals/metadata.csv",
              ["stem", "source", "license", "original_file", "crop"], normal_rows)

    (out / "README.md").write_text(card(anomaly_rows, normal_rows), encoding="utf-8")
    # Apache-2.0 section 4(a): the licence text travels with the fabric files
    (out / "LICENSES").mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[2] / "LICENSE", out / "LICENSES" / "Apache-2.0.txt")


def card(anomaly_rows: list[list[str]], normal_rows: list[list[str]]) -> str:
    n_crack = sum(r[1] == "crack" for r in anomaly_rows)
    n_stain = sum(r[1] == "stain" for r in anomaly_rows)
    n_fabric = sum(r[1] == "fabric_hsst" for r in normal_rows)
    n_pave = sum(r[1] == "cracks_mixed" for r in normal_rows)
    return f"""# cai-hub embedded default sample

A tiny set of real photographs used as cai-hub's built-in default data (demo / smoke
runs without any download): real anomalies with pixel masks, to be injected into
normal (defect-free) images.

| part | files | from |
|---|---|---|
| `anomalies/` | {len(anomaly_rows)} images + {len(anomaly_rows)} masks: {n_crack} `crack`, {n_stain} `stain` | cracks_mixed (cracks), fabric_hsst (stains) |
| `normals/` | {len(normal_rows)} images 256x256: {n_fabric} fabric, {n_pave} pavement | fabric_hsst, cracks_mixed |

- `anomalies/images/<stem>.png`: RGB 8-bit, long side at most {LONG_SIDE} px (the source
  photos are grey-level, so the three channels are equal).
- `anomalies/masks/<stem>.png`: single channel 8-bit, values exactly 0 and 255, same size
  as the image, never empty.
- `anomalies/metadata.csv`: `stem,anomaly_class,source,license,original_file`.
- `normals/images/<stem>.png`: RGB 8-bit 256x256.
- `normals/metadata.csv`: `stem,source,license,original_file,crop`; `crop` is
  `row,col,height,width` in the original image.
- `original_file` is relative to the shared data folder the sample was built from.

## Sources and licences

### Cracks: `cracks_mixed` (CC BY 4.0)

"cracks_segmentation_dataset - All in one cracks dataset marked up for semantic
segmentation" (Supervisely format), which gathers pavement-crack photos with polygon
annotations. The copy used names no individual creator; its README lists:

- https://github.com/cuilimeng/CrackForest-dataset
- https://www.irit.fr/~Sylvie.Chambon/Crack_Detection_Database.html

Only the photos that come from the IRIT Crack Detection Database (second link; files
`Im_GT_*`: AigleRN, ESAR, LCMS, TEMPEST2) are used here; the CrackForest photos of the
same collection (files `001`-`118`) are not included. The crack masks are the
collection's polygon annotations, so they are a few pixels wider than the cracks.

Licensed under the Creative Commons Attribution 4.0 International licence (CC BY 4.0),
https://creativecommons.org/licenses/by/4.0/ (full text:
https://creativecommons.org/licenses/by/4.0/legalcode). The material is provided as-is,
without warranties of any kind (see section 5 of the licence). The files here are
modified (see "Changes").

### Stains: `fabric_hsst` (Apache-2.0)

Fabric stain samples (`dataset_samples/`) from the HSST fabric-stain detection
repository by Pinqi Cheng, https://github.com/SwaggyPinqi12/HSSTalgorithm
(accompanying the manuscript "Enhanced Fabric Stain Detection via Gabor-Optimized
Saliency Fusion and Stability-Driven Thresholding"). Licensed under the Apache License,
Version 2.0, https://www.apache.org/licenses/LICENSE-2.0 (a copy of the licence text is in
`LICENSES/Apache-2.0.txt` beside this card). The files here are modified (see "Changes").

## Changes made

- Anomalies: converted to 3-channel RGB PNG; resized (area interpolation) so the long
  side is at most {LONG_SIDE} px (smaller photos keep their size); masks converted to one channel with values 0/255
  (cracks_mixed: class index 2 = crack; fabric_hsst: already 0/255), resized with
  nearest neighbour and re-thresholded. Only images whose resized mask covers at least
  {MIN_FRACTION:.1%} of the pixels with a connected component of at least {MIN_COMPONENT} px were kept.
- Normals: square crops of other images of the same two sets, taken where the defect
  mask dilated by about {MARGIN} output pixels is entirely zero (largest side in
  {", ".join(map(str, CROP_SIZES))} px that fits, position nearest the image centre on an
  {STRIDE}-px grid), resized (area interpolation) to {NORMAL_SIZE}x{NORMAL_SIZE}, RGB PNG.
- File names replaced by short stems; the original file of each stem is in the
  metadata CSVs.

## How it was made

From the project root, with the shared data checked out next to it:

    python recipes/embedded_sample/make_sample.py --shared ../shared/data --out cai/data/default

The script holds the hand-picked file lists; the output is deterministic.
"""


def preview(out: Path, path: Path) -> None:
    """Contact sheet: anomalies with their mask outline (red), then the normals."""
    tiles = []
    for folder, with_mask in (("anomalies", True), ("normals", False)):
        for img_path in sorted((out / folder / "images").glob("*.png")):
            image = cv2.imread(str(img_path))
            if with_mask:
                mask = cv2.imread(str(out / folder / "masks" / img_path.name), cv2.IMREAD_GRAYSCALE)
                contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                image = cv2.drawContours(image.copy(), contours, -1, (0, 0, 255), 1)
            tile = np.full((LONG_SIDE + 16, LONG_SIDE, 3), 255, np.uint8)
            tile[16:16 + image.shape[0], :image.shape[1]] = image
            cv2.putText(tile, img_path.stem, (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
            tiles.append(tile)
    cols = 6
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % cols)
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    cv2.imwrite(str(path), np.vstack(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"),
                        help="shared data folder (contains sources/cracks_mixed, sources/fabric_hsst)")
    parser.add_argument("--out", type=Path, default=Path("cai/data/default"),
                        help="output folder (deleted and rewritten)")
    parser.add_argument("--preview", type=Path, default=None,
                        help="optional: also write a contact-sheet PNG here (outside --out)")
    args = parser.parse_args()
    build(args.shared.resolve(), args.out)
    if args.preview:
        preview(args.out, args.preview)


if __name__ == "__main__":
    main()
