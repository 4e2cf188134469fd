"""Build an anomaly set (the CAI input schema) from a folder of same-stem image/mask pairs.

Layout::

    ROOT/images/<stem>.<ext>     anomaly photos
    ROOT/masks/<stem>.<ext>      masks: two values, e.g. {0,255}, {0,1} or a class index {0,k}
    ROOT/metadata.csv            optional: stem,anomaly_class,source,license[,...] per pair

Without ``metadata.csv``, ``anomaly_class`` and ``source`` must be given for the whole folder
(``--anomaly-class`` / ``--source`` on the command line).

A flat folder of same-stem pairs is read too (:func:`load_flat_pairs`)::

    ROOT/<stem>.jpg + ROOT/<stem>.png        the mask is the .png beside a non-PNG photo
    ROOT/<stem>.<ext> + ROOT/<stem>_mask.png the mask carries a _mask suffix
Other same-stem layouts are read by naming the two sub-folders and a mask-name suffix, e.g.
MVTec AD's ``test/color`` + ``ground_truth/color/<stem>_mask.png``.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import datasets

from cai.imageio import IMAGE_EXTENSIONS

FEATURES = datasets.Features({
    "image": datasets.Image(),
    "mask": datasets.Image(),
    "anomaly_class": datasets.Value("string"),
    "source": datasets.Value("string"),
    "license": datasets.Value("string"),
    "id": datasets.Value("string"),
})
log = logging.getLogger(__name__)


def _by_stem(folder: Path, suffix: str = "") -> dict[str, Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    return {p.stem[: len(p.stem) - len(suffix)] if suffix else p.stem: p
            for p in files if p.stem.endswith(suffix)}


def load_folder_pairs(root, anomaly_class: str | None = None, source: str | None = None,
                      license: str = "unknown", images: str = "images", masks: str = "masks",
                      mask_suffix: str = "") -> datasets.Dataset:
    """Read ``root`` (layout above) into a ``datasets.Dataset`` with columns
    ``image``, ``mask``, ``anomaly_class``, ``source``, ``license``, ``id`` (rows sorted by stem).

    ``images``/``masks`` name the sub-folders; a mask is ``<stem><mask_suffix>.<ext>``. Images
    without a mask are left out and logged. Raises ValueError when the layout is wrong or a pair
    has no class/source.
    """
    root = Path(root)
    images_dir, masks_dir = root / images, root / masks
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise ValueError(f"{root} must contain {images}/ and {masks}/ folders of same-stem pairs")
    images, masks = _by_stem(images_dir), _by_stem(masks_dir, mask_suffix)
    meta = {}
    if (root / "metadata.csv").is_file():
        with open(root / "metadata.csv", newline="") as f:
            meta = {row["stem"]: row for row in csv.DictReader(f)}
    unpaired = sorted(set(images) - set(masks))
    if unpaired:
        log.warning("%d image(s) in %s have no mask and are left out: %s", len(unpaired), images_dir, unpaired[:10])
    rows = {name: [] for name in FEATURES}
    for stem in sorted(set(images) & set(masks)):
        row = meta.get(stem, {})
        cls, src = row.get("anomaly_class") or anomaly_class, row.get("source") or source
        if not cls or not src:
            raise ValueError(f"pair {stem!r} has no anomaly_class/source: add a metadata.csv (columns stem,"
                             "anomaly_class,source[,license]) or pass --anomaly-class and --source")
        rows["image"].append(str(images[stem]))
        rows["mask"].append(str(masks[stem]))
        rows["anomaly_class"].append(cls)
        rows["source"].append(src)
        rows["license"].append(row.get("license") or license)
        rows["id"].append(f"{src}/{stem}")
    if not rows["id"]:
        raise ValueError(f"no image/mask pair with the same stem in {root}")
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def find_flat_pairs(root) -> dict[str, tuple[Path, Path]]:
    """Same-stem pairs directly in ``root``: ``stem -> (image, mask)``.

    A mask is ``<stem>_mask.<ext>`` beside ``<stem>.<ext>``, or ``<stem>.png`` beside a photo of
    another extension (``x.jpg`` + ``x.png``). Sorted by stem; ``{}`` when there is none.
    """
    root = Path(root)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(p.stem, []).append(p)
    pairs = {}
    for stem, group in sorted(by_stem.items()):
        if stem.endswith("_mask"):
            continue
        masks = by_stem.get(stem + "_mask")
        if masks:
            pairs[stem] = (group[0], masks[0])
            continue
        pngs = [p for p in group if p.suffix.lower() == ".png"]
        photos = [p for p in group if p.suffix.lower() != ".png"]
        if pngs and photos:
            pairs[stem] = (photos[0], pngs[0])
    return pairs


def load_flat_pairs(root, anomaly_class: str | None = None, source: str | None = None,
                    license: str = "unknown") -> datasets.Dataset:
    """Read a flat folder of same-stem pairs (see :func:`find_flat_pairs`) into the columns of
    :func:`load_folder_pairs`; ``metadata.csv`` in ``root`` gives per-stem class/source as there.

    Raises ValueError when there is no pair or a pair has no class/source.
    """
    root = Path(root)
    pairs = find_flat_pairs(root)
    if not pairs:
        raise ValueError(f"no same-stem image/mask pair (x.jpg + x.png, or x.png + x_mask.png) in {root}")
    meta = {}
    if (root / "metadata.csv").is_file():
        with open(root / "metadata.csv", newline="") as f:
            meta = {row["stem"]: row for row in csv.DictReader(f)}
    rows = {name: [] for name in FEATURES}
    for stem, (image, mask) in pairs.items():
        row = meta.get(stem, {})
        cls, src = row.get("anomaly_class") or anomaly_class, row.get("source") or source
        if not cls or not src:
            raise ValueError(f"pair {stem!r} has no anomaly_class/source: add a metadata.csv (columns stem,"
                             "anomaly_class,source[,license]) or pass --anomaly-class and --source")
        rows["image"].append(str(image))
        rows["mask"].append(str(mask))
        rows["anomaly_class"].append(cls)
        rows["source"].append(src)
        rows["license"].append(row.get("license") or license)
        rows["id"].append(f"{src}/{stem}")
    return datasets.Dataset.from_dict(rows, features=FEATURES)
