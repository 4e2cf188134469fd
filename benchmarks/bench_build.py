"""What a user waits for: the whole ``build-synthetic`` path on real images, ms per pseudo anomaly.

decode (PNG/JPEG normals, resize to 256²) -> synthesize (STR, ILS, injection, pseudo mask) -> encode
(three PNGs per row) -> parquet shards, through :func:`cai.build.build_synthetic` exactly as the CLI
runs it. Normals: MVTec AD grid (1024² grey PNG) and hazelnut (512² colour JPEG) train/good images
from ../shared/data, alternated and repeated to ``--normals`` (symlinks in a temp folder, a
``--target folder`` run); anomalies: the recipe's set (cracks_mixed + fabric_hsst + carpet, carpet
excluded as a leakage guard would on MVTec), ``--foreground all``, 10 pseudo anomalies per normal.

One run prints, each a separate build into a fresh output folder:

1. cold: a fresh process (imports, numba cache load) with an empty pattern cache (patterns prepared);
2. steady state, one process, ``--num-proc 1``, pattern cache warm, solver loaded — per mode:
   the default (``normal+paste``: a quarter of the pseudo anomalies Poisson-blended, three quarters
   pasted; half and half until the eleventh round) and
   ``--mode normal``, each with our solver and with ``cv2.seamlessClone`` as the blend
   (``_common.cv2_blend``, the same swap as ``bench_pipeline.py``: only ``cai.engine.inject.poisson_blend``
   changes; paste uses no solver), and ``--mode paste``; each with the default PNG settings (level 1,
   ``--png-filters fast``), with libpng's row filters at level 1, and at level 6 with libpng's filters
   (the settings before issue 11); all give the same pixels; with a per-stage breakdown;
3. peak RSS of a whole run (fresh process) for ``--rss-normals`` (default 100 and 1000 normals);
4. throughput for ``--num-proc 1`` vs ``2`` (steady state, same process).

``--compare-modes paste,normal+paste,normal`` runs only a steady-state comparison of those modes;
``--compare-synths cai,cai+nsands25,cai+nsanv25`` the same for ``--synth`` names (the mixtures' NSA
slots decode other normals: their time is in "decode" and "other").
The default mode is read from :class:`cai.engine.config.CAIConfig`.

    python benchmarks/bench_build.py [--shared ../shared/data] [--normals 100] [--rss-normals 100,1000]

Figures only; nothing is asserted. Stage times are wall time inside the build's own functions
(``load_target``, ``load_anomaly_set``, run fingerprint = inputs; ``cached_patterns`` = patterns;
``load_rgb`` + resize = decode; ``CAISynthesizer.synthesize`` (and a mixture's, with its reads of other normals) = synthesize, which includes the
foreground-free injection and pseudo mask; ``encode_png`` = encode; ``Dataset.to_parquet`` = parquet);
``finish_run`` = card+sheet (summary, card, contact sheet); "other" is the rest (datasets map
bookkeeping, selecting made rows, shard markers, output-folder manifest).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
from cai.engine.config import CAIConfig  # noqa: E402
from _common import cv2_blend  # noqa: E402  (benchmarks/ is on the path when run as a script)

cv2.setNumThreads(1)
DEFAULT_MODE = CAIConfig.mode
HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared" / "data"


def make_normals(shared: Path, n: int, folder: Path) -> Path:
    """``n`` symlinks to real train/good images (grid and hazelnut alternated), names n00000.<ext>."""
    grid = sorted((shared / "mvtec_ad/grid/train/good").glob("*.png"))
    nut = sorted((shared / "mvtec_ad/hazelnut/train/good").glob("*.jpg"))
    pool = [p for pair in zip(grid, nut) for p in pair]
    folder = folder / f"bench_normals_{n}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for i in range(n):
            src = pool[i % len(pool)]
            (folder / f"n{i:05d}{src.suffix}").symlink_to(src)
    return folder


def make_anomaly_set(shared: Path, out: Path) -> Path:
    if not (out / "state.json").is_file():
        subprocess.run([sys.executable, str(REPO / "recipes/anomaly_set_from_shared/build_anomaly_set.py"),
                        "--shared", str(shared), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


class Stages:
    """Wall time spent inside the build's stage functions (in this process, ``--num-proc 1``)."""

    def __init__(self):
        self.t = defaultdict(float)
        self._undo = []
        self._in_synthesis = [0]  # > 0 inside a synthesize call

    def _wrap(self, owner, name, stage):
        orig = getattr(owner, name)
        acc, inside = self.t, self._in_synthesis

        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                if not inside[0]:  # a mixture's reads of other normals count as its synthesis
                    acc[stage] += time.perf_counter() - start
        setattr(owner, name, timed)
        self._undo.append((owner, name, orig))

    def __enter__(self):
        import datasets

        import cai.build
        from cai.engine.synthesizer import CAISynthesizer

        self._wrap(cai.build, "load_rgb", "decode")
        # the normal's resize to --size: only cai.build's cv2.resize (the engine's own resizes stay in synthesize)
        proxy = type("cv2_in_build", (), {"__getattr__": lambda _, name: getattr(cv2, name)})()
        self._undo.append((cai.build, "cv2", cai.build.cv2))
        cai.build.cv2 = proxy
        self._wrap(proxy, "resize", "decode")
        self._wrap(cai.build, "encode_png", "encode")
        self._wrap(datasets.Dataset, "to_parquet", "parquet")
        self._wrap(cai.build, "cached_patterns", "patterns")
        self._wrap(cai.build, "load_target", "inputs")
        self._wrap(cai.build, "load_anomaly_set", "inputs")
        self._wrap(cai.build, "_fingerprint", "inputs")
        self._wrap(cai.build.runloop, "finish_run", "card+sheet")
        from cai.baselines.mixture import SlotMixture
        acc, depth = self.t, self._in_synthesis
        for owner in (CAISynthesizer, SlotMixture):  # a mixture's NSA slots count as synthesis too
            orig = owner.synthesize

            def synthesize(self_, *a, _orig=orig, **k):
                depth[0] += 1
                start = time.perf_counter()
                try:
                    return _orig(self_, *a, **k)
                finally:
                    depth[0] -= 1
                    if depth[0] == 0:  # the outermost call only: a mixture's CAI part is inside its own
                        acc["synthesize"] += time.perf_counter() - start
            owner.synthesize = synthesize
            self._undo.append((owner, "synthesize", orig))
        return self

    def __exit__(self, *exc):
        for owner, name, orig in reversed(self._undo):
            setattr(owner, name, orig)


