"""Gather evaluation runs into the Markdown tables of the README (CPU-scale counterparts of the
paper's Tables 1, 3 and 4). Nothing is typed by hand: every metric comes from a results.json written by
`cai-hub evaluate`, every Δ and interval from the runs' per-image histograms (paired bootstrap over test
images, 2000 resamples, matched seeds: `cai.eval.bootstrap`).

    python recipes/evaluate/collect_tables.py runs/* > /tmp/tables.md

Runs are pooled by target; a synthesizer found in several runs is taken from the last folder given. A
folder given as FOLDER@TAG names its synthesizers <synth>@TAG (e.g. runs on another anomaly set).
"""
import argparse
import math

from cai.eval.bootstrap import describe
from cai.eval.collect import clusters_by_target, compare, fill_fd, load_runs, rename_synthesizers

TARGETS = (("grid", "MVTec grid"), ("hazelnut", "MVTec hazelnut"), ("ksdd", "KolektorSDD"),
           ("bsdata_target", "BSData spindle pits (window target, 6 seeds)"),
           ("carpet_target", "MVTec carpet stains (window target, 6 seeds)"),
           ("cfd_target", "Road cracks, CrackForest (window target, 6 seeds)"),
           ("neu_target", "Steel strip, NEU-Seg (window target, 6 seeds)"),
           ("fabric_target", "Fabric stains (window target, 6 seeds)"))
DEFAULT = "cai"
# Runs on the shared-sources DAAD (recipes/daad/daad.yaml) are named as they are; runs of the first three
# rounds, on the 3-source anomaly set (recipes/anomaly_set_from_shared), are given as FOLDER@3src. DAAD runs
# of `cai` and `cai+<modifier>` made under earlier defaults carry the tag of those settings: FOLDER@long
# (rounds 4-5: scale matched to the foreground's long side, 8 rotations/flips), FOLDER@aug (round 6's
# first step: scale matched along each defect's axis, 8 rotations/flips) and FOLDER@paste (rounds 6-7:
# along, no rotations/flips, mode "paste"; `cai@paste` is `cai+paste` now and `cai+npmix@paste` is `cai`).
OLD, LONG, AUG, PASTE = "@3src", "@long", "@aug", "@paste"
TABLE1 = ("cai", "cutpaste", "nsa-n", "nsa-m", "draem", "glass-las", "cai" + PASTE, "cai" + AUG, "cai" + LONG,
          "cai" + OLD)
TABLE3 = ("cai", "cai-n", "cai-m", "cai-paste", "cai" + PASTE, "cai+paste50", "cai+paste75", "cai+paste90",
          "cai+nsan25", "cai+nsam25", "cai+nsanv25", "cai+nsanv50", "cai+nsanvs25", "cai+nsanus25", "cai+nsands25",
          "cai+nsanis25", "cai+nmpmix") + tuple(s + PASTE for s in (
    "cai+rel", "cai+long+aug", "cai+classbal+long+aug", "cai+npmix+long+aug")) + tuple(s + AUG for s in (
    "cai", "cai+noborder", "cai+geo", "cai+flips+along", "cai+classbal+along")) + tuple(s + LONG for s in (
    "cai", "cai+classbal", "cai+npmix", "cai+noborder", "cai+rel", "cai+noaug", "cai+flips"))
TABLE3_3SRC = tuple(s + OLD for s in (
    "cai", "cai-n", "cai-paste", "cai-r", "cai-mix", "cai-n+refine", "cai-paste+refine", "cai-paste+refine+aug",
    "cai-paste+refine+chmask", "cai-n+gain3", "cai+gain2", "cai+noborder", "cai+halo2", "cai+halo5"))
TABLE4 = ("cai", "cai+q622", "cai+q262", "cai+q226")  # scale mixes large/medium/small of the default
METRICS = (("pixel_auroc", "P-AUROC"), ("pixel_ap", "P-AP"), ("pro", "PRO"), ("image_auroc", "I-AUROC"))


