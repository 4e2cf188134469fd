"""Compare synthesizers across evaluation runs with paired bootstrap intervals, and choose a default
by leave-one-target-out.

Every ``cai-hub evaluate`` run writes ``per_image/<synth>__seed<k>.npz`` (per-image score histograms
of the real test set). This script pools the runs given, groups them by target, and prints for each
target every synthesizer's pixel AP (mean over seeds) and its paired-bootstrap difference to a
reference, with the 95% interval ("no difference shown" where it covers 0).

With ``--candidates``, it also makes the leave-one-target-out choice: for each target T, the
candidate with the best mean pixel AP over the *other* targets is chosen, then reported on T against
the best baseline of T and against each other candidate. A default counts only if it is chosen on
the folds and wins on the held-out targets.

Usage::

    python recipes/evaluate/compare_runs.py runs/w1_grid runs/w1_hazelnut runs/w1_ksdd \
        --reference cai-n --baselines cutpaste,nsa-n,nsa-m,draem,glass-las --candidates cai-n,cai-mix,...
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from cai.eval.bootstrap import ap_from_histograms, describe, load_histograms, paired_bootstrap


def load_runs(folders) -> dict:
    """target name -> synth -> {"seeds": {seed: (pos, neg)}, "images": [...]} (later runs win)."""
    targets: dict = {}
    for folder in map(Path, folders):
        if (folder / "results.json").is_file():  # a finished run names its target
            t = json.loads((folder / "results.json").read_text())["target"]
            name = t["category"] or t["name"]
        else:  # a run still going: the folder name's last part (runs/w1_grid -> grid)
            name = folder.name.rsplit("_", 1)[-1]
        for f in sorted((folder / "per_image").glob("*.npz")):
            m = re.fullmatch(r"(.+)__seed(\d+)\.npz", f.name)
            pos, neg, images = load_histograms(f)
            entry = targets.setdefault(name, {}).setdefault(m.group(1), {"seeds": {}, "images": images})
            if entry["images"] != images:
                raise SystemExit(f"{f}: test images differ from another run of {m.group(1)} on {name}")
            entry["seeds"][int(m.group(2))] = (pos, neg)
    return targets


def mean_ap(entry) -> float:
    return float(np.mean([ap_from_histograms(p.sum(0), n.sum(0)) for p, n in entry["seeds"].values()]))


def compare(entry_a, entry_b, n_boot: int) -> dict:
    seeds = sorted(set(entry_a["seeds"]) & set(entry_b["seeds"]))
    if entry_a["images"] != entry_b["images"]:
        raise SystemExit("runs scored on different test sets cannot be paired")
    return paired_bootstrap([entry_a["seeds"][s] for s in seeds], [entry_b["seeds"][s] for s in seeds],
                            n_boot=n_boot)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders of cai-hub evaluate")
    ap.add_argument("--reference", default="cai-n")
    ap.add_argument("--baselines", default="cutpaste,nsa-n,nsa-m,draem,glass-las")
    ap.add_argument("--candidates", default="", help="comma-separated: leave-one-target-out choice among these")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    targets = load_runs(args.runs)
    out = {"per_target": {}, "loo": {}}
    for tname, synths in targets.items():
        print(f"\n### {tname}: pixel AP % (mean over seeds), Δ vs {args.reference} [paired bootstrap 95% CI]\n")
        print("| synthesizer | seeds | P-AP | Δ vs " + args.reference + " |\n|---|---|---|---|")
        rows = {}
        for s, entry in sorted(synths.items(), key=lambda kv: -mean_ap(kv[1])):
            d = compare(entry, synths[args.reference], args.n_boot) if args.reference in synths and \
                s != args.reference else None
            rows[s] = {"ap": mean_ap(entry), "seeds": sorted(entry["seeds"]), "vs_reference": d}
            print(f"| {s} | {len(entry['seeds'])} | {100 * rows[s]['ap']:.1f} | "
                  f"{describe(d) if d else 'reference' if s == args.reference else 'n/a'} |")
        out["per_target"][tname] = rows
    candidates = [c for c in args.candidates.split(",") if c]
    baselines = [b for b in args.baselines.split(",") if b]
    if candidates:
        print("\n### Leave one target out\n")
        for held in targets:
            others = [t for t in targets if t != held]
            usable = [c for c in candidates if all(c in targets[t] for t in targets)]
            score = {c: np.mean([mean_ap(targets[t][c]) for t in others]) for c in usable}
            chosen = max(score, key=score.get)
            here = targets[held]
            present = [b for b in baselines if b in here]
            best_base = max(present, key=lambda b: mean_ap(here[b])) if present else None
            fold = {"chosen": chosen, "score_on_others": score, "ap_held_out": mean_ap(here[chosen])}
            line = (f"- held out **{held}**: chosen on {', '.join(others)} → `{chosen}` "
                    f"(mean AP there {100 * score[chosen]:.1f}); on {held}: {100 * fold['ap_held_out']:.1f}")
            if best_base:
                d = compare(here[chosen], here[best_base], args.n_boot)
                fold["vs_best_baseline"] = {"baseline": best_base, **d}
                line += f"; vs best baseline `{best_base}` ({100 * mean_ap(here[best_base]):.1f}): {describe(d)}"
            fold["vs_candidates"] = {c: compare(here[chosen], here[c], args.n_boot) for c in usable if c != chosen}
            print(line)
            for c, d in fold["vs_candidates"].items():
                print(f"    vs `{c}` ({100 * mean_ap(here[c]):.1f}): {describe(d)}")
            out["loo"][held] = fold
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
