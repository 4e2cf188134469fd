"""``cai-hub evaluate`` in two configurations side by side in one run, on the same target, synthesizers,
seeds and threads:

* ``--compare heap``: freed buffers kept in the heap (the default, :mod:`cai.eval.heap`) vs glibc's
  defaults ("glibc defaults" replaces :func:`cai.eval.heap.retained_heap` by a block that changes nothing);
* ``--compare jobs``: one process with ``--threads T`` vs ``--jobs 2`` worker processes with T // 2
  threads each (``--reference``: a third arm, one process with T // 2 threads, whose numbers ``--jobs 2``
  must reproduce).

Each configuration runs in a fresh Python process (a clean heap) and prints its wall time, CPU time
in user and kernel mode and minor page faults (getrusage of the child), then whether every metric of
results.json (per synthesizer and seed: pixel AUROC / AP, PRO, image AUROC, per-class AP, final loss;
FD) came out identical to the first arm's (heap) or to the reference's (jobs). Peak RSS is the largest
of any one process (getrusage of the children: a pool's workers are not summed).

    python benchmarks/bench_evaluate.py --target ksdd --root ../shared/data/ksdd --daad runs/daad \
        --synth cai,draem --seeds 1 [--epochs 4] [--threads 2] [--compare jobs [--reference]]

Figures only; nothing is asserted (tests/eval/test_heap.py checks the heap behaviour).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import contextlib, json, sys
import cai.eval.evaluate as ev
args = json.loads(sys.argv[1])
if not args.pop("retained"):
    ev.retained_heap = lambda: contextlib.nullcontext(False)
ev.evaluate(**args)
"""

def run(kwargs: dict, retained: bool) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, json.dumps({**kwargs, "retained": retained})], check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt, "maxrss": after.ru_maxrss / 1024}


def arms(compare: str, threads: int, reference: bool) -> list:
    """(label, retained heap, evaluate keyword overrides) per arm; the arm the others' numbers are checked
    against comes first."""
    if compare == "heap":
        return [("default: freed buffers kept in the heap", True, {}), ("glibc defaults", False, {})]
    half = max(1, threads // 2)
    found = [(f"--jobs 2 --threads {threads}", True, {"jobs": 2}),
             (f"one process, --threads {threads}", True, {})]
    if reference:
        found.insert(0, (f"reference: one process, --threads {half}", True, {"threads": half}))
    return found


def metrics(out: Path) -> dict:
    r = json.loads((out / "results.json").read_text())
    keep = {}
    for name, s in r["synthesizers"].items():
        keep[name] = {"fd": s.get("fd"), "runs": [{k: v for k, v in run.items() if not k.endswith("seconds")}
                                                  for run in s["runs"]]}
    return keep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="ksdd")
    ap.add_argument("--root", default="../shared/data/ksdd")
    ap.add_argument("--category")
    ap.add_argument("--daad", required=True, help="anomaly set of the cai* synthesizers")
    ap.add_argument("--synth", default="cai,draem")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, help="override the cpu profile's 12 epochs")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--compare", choices=("heap", "jobs"), default="heap")
    ap.add_argument("--reference", action="store_true", help="--compare jobs: add the one-process arm with "
                    "threads // 2 threads, whose numbers --jobs 2 must reproduce")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows, found = {}, {}
        for index, (label, retained, overrides) in enumerate(arms(args.compare, args.threads, args.reference)):
            out = Path(tmp) / f"arm{index}"
            kwargs = {"target": args.target, "root": args.root, "category": args.category, "daad": args.daad,
                      "synths": args.synth.split(","), "seeds": args.seeds, "out": str(out), "progress": False,
                      "threads": args.threads, "detector": {"epochs": args.epochs} if args.epochs else {},
                      **overrides}
            rows[label] = run(kwargs, retained)
            found[label] = metrics(out)
            print(f"{label}: {rows[label]['wall']:.1f} s", flush=True)
        print(f"\nevaluate {args.target} --synth {args.synth} --seeds {args.seeds} --threads {args.threads}"
              f"{f' --epochs {args.epochs}' if args.epochs else ''}\n")
        print(f"| {args.compare} | wall s | user s | sys s | minor faults | peak RSS of one process MiB |\n"
              "|---|---|---|---|---|---|")
        for label, r in rows.items():
            print(f"| {label} | {r['wall']:.1f} | {r['user']:.1f} | {r['sys']:.1f} | {r['faults'] / 1e6:.2f} M "
                  f"| {r['maxrss']:.0f} |")
        labels = list(rows)
        if args.compare == "heap":
            a, b = rows[labels[0]], rows[labels[1]]
            print(f"\nwall: glibc defaults / default = {b['wall'] / a['wall']:.2f}x; every metric identical: "
                  f"{found[labels[0]] == found[labels[1]]}")
        else:
            jobs, one = (labels[1], labels[2]) if args.reference else (labels[0], labels[1])
            print(f"\nwall: one process / --jobs 2 = {rows[one]['wall'] / rows[jobs]['wall']:.2f}x")
            if args.reference:
                print(f"--jobs 2: every metric identical to the reference's: {found[jobs] == found[labels[0]]}")


if __name__ == "__main__":
    main()
