"""The record every DAAD importer yields, and the published row schema (the contract between
importers, taxonomy, mask QA, the build, FiftyOne curation and the CAI engine).

An importer turns one source layout into :class:`RawAnomaly` records, in sorted (deterministic)
order, without deciding the anomaly class (the taxonomy does) or rejecting anything (mask QA does).
"""
from __future__ import annotations

import datasets

from cai.layouts.record import SOURCE_KINDS, RawAnomaly  # noqa: F401  (part of the contract)

CLASSES = ("pits", "crack", "hole", "stain", "scratch", "orifice", "impurity", "abrasion")


# Published DAAD row (one per anomaly, or per connected component when split)
DAAD_FEATURES = datasets.Features({
    "id": datasets.Value("string"),               # stable: "<source>/<original_file>[#<label>][@<component>]"
    "image": datasets.Image(),                    # RGB PNG/JPEG bytes embedded
    "mask": datasets.Image(),                     # single-channel PNG, 0/255
    "anomaly_class": datasets.ClassLabel(names=list(CLASSES)),
    "source": datasets.Value("string"),
    "source_kind": datasets.Value("string"),
    "source_domain": datasets.Value("string"),
    "original_label": datasets.Value("string"),
    "original_file": datasets.Value("string"),
    "license": datasets.Value("string"),
    "bbox": datasets.List(datasets.Value("int32"), length=4),  # row0, col0, row1, col1 (half-open)
    "mask_area_ratio": datasets.Value("float32"),
    "width": datasets.Value("int32"),
    "height": datasets.Value("int32"),
    "content_hash": datasets.Value("string"),     # sha256 of the decoded RGB pixels + mask
    "qa_flags": datasets.List(datasets.Value("string")),
    "mask_refined": datasets.Image(),             # None, or the mask refined to the visible defect (daad_tools.refine)
})