def cell(pair):
    mean, std = pair
    return "n/a" if mean is None or math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def table(title, targets, synths, delta_title, delta, keys=None) -> list[str]:
    """``delta(entries, synth, target)`` -> bootstrap dict or None, shown in the last column. The targets
    of :data:`TARGETS` come first under their titles, any other under its own name. Targets with no run at
    all, or not among ``keys`` when given, are left out."""
    lines = [f"### {title}", ""]
    known = dict(TARGETS)
    for key, label in list(TARGETS) + [(k, k) for k in sorted(targets) if k not in known]:  # others by name
        if keys is not None and key not in keys:
            continue
        entries = targets.get(key, {})
        rows = [s for s in synths if s in entries]
        if not rows:
            if entries:
                lines += [f"**{label}**: not run.", ""]
            continue
        head = ["synthesizer", "seeds"] + [m for _, m in METRICS] + ["FD-Lite0 ↓", delta_title]
        lines += [f"**{label}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in rows:
            e = entries[s]
            metrics = [cell(e.summary.get(k, (None, None))) if e.summary else "n/a" for k, _ in METRICS]
            if not e.summary:  # a run that did not finish: P-AP from its histograms
                metrics[1] = f"{100 * e.pixel_ap:.1f} (hist.)"
            fd = e.fd.get("lite0")
            d = delta(entries, s, key)
            lines.append("| " + " | ".join([s, str(len(e.seeds))] + metrics + ["n/a" if fd is None else f"{fd:.1f}",
                                                                                 describe(d) if d else "—"]) + " |")
        lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders of cai-hub evaluate")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--fd", action="append", default=[], metavar="TARGET=FILE",
                    help="FD-Lite0 values from recipes/evaluate/authenticity.py for runs that did not record them")
    ap.add_argument("--cluster", action="append", default=[], metavar="TARGET=REGEX",
                    help="resample clusters of this target's test images (regex group 1 of the image name), as "
                         "compare_runs.py does, e.g. the window targets whose test photos repeat one defect")
    ap.add_argument("--alias", action="append", default=[], metavar="[TARGET:]NAME=AS",
                    help="call synthesizer NAME AS on every target, or on TARGET only, in order (e.g. --alias "
                         "cai=cai+paste50 --alias cai+paste75=cai: the tenth round's runs under the eleventh "
                         "round's default)")
    args = ap.parse_args()
    targets = load_runs(args.runs)
    fill_fd(targets, args.fd)
    try:
        rename_synthesizers(targets, args.alias)
        clusters = clusters_by_target(targets, args.cluster)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None

    def default_minus(entries, s, target, ref=DEFAULT):
        return (compare(entries[ref], entries[s], args.n_boot, clusters=clusters.get(target))
                if ref in entries and s != ref else None)

    def minus_default(entries, s, target, ref=DEFAULT):
        return (compare(entries[s], entries[ref], args.n_boot, clusters=clusters.get(target))
                if ref in entries and s != ref else None)

    out = table("Table 1 (CPU scale): the default CAI against the baselines", targets, TABLE1,
                f"Δ P-AP: {DEFAULT} − row [95% CI]", default_minus)
    out += table("Table 3 (CPU scale): CAI ablations on DAAD", targets, TABLE3,
                 f"Δ P-AP: row − {DEFAULT} [95% CI]", minus_default)
    out += table("Table 3, first three rounds (CPU scale): CAI ablations on the 3-source anomaly set", targets,
                 TABLE3_3SRC, f"Δ P-AP: row − {DEFAULT}{OLD} [95% CI]",
                 lambda entries, s, target: minus_default(entries, s, target, DEFAULT + OLD),
                 keys=("grid", "hazelnut", "ksdd"))  # the 3-source set was never run on the window targets
    # the newest settings the scale mixes were run with: the default, the default before "along", 3-source
    tag = next((t for t in ("", PASTE, AUG, LONG, OLD) if any("cai+q622" + t in e for e in targets.values())), OLD)
    four = tuple(s + tag for s in TABLE4)
    where = {"": "", PASTE: ", the default of rounds 6-7 (`@paste`)", AUG: ", the sixth round's first default (`@aug`)",
             LONG: ", the default before `scale_reference=\"along\"` (`@long`)",
             OLD: ", on the 3-source anomaly set"}[tag]
    out += table("Table 4 (CPU scale): scale mix large/medium/small per 10 pseudo anomalies (`cai` = 4/3/3)"
                 + where, targets, four,
                 f"Δ P-AP: row − {four[0]} [95% CI]",
                 lambda entries, s, target: minus_default(entries, s, target, four[0]))
    print("\n".join(out))


if __name__ == "__main__":
    main()