def run_build(normals: Path, aset: Path, out: Path, mode: str, num_proc: int = 1, png_level: int = 1,
              blend=None, stages: bool = False, png_filters: str = "fast", synthesizer: str = "cai") -> dict:
    """One build in this process; returns wall s, made, ms per pseudo anomaly, stage seconds."""
    import cai.engine.inject
    from cai.build import BuildOptions, build_synthetic
    from cai.engine.config import CAIConfig

    shutil.rmtree(out, ignore_errors=True)
    options = BuildOptions(out=str(out), target="folder", root=str(normals), daad=str(aset),
                           config=CAIConfig(mode=mode), exclude_sources=("mvtec_ad",), foreground="all",
                           num_proc=num_proc, png_level=png_level, png_filters=png_filters, size=256,
                           synthesizer=synthesizer)
    ours = cai.engine.inject.poisson_blend
    if blend is not None:
        cai.engine.inject.poisson_blend = blend
    timer = Stages() if stages else None
    try:
        if timer:
            timer.__enter__()
        start = time.perf_counter()
        summary = build_synthetic(options, progress=False)
        wall = time.perf_counter() - start
    finally:
        if timer:
            timer.__exit__()
        cai.engine.inject.poisson_blend = ours
    made = summary["made"]
    size = sum(p.stat().st_size for p in (out / "data").glob("*.parquet"))
    result = {"wall_s": wall, "made": made, "ms": 1000 * wall / made, "parquet_mib": size / 2**20}
    if timer:
        t = dict(timer.t)
        t["other"] = wall - sum(t.values())
        result["stages_ms"] = {k: 1000 * v / made for k, v in t.items()}
    shutil.rmtree(out, ignore_errors=True)
    return result


