"""In-domain oracle: CAI fed with the target's *own* real defects, scored on real defects it never saw.

How far can any pattern source take a synthesizer with this detector? The best conceivable source for
an MVTec category is that category's real defects. Two-fold cross-validation over its test set: the
anomalous test images of each defect type are split alternately (sorted names) into fold 0 and
fold 1; the anomaly set of fold f holds fold f's images and ground-truth masks (source
``oracle_<category>``, class = the MVTec defect type), and the evaluation of fold f runs on the
other fold's anomalies plus all good test images. ``report`` gives each fold's pixel AP and their
mean, and compares them with the earlier runs (whose detectors saw no test image) scored on the
same images of each fold: the mean over the folds of the difference, with a paired bootstrap that
resamples test images within each fold (the folds are scored by different detectors, whose score
histograms have different bins, so their images are never pooled into one ranking).

    python recipes/evaluate/in_domain_oracle.py prepare --mvtec ../shared/data/mvtec_ad --category grid \\
        --out runs/oracle_grid
    # then the two cai-hub evaluate commands it prints, and:
    python recipes/evaluate/in_domain_oracle.py report --oracle runs/oracle_grid \\
        --runs runs/df_grid runs/dfp_grid runs/dfn_grid runs/base_grid

KolektorSDD (``prepare --target ksdd --ksdd ../shared/data/ksdd``): the defective parts, sorted by
``kosNN/PartK``, alternate between the folds; fold f's evaluation reads a KolektorSDD tree without
fold f's defective parts (same training normals, same held-out normal parts).

The fold folders hold symlinks to the dataset's files, never copies (KolektorSDD's masks are
written as PNGs beside the symlinked images of the anomaly sets). With few defects per fold (grid:
6 and 5) the oracle draws from fewer patterns than DAAD offers; it bounds what *these* real defects
give, not every in-domain source.
"""
import argparse
import shlex
from pathlib import Path

import cv2
import datasets
import numpy as np

from cai.eval.collect import SynthRuns, load_runs, matched_seeds
from cai.eval.bootstrap import describe, stratified_paired_bootstrap
from cai.imageio import IMAGE_EXTENSIONS
from cai.layouts.folder_pairs import load_folder_pairs

SYNTHS = "cai,cai-paste,cai-n"


def _link(link: Path, target: Path) -> None:
    if not link.is_symlink():
        link.symlink_to(target.resolve())


def _save_fold_set(aset: datasets.Dataset, out: Path, fold: int, name: str) -> None:
    aset = aset.map(lambda row: row, features=aset.features)  # embed the bytes
    aset.save_to_disk(str(out / f"aset_fold{fold}"))
    print(f"fold {fold}: {len(aset)} real {name} defects in {out / f'aset_fold{fold}'}")


def _print_commands(out: Path, target_args: list) -> None:
    print("\nnow run:")
    for fold in (0, 1):
        print(" ".join(map(shlex.quote, ["cai-hub", "evaluate", *target_args, "--root", str(out / f"fold{fold}"),
                                         "--daad", str(out / f"aset_fold{fold}"), "--synth", SYNTHS, "--seeds", "3",
                                         "--threads", "1", "--profile", "cpu", "--out", str(out / f"run_fold{fold}")])))


