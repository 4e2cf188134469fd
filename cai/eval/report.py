"""Result files of an evaluation run: tables (Markdown, CSV, JSON) and figures drawn with OpenCV
(PR / PRO curves, example anomaly maps, example pseudo anomalies). No matplotlib needed."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np

from .. import atomic
from .bootstrap import describe

METRICS = ("pixel_auroc", "pixel_ap", "pro", "image_auroc")
METRIC_TITLES = {"pixel_auroc": "P-AUROC", "pixel_ap": "P-AP", "pro": "PRO@0.3", "image_auroc": "I-AUROC"}
# BGR colours, distinguishable on white
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23), (0, 0, 0), (120, 200, 255),
           (90, 200, 90), (160, 160, 255)]


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) ignoring NaN."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _fmt(mean: float, std: float | None = None, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    if std is None:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def write_json(path: Path, value) -> None:
    atomic.write_json(path, value, sort_keys=False, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def csv_rows(results: dict) -> list[dict]:
    """One row per synthesizer; every detector metric's column carries the profile name."""
    profile = results["profile"]["name"]
    rows = []
    for name, r in results["synthesizers"].items():
        row = {"target": results["target"]["name"], "profile": profile, "synthesizer": name,
               "seeds": len(r["runs"]), "pseudo_anomalies_per_seed": r["made_mean"]}
        for m in METRICS:
            row[f"{profile}:{m}_mean"], row[f"{profile}:{m}_std"] = r["summary"][m]
        for cls, (mean, std) in r["summary"]["per_class_ap"].items():
            row[f"{profile}:pixel_ap[{cls}]_mean"], row[f"{profile}:pixel_ap[{cls}]_std"] = mean, std
        row["fd_efficientnet_lite0"] = r.get("fd", {}).get("lite0")
        row["fid_inception"] = r.get("fd", {}).get("inception")
        row["cpu_seconds"] = r["cpu_seconds"]
        row["wall_seconds"] = r["wall_seconds"]
        rows.append(row)
    return rows


def write_csv(path: Path, results: dict) -> None:
    rows = csv_rows(results)
    fields = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for k, v in row.items()})


