"""Why does one injection train a better detector than another? Image-level evidence, no detector.

For each target and each synthesizer variant (seed 0, the evaluation's normals, foregrounds and
leakage-guarded anomaly set), this prints per-variant figures and writes a contact sheet:

- ``contrast kept``: the defect's contrast to its surroundings after injection divided by the same
  contrast in the source pattern (median over pseudo anomalies). Contrast = mean luma on the placed
  defect minus mean luma on a ring 2-5 px around it; 1.0 means the defect stands out as much as it
  did in its own image.
- ``|change| in mask``: mean of the largest per-channel absolute change inside the pseudo mask.
- ``clipped``: share of injections whose blend left [0, 255] on more than 5% of the changed pixels.
- ``visible in label`` / ``change outside label``: label noise — share of pseudo-mask pixels whose
  luma changed by >= 7, share of pixels changed by > 7 that the pseudo mask misses.
- ``label / placed``: pseudo-mask area over placed-mask area (how much of the pasted polygon the
  label keeps).
- ``sources``: how many of the pseudo anomalies came from each source of the anomaly set.
- ``label area``: median pseudo-mask area as % of the image (for the real test defects, their masks').
- ``stands out``: share of pseudo anomalies whose |contrast| exceeds the 90th percentile of what the
  *normal* image gives for the same footprint (the placed mask and its ring moved to 16 random places
  inside the foreground): does the defect stand out from the part's own texture at its own size?
- ``novel``: share of pseudo anomalies whose window (the placed mask's bounding box + 4 px) is further
  from every other window of the normal image than 90% of ordinary windows of that size are
  (:func:`cai.engine.visibility.is_novel`, 16 of them): a moved patch of the part's own texture is not.
- ``by mode``: the same figures per injection mode, for variants that draw a mode per pseudo anomaly (the
  slots an NSA mixture such as ``cai+nsan25`` makes are the mode ``nsa-n``).

Usage::

    python recipes/evaluate/diagnose_injection.py --daad /tmp/aset --out recipes/evaluate/diagnostics \
        --synth cai-n,cai-m,cai-paste,cai-r,cai-r+refine
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from cai.baselines import make_synthesizer
from cai.eval.evaluate import _pattern_bank, load_normals
from cai.eval.targets import NORMAL_CLASS, load_eval_target
from cai.foreground import make_foreground
from cai.imageio import resize_image, short_side_shape
from cai.engine.inject import match_colour_mode, resize_pattern
from cai.engine.pseudo_mask import grey
from cai.engine.synthesizer import PseudoAnomaly
from cai.engine.visibility import contrast, is_novel, stands_out

TARGETS = {
    "grid": ("mvtec", "../shared/data/mvtec_ad", "grid"),
    "hazelnut": ("mvtec", "../shared/data/mvtec_ad", "hazelnut"),
    "ksdd": ("ksdd", "../shared/data/ksdd", None),
}


def source_contrast(synth, r: PseudoAnomaly, is_grey: bool) -> float:
    """Contrast of the pattern a CAI result came from; NaN for a slot an NSA mixture made (no pattern)."""
    synth = getattr(synth, "main", synth)  # a SlotMixture's CAI
    if r.source == "normal":
        return float("nan")
    index = list(synth.bank.ids).index(r.source_id)
    image, mask = synth._pattern(index)
    image, mask = resize_pattern(match_colour_mode(image, is_grey), mask, r.resize_ratio)
    return contrast(image, mask)


def real_defects(target) -> tuple[list[float], list[float]]:
    """|contrast| and label area (% of the image) of each real test defect, at the synthesis size (short
    side 256)."""
    out, areas = [], []
    for item in target.test:
        if item.defect_class == NORMAL_CLASS:
            continue
        image, mask = item.load()
        shape = short_side_shape(image.shape, 256)
        image = resize_image(image, shape)
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        if mask.any():
            out.append(abs(contrast(image, mask)))
            areas.append(100.0 * mask.mean())
    return out, areas


def crop_view(image, mask, placed, size: int = 112) -> np.ndarray:
    """Crop around the placed defect, upscaled, pseudo mask outlined red, placed mask green."""
    image = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    rows, cols = np.nonzero(placed | mask)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = max(r1 - r0, c1 - c0) + 16
    rc, cc = (r0 + r1) // 2, (c0 + c1) // 2
    H, W = mask.shape
    a0, b0 = max(0, min(rc - side // 2, H - side)), max(0, min(cc - side // 2, W - side))
    box = (slice(a0, a0 + side), slice(b0, b0 + side))
    view = cv2.resize(image[box], (size, size), interpolation=cv2.INTER_NEAREST)
    out = view.copy()
    for m, colour in ((placed, (0, 255, 0)), (mask, (255, 0, 0))):
        mm = cv2.resize(m[box].astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mm, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, 1)
    return np.concatenate([view, out], axis=0)


def _share(flags) -> float:
    """Share of True among the measurable (non-None) flags; NaN if none."""
    known = [f for f in flags if f is not None]
    return float(np.mean(known)) if known else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daad", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--synth", default="cai-n,cai-m,cai-paste,cai-r")
    ap.add_argument("--targets", default="grid,hazelnut,ksdd",
                    help="among grid, hazelnut, ksdd and the names given with --folder")
    ap.add_argument("--folder", action="append", default=[], metavar="NAME=NORMALS:TEST[:SOURCE,...]",
                    help="a --target folder set (e.g. window_target.py's), with anomaly-set sources to leave out")
    ap.add_argument("--normals", type=int, default=8, help="normals per target (evenly spread)")
    ap.add_argument("--columns", type=int, default=8, help="pseudo anomalies per row of the contact sheet")
    ap.add_argument("--sheet-mode", help="contact sheet: only the pseudo anomalies of this mode (e.g. nsa-n), "
                    "the first --columns of them, instead of every third slot")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = {}
    cache = tempfile.mkdtemp(prefix="cai-diagnose-")
    targets, excluded = dict(TARGETS), {}
    for spec in args.folder:
        name, sep, rest = spec.partition("=")
        parts = rest.split(":")
        if not sep or len(parts) not in (2, 3):
            raise SystemExit(f"--folder expects NAME=NORMALS:TEST[:SOURCE,...], got {spec!r}")
        targets[name] = ("folder", parts[0], None, parts[1])
        excluded[name] = tuple(s for s in (parts[2] if len(parts) == 3 else "").split(",") if s)
    for tname in args.targets.split(","):
        if tname not in targets:
            raise SystemExit(f"unknown target {tname!r}: known {sorted(targets)}")
        kind, root, category, *test_root = targets[tname]
        target = load_eval_target(kind, root, category, test_root=test_root[0] if test_root else None,
                                  max_normals=args.normals)
        normals, is_grey = load_normals(target.train, 256)
        fg_fn = make_foreground("auto", category=category)
        fgs = [np.asarray(fg_fn(n[..., 0] if is_grey else n), bool) for n in normals]
        bank, *_ = _pattern_bank(args.daad, target.guard_sources, excluded.get(tname, ()), Path(cache))
        real, real_area = (np.asarray(v, float) for v in real_defects(target))
        ringed = real[~np.isnan(real)]  # a defect that fills its image has no ring around it: no contrast
        median, q1, q3 = (np.percentile(ringed, q) if len(ringed) else float("nan") for q in (50, 25, 75))
        area = float(np.median(real_area)) if len(real_area) else float("nan")
        print(f"{tname:9s} {'real test defects':22s} n {len(real):3d}  |contrast| {median:5.1f} [{q1:.1f}, {q3:.1f}]"
              + (f" (of the {len(ringed)} with a ring around them)" if len(ringed) < len(real) else "")
              + f"  label area {area:.2f}%", flush=True)
        rows = [{"synth": "real test defects", "n": len(real), "n_with_ring": len(ringed),
                 "contrast_abs_median": float(median), "contrast_abs_iqr": [float(q1), float(q3)],
                 "label_area_pct_median": area}]
        for name in args.synth.split(","):
            synth = make_synthesizer(name, bank=bank, normals=normals)
            absolute, kept, change, clipped, visible, outside, ratio, views = ([] for _ in range(8))
            by_mode = {}
            sources = Counter()
            for i, (n, fg) in enumerate(zip(normals, fgs)):
                base = n[..., 0] if is_grey else n
                base_luma = grey(base)  # once per normal, for every texture null below
                for r in synth.synthesize(n, fg, i, 0, is_grey=is_grey):
                    if not isinstance(r, PseudoAnomaly):
                        continue
                    c_src, c_out = source_contrast(synth, r, is_grey), contrast(r.image, r.placed_mask)
                    absolute.append(abs(c_out))
                    stands = stands_out(base_luma, r.image, r.placed_mask, fg, np.random.default_rng([i, r.k]))
                    novel = is_novel(base_luma, r.image, r.placed_mask, fg, np.random.default_rng([i, r.k, 1]))
                    by_mode.setdefault(r.mode or r.anomaly_class, []).append((abs(c_out), stands, 100.0 * r.mask.mean(),
                                                                              novel))
                    if np.isfinite(c_src) and abs(c_src) >= 5:
                        kept.append(c_out / c_src)
                    d = np.abs(r.image.astype(np.float32) - base.astype(np.float32))
                    d = d.max(axis=2) if d.ndim == 3 else d
                    change.append(float(d[r.mask].mean()))
                    n_changed = max(int((d > 0).sum()) * (3 if r.image.ndim == 3 else 1), 1)
                    clipped.append(r.clipped / n_changed > 0.05)
                    visible.append(r.fidelity["visible_share"])
                    outside.append(r.fidelity["changed_outside_share"])
                    ratio.append(r.mask.sum() / max(r.placed_mask.sum(), 1))
                    sources[r.source] += 1
                    shown = ((r.mode or r.anomaly_class) == args.sheet_mode if args.sheet_mode else r.k % 3 == 0)
                    if len(views) < args.columns and shown:
                        views.append(crop_view(r.image, r.mask, r.placed_mask))
            row = {"synth": name, "made": len(change), "contrast_abs_median": float(np.nanmedian(absolute)),
                   "contrast_kept_median": float(np.median(kept)),
                   "contrast_kept_iqr": [float(np.percentile(kept, 25)), float(np.percentile(kept, 75))],
                   "change_in_mask": float(np.mean(change)), "clipped_share": float(np.mean(clipped)),
                   "visible_in_label": float(np.mean(visible)), "change_outside_label": float(np.mean(outside)),
                   "label_over_placed": float(np.median(ratio)), "sources": dict(sorted(sources.items())),
                   "stands_out": _share([s for v in by_mode.values() for _, s, _, _ in v]),
                   "novel": _share([nv for v in by_mode.values() for *_, nv in v]),
                   "label_area_pct_median": float(np.median([a for v in by_mode.values() for _, _, a, _ in v]))}
            if len(by_mode) > 1:
                row["by_mode"] = {m: {"made": len(v), "contrast_abs_median": float(np.nanmedian([c for c, *_ in v])),
                                      "stands_out": _share([s for _, s, _, _ in v]),
                                      "novel": _share([nv for *_, nv in v]),
                                      "label_area_pct_median": float(np.median([a for _, _, a, _ in v]))}
                                  for m, v in sorted(by_mode.items())}
            rows.append(row)
            print(f"{tname:9s} {name:22s} made {row['made']:3d}  |contrast| {row['contrast_abs_median']:5.1f}  "
                  f"contrast kept {row['contrast_kept_median']:.2f} "
                  f"[{row['contrast_kept_iqr'][0]:.2f}, {row['contrast_kept_iqr'][1]:.2f}]  "
                  f"|change| in mask {row['change_in_mask']:5.1f}  clipped {row['clipped_share']:.2f}  "
                  f"visible in label {row['visible_in_label']:.2f}  change outside label "
                  f"{row['change_outside_label']:.2f}  label/placed {row['label_over_placed']:.2f}  "
                  f"stands out {row['stands_out']:.2f}  novel {row['novel']:.2f}  label area {row['label_area_pct_median']:.2f}%  "
                  f"sources {row['sources']}", flush=True)
            for m, v in row.get("by_mode", {}).items():
                print(f"{tname:9s}   {m:20s} made {v['made']:3d}  |contrast| {v['contrast_abs_median']:5.1f}  "
                      f"stands out {v['stands_out']:.2f}  novel {v['novel']:.2f}  label area {v['label_area_pct_median']:.2f}%", flush=True)
            if not views:
                views.append(np.full((224, 112, 3), 255, np.uint8))  # none of that mode: an empty column
            strip = np.concatenate(views, axis=1)
            label = np.full((18, strip.shape[1], 3), 255, np.uint8)
            cv2.putText(label, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            row["_sheet"] = np.concatenate([label, strip], axis=0)
        strips = [r.pop("_sheet") for r in rows if "_sheet" in r]
        width = max(s.shape[1] for s in strips)
        sheet = np.concatenate([np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255)
                                for s in strips], axis=0)
        cv2.imwrite(str(out / f"{tname}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        table[tname] = rows
    (out / "diagnostics.json").write_text(json.dumps(table, indent=1))
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
