"""Exact test bits/dim of a checkpoint.

    python -m pipelines.evaluate trained/mnist-glow/model.pt --limit 2000 --json out.json

One uniform dequantization sample per image with a fixed seed, so the figure is reproducible;
the standard error over images is printed beside the mean.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from inpaint_app.data import DATASETS, DatasetNotFound, load_split
from inpaint_app.models import CheckpointError, ConfigError, load_model
from inpaint_app.training import evaluate_bpd, select_device


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Print a checkpoint's bits/dim on a dataset split.")
    p.add_argument("checkpoint", help="model.pt (or the folder holding it)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--dataset", default=None, help="default: the dataset named in the card")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0, help="dequantization noise seed")
    p.add_argument("--data-root", default=None, help="dataset root (default $FLOWPAINT_DATA or ./data)")
    p.add_argument("--download", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    args = p.parse_args(argv)

    device = select_device(args.device)
    try:
        model = load_model(args.checkpoint, map_location=device)
    except (CheckpointError, ConfigError) as err:
        sys.exit(f"error: {err}")
    dataset = args.dataset or model.card.get("dataset")
    if dataset not in DATASETS:
        sys.exit(f"error: unknown dataset {dataset!r}: pass --dataset, one of {sorted(DATASETS)}")
    try:
        images = load_split(dataset, args.split, args.data_root, download=args.download)
    except DatasetNotFound as err:
        sys.exit(f"error: {err}")
    images = images[: args.limit] if args.limit else images
    with torch.inference_mode():
        bpd = evaluate_bpd(model, images, batch_size=args.batch_size, seed=args.seed,
                           progress=True)
    result = {"checkpoint": str(args.checkpoint), "dataset": dataset, "split": args.split,
              "images": len(bpd), "bpd": round(bpd.mean().item(), 4),
              "bpd_stderr": round((bpd.std() / math.sqrt(len(bpd))).item(), 4),
              "card_test_bpd": model.card.get("test_bpd")}
    print(f"{dataset} {args.split}: {result['bpd']:.4f} ± {result['bpd_stderr']:.4f} bits/dim "
          f"over {len(bpd)} images")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
