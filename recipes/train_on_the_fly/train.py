"""Train a segmentation detector on pseudo anomalies made on the fly: a fresh CAI pseudo anomaly per
sample per epoch (cai.torch.CAIDataset), no fixed split written to disk.

Model: a light segmentation head on the frozen EfficientNet-Lite0 backbone of cai.eval (``--model
lite0-head``, runs on a CPU), or the DRAEM discriminative UNet (``--model unet``, for a GPU). Loss:
the focal loss DRAEM uses. Writes ``model.pt`` (the trained weights) and ``args.json`` to
``--output_dir``, and one JSON line per epoch to ``train_log.jsonl``.

    python recipes/train_on_the_fly/train.py --normals path/to/train/good --anomaly_set daad \
        --output_dir runs/otf --epochs 5
"""
import argparse
import json
import time
from pathlib import Path

import torch

from cai.eval.detector import DraemDiscriminative, Lite0SegHead, focal_loss
from cai.eval.lite0 import TAPS, load_lite0
from cai.targets import DEFAULT_SAMPLE
from cai.torch import CAIDataset

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
STRIDES = (4, 8, 16)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a detector on CAI pseudo anomalies made on the fly.")
    parser.add_argument("--normals", default=str(DEFAULT_SAMPLE / "normals" / "images"),
                        help="Folder of normal training images (default: the embedded sample).")
    parser.add_argument("--anomaly_set", default=str(DEFAULT_SAMPLE / "anomalies"),
                        help="Anomaly set for cai* (any form --daad accepts; default: the embedded sample).")
    parser.add_argument("--synthesizer", default="cai", help="cai, cai-n, cutpaste, draem, glass-las, ...")
    parser.add_argument("--p", type=float, default=0.5, help="Probability that a sample gets a pseudo anomaly.")
    parser.add_argument("--model", choices=("lite0-head", "unet"), default="lite0-head")
    parser.add_argument("--resolution", type=int, default=256, help="Training images are resized to this (x32).")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train_batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=32, help="Head channels (lite0-head) or UNet base width.")
    parser.add_argument("--dataloader_num_workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_train_steps", type=int, default=None, help="Stop after this many steps (tests).")
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    if args.resolution % 32:
        parser.error("--resolution must be a multiple of 32")
    return args


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # data: a fresh pseudo anomaly per sample per epoch, the same bytes for any worker count
    needs_set = args.synthesizer.startswith("cai")
    dataset = CAIDataset(args.normals, args.anomaly_set if needs_set else None, p=args.p, seed=args.seed,
                         synthesizer=args.synthesizer, size=args.resolution)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True,
                                         num_workers=args.dataloader_num_workers, drop_last=False,
                                         generator=torch.Generator().manual_seed(args.seed))

    # model: frozen Lite0 + trainable head, or the DRAEM UNet from scratch
    if args.model == "lite0-head":
        backbone = load_lite0().to(device).eval().requires_grad_(False)
        net = Lite0SegHead(tuple(TAPS[s][1] for s in STRIDES), args.width).to(device)
    else:
        backbone, net = None, DraemDiscriminative(3, args.width).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate)

    step, log = 0, open(out / "train_log.jsonl", "w")
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)  # before the iterator starts: workers copy the dataset then
        net.train()
        start, total, seen, anomalous = time.perf_counter(), 0.0, 0, 0
        for batch in loader:
            x = (batch["image"].to(device) - IMAGENET_MEAN.to(device)) / IMAGENET_STD.to(device)
            target = batch["mask"].to(device)
            if backbone is not None:
                with torch.no_grad():
                    feats = backbone.pyramid(x, STRIDES)
                logits = net(feats, x.shape[-2:])
            else:
                logits = net(x)
            loss = focal_loss(logits, target, gamma=2.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
            anomalous += int(batch["label"].sum())
            step += 1
            if args.max_train_steps and step >= args.max_train_steps:
                break
        entry = {"epoch": epoch, "loss": total / max(seen, 1), "samples": seen, "pseudo_anomalies": anomalous,
                 "seconds": round(time.perf_counter() - start, 2)}
        log.write(json.dumps(entry) + "\n")
        log.flush()
        print(json.dumps(entry))
        if args.max_train_steps and step >= args.max_train_steps:
            break
    log.close()

    torch.save({"model": args.model, "state_dict": net.state_dict(), "strides": STRIDES, "width": args.width,
                "resolution": args.resolution}, out / "model.pt")
    print(f"-> {out / 'model.pt'}")


if __name__ == "__main__":
    main()
