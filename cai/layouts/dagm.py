"""DAGM 2007 (synthetic textures with weakly labelled defects).

Layout::

    ROOT/Class<N>/Train|Test/<stem>.PNG
    ROOT/Class<N>/Train|Test/Label/<stem>_label.PNG    only defective images have one
    ROOT/Class<N>/Train|Test/Label/Labels.txt          optional: "<index> <defect 0/1> <image> <0> <label file|0>"

An image is an anomaly when it has a label file. When ``Labels.txt`` is present it is read too:
an image it flags defective but without a label file is yielded with ``mask=None`` (note
``mask_missing``); one with a label file that it flags 0 gets note ``labels_txt_flag_0``.
Images without a label file are normal (``stats["skipped_normal"]``). ``original_label`` is the
class folder name (``Class1`` ...); the masks are the published ellipses, coarser than the defect.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from cai.layouts._common import (Item, list_images, new_stats, records_from_items, relative, require_dirs,
                                 select_subsets)
from cai.layouts.record import RawAnomaly

SOURCE = "dagm2007"
LICENSE = "unknown"  # check the publisher's terms (HCI Heidelberg) before publishing
SOURCE_DOMAIN = "synthetic_texture"
SOURCE_KIND = "existing_dataset"
LAYOUT = "ROOT/Class<N>/Train|Test/<stem>.PNG + ROOT/Class<N>/Train|Test/Label/<stem>_label.PNG [+ Label/Labels.txt]"
PARTS = ("Train", "Test")


def read_labels_txt(path: Path) -> dict[str, tuple[bool, str | None]]:
    """``{image file name: (defective, label file name or None)}`` from a DAGM ``Labels.txt``."""
    entries = {}
    if not path.is_file():
        return entries
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        tokens = line.split()
        if len(tokens) < 3 or not tokens[0].isdigit() or tokens[1] not in ("0", "1"):
            continue  # the first line holds a count/header, not an entry
        label_file = tokens[4] if len(tokens) > 4 and tokens[4] != "0" else None
        entries[tokens[2]] = (tokens[1] == "1", label_file)
    return entries


def iter_anomalies(root, *, classes=None, parts=PARTS, source: str = SOURCE, license: str = LICENSE,
                   stats: dict | None = None) -> Iterator[RawAnomaly]:
    """Yield the defective images of ``classes`` (default: every ``Class<N>`` folder)."""
    root = require_dirs(root, LAYOUT)
    present = sorted(p.name for p in root.iterdir()
                     if p.is_dir() and p.name.startswith("Class") and any((p / part).is_dir() for part in parts))
    classes = select_subsets(root, LAYOUT, present, classes, "no Class<N>/Train|Test folder", "class")
    stats = new_stats(stats)
    items = []
    for name in sorted(classes):
        for part in parts:
            folder = root / name / part
            label_dir = folder / "Label"
            listed = read_labels_txt(label_dir / "Labels.txt")
            label_files = {p.name.lower(): p for p in list_images(label_dir)}
            for path in list_images(folder):
                flagged, listed_file = listed.get(path.name, (None, None))
                mask = label_files.get((listed_file or f"{path.stem}_label{path.suffix}").lower())
                mask = mask or label_files.get(f"{path.stem}_label{path.suffix}".lower())
                if mask is None and not flagged:
                    stats["skipped_normal"] += 1
                    continue
                notes = ["labels_txt_flag_0"] if flagged is False else []
                items.append(Item(relative(path, root), path, mask, name, SOURCE_DOMAIN, notes))
    return records_from_items(items, source=source, license=license, source_kind=SOURCE_KIND, stats=stats)
