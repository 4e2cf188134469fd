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
from cai.eval.collect import compare, fill_fd, load_runs

TARGETS = (("grid", "MVTec grid"), ("hazelnut", "MVTec hazelnut"), ("ksdd", "KolektorSDD"))
DEFAULT = "cai"
# Runs on the shared-sources DAAD (recipes/daad/daad.yaml) are named as they are; runs of the first three
# rounds, on the 3-source anomaly set (recipes/anomaly_set_from_shared), are given as FOLDER@3src. DAAD runs
# of `cai` and `cai+<modifier>` made under earlier defaults carry the tag of those settings: FOLDER@long
# (rounds 4-5: scale matched to the foreground's long side, 8 rotations/flips) and FOLDER@aug (round 6's
# first step: scale matched along each defect's axis, 8 rotations/flips).
OLD, LONG, AUG = "@3src", "@long", "@aug"
TABLE1 = ("cai", "cutpaste", "nsa-n", "nsa-m", "draem", "glass-las", "cai" + AUG, "cai" + LONG, "cai" + OLD)
TABLE3 = ("cai", "cai-n", "cai-paste") + tuple(s + AUG for s in (
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


def table(title, targets, synths, delta_title, delta) -> list[str]:
    """``delta(entries, synth)`` -> bootstrap dict or None, shown in the last column."""
    lines = [f"### {title}", ""]
    for key, label in TARGETS:
        entries = targets.get(key, {})
        rows = [s for s in synths if s in entries]
        if not rows:
            lines += [f"**{label}**: not run.", ""]
            continue
        head = ["synthesizer", "seeds"] + [m for _, m in METRICS] + ["FD-Lite0 ↓", delta_title]
        lines += [f"**{label}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in rows:
            e = entries[s]
            metrics = [cell(e.summary[k]) if e.summary else "n/a" for k, _ in METRICS]
            if not e.summary:  # a run that did not finish: P-AP from its histograms
                metrics[1] = f"{100 * e.pixel_ap:.1f} (hist.)"
            fd = e.fd.get("lite0")
            d = delta(entries, s)
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
    args = ap.parse_args()
    targets = load_runs(args.runs)
    fill_fd(targets, args.fd)

    def default_minus(entries, s, ref=DEFAULT):
        return compare(entries[ref], entries[s], args.n_boot) if ref in entries and s != ref else None

    def minus_default(entries, s, ref=DEFAULT):
        return compare(entries[s], entries[ref], args.n_boot) if ref in entries and s != ref else None

    out = table("Table 1 (CPU scale): the default CAI against the baselines", targets, TABLE1,
                f"Δ P-AP: {DEFAULT} − row [95% CI]", default_minus)
    out += table("Table 3 (CPU scale): CAI ablations on DAAD", targets, TABLE3,
                 f"Δ P-AP: row − {DEFAULT} [95% CI]", minus_default)
    out += table("Table 3, first three rounds (CPU scale): CAI ablations on the 3-source anomaly set", targets,
                 TABLE3_3SRC, f"Δ P-AP: row − {DEFAULT}{OLD} [95% CI]",
                 lambda entries, s: minus_default(entries, s, DEFAULT + OLD))
    # the newest settings the scale mixes were run with: the default, the default before "along", 3-source
    tag = next((t for t in ("", AUG, LONG, OLD) if any("cai+q622" + t in e for e in targets.values())), OLD)
    four = tuple(s + tag for s in TABLE4)
    where = {"": "", AUG: ", the sixth round's first default (`@aug`)",
             LONG: ", the default before `scale_reference=\"along\"` (`@long`)",
             OLD: ", on the 3-source anomaly set"}[tag]
    out += table("Table 4 (CPU scale): scale mix large/medium/small per 10 pseudo anomalies (`cai` = 4/3/3)"
                 + where, targets, four,
                 f"Δ P-AP: row − {four[0]} [95% CI]", lambda entries, s: minus_default(entries, s, four[0]))
    print("\n".join(out))


if __name__ == "__main__":
    main()
