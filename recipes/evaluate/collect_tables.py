"""Gather the results.json files of the evaluation runs into the Markdown tables of the README
(CPU-scale counterparts of the paper's Tables 1, 3 and 4). Nothing is typed by hand: every number
comes from a results.json written by `cai-hub evaluate`.

    python recipes/evaluate/collect_tables.py --runs runs > /tmp/tables.md
"""
import argparse
import json
import math
from pathlib import Path

TARGETS = (("grid", "MVTec grid"), ("hazelnut", "MVTec hazelnut"), ("ksdd", "KolektorSDD"))
TABLE1 = ("cai-n", "cai-m", "nsa-n", "nsa-m", "cutpaste", "draem")
TABLE3 = ("cai-n", "cai-paste", "cai-no-stm", "cai-no-ils")
TABLE4 = ("cai-433", "cai-622", "cai-262", "cai-226")
METRICS = (("pixel_auroc", "P-AUROC"), ("pixel_ap", "P-AP"), ("pro", "PRO"), ("image_auroc", "I-AUROC"))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs", help="folder holding <target> and <target>_abl run folders")
    return parser.parse_args()


def cell(pair):
    mean, std = pair
    return "n/a" if mean is None or math.isnan(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def load(runs: Path, name: str):
    path = runs / name / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(title, runs: Path, suffix: str, synths) -> list[str]:
    lines = [f"### {title}", ""]
    for key, label in TARGETS:
        res = load(runs, key + suffix)
        if res is None:
            lines += [f"**{label}**: not run.", ""]
            continue
        profile = res["profile"]["name"]
        head = ["synthesizer"] + [f"{m} [{profile}]" for _, m in METRICS] + ["FD-Lite0 ↓"]
        t = res["target"]
        lines += [f"**{label}** — {t['train_normals']} training normals, test {t['test_images']} images "
                  f"({', '.join(f'{k} {v}' for k, v in t['test_per_class'].items())}), seeds "
                  f"{', '.join(map(str, res['seeds']))}; CPU {res['cpu_seconds']:.0f} s, wall {res['wall_seconds']:.0f} s.",
                  "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in synths:
            r = res["synthesizers"].get(s)
            if r is None:
                lines.append(f"| {s} | " + " | ".join(["not run"] * (len(head) - 1)) + " |")
                continue
            fd = r.get("fd", {}).get("lite0")
            lines.append("| " + " | ".join([s] + [cell(r["summary"][k]) for k, _ in METRICS]
                                           + ["n/a" if fd is None else f"{fd:.1f}"]) + " |")
        lines.append("")
    return lines


def main():
    args = parse_args()
    runs = Path(args.runs)
    out = []
    out += table("Table 1 (CPU scale): CAI against the baselines", runs, "", TABLE1)
    out += table("Table 3 (CPU scale): CAI ablations — injection mode, scale matching (STM), "
                 "injection location selection (ILS)", runs, "_abl", TABLE3)
    out += table("Table 4 (CPU scale): scale mix large/medium/small per 10 pseudo anomalies", runs, "_abl", TABLE4)
    print("\n".join(out))


if __name__ == "__main__":
    main()
