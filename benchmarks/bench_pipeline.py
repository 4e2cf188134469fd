"""Speed of the whole CAI pipeline per pseudo anomaly, ours vs the same pipeline on cv2.seamlessClone.

Real images: MVTec AD grid normals (../shared/data/mvtec_ad/grid/train/good) at 256² and 1024², real
road cracks (cracks_mixed) and fabric stains (fabric_hsst) as patterns, the 4/3/3 scale mix, one
core. The cv2 variant swaps only the blend (`cai.engine.inject.poisson_blend`) for `cv2.seamlessClone`
on the same crop, region, source and centre; everything else (STR, quotas, ILS, pseudo mask) is
shared, so the difference is the injection.

    python benchmarks/bench_pipeline.py [--shared ../shared/data] [--normals 5]

asv-style: ``PipelineSuite.setup()`` builds seeded inputs once; one ``time_*`` per variant.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import datasets  # noqa: E402
import numpy as np  # noqa: E402
from _common import cv2_blend  # noqa: E402  (benchmarks/ is on the path when run as a script)

import cai.engine.inject  # noqa: E402
from cai.anomaly_set import open_pattern_bank, prepare_patterns  # noqa: E402
from cai.engine.config import CAIConfig  # noqa: E402
from cai.imageio import load_rgb  # noqa: E402
from cai.engine.synthesizer import CAISynthesizer, PseudoAnomaly  # noqa: E402
from cai.layouts.folder_pairs import load_folder_pairs  # noqa: E402

cv2.setNumThreads(1)
OUR_BLEND = cai.engine.inject.poisson_blend


class PipelineSuite:
    params = ([256, 1024], ["normal", "mixed"])
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    n_normals = 5

    def setup(self, size=256, mode="normal"):
        parts = [
            load_folder_pairs(self.shared / "sources/cracks_mixed/ds", "crack", "cracks_mixed", images="img",
                              masks="masks_machine"),
            load_folder_pairs(self.shared / "sources/fabric_hsst/dataset_samples", "stain", "fabric_hsst",
                              images="images", masks="annotations"),
        ]
        work = Path("/tmp/cai_bench_patterns")
        if not (work / "state.json").is_file():
            patterns, _ = prepare_patterns(datasets.concatenate_datasets(parts))
            patterns.save_to_disk(str(work))
        self.bank = open_pattern_bank(str(work))
        files = sorted((self.shared / "mvtec_ad/grid/train/good").glob("*.png"))[: self.n_normals]
        self.normals = [cv2.resize(load_rgb(f)[0], (size, size), interpolation=cv2.INTER_AREA)[..., 0] for f in files]
        self.foreground = np.ones((size, size), bool)
        self.config = CAIConfig(mode=mode)
        for i in range(len(self.bank.long_sides)):  # decode every pattern once, outside the timing
            self.bank.load(i)

    def _run(self, blend):
        cai.engine.inject.poisson_blend = blend
        try:
            synth = CAISynthesizer(self.bank, self.config)
            made = 0
            start = time.perf_counter()
            for i, normal in enumerate(self.normals):
                made += sum(isinstance(r, PseudoAnomaly)
                            for r in synth.synthesize(normal, self.foreground, i, seed=0, is_grey=True))
            return (time.perf_counter() - start) * 1000 / made, made
        finally:
            cai.engine.inject.poisson_blend = OUR_BLEND

    def time_cai(self, size=256, mode="normal"):
        return self._run(OUR_BLEND)

    def time_cv2_seamlessclone(self, size=256, mode="normal"):
        return self._run(cv2_blend)


def main():
    parser = argparse.ArgumentParser(description="ms per pseudo anomaly, ours vs cv2.seamlessClone")
    parser.add_argument("--shared", default=str(PipelineSuite.shared))
    parser.add_argument("--normals", type=int, default=5, help="normal images per variant (x10 pseudo anomalies)")
    args = parser.parse_args()
    PipelineSuite.shared, PipelineSuite.n_normals = Path(args.shared), args.normals
    datasets.disable_progress_bars()
    suite = PipelineSuite()
    suite.setup(256, "normal")  # warm-up: JIT compile / caches, not timed
    suite.time_cai(256, "normal")
    suite.setup(256, "mixed")
    suite.time_cai(256, "mixed")
    print(f"{'size':>5} {'mode':>7} {'ours ms':>9} {'cv2 ms':>9} {'speed-up':>9} {'made':>5}")
    for size in PipelineSuite.params[0]:
        for mode in PipelineSuite.params[1]:
            suite.setup(size, mode)
            ours, made = suite.time_cai(size, mode)
            ref, made_ref = suite.time_cv2_seamlessclone(size, mode)
            print(f"{size:>5} {mode:>7} {ours:>9.2f} {ref:>9.2f} {ref / ours:>8.1f}x {made:>5}")


if __name__ == "__main__":
    main()
