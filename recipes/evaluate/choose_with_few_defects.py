r"""Is choosing the synthesizer on k of your own real defects better than keeping the default?

From evaluation runs already made (``cai-hub evaluate`` folders, pooled by target as in
``compare_runs.py``), for each target and each k: draw k defective test images (``--cluster``: k
clusters of photos of the same defect) as a user's few real defects, choose the candidate with the best
pixel AP on them, and score the choice and the default ``--default`` on every other test image
(:func:`cai.eval.selection.few_defect_choice`). Prints, per target and k, how often the choice is the
best candidate on the held-out images, the mean held-out gain over the default with its 5th and 95th
percentiles over draws, and the share of draws that lose more than ``--loss`` points.

    python recipes/evaluate/choose_with_few_defects.py runs/n21_grid runs/nd2_grid@paste runs/dfn_grid \
        --candidates cai,cai@paste,cai-n --default cai --k 1,2,3,5,8

The recipe README's ninth round shows the figures on five targets and the rule they were read by
(``results/round9_plan.txt``, written before they were computed): the smallest k at which the mean
held-out gain is >= 0 on every target. The last lines print, per k, the smallest mean gain over the
targets and the largest share of losing draws, and the targets where k cannot be drawn.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cai.eval.collect import clusters_by_target, load_runs, rename_synthesizers
from cai.eval.selection import few_defect_choice


def rule_lines(figures: dict, ks: list[int], loss: float) -> list[str]:
    """Per k: the smallest mean held-out gain over the targets (%, and which), the largest share of draws
    losing more than ``loss`` points, and the targets where k could not be drawn.

    ``figures``: {target: {"k": {k: summary}}} as written to ``--json`` (summaries with ``gain_mean`` and
    ``loss_share`` as fractions)."""
    lines = []
    for k in ks:
        have = {t: f["k"][k] for t, f in figures.items() if k in f["k"]}
        lacking = sorted(set(figures) - set(have))
        if not have:
            lines.append(f"k={k}: drawn on no target")
            continue
        worst = min(have, key=lambda t: have[t]["gain_mean"])
        riskiest = max(have, key=lambda t: have[t]["loss_share"])
        lines.append(f"k={k}: smallest mean gain {100 * have[worst]['gain_mean']:+.2f} ({worst}); largest share of "
                     f"draws losing > {loss:g}: {100 * have[riskiest]['loss_share']:.1f}% ({riskiest})"
                     + (f"; not drawn on {', '.join(lacking)}" if lacking else ""))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run folders of cai-hub evaluate (FOLDER@TAG names its synthesizers <synth>@TAG)")
    ap.add_argument("--candidates", required=True, help="comma-separated synthesizer names; their order breaks ties")
    ap.add_argument("--default", default="cai", help="the candidate kept without a choice")
    ap.add_argument("--k", default="1,2,3,5,8", help="comma-separated numbers of validation defects")
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss", type=float, default=5.0, help="a draw losing more than this many AP points counts as a loss")
    ap.add_argument("--cluster", action="append", default=[], metavar="TARGET=REGEX",
                    help="draw clusters of this target's test images (regex group 1 of the image name)")
    ap.add_argument("--alias", action="append", default=[], metavar="[TARGET:]NAME=AS",
                    help="call synthesizer NAME AS on every target, or on TARGET only, in order (as compare_runs.py)")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="keep the default unless the best candidate beats it on the drawn defects by more than "
                         "this many AP points [0]")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise SystemExit(f"--json {args.json}: its folder does not exist")
    if args.margin < 0:
        raise SystemExit(f"--margin must be >= 0, got {args.margin}")
    candidates = [c for c in args.candidates.split(",") if c]
    ks = [int(v) for v in args.k.split(",") if v]
    if args.default not in candidates:
        raise SystemExit(f"--default {args.default!r} must be one of --candidates {candidates}")
    targets = load_runs(args.runs)
    try:
        rename_synthesizers(targets, args.alias)
        clusters = clusters_by_target(targets, args.cluster)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    out = {}
    print(f"candidates {', '.join(candidates)}; default {args.default}"
          + (f" (kept unless beaten by > {args.margin:g} points on the drawn defects)" if args.margin else "")
          + f"; {args.draws} draws per k; "
          f"held-out pixel AP %, gain = choice − default\n")
    print("| target | k | units | picked the held-out best | mean gain [5th, 95th pct] | draws losing > "
          f"{args.loss:g} | chosen |\n|---|---|---|---|---|---|---|")
    for tname, synths in targets.items():
        missing = [c for c in candidates if c not in synths]
        if missing:
            print(f"| {tname} | – | – | – | missing {', '.join(missing)} | – | – |")
            continue
        seeds = sorted(set.intersection(*(set(synths[c].seeds) for c in candidates)))
        if not seeds:
            raise SystemExit(f"{tname}: the candidates share no seed")
        runs = {c: [synths[c].seeds[s] for s in seeds] for c in candidates}
        out[tname] = {"seeds": seeds, "k": {}}
        for k in ks:
            try:
                draws = few_defect_choice(runs, k, args.default, n_draws=args.draws, seed=args.seed,
                                          clusters=clusters.get(tname), margin=args.margin / 100)
            except ValueError as exc:
                print(f"| {tname} | {k} | – | – | {exc} | – | – |")
                continue
            s = draws.summary(loss=args.loss / 100)
            out[tname]["k"][k] = s
            chosen = ", ".join(f"{c} {100 * v:.0f}%" for c, v in sorted(s["chosen"].items(), key=lambda kv: -kv[1]) if v)
            print(f"| {tname} | {k} | {s['units']} | {100 * s['picked_best']:.0f}% | {100 * s['gain_mean']:+.1f} "
                  f"[{100 * s['gain_p05']:+.1f}, {100 * s['gain_p95']:+.1f}] | {100 * s['loss_share']:.0f}% | {chosen} |")
    print()
    print("\n".join(rule_lines(out, ks, args.loss)))
    if args.json:
        Path(args.json).write_text(json.dumps({"candidates": candidates, "default": args.default, "draws": args.draws,
                                               "margin": args.margin, "loss": args.loss, "targets": out}, indent=1))


if __name__ == "__main__":
    main()
