r"""Compare synthesizers across evaluation runs with paired bootstrap intervals, and choose a default
by leave-one-target-out.

Pools the run folders given (by target), prints for each target every synthesizer's pixel AP (mean
over seeds) and its paired-bootstrap difference to ``--reference`` with the 95% interval ("no
difference shown" where it covers 0). With ``--candidates``, makes the leave-one-target-out choice:
for each target T, the candidate with the best score over the *other* targets, among those whose
FD-Lite0 is within ``--fd-tolerance`` of the reference's on every other target, is reported on T
against T's best baseline and against every other candidate. ``--criterion mean`` (default) scores a
candidate by its mean pixel AP over the other targets; ``--criterion worst-margin`` by its smallest
margin over the best baseline of each other target (``min_t AP_c,t - max_b AP_b,t``): the bar of a
default that must beat every baseline on every target, whatever the target.

    python recipes/evaluate/compare_runs.py runs/* --reference cai-n \
        --candidates cai-n,cai-paste,cai-paste+refine --baselines cutpaste,nsa-n,nsa-m,draem,glass-las

``--cluster TARGET=REGEX`` resamples clusters of test images on that target instead of single images
(the first group of the regular expression in the image name is the cluster; e.g. the BSData target of
``window_target.py``, whose test photos show the same pits again and again over time:
``--cluster bsdata=_(\d+_\d{3}_crop_\d_w\d)\.``).

``--resample-seeds`` also resamples the paired detector seeds in each bootstrap draw, so the interval
covers seed-to-seed variation as well as the test images (coarse with 3 seeds).

Runs made with ``evaluate --on-the-fly`` are named ``<synth>@otf`` (:func:`cai.eval.collect.load_runs`);
each is also compared with the fixed-split run of the same synthesizer (matched seeds).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cai.eval.bootstrap import describe
from cai.eval.collect import ON_THE_FLY_TAG, clusters_by_target, fill_fd, load_runs, rename_synthesizers
from cai.eval.collect import compare as compare_runs


def fd_ok(entry, ref, tolerance: float) -> bool:
    a, b = entry.fd.get("lite0"), ref.fd.get("lite0")
    return a is not None and b is not None and a <= (1 + tolerance) * b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders of cai-hub evaluate")
    ap.add_argument("--reference", default="cai-n")
    ap.add_argument("--baselines", default="cutpaste,nsa-n,nsa-m,draem,glass-las")
    ap.add_argument("--candidates", default="")
    ap.add_argument("--fd-tolerance", type=float, default=0.10)
    ap.add_argument("--criterion", choices=("mean", "worst-margin"), default="mean",
                    help="leave-one-out score on the other targets: mean pixel AP, or the smallest margin over "
                         "each target's best baseline")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--fd", action="append", default=[], metavar="TARGET=FILE",
                    help="FD-Lite0 values from recipes/evaluate/authenticity.py for runs that did not record them")
    ap.add_argument("--alias", action="append", default=[], metavar="[TARGET:]NAME=AS",
                    help="call synthesizer NAME AS on every target, or on TARGET only (the same settings run "
                         "under another name, e.g. cai+long+aug=cai@long, neu_target:cai=cai+paste75)")
    ap.add_argument("--resample-seeds", action="store_true", help="resample the paired seeds too")
    ap.add_argument("--cluster", action="append", default=[], metavar="TARGET=REGEX",
                    help="resample clusters of this target's test images (regex group 1 of the image name)")
    args = ap.parse_args()
    targets = load_runs(args.runs)
    try:
        rename_synthesizers(targets, args.alias)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    fill_fd(targets, args.fd)
    out = {"per_target": {}, "loo": {}}
    try:
        clusters = clusters_by_target(targets, args.cluster)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None

    def compare(a, b, target):
        return compare_runs(a, b, args.n_boot, clusters=clusters.get(target), resample_seeds=args.resample_seeds)

    for tname, synths in targets.items():
        ref = synths.get(args.reference)
        how = "paired bootstrap 95% CI" + (", seeds resampled too" if args.resample_seeds else "")
        if tname in clusters:
            how = f"{how}, test images in {len(set(clusters[tname]))} clusters"
        print(f"\n### {tname}: pixel AP % (mean over seeds), Δ vs {args.reference} [{how}]\n")
        print(f"| synthesizer | seeds | P-AP | FD-Lite0 | Δ vs {args.reference} |\n|---|---|---|---|---|")
        rows = {}
        for s, e in sorted(synths.items(), key=lambda kv: -kv[1].pixel_ap):
            d = compare(e, ref, tname) if ref is not None and s != args.reference else None
            fd = e.fd.get("lite0")
            rows[s] = {"ap": e.pixel_ap, "seeds": sorted(e.seeds), "fd": fd, "vs_reference": d}
            print(f"| {s} | {len(e.seeds)} | {100 * e.pixel_ap:.1f} | {'n/a' if fd is None else f'{fd:.1f}'} | "
                  f"{describe(d) if d else 'reference' if s == args.reference else 'n/a'} |")
        out["per_target"][tname] = rows
        pairs = [s[:-len(ON_THE_FLY_TAG)] for s in synths
                 if s.endswith(ON_THE_FLY_TAG) and s[:-len(ON_THE_FLY_TAG)] in synths]
        if pairs:
            print(f"\n{tname}: on the fly vs the fixed split, same synthesizer and seeds\n")
            for s in pairs:
                otf = s + ON_THE_FLY_TAG
                d = compare(synths[otf], synths[s], tname)
                rows[otf]["vs_fixed_split"] = d
                print(f"- `{otf}` {100 * synths[otf].pixel_ap:.1f} vs `{s}` {100 * synths[s].pixel_ap:.1f}: {describe(d)}")
    candidates = [c for c in args.candidates.split(",") if c]
    baselines = [b for b in args.baselines.split(",") if b]
    if candidates:
        # each target's best baseline (None where none was run)
        best_baseline = {t: max((b for b in baselines if b in synths), key=lambda b: synths[b].pixel_ap, default=None)
                         for t, synths in targets.items()}
        if args.criterion == "worst-margin" and None in best_baseline.values():
            missing = sorted(t for t, b in best_baseline.items() if b is None)
            raise SystemExit(f"--criterion worst-margin: target(s) {missing} have none of the baselines {baselines}")

        def score_of(c, others):
            if args.criterion == "mean":
                return float(np.mean([targets[t][c].pixel_ap for t in others]))
            return float(min(targets[t][c].pixel_ap - targets[t][best_baseline[t]].pixel_ap for t in others))

        what, fmt = (("mean P-AP", ".1f") if args.criterion == "mean"
                     else ("worst margin over the best baseline", "+.1f"))
        print(f"\n### Leave one target out by {what} (FD-Lite0 within {100 * args.fd_tolerance:.0f}% of "
              f"{args.reference}'s)\n")
        for held in targets:
            others = [t for t in targets if t != held]
            usable = [c for c in candidates if all(c in targets[t] for t in targets)]
            eligible = [c for c in usable if all(fd_ok(targets[t][c], targets[t][args.reference], args.fd_tolerance)
                                                 for t in others)]
            if not eligible:
                print(f"- held out {held}: no candidate meets the FD rule on {', '.join(others)}")
                continue
            score = {c: score_of(c, others) for c in eligible}
            chosen = max(score, key=score.get)
            here = targets[held]
            fold = {"chosen": chosen, "eligible": eligible, "criterion": args.criterion, "score_on_others": score,
                    "ap_held_out": here[chosen].pixel_ap}
            line = (f"- held out **{held}**: chosen on {' + '.join(others)} → `{chosen}` "
                    f"({what} there {100 * score[chosen]:{fmt}}); on {held}: {100 * here[chosen].pixel_ap:.1f}")
            best = best_baseline[held]
            if best is not None:
                d = compare(here[chosen], here[best], held)
                fold["vs_best_baseline"] = {"baseline": best, **d}
                line += f"; vs best baseline `{best}` ({100 * here[best].pixel_ap:.1f}): {describe(d)}"
            print(line)
            fold["vs_candidates"] = {}
            for c in usable:
                if c != chosen:
                    d = compare(here[chosen], here[c], held)
                    fold["vs_candidates"][c] = d
                    print(f"    vs `{c}` ({100 * here[c].pixel_ap:.1f}): {describe(d)}")
            out["loo"][held] = fold
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
