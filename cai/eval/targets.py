"""Evaluation targets: the normal images a detector trains on and the real test set (normal images
and real anomalies with pixel masks) it is scored on.

Layouts (``root`` as given to :func:`load_eval_target`):

``mvtec``
    ``ROOT/CATEGORY/train/good`` for training; ``test/good`` (empty masks) and ``test/<defect>`` with
    ``ground_truth/<defect>/<stem>_mask.png`` for testing (read with
    :mod:`cai.layouts.mvtec`).
``ksdd``
    KolektorSDD, ``ROOT/kosNN/PartK.jpg`` + ``PartK_label.png`` (``ROOT`` or ``ROOT/data``). Parts with
    an empty label are normal. Split, deterministic: the normal parts of the *last*
    ``ksdd_holdout_folders`` kos folders that hold normal parts (one folder by default: kos05 of
    the full set) are held out as normal test images, the other normal parts train; every defective
    part is a test anomaly (read with :mod:`cai.layouts.kolektor`). Holding out a whole
    commutator keeps test normals from the physical parts seen in training.
``mtd``
    Magnetic Tile Defects, ``ROOT/MT_Free/Imgs/*.jpg`` normals; every fifth normal in sorted order
    (index % 5 == 4) is a normal test image, the rest train; ``ROOT/MT_<Defect>/Imgs`` (jpg + png
    mask of the same stem) are the test anomalies (read with :mod:`cai.layouts.magnetic_tile`).
``folder``
    ``ROOT`` holds the training normals (any image under it, recursively). ``test_root`` holds
    ``images/`` and ``masks/``: ``masks/<rel>/<stem>.<ext>`` is the mask of ``images/<rel>/<stem>.<ext>``
    (also ``<stem>_mask``); a test image without a mask file or with an all-zero mask is a normal test
    image; the defect class is the first sub-folder under ``images/`` (``defect`` at top level).

Every target names the datasets its images come from (``guard_sources``): the leakage guard
removes them from the anomaly set, so a target's own defects never serve as injection sources.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cai.imageio import list_images, load_mask, load_rgb

NORMAL_CLASS = "good"
TARGETS = ("mvtec", "ksdd", "mtd", "folder")


class EvalTargetError(ValueError):
    """The evaluation target cannot be read (wrong layout, nothing to train or test on...)."""


@dataclass
class TestImage:
    """One test image: ``load()`` gives (H, W, 3) uint8 RGB and ``mask`` (H, W) bool (all False for
    normal images, whose ``defect_class`` is ``"good"``)."""

    path: Path
    defect_class: str
    mask_path: Path | None = None
    mask: np.ndarray | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        image, _ = load_rgb(str(self.path))
        if self.mask is not None:
            mask = np.asarray(self.mask, bool)
        elif self.mask_path is not None:
            mask = load_mask(str(self.mask_path), image.shape[:2]) if _has_defect(self.mask_path) else \
                np.zeros(image.shape[:2], bool)
        else:
            mask = np.zeros(image.shape[:2], bool)
        if mask.shape != image.shape[:2]:
            raise EvalTargetError(f"mask of {self.path} is {mask.shape}, the image {image.shape[:2]}")
        return image, mask


@dataclass
class EvalTarget:
    """Training normals and test images of one target."""

    kind: str
    name: str
    train: list[Path]
    test: list[TestImage]
    category: str | None = None
    guard_sources: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def defect_classes(self) -> list[str]:
        return sorted({t.defect_class for t in self.test} - {NORMAL_CLASS})

    def summary(self) -> dict:
        counts = {}
        for t in self.test:
            counts[t.defect_class] = counts.get(t.defect_class, 0) + 1
        return {"kind": self.kind, "name": self.name, "category": self.category, "train_normals": len(self.train),
                "test_images": len(self.test), "test_per_class": dict(sorted(counts.items())),
                "guard_sources": list(self.guard_sources), "notes": list(self.notes)}


def _images(folder: Path, recursive: bool = False) -> list[Path]:
    return list_images(folder, recursive=recursive)


def _has_defect(mask_path) -> bool:
    from PIL import Image
    with Image.open(mask_path) as m:
        return bool(np.asarray(m).any())


def _records(records, what: str) -> list[TestImage]:
    out = []
    for rec in records:
        if rec.mask is None:
            raise EvalTargetError(f"{what}: {rec.image_path} has no usable mask ({', '.join(rec.notes)})")
        out.append(TestImage(Path(rec.image_path), str(rec.original_label), mask=np.asarray(rec.mask, bool)))
    return out


def _evenly(paths: list, limit: int | None) -> list:
    if limit is None or len(paths) <= limit:
        return paths
    keep = np.unique(np.linspace(0, len(paths) - 1, limit).round().astype(int))
    return [paths[i] for i in keep]


def load_eval_target(kind: str, root, category: str | None = None, test_root=None,
                     max_normals: int | None = None, ksdd_holdout_folders: int = 1) -> EvalTarget:
    """Read an evaluation target (layouts in the module docstring).

    Parameters
    ----------
    kind : {"mvtec", "ksdd", "mtd", "folder"}
    root : path
    category : str
        MVTec AD category (``mvtec`` only).
    test_root : path
        ``folder`` only: the folder with ``images/`` and ``masks/`` of the test set.
    max_normals : int, optional
        Train on at most this many normals, evenly spaced in sorted order (for large sets on a CPU).
    ksdd_holdout_folders : int
        ``ksdd``: how many kos folders' normal parts are held out for testing.

    Raises
    ------
    EvalTargetError
    """
    if kind not in TARGETS:
        raise EvalTargetError(f"unknown target {kind!r}; known: {', '.join(TARGETS)}")
    if root is None:
        raise EvalTargetError(f"--root is required for --target {kind}")
    root = Path(root)
    if not root.is_dir():
        raise EvalTargetError(f"{root} is not a folder")
    if kind == "mvtec":
        target = _mvtec(root, category)
    elif kind == "ksdd":
        target = _ksdd(root, ksdd_holdout_folders)
    elif kind == "mtd":
        target = _mtd(root)
    else:
        target = _folder(root, test_root)
    if max_normals is not None and len(target.train) > max_normals:
        target.notes.append(f"trained on {max_normals} of {len(target.train)} normals (evenly spaced)")
        target.train = _evenly(target.train, max_normals)
    if not target.train:
        raise EvalTargetError(f"{kind} target at {root}: no training normal image")
    if not any(t.defect_class != NORMAL_CLASS for t in target.test):
        raise EvalTargetError(f"{kind} target at {root}: no anomalous test image")
    return target


def _mvtec(root: Path, category: str | None) -> EvalTarget:
    from cai.layouts import mvtec
    if not category:
        raise EvalTargetError("--category is required for --target mvtec")
    base = root / category
    if not (base / "train" / "good").is_dir() or not (base / "test").is_dir():
        raise EvalTargetError(f"{base} must hold train/good and test/<defect> (MVTec AD layout)")
    test = [TestImage(p, NORMAL_CLASS) for p in _images(base / "test" / "good")] if (base / "test" / "good").is_dir() \
        else []
    test += _records(mvtec.iter_anomalies(root, categories=[category]), f"mvtec {category}")
    return EvalTarget("mvtec", f"mvtec_ad/{category}", _images(base / "train" / "good"), test, category,
                      guard_sources=("mvtec_ad", "mvtec"))


def _ksdd(root: Path, holdout_folders: int) -> EvalTarget:
    from cai.layouts import kolektor
    data = root / "data" if (root / "data").is_dir() else root
    folders = sorted(p for p in data.iterdir() if p.is_dir() and p.name.lower().startswith("kos"))
    if not folders:
        raise EvalTargetError(f"{data}: no kosNN folders (KolektorSDD layout)")
    normals = {}  # folder -> normal part images
    for folder in folders:
        for image in _images(folder):
            if image.stem.endswith("_label"):
                continue
            label = image.with_name(image.stem + "_label.png")
            if label.is_file() and not _has_defect(label):
                normals.setdefault(folder.name, []).append(image)
    with_normals = sorted(normals)
    if len(with_normals) <= holdout_folders:
        raise EvalTargetError(f"{data}: normal parts in {len(with_normals)} kos folder(s); need more than "
                              f"{holdout_folders} to hold {holdout_folders} out for testing")
    held = with_normals[len(with_normals) - holdout_folders:]
    train = [p for f in with_normals if f not in held for p in normals[f]]
    test = [TestImage(p, NORMAL_CLASS) for f in held for p in normals[f]]
    test += _records(kolektor.iter_anomalies(data), "ksdd")
    for t in test:
        if t.defect_class != NORMAL_CLASS:
            t.defect_class = "crack"
    return EvalTarget("ksdd", "kolektorsdd", train, test, None, guard_sources=("kolektorsdd", "ksdd"),
                      notes=[f"normal parts of {', '.join(held)} held out for testing; "
                             f"training normals from {', '.join(f for f in with_normals if f not in held)}"])


def _mtd(root: Path) -> EvalTarget:
    from cai.layouts import magnetic_tile
    free = root / "MT_Free" / "Imgs"
    if not free.is_dir():
        raise EvalTargetError(f"{root}: no MT_Free/Imgs folder (Magnetic Tile Defects layout)")
    normals = [p for p in _images(free) if p.suffix.lower() in (".jpg", ".jpeg")]
    train = [p for i, p in enumerate(normals) if i % 5 != 4]
    test = [TestImage(p, NORMAL_CLASS) for i, p in enumerate(normals) if i % 5 == 4]
    test += [t for t in _records(magnetic_tile.iter_anomalies(root), "mtd")]
    return EvalTarget("mtd", "magnetic_tile", train, test, None, guard_sources=("magnetic_tile", "mtd"),
                      notes=["every fifth MT_Free image (sorted) held out for testing"])


def _folder(root: Path, test_root) -> EvalTarget:
    if test_root is None:
        raise EvalTargetError("--test-root (a folder with images/ and masks/) is required for --target folder")
    test_root = Path(test_root)
    images_dir, masks_dir = test_root / "images", test_root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise EvalTargetError(f"{test_root} must hold images/ and masks/ (same relative paths and stems)")
    masks = {}
    for m in _images(masks_dir, recursive=True):
        rel = m.relative_to(masks_dir).with_suffix("")
        key = rel.with_name(rel.name[:-5]) if rel.name.endswith("_mask") else rel
        masks.setdefault(key.as_posix(), m)
    test = []
    for p in _images(images_dir, recursive=True):
        rel = p.relative_to(images_dir)
        mask = masks.get(rel.with_suffix("").as_posix())
        cls = rel.parts[0] if len(rel.parts) > 1 else "defect"
        if mask is None or not _has_defect(mask):
            test.append(TestImage(p, NORMAL_CLASS))
        else:
            test.append(TestImage(p, cls, mask_path=mask))
    train = _images(root, recursive=True)
    try:  # the test folder may sit inside root: never train on it
        inside = test_root.resolve().relative_to(root.resolve())
        train = [p for p in train if not p.resolve().is_relative_to(root.resolve() / inside)]
    except ValueError:
        pass
    return EvalTarget("folder", root.resolve().name, train, test, None, guard_sources=(root.resolve().name,))
