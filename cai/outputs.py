"""Edges of a run: the dataset card, the contact sheet and the hub push."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import datasets
import numpy as np

from .imageio import decode_mask, load_rgb, resize_image

PUBLISHED = ("data/*.parquet", "README.md", "summary.json", "contact_sheet.png")  # what a run may push


def _split_files(out: Path) -> list[str]:
    """The run's own shards (``train-NNNNN-of-MMMMM.parquet``) with at least one row, in order."""
    import re

    import pyarrow.parquet as pq

    return sorted(str(p) for p in (out / "data").glob("train-*.parquet")
                  if re.fullmatch(r"train-\d{5}-of-\d{5}\.parquet", p.name) and pq.read_metadata(p).num_rows)


def _columns(files, names) -> dict:
    """Columns of the shards, read straight from the parquet files (no copy into a datasets cache)."""
    import pyarrow.parquet as pq

    tables = [pq.read_table(f, columns=list(names)) for f in files]
    return {name: [v for t in tables for v in t.column(name).to_pylist()] for name in names}


def _fit(image: np.ndarray, box) -> np.ndarray:
    """``image`` (h, w, 3) uint8 scaled to fit the (H, W) ``box`` with its aspect kept, centred on white."""
    s = min(box[0] / image.shape[0], box[1] / image.shape[1])
    shape = (max(1, round(image.shape[0] * s)), max(1, round(image.shape[1] * s)))
    small = resize_image(image, shape)
    out = np.full(tuple(box) + (3,), 255, np.uint8)
    y, x = (box[0] - shape[0]) // 2, (box[1] - shape[1]) // 2
    out[y:y + shape[0], x:x + shape[1]] = small
    return out


def write_contact_sheet(out, normals: datasets.Dataset, size: int = 256, rows: int = 8, tile: int = 192) -> Path | None:
    """``contact_sheet.png``: one line per pseudo anomaly — normal | pseudo anomaly | mask overlay
    (pseudo mask in red, placed defect outline in green), ``tile`` px high with the aspect of the first
    pseudo anomaly (any other aspect fits inside, undistorted). Takes the first pseudo anomaly of the first
    ``rows`` normal images that have one (the shards are read in batches until those are found)."""
    import pyarrow.parquet as pq

    out = Path(out)
    columns = ["image", "mask", "placed_mask", "normal_index"]
    # streamed in batches, read only as far as needed: the sheet's rows are at the start
    shard_rows = (row for f in _split_files(out)
                  for batch in pq.ParquetFile(f).iter_batches(batch_size=64, columns=columns)
                  for row in batch.to_pylist())
    picked = {}  # normal_index -> its first row
    for row in shard_rows:
        picked.setdefault(row["normal_index"], row)
        if len(picked) == rows:
            break
    if not picked:
        return None
    by_index = {idx: i for i, idx in enumerate(normals["normal_index"])}
    lines, box = [], None
    for row in picked.values():
        pseudo, _ = load_rgb(row["image"])
        normal, _ = load_rgb(normals[by_index[row["normal_index"]]]["image"])
        normal = resize_image(normal, pseudo.shape[:2])
        mask = decode_mask(row["mask"], threshold=127)
        placed = decode_mask(row["placed_mask"], threshold=127).astype(np.uint8)
        overlay = pseudo.copy()
        overlay[mask] = (0.45 * overlay[mask] + 0.55 * np.array([255, 0, 0])).astype(np.uint8)
        contours, _ = cv2.findContours(placed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(overlay, contours, -1, (0, 255, 0), 1)
        box = box or (tile, max(1, round(tile * pseudo.shape[1] / pseudo.shape[0])))  # the first one's aspect
        tiles = [_fit(a, box) for a in (normal, pseudo, overlay)]
        lines.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1))
    sheet = np.concatenate(lines, axis=0)
    path = out / "contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def _size_words(summary: dict) -> str:
    """The card's words for the normals' size: ``summary["size"]`` px and ``summary["resize"]`` ("square" when
    absent: the rule before the option existed)."""
    size = summary["size"]
    if not size:
        return "the normal images' own"
    if summary.get("resize", "square") == "square":
        return f"{size} x {size} px"
    return f"short side {size} px, aspect kept"