def markdown(results: dict) -> str:
    """The results as Markdown tables (metrics in %, mean ± sample std over seeds)."""
    p = results["profile"]
    tgt = results["target"]
    name = p["name"]
    lines = [f"# Evaluation: {tgt['name']} — detector profile `{name}`", "",
             f"Detector profile **`{name}`**: {p['description']}", "",
             f"Seeds: {', '.join(map(str, results['seeds']))} (the seed drives both the synthesis and the detector "
             f"training); metrics in %, mean ± sample std over seeds. Test set: {tgt['test_images']} images "
             f"({', '.join(f'{k} {v}' for k, v in tgt['test_per_class'].items())}); "
             f"{tgt['train_normals']} training normals, {results['per_image']} pseudo anomalies per normal image"
             + (", fresh ones every training epoch (on the fly)." if results.get("on_the_fly") else "."),
             ""]
    fd_cols = ["FD-EfficientNet-Lite0 ↓"] + (["FID (Inception) ↓"] if results.get("inception") else [])
    boot = results.get("bootstrap") or {}
    vs = boot.get("vs_reference", {})
    boot_col = [f"ΔP-AP vs {boot['reference']} [95% CI]"] if vs else []
    head = (["synthesizer", "made/seed"] + [f"{METRIC_TITLES[m]} [{name}]" for m in METRICS] + boot_col + fd_cols
            + ["CPU s"])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for synth, r in results["synthesizers"].items():
        cells = [synth, f"{r['made_mean']:.0f}"] + [_fmt(*r["summary"][m]) for m in METRICS]
        if vs:
            cells.append(describe(vs[synth]) if synth in vs else "reference")
        fd = r.get("fd", {})
        cells.append("n/a" if fd.get("lite0") is None else f"{fd['lite0']:.1f}")
        if results.get("inception"):
            cells.append("n/a" if fd.get("inception") is None else f"{fd['inception']:.1f}")
        cells.append(f"{r['cpu_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    classes = results["target"]["defect_classes"]
    if classes:
        lines += ["", f"Pixel AP per real defect class [{name}] (each class's test images plus the normal test "
                      "images), %:", ""]
        head = ["synthesizer"] + classes
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for synth, r in results["synthesizers"].items():
            lines.append("| " + " | ".join([synth] + [_fmt(*r["summary"]["per_class_ap"][c]) for c in classes]) + " |")
    if vs:
        lines += ["", "ΔP-AP: pixel AP (mean over seeds) minus the reference's, in points, with a paired "
                      "bootstrap 95% interval over test images (2000 resamples, matched detector seeds); "
                      "\"no difference shown\" where the interval covers 0."]
    lines += ["", "FD: Fréchet distance between the pseudo anomalies of seed "
                  f"{results['seeds'][0]} and the real test anomalies ({results.get('fd_real_images', 'n/a')} images). "
                  "FD-EfficientNet-Lite0 uses the ImageNet EfficientNet-Lite0's 1280-d pooled features and is "
                  "**not comparable with published FID**; with fewer images than feature dimensions it is biased "
                  "upwards, so compare only within this table."]
    guard = results["leakage_guard"]
    lines += ["", f"Leakage guard: sources excluded from the anomaly set: "
                  f"{', '.join(guard['excluded_sources']) or 'none'} (target datasets {', '.join(guard['target_sources'])})."]
    if results.get("anomaly_set"):
        a = results["anomaly_set"]
        lines.append(f"Anomaly set: `{a['path']}`, {a['patterns']} patterns used ({a['per_source']}).")
    if tgt.get("notes"):
        lines.append("Target notes: " + "; ".join(tgt["notes"]) + ".")
    lines += ["", f"Command: `{results['command']}`" if results.get("command") else "",
              f"Total CPU time {results['cpu_seconds']:.0f} s, wall {results['wall_seconds']:.0f} s "
              f"({_processes(results)}{results['threads']} torch thread(s))."]
    return "\n".join(lines).rstrip() + "\n"


def _processes(results: dict) -> str:
    jobs = int(results.get("jobs", 1))
    return f"{jobs} worker processes of " if jobs > 1 else ""


# ----------------------------------------------------------------------------- figures
def draw_curves(curves: dict, path, title: str, xlabel: str, ylabel: str, xmax: float = 1.0,
                size: tuple[int, int] = (520, 820)) -> Path:
    """Line plot of ``{label: (x, y)}`` on [0, xmax] x [0, 1], legend to the right, saved as PNG."""
    H, W = size
    img = np.full((H, W, 3), 255, np.uint8)
    left, right, top, bottom = 60, 190, 40, 60
    pw, ph = W - left - right, H - top - bottom
    to_px = lambda x, y: (int(round(left + pw * min(max(x / xmax, 0), 1))),  # noqa: E731
                          int(round(top + ph * (1 - min(max(y, 0), 1)))))
    for t in np.linspace(0, 1, 6):
        x0, y0 = to_px(t * xmax, 0)
        x1, y1 = to_px(0, t)
        cv2.line(img, (x0, top), (x0, top + ph), (230, 230, 230), 1)
        cv2.line(img, (left, y1), (left + pw, y1), (230, 230, 230), 1)
        cv2.putText(img, f"{t * xmax:.2g}", (x0 - 12, top + ph + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(img, f"{t:.1f}", (left - 32, y1 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for i, (label, (x, y)) in enumerate(curves.items()):
        x, y = np.asarray(x, float), np.asarray(y, float)
        keep = x <= xmax
        if (~keep).any():  # end the line at xmax, interpolated
            j = int(np.argmax(~keep))
            if j > 0:
                yx = y[j - 1] + (y[j] - y[j - 1]) * (xmax - x[j - 1]) / (x[j] - x[j - 1])
                x, y = np.r_[x[:j], xmax], np.r_[y[:j], yx]
            else:
                x, y = x[:1], y[:1]
        if x.size > 4000:  # thin very long curves (one point per distinct score) for drawing
            pick = np.unique(np.r_[np.linspace(0, x.size - 1, 4000).astype(int), x.size - 1])
            x, y = x[pick], y[pick]
        pts = np.array([to_px(a, b) for a, b in zip(x, y)], np.int32).reshape(-1, 1, 2)
        colour = PALETTE[i % len(PALETTE)]
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        ly = top + 16 + 18 * i
        cv2.line(img, (left + pw + 12, ly - 4), (left + pw + 37, ly - 4), colour, 3)
        cv2.putText(img, str(label)[:20], (left + pw + 42, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.putText(img, title[:80], (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (left + pw // 2 - 40, H - 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ylab = np.full((20, 200, 3), 255, np.uint8)
    cv2.putText(ylab, ylabel, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ylab = cv2.rotate(ylab, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + ph // 2 - 100
    img[y0:y0 + 200, 2:22] = ylab
    path = Path(path)
    cv2.imwrite(str(path), img)
    return path


def _tile(image: np.ndarray, tile: int) -> np.ndarray:
    a = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    h, w = a.shape[:2]
    s = tile / max(h, w)
    a = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = np.full((tile, tile, 3), 255, np.uint8)
    out[:a.shape[0], :a.shape[1]] = a
    return out


def _contour(image_rgb: np.ndarray, mask: np.ndarray, colour=(255, 0, 0)) -> np.ndarray:
    a = image_rgb if image_rgb.ndim == 3 else np.repeat(image_rgb[..., None], 3, axis=2)
    a = np.ascontiguousarray(a.copy())
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(a.shape[:2]) / 256))
    cv2.drawContours(a, contours, -1, colour, thickness)
    return a


def _heat(prob: np.ndarray) -> np.ndarray:
    u8 = (np.clip(prob, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _label_row(labels, tile: int) -> np.ndarray:
    row = np.full((22, tile * len(labels), 3), 255, np.uint8)
    for i, text in enumerate(labels):
        cv2.putText(row, str(text)[:22], (i * tile + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return row


def save_example_maps(path, images, masks, maps_by_synth: dict, captions, tile: int = 160) -> Path:
    """Grid: one row per test image (image, ground truth contour, then each synthesizer's map, 0-1 JET)."""
    labels = ["test image", "ground truth"] + list(maps_by_synth)
    rows = [_label_row(labels, tile)]
    for i, (image, mask) in enumerate(zip(images, masks)):
        cells = [_tile(image, tile), _tile(_contour(image, mask), tile)]
        cells += [_tile(_heat(maps[i]), tile) for maps in maps_by_synth.values()]
        row = np.concatenate(cells, axis=1)
        cv2.putText(row, str(captions[i])[:24], (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1,
                    cv2.LINE_AA)
        rows.append(row)
    path = Path(path)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path


def save_pseudo_examples(path, examples_by_synth: dict, tile: int = 128, per_row: int = 8) -> Path:
    """Grid: one row per synthesizer, its first pseudo anomalies with the pseudo-mask contour."""
    rows = []
    for name, items in examples_by_synth.items():
        cells = [_tile(_contour(im, m), tile) for im, m in items[:per_row]]
        cells += [np.full((tile, tile, 3), 255, np.uint8)] * (per_row - len(cells))
        row = np.concatenate(cells, axis=1)
        cv2.putText(row, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    path = Path(path)
    if rows:
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path
