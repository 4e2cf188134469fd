"""Target datasets of normal images (MVTec AD, a plain folder, an HF dataset, the embedded default)."""
from __future__ import annotations

from pathlib import Path

import datasets

from .imageio import list_images

DEFAULT_SAMPLE = Path(__file__).parent / "data" / "default"
NORMAL_FEATURES = datasets.Features({
    "image": datasets.Image(decode=False),
    "file": datasets.Value("string"),
    "normal_index": datasets.Value("int32"),
})


class TargetError(ValueError):
    """The target cannot be read (wrong layout, no images...)."""


def _image_files(folder: Path) -> list[Path]:
    return list_images(folder, recursive=True)


def _from_files(files, root: Path) -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "image": [str(p) for p in files],
        "file": [str(p.relative_to(root)) for p in files],
        "normal_index": list(range(len(files))),
    }, features=NORMAL_FEATURES)


def load_target(target: str, root=None, category: str | None = None):
    """Normal images of a target as a ``datasets.Dataset`` (images undecoded) and the target's name.

    Parameters
    ----------
    target : {"mvtec", "folder", "hf", "default"}
        ``mvtec``: ``ROOT/CATEGORY/train/good`` of the MVTec AD layout; ``folder``: every image under
        ``ROOT`` (recursive, sorted); ``hf``: a saved or hub dataset with an ``image`` column;
        ``default``: the embedded sample's normals.

    Returns
    -------
    (datasets.Dataset, str)
        Columns ``image``, ``file``, ``normal_index``; and the dataset name used by the leakage guard
        (``mvtec_ad``, the folder's name, the hub id, ``default_sample``).
    """
    if target == "default":
        folder = DEFAULT_SAMPLE / "normals" / "images"
        return _from_files(_image_files(folder), folder), "default_sample"
    if root is None:
        raise TargetError(f"--root is required for --target {target}"
                          + (" (a saved dataset folder or a hub id org/name)" if target == "hf" else ""))
    root = Path(root)
    if target in ("mvtec", "folder") and not root.is_dir():
        raise TargetError(f"--root {root}: " + ("no such folder" if not root.exists() else "is a file, not a folder")
                          + (" (the MVTec AD root, holding CATEGORY/train/good)" if target == "mvtec" else ""))
    if target == "mvtec":
        if not category:
            raise TargetError("--category is required for --target mvtec (e.g. --category grid)")
        folder = root / category / "train" / "good"
        if not folder.is_dir():
            have = sorted(p.name for p in root.iterdir() if (p / "train" / "good").is_dir())
            raise TargetError(f"--category {category}: {folder} not found: expected the MVTec AD layout "
                              f"ROOT/CATEGORY/train/good" + (f" (categories here: {', '.join(have)})" if have else ""))
        files, name = _image_files(folder), "mvtec_ad"
    elif target == "folder":
        folder, files, name = root, _image_files(root), root.resolve().name
    elif target == "hf":
        if root.is_dir() and ((root / "state.json").is_file() or (root / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(str(root))
        elif root.is_dir():
            ds = datasets.load_dataset(str(root), split="train")
        else:
            from .anomaly_set import load_from_hub
            ds = load_from_hub(str(root), "--root", TargetError)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"]
        if "image" not in ds.column_names:
            raise TargetError(f"dataset {root} has no image column (columns: {ds.column_names})")
        ds = ds.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
        ds = ds.add_column("file", [f"{i:06d}" for i in range(len(ds))])
        ds = ds.add_column("normal_index", list(range(len(ds))))
        return ds.cast(NORMAL_FEATURES), str(root).rstrip("/").split("/")[-1]
    else:
        raise TargetError(f"unknown target {target!r} (mvtec, folder, hf)")
    if not files:
        raise TargetError(f"--root {root}: no images found in {folder} (extensions: .png, .jpg, .bmp, .tif...)")
    return _from_files(files, folder), name
