"""Build a small anomaly set (the CAI input schema) from the same-stem sources in ../shared/data.

This recipe gathers the three sources whose masks are plain same-stem files: cracks_mixed (road
cracks, CC BY 4.0), fabric_hsst (fabric stains, Apache-2.0) and MVTec AD carpet/color (carpet stains,
CC BY-NC-SA 4.0). Empty masks are kept here and skipped (counted) by `cai-hub build-synthetic`. It is the
anomaly set of the first three rounds of recipes/evaluate (kept to reproduce them); for new work build
DAAD from all seven shared sources instead (`cai-hub daad build --recipe recipes/daad/daad.yaml --out
daad`): the same default trained better detectors from it (recipes/evaluate/README.md, fourth round).

    python recipes/anomaly_set_from_shared/build_anomaly_set.py --shared ../shared/data --out anomaly_sets/shared
"""
import argparse
from pathlib import Path

import datasets

from cai.layouts.folder_pairs import load_folder_pairs

SOURCES = [
    # (folder under shared/data, images, masks, mask suffix, class, source, licence)
    ("sources/cracks_mixed/ds", "img", "masks_machine", "", "crack", "cracks_mixed", "CC-BY-4.0"),
    ("sources/fabric_hsst/dataset_samples", "images", "annotations", "", "stain", "fabric_hsst", "Apache-2.0"),
    ("mvtec_ad/carpet", "test/color", "ground_truth/color", "_mask", "stain", "mvtec_ad", "CC-BY-NC-SA-4.0"),
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared/data", help="the shared data folder")
    parser.add_argument("--out", required=True, help="where to save the dataset (save_to_disk folder)")
    return parser.parse_args()


def main():
    args = parse_args()
    parts = []
    for folder, images, masks, suffix, cls, source, licence in SOURCES:
        root = Path(args.shared) / folder
        if not root.is_dir():
            print(f"skipping {source}: {root} not found")
            continue
        part = load_folder_pairs(root, anomaly_class=cls, source=source, license=licence,
                                 images=images, masks=masks, mask_suffix=suffix)
        print(f"{source}: {len(part)} pairs ({cls}, {licence})")
        parts.append(part)
    # embed the image bytes so the saved set does not depend on ../shared staying in place
    ds = datasets.concatenate_datasets(parts)
    ds = ds.map(lambda row: row, features=ds.features)  # decode -> re-encode into the arrow table
    ds.save_to_disk(args.out)
    print(f"saved {len(ds)} rows to {args.out}")


if __name__ == "__main__":
    main()