def child(args) -> None:
    """A whole run in this (fresh) process: wall from process start, peak RSS."""
    t0 = float(args.t0)
    r = run_build(Path(args.child_normals), Path(args.aset), Path(args.child_out), args.child_mode,
                  num_proc=args.child_num_proc)
    r["process_wall_s"] = time.time() - t0
    r["process_ms"] = 1000 * r["process_wall_s"] / r["made"]
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    r["peak_rss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("CHILD " + json.dumps(r))


def in_fresh_process(normals, aset, out, mode, env, num_proc=1) -> dict:
    cmd = [sys.executable, str(HERE), "--child", "--child-normals", str(normals), "--aset", str(aset),
           "--child-out", str(out), "--child-mode", mode, "--child-num-proc", str(num_proc), "--t0", repr(time.time())]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = [x for x in proc.stdout.splitlines() if x.startswith("CHILD ")][-1]
    return json.loads(line[6:])


def fmt_stages(stages: dict) -> str:
    order = ("inputs", "patterns", "decode", "synthesize", "encode", "parquet", "card+sheet", "other")
    return " ".join(f"{k} {stages.get(k, 0.0):5.2f}" for k in order)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--aset", default=None, help="anomaly set folder (made by the recipe when missing)")
    parser.add_argument("--normals", type=int, default=100, help="normal images of the timed runs (x10 slots)")
    parser.add_argument("--rss-normals", default="100,1000", help="normal counts for peak RSS ('' to skip)")
    parser.add_argument("--skip-num-proc", action="store_true")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir, removed)")
    parser.add_argument("--compare-modes", default="",
                        help="only this: steady-state ms per pseudo anomaly of these modes (comma-separated, "
                             "e.g. paste,normal+paste,normal), two alternating rounds")
    parser.add_argument("--compare-synths", default="", help="comma-separated --synth names: steady state only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-normals", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-mode", default=DEFAULT_MODE, help=argparse.SUPPRESS)
    parser.add_argument("--child-num-proc", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--t0", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import datasets
    datasets.disable_progress_bars()
    shared = Path(args.shared)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_build_"))
    work.mkdir(parents=True, exist_ok=True)
    aset = make_anomaly_set(shared, Path(args.aset) if args.aset else work / "aset")
    normals = make_normals(shared, args.normals, work)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"{args.normals} normals x 10 at 256², anomaly set {aset}")

    if args.compare_synths:
        names = [m for m in args.compare_synths.split(",") if m]
        os.environ["CAI_HUB_CACHE"] = str(work / "cache_warm")
        for name in names:  # warm-up: patterns cached, solver loaded
            run_build(normals, aset, work / "warm", DEFAULT_MODE, synthesizer=name)
        print("\nsteady state, --num-proc 1, by --synth (ms per pseudo anomaly; stages ms per pseudo anomaly)")
        for round_ in (1, 2):
            for name in names:
                r = run_build(normals, aset, work / "steady", DEFAULT_MODE, stages=True, synthesizer=name)
                print(f"  round {round_} {name:<14}: {r['ms']:6.2f} ms  [{fmt_stages(r['stages_ms'])}]  made {r['made']}")
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        return

    if args.compare_modes:
        modes = [m for m in args.compare_modes.split(",") if m]
        os.environ["CAI_HUB_CACHE"] = str(work / "cache_warm")
        for mode in modes:  # warm-up: patterns cached, solver loaded
            run_build(normals, aset, work / "warm", mode)
        print("\nsteady state, --num-proc 1, by mode (ms per pseudo anomaly; stages ms per pseudo anomaly)")
        for round_ in (1, 2):
            for mode in modes:
                r = run_build(normals, aset, work / "steady", mode, stages=True)
                print(f"  round {round_} {mode:<14}: {r['ms']:6.2f} ms  [{fmt_stages(r['stages_ms'])}]  made {r['made']}")
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
        return

    # 1. cold: fresh process, empty pattern cache (and the numba cache as installed)
    env = {**os.environ, "CAI_HUB_CACHE": str(work / "cache_cold")}
    shutil.rmtree(work / "cache_cold", ignore_errors=True)
    print("\ncold (fresh process, empty pattern cache; wall from process start, imports included)")
    for mode in (DEFAULT_MODE, "normal"):
        shutil.rmtree(work / "cache_cold", ignore_errors=True)
        r = in_fresh_process(normals, aset, work / "out_cold", mode, env)
        print(f"  {mode:>12}: {r['process_ms']:6.2f} ms per pseudo anomaly ({r['process_wall_s']:.1f} s, "
              f"{r['made']} made; build call alone {r['ms']:.2f} ms)")

    # 2. steady state in this process
    os.environ["CAI_HUB_CACHE"] = str(work / "cache_warm")
    builds = ((f"{DEFAULT_MODE} (default), ours", DEFAULT_MODE, None), (f"{DEFAULT_MODE} (default), cv2", DEFAULT_MODE, cv2_blend),
              ("normal, ours", "normal", None), ("normal, cv2", "normal", cv2_blend), ("paste", "paste", None))
    for _, mode, blend in builds:
        run_build(normals, aset, work / "warm", mode, blend=blend)   # warm-up: patterns cached, modules loaded
    print("\nsteady state, --num-proc 1 (ms per pseudo anomaly; stages ms per pseudo anomaly)")
    rows = {}
    pngs = ((1, "fast"), (1, "libpng"), (6, "libpng"))  # the default; libpng's row filters; the level before
    for label, mode, blend in builds:
        for level, filters in pngs:
            r = run_build(normals, aset, work / "steady", mode, png_level=level, blend=blend, stages=True,
                          png_filters=filters)
            rows[(mode, blend is not None, level, filters)] = r
            print(f"  {label:<28} png {level} {filters:<6}: {r['ms']:6.2f} ms  [{fmt_stages(r['stages_ms'])}]  "
                  f"made {r['made']}, parquet {r['parquet_mib']:.1f} MiB")
    for level, filters in pngs:
        ms = {(mode, cv2_used): rows[(mode, cv2_used, level, filters)]["ms"]
              for mode in (DEFAULT_MODE, "normal") for cv2_used in (False, True)}
        print(f"  png {level} {filters}: with cv2 / ours: default {ms[(DEFAULT_MODE, True)] / ms[(DEFAULT_MODE, False)]:.2f}x, "
              f"normal {ms[('normal', True)] / ms[('normal', False)]:.2f}x; "
              f"cv2 normal / ours default = {ms[('normal', True)] / ms[(DEFAULT_MODE, False)]:.2f}x")

    # 3. peak RSS, fresh process per size
    sizes = [int(x) for x in args.rss_normals.split(",") if x.strip()]
    if sizes:
        print("\npeak RSS of a whole run (fresh process, default mode, --num-proc 1)")
        env = {**os.environ, "CAI_HUB_CACHE": str(work / "cache_warm")}
        base = None
        for n in sizes:
            r = in_fresh_process(make_normals(shared, n, work), aset, work / "out_rss", DEFAULT_MODE, env)
            base = base or r["peak_rss_mib"]
            print(f"  {n:>5} normals: peak RSS {r['peak_rss_mib']:7.1f} MiB ({r['peak_rss_mib'] / base:.2f}x), "
                  f"{r['ms']:.2f} ms per pseudo anomaly, {r['made']} made")

    # 4. num_proc
    if not args.skip_num_proc:
        print("\nthroughput by --num-proc (steady state, default mode, default PNG settings)")
        one = None
        for n_proc in (1, 2):
            r = run_build(normals, aset, work / "np", DEFAULT_MODE, num_proc=n_proc)
            one = one or r["ms"]
            print(f"  --num-proc {n_proc}: {r['ms']:6.2f} ms per pseudo anomaly, "
                  f"{1000 / r['ms']:6.1f} per s ({one / r['ms']:.2f}x)")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