def render_card(out, summary: dict, load_id: str | None = None) -> Path:
    """Render ``README.md`` for the output folder from ``cards/synthetic_dataset.md``."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from cards import template_path

    out = Path(out)
    columns = _columns(_split_files(out), ("anomaly_class", "source"))
    per_class = dict(sorted(Counter(columns["anomaly_class"]).items()))
    per_source = dict(sorted(Counter(columns["source"]).items()))
    licenses = summary.get("patterns", {}).get("licenses", {}) or {s: "see source" for s in per_source}
    fid = summary["mask_fidelity"]
    in_domain = (summary.get("mixture") or {}).get("synthesizer")  # a mixture's NSA class: not a foreign defect
    card_data = DatasetCardData(
        pretty_name=f"CAI pseudo anomalies: {summary['target']}" + (f"/{summary['category']}" if summary["category"] else ""),
        task_categories=["image-segmentation"],
        tags=["anomaly-detection", "synthetic", "cai-hub", "industrial-inspection"],
        size_categories=["n<1K" if summary["made"] < 1000 else "1K<n<10K" if summary["made"] < 10000 else "10K<n<100K"],
    )
    # no `configs:` block: datasets 5 caches a local folder whose card declares data_files under a
    # key that ignores the files' contents, so a rebuilt folder would load stale rows; the default
    # `data/train-*` pattern finds the shards on the hub and locally alike.
    card = DatasetCard.from_template(
        card_data, template_path=template_path("synthetic_dataset.md"),
        target=summary["target"], category=summary["category"], made=summary["made"], normals=summary["normals"],
        slots=summary["slots"], quota=summary["config"]["quota"], skipped=summary["skipped"],
        mode=summary["config"]["mode"], mode_weights=summary["config"].get("mode_weights"),
        threshold=summary["config"]["threshold"],
        refine_mask=summary["config"].get("refine_mask", False), augment=summary["config"].get("augment", False),
        mask_rule=summary["config"].get("mask_rule", "luma"),
        scale_reference=summary["config"].get("scale_reference", "long"),
        median_ksize=summary["config"]["median_ksize"], min_component=summary["config"]["min_component"], size=_size_words(summary), seed=summary["seed"],
        foreground=summary["foreground"]["used"], anomaly_set=summary["anomaly_set"],
        patterns=summary["patterns"].get("patterns"), excluded=", ".join(summary["leakage_guard"]["excluded_sources"]),
        iou=fid["mean_iou_mask_vs_placed"] or 0.0, visible=fid["mean_visible_share"] or 0.0,
        outside=fid["mean_changed_outside_share"] or 0.0, per_class=per_class, per_source=per_source,
        classes=[c for c in per_class if c != in_domain], licenses=licenses, load_id=load_id or out.name,
        synthesizer=summary.get("synthesizer", "cai"), mixture=summary.get("mixture"),
    )
    path = out / "README.md"
    card.save(path)
    return path


def push_folder(out, repo_id: str, private: bool = False, files=None) -> str:
    """Upload exactly ``files`` (paths relative to ``out``: the output manifest's data, card, summary
    and contact sheet, see :meth:`cai.output_folder.OutputFolder.publishable`) to a hub dataset repo.

    Nothing else in the folder is uploaded; with ``files=None`` the run's published names are used.
    """
    from huggingface_hub import HfApi

    if files is not None and not files:
        raise ValueError(f"nothing to push: {out} lists no output file")
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(out), repo_id=repo_id, repo_type="dataset",
                             allow_patterns=list(files) if files is not None else list(PUBLISHED),
                             commit_message="Upload CAI pseudo anomalies (cai-hub)")
    return str(getattr(info, "commit_url", info))
