"""The one output schema: the columns of a pseudo-anomaly split (``build-synthetic``, ``cdm generate``)."""
from __future__ import annotations

import datasets

OUTPUT_FEATURES = datasets.Features({
    "image": datasets.Image(),
    "mask": datasets.Image(),
    "placed_mask": datasets.Image(),
    "normal_index": datasets.Value("int32"),
    "normal_file": datasets.Value("string"),
    "k": datasets.Value("int32"),
    "anomaly_class": datasets.Value("string"),
    "scale": datasets.Value("string"),
    "str_ratio": datasets.Value("float32"),
    "resize_ratio": datasets.Value("float32"),
    "center": datasets.List(datasets.Value("int32"), length=2),
    "source_id": datasets.Value("string"),
    "source": datasets.Value("string"),
    "mode": datasets.Value("string"),
    "seed": datasets.Value("int64"),
    "attempts": datasets.Value("int32"),
    "mask_iou": datasets.Value("float32"),
    "visible_share": datasets.Value("float32"),
})
# per-slot bookkeeping the map returns and the run aggregates, not published
BOOKKEEPING = datasets.Features({
    "status": datasets.Value("string"),
    "resamples_location": datasets.Value("int32"),
    "resamples_empty_mask": datasets.Value("int32"),
    "resamples_vanished": datasets.Value("int32"),
    "changed_outside_share": datasets.Value("float32"),
})
MAP_FEATURES = datasets.Features({**OUTPUT_FEATURES, **BOOKKEEPING})
