"""On-the-fly pseudo anomalies: how many per second one worker makes, and what DataLoader workers cost
in memory.

Throughput: ``CAIAnomalyGenerator(p=1)`` called on 256² normals (uint8 numpy, the numpy path of the same
API the tensor path wraps) and ``CAIDataset.__getitem__`` (decode + resize + synthesis + tensor), for
``cai``, ``draem`` and ``cutpaste``, in one process pinned to one core (OMP/numba/cv2/torch: 1 thread).
Pseudo anomalies per second = images that got a non-empty mask / seconds; opening the patterns,
decoding and refining each once (``warm_up()``) and the first calls (numba compilation) are not timed.

Memory: ``CAIDataset`` (cai, p=1) through a ``DataLoader`` with 0, 1 and 2 workers; each item reports
its process's RSS, PSS (shared pages split between the processes that map them) and USS (private
pages) from ``/proc/self/smaps_rollup``; the peak per process is printed. The patterns are a
memory-mapped arrow folder opened in each worker, so a worker's private memory should not depend on
the number of workers.

Real data when ``../shared/data`` is there: 20 MVTec AD grid normals (resized to 256² and written as PNG,
which the dataset decodes: the 1024² originals would add ~25 ms of decoding per item), real road cracks
(cracks_mixed) and fabric stains (fabric_hsst) as the anomaly set; otherwise the embedded sample.

    python benchmarks/bench_on_the_fly.py [--shared ../shared/data] [--calls 300]

asv-style: ``OnTheFlySuite.setup()`` builds seeded inputs once; one ``time_*`` per synthesizer and
``peakmem_workers`` for the memory table.
"""
import os

for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import datasets  # noqa: E402
import torch  # noqa: E402

from cai.imageio import list_images, load_rgb  # noqa: E402
from cai.targets import DEFAULT_SAMPLE  # noqa: E402
from cai.torch import CAIAnomalyGenerator, CAIDataset, prepare_pattern_folder  # noqa: E402

cv2.setNumThreads(1)
torch.set_num_threads(1)
SYNTHESIZERS = ("cai", "draem", "cutpaste")


