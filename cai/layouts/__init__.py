"""Dataset layout readers (the DAAD importers): one small module per source layout, each turning a folder into sorted
:class:`~cai.layouts.record.RawAnomaly` records.

Every module has ``iter_anomalies(root, **options)`` and the constants ``SOURCE`` (default source
name), ``LICENSE``, ``SOURCE_DOMAIN``, ``SOURCE_KIND`` and ``LAYOUT`` (the folder layout it reads,
quoted in its :class:`LayoutError`). Common options: ``source`` and ``license`` (override the
defaults) and ``stats`` (a dict the iterator fills: ``images``, ``yielded``, ``skipped_normal``,
``skipped_no_mask``, ``notes`` counts, ...). Records come out sorted by ``original_file`` (then
class index), ``original_file`` relative to ``root``, ``image_path`` absolute, ``mask`` an (H, W)
bool array at the displayed image size (EXIF orientation applied, see :mod:`._common`) or None
with a note saying why. Readers reject nothing for quality; the DAAD toolkit's mask QA does.

Example
-------
>>> from cai.layouts import IMPORTERS, iter_source
>>> sorted(IMPORTERS)[:3]
['btad', 'crackforest', 'dagm']
"""
from __future__ import annotations

from types import ModuleType
from typing import Iterator

from cai.layouts import (btad, crackforest, dagm, kolektor, ksdd2, magnetic_tile, mvtec, neu_seg,
                                  own_photos, pairs, supervisely, visa)
from cai.layouts import coco, cvat, labelme, suffix_pairs
from cai.layouts._common import IMAGE_EXTENSIONS, LayoutError
from cai.layouts.record import RawAnomaly

IMPORTERS: dict[str, ModuleType] = {
    "pairs": pairs,
    "mvtec": mvtec,
    "kolektor": kolektor,
    "neu_seg": neu_seg,
    "crackforest": crackforest,
    "supervisely": supervisely,
    "visa": visa,
    "ksdd2": ksdd2,
    "magnetic_tile": magnetic_tile,
    "btad": btad,
    "dagm": dagm,
    "own_photos": own_photos,
    "labelme": labelme,
    "coco": coco,
    "cvat": cvat,
    "suffix_pairs": suffix_pairs,
}

__all__ = ["IMPORTERS", "IMAGE_EXTENSIONS", "LayoutError", "get_importer", "iter_source"]


def get_importer(layout: str) -> ModuleType:
    """The importer module for ``layout``; ValueError naming the known layouts otherwise."""
    try:
        return IMPORTERS[layout]
    except KeyError:
        raise ValueError(f"unknown layout {layout!r}; known layouts: {', '.join(sorted(IMPORTERS))}") from None


def iter_source(layout: str, root, **options) -> Iterator[RawAnomaly]:
    """``IMPORTERS[layout].iter_anomalies(root, **options)``: the records of one source folder."""
    return get_importer(layout).iter_anomalies(root, **options)