def prepare(mvtec: Path, category: str, out: Path) -> None:
    base = mvtec / category
    defects = sorted(d.name for d in (base / "test").iterdir() if d.is_dir() and d.name != "good")
    if not defects:
        raise SystemExit(f"{base}/test holds no defect folder")
    for fold in (0, 1):
        root = out / f"fold{fold}" / category  # evaluated on: the other fold's anomalies and every good image
        (root / "test").mkdir(parents=True, exist_ok=True)
        _link(root / "train", base / "train")
        _link(root / "test" / "good", base / "test" / "good")
        parts = []
        for defect in defects:
            images = sorted(p for p in (base / "test" / defect).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            pairs = out / f"pairs_fold{fold}" / defect
            for sub in (pairs / "images", pairs / "masks", root / "test" / defect, root / "ground_truth" / defect):
                sub.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                mask = base / "ground_truth" / defect / f"{image.stem}_mask.png"
                if i % 2 == fold:
                    _link(pairs / "images" / image.name, image)
                    _link(pairs / "masks" / image.name, mask)
                else:
                    _link(root / "test" / defect / image.name, image)
                    _link(root / "ground_truth" / defect / mask.name, mask)
            if any((pairs / "images").iterdir()):
                parts.append(load_folder_pairs(pairs, anomaly_class=defect, source=f"oracle_{category}",
                                               license="CC-BY-NC-SA-4.0"))
        _save_fold_set(datasets.concatenate_datasets(parts), out, fold, category)
    _print_commands(out, ["--target", "mvtec", "--category", category])


def prepare_ksdd(root: Path, out: Path) -> None:
    """KolektorSDD: fold f's defective parts are the anomaly set of fold f and are left out of the
    KolektorSDD tree its evaluation reads (a tree of symlinks: every other file as it is, so the
    training normals and the held-out normal parts stay those of the full target)."""
    from cai.eval.targets import NORMAL_CLASS, load_eval_target
    target = load_eval_target("ksdd", root)
    data = root / "data" if (root / "data").is_dir() else root
    defective = sorted((t for t in target.test if t.defect_class != NORMAL_CLASS), key=lambda t: str(t.path))
    for fold in (0, 1):
        mine = {t.path.resolve() for i, t in enumerate(defective) if i % 2 == fold}
        left_out = mine | {p.with_name(p.stem + "_label" + suffix) for p in mine for suffix in (".png", ".bmp")}
        tree = out / f"fold{fold}" / "data"
        for folder in sorted(d for d in data.iterdir() if d.is_dir()):
            (tree / folder.name).mkdir(parents=True, exist_ok=True)
            for f in folder.iterdir():
                if f.resolve() not in left_out:
                    _link(tree / folder.name / f.name, f)
        pairs = out / f"pairs_fold{fold}"
        (pairs / "images").mkdir(parents=True, exist_ok=True)
        (pairs / "masks").mkdir(parents=True, exist_ok=True)
        for t in defective:
            if t.path.resolve() in mine:
                stem = f"{t.path.parent.name}_{t.path.stem}"
                _link(pairs / "images" / f"{stem}{t.path.suffix}", t.path)
                _, mask = t.load()
                cv2.imwrite(str(pairs / "masks" / f"{stem}.png"), mask.astype(np.uint8) * 255)
        _save_fold_set(load_folder_pairs(pairs, anomaly_class="crack", source="oracle_kolektorsdd",
                                         license="CC-BY-NC-SA-4.0"), out, fold, "KolektorSDD")
    _print_commands(out, ["--target", "ksdd"])


def _restricted(runs: SynthRuns, images: list) -> SynthRuns:
    """``runs`` on the test images ``images`` only, in that order (histogram rows of one run share bins)."""
    missing = sorted(set(images) - set(runs.images))
    if missing:
        raise SystemExit(f"{runs.run} did not score {len(missing)} of the oracle's test images, e.g. {missing[0]}")
    order = [runs.images.index(name) for name in images]
    return SynthRuns(seeds={s: (p[order], n[order]) for s, (p, n) in runs.seeds.items()}, images=list(images),
                     run=runs.run)


def report(oracles, runs) -> None:
    """``oracles``: prepare folders (or folders beside them) holding ``run_fold0`` and ``run_fold1``; their
    synthesizers are pooled (a name found twice is taken from the last folder)."""
    folds = [{} for _ in (0, 1)]
    for oracle in oracles:
        for f in (0, 1):
            folds[f].update(next(iter(load_runs([Path(oracle) / f"run_fold{f}"]).values())))
    synths = [s for s in folds[0] if s in folds[1]]
    images = [folds[f][synths[0]].images for f in (0, 1)]
    anomalous = [sum(not name.startswith("good/") for name in fold) for fold in images]
    print(f"fold runs scored {len(images[0])} and {len(images[1])} test images ({anomalous[0]} and {anomalous[1]} "
          "anomalous, the good ones in both); pixel AP %, mean over seeds, per fold and their mean; differences: "
          "mean over the folds, paired bootstrap 95% interval resampling test images within each fold, "
          "matched seeds\n")
    print(f"  {'':26s} {'fold 0':>6s} {'fold 1':>6s} {'mean':>6s}   FD-Lite0 to the fold's real anomalies (mean)")
    oracle_folds = {s: [folds[0][s], folds[1][s]] for s in synths}
    for s, per_fold in oracle_folds.items():
        aps = [100 * r.pixel_ap for r in per_fold]
        fds = [r.fd.get("lite0") for r in per_fold]
        fd = f"{fds[0]:.1f} / {fds[1]:.1f} ({np.mean(fds):.1f})" if None not in fds else "-"
        print(f"  {s + ' (oracle)':26s} {aps[0]:6.1f} {aps[1]:6.1f} {np.mean(aps):6.1f}   {fd}")
    print("\nearlier runs on the same images, and the oracle minus them")
    for target in load_runs(runs).values():
        for name, r in target.items():
            per_fold = [_restricted(r, fold) for fold in images]
            aps = [100 * x.pixel_ap for x in per_fold]
            strata = {o: list(map(matched_seeds, oracle_folds[o], per_fold)) for o in synths}
            diffs = "   ".join(f"{o}: {describe(stratified_paired_bootstrap(strata[o]))}" for o in synths)
            print(f"  {name:26s} {aps[0]:6.1f} {aps[1]:6.1f} {np.mean(aps):6.1f}   {diffs}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="fold folders (symlinks) and the two fold anomaly sets")
    p.add_argument("--target", choices=("mvtec", "ksdd"), default="mvtec")
    p.add_argument("--mvtec", type=Path, default=Path("../shared/data/mvtec_ad"))
    p.add_argument("--category", help="MVTec AD category (--target mvtec)")
    p.add_argument("--ksdd", type=Path, default=Path("../shared/data/ksdd"), help="KolektorSDD root (--target ksdd)")
    p.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("report", help="cross-validated oracle vs earlier runs on the same target")
    r.add_argument("--oracle", type=Path, nargs="+", required=True,
                   help="the prepare --out folder with run_fold0/1 done (several: their synthesizers pooled)")
    r.add_argument("--runs", nargs="+", required=True, help="evaluate output folders on the full test set")
    args = parser.parse_args()
    if args.command == "prepare" and args.target == "ksdd":
        prepare_ksdd(args.ksdd, args.out)
    elif args.command == "prepare":
        if not args.category:
            parser.error("--category is required with --target mvtec")
        prepare(args.mvtec, args.category, args.out)
    else:
        report(args.oracle, args.runs)


if __name__ == "__main__":
    main()