def _proc_memory_kb() -> dict:
    """RSS, PSS and USS (private clean + dirty) of this process in kB, from /proc/self/smaps_rollup."""
    values = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                values[parts[0].rstrip(":")] = int(parts[1])
    return {"rss": values.get("Rss", 0), "pss": values.get("Pss", 0),
            "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)}


class MemoryProbe(torch.utils.data.Dataset):
    """A :class:`CAIDataset` whose items also carry the serving process's pid and memory."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[index]
        mem = _proc_memory_kb()
        return {"label": item["label"], "pid": os.getpid(), **mem}


def _warm_worker(_worker_id):
    """worker_init_fn: decode every pattern in the worker first, so its peak holds the full cache."""
    torch.utils.data.get_worker_info().dataset.dataset.generator.warm_up()


class OnTheFlySuite:
    params = (SYNTHESIZERS,)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    size = 256
    calls = 300
    warmup = 30

    def setup_data(self):
        work = Path(tempfile.gettempdir()) / "cai_bench_on_the_fly"
        grid = self.shared / "mvtec_ad/grid/train/good"
        if grid.is_dir() and (self.shared / "sources/cracks_mixed/ds").is_dir():
            from cai.layouts.folder_pairs import load_folder_pairs
            anomaly_set = datasets.concatenate_datasets([
                load_folder_pairs(self.shared / "sources/cracks_mixed/ds", "crack", "cracks_mixed", images="img",
                                  masks="masks_machine"),
                load_folder_pairs(self.shared / "sources/fabric_hsst/dataset_samples", "stain", "fabric_hsst",
                                  images="images", masks="annotations")])
            self.normal_dir, self.data_label = grid, "MVTec AD grid normals, cracks_mixed + fabric_hsst defects"
        else:
            anomaly_set = str(DEFAULT_SAMPLE / "anomalies")
            self.normal_dir, self.data_label = DEFAULT_SAMPLE / "normals/images", "embedded sample"
        self.patterns = prepare_pattern_folder(anomaly_set, cache_dir=work)
        files = list_images(self.normal_dir)[:20]
        self.normals = [cv2.resize(load_rgb(str(f))[0], (self.size, self.size), interpolation=cv2.INTER_AREA)
                        for f in files]
        self.normal_dir = work / f"normals_{self.size}"  # the dataset reads 256² PNGs (decode ~1 ms each)
        self.normal_dir.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(self.normals):
            cv2.imwrite(str(self.normal_dir / f"n{i:03d}.png"), image[..., ::-1])

    def setup(self, synthesizer="cai"):
        if not hasattr(self, "normals"):
            self.setup_data()
        self.generator = CAIAnomalyGenerator(self.patterns if synthesizer == "cai" else None, p=1.0, seed=0,
                                             synthesizer=synthesizer)
        self.dataset = CAIDataset(str(self.normal_dir),
                                  self.patterns if synthesizer == "cai" else None, p=1.0, seed=0,
                                  synthesizer=synthesizer, size=self.size)
        self.generator.warm_up()  # every pattern decoded and refined once, as in a long training run
        self.dataset.generator.warm_up()
        for i in range(self.warmup):  # numba compilation, first-call costs
            self.generator(self.normals[i % len(self.normals)], index=10_000 + i)
            self.dataset[i % len(self.dataset)]

    def time_generator(self, synthesizer="cai"):
        """(pseudo anomalies per wall second, per CPU second of this process, made)."""
        made, start, cpu = 0, time.perf_counter(), time.process_time()
        for i in range(self.calls):
            made += bool(self.generator(self.normals[i % len(self.normals)], index=i)[1].any())
        return made / (time.perf_counter() - start), made / (time.process_time() - cpu), made

    def time_dataset_item(self, synthesizer="cai"):
        """As :meth:`time_generator`, through ``CAIDataset.__getitem__`` (decode and resize included)."""
        made, start, cpu = 0, time.perf_counter(), time.process_time()
        for i in range(self.calls):
            self.dataset.set_epoch(1 + i // len(self.dataset))
            made += int(self.dataset[i % len(self.dataset)]["label"])
        return made / (time.perf_counter() - start), made / (time.process_time() - cpu), made

    def peakmem_workers(self, workers=0, epochs=2):
        dataset = CAIDataset(str(self.normal_dir), self.patterns, p=1.0, seed=0, size=self.size)
        probe = MemoryProbe(dataset)
        if workers == 0:
            dataset.generator.warm_up()
        loader = torch.utils.data.DataLoader(probe, batch_size=4, num_workers=workers,
                                             worker_init_fn=_warm_worker if workers else None)
        peak = {}
        for epoch in range(epochs):
            dataset.set_epoch(epoch)
            for batch in loader:
                for j, pid in enumerate(batch["pid"].tolist()):
                    old = peak.get(pid, {"rss": 0, "pss": 0, "uss": 0})
                    peak[pid] = {k: max(old[k], int(batch[k][j])) for k in old}
        return peak, _proc_memory_kb()


def main():
    parser = argparse.ArgumentParser(description="pseudo anomalies per second per worker; worker memory")
    parser.add_argument("--shared", default=str(OnTheFlySuite.shared))
    parser.add_argument("--calls", type=int, default=300, help="timed calls per synthesizer")
    parser.add_argument("--core", type=int, default=None, help="pin to this CPU core (default: the first allowed)")
    parser.add_argument("--skip-memory", action="store_true")
    # one row set of the memory table, run in a fresh process
    parser.add_argument("--memory-workers", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--patterns", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--normal-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_workers is not None:  # only the dataset's own memory: no raw anomaly set loaded here
        suite = OnTheFlySuite()
        suite.patterns, suite.normal_dir = args.patterns, Path(args.normal_dir)
        _print_memory(suite, args.memory_workers)
        return
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {args.core if args.core is not None else allowed[0]})
    OnTheFlySuite.shared, OnTheFlySuite.calls = Path(args.shared), args.calls
    datasets.disable_progress_bars()
    suite = OnTheFlySuite()
    suite.setup_data()
    print(f"data: {suite.data_label}; {suite.size}x{suite.size}; one core (cpu {sorted(os.sched_getaffinity(0))}), "
          f"{args.calls} timed calls, p=1")
    print("pseudo anomalies per second: wall clock / CPU time of this process (equal on an idle core)")
    print(f"{'synthesizer':>12} {'generator wall':>15} {'generator cpu':>14} {'item wall':>10} {'item cpu':>9} "
          f"{'made':>9}")
    for name in SYNTHESIZERS:
        suite.setup(name)
        gen_wall, gen_cpu, made = suite.time_generator(name)
        item_wall, item_cpu, _ = suite.time_dataset_item(name)
        print(f"{name:>12} {gen_wall:>15.1f} {gen_cpu:>14.1f} {item_wall:>10.1f} {item_cpu:>9.1f} "
              f"{made:>4}/{args.calls}")
    if args.skip_memory:
        return
    from cai.anomaly_set import decoded_patterns, mapped_refined, open_pattern_bank
    bank = open_pattern_bank(suite.patterns)  # metadata only here
    arrow = sum(f.stat().st_size for f in Path(suite.patterns).glob("*.arrow"))
    mapped = decoded_patterns(suite.patterns).stat().st_size + mapped_refined(suite.patterns).stat().st_size
    print(f"\npatterns: {len(bank.long_sides)}; arrow files (PNG crops) {arrow / 2**20:.1f} MiB; decoded files "
          f"(pixels + masks, refined masks; memory-mapped read-only by every process) "
          f"{mapped / 2**20:.1f} MiB")
    os.sched_setaffinity(0, allowed)  # workers may use the other cores
    print("DataLoader memory, cai, p=1, 2 epochs, fork (kB; peak per process; PSS splits shared pages; each row "
          "set from a fresh process; without persistent_workers each epoch starts new workers: e0w1 = epoch 0, "
          "worker 1)")
    print(f"{'workers':>7} {'process':>8} {'RSS':>9} {'PSS':>9} {'USS':>9}", flush=True)
    for workers in (0, 1, 2):  # a fresh process each: nothing decoded before the workers fork
        subprocess.run([sys.executable, __file__, "--memory-workers", str(workers), "--patterns", suite.patterns,
                        "--normal-dir", str(suite.normal_dir)], check=True)


def _print_memory(suite, workers: int):
    peak, main_mem = suite.peakmem_workers(workers)
    for k, (pid, mem) in enumerate(sorted(peak.items())):  # pids grow: epoch 0's workers first
        role = "main" if workers == 0 else f"e{k // workers}w{k % workers}"
        print(f"{workers:>7} {role:>8} {mem['rss']:>9} {mem['pss']:>9} {mem['uss']:>9}")
    if workers:
        print(f"{workers:>7} {'main':>8} {main_mem['rss']:>9} {main_mem['pss']:>9} {main_mem['uss']:>9}")


if __name__ == "__main__":
    main()
