"""Exact test bits/dim of a checkpoint.

    python -m pipelines.evaluate trained/mnist-glow/model.pt --limit 2000 --json out.json

One uniform dequantization sample per image with a fixed seed, so the figure is reproducible;
the standard error over images is printed beside the mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from inpaint_app.data import DATASETS, DatasetNotFound, load_split
from inpaint_app.models import CheckpointError, ConfigError, load_model, save_model
from inpaint_app.training import bpd_summary, evaluate_bpd, select_device


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Print a checkpoint's bits/dim on a dataset split.")
    p.add_argument("checkpoint", help="model.pt (or the folder holding it)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--dataset", default=None, help="default: the dataset named in the card")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0, help="dequantization noise seed")
    p.add_argument("--data-root", default=None,
                   help="dataset root (default $FLOWPAINT_DATA or ./data)")
    p.add_argument("--download", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    p.add_argument("--update-card", action="store_true",
                   help="record the figure in the checkpoint's card (full split only)")
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
    mean, stderr = bpd_summary(bpd)
    result = {"checkpoint": str(args.checkpoint), "dataset": dataset, "split": args.split,
              "images": len(bpd), "bpd": round(mean, 4), "bpd_stderr": round(stderr, 4),
              "card_test_bpd": model.card.get("test_bpd")}
    print(f"{dataset} {args.split}: {result['bpd']:.4f} ± {result['bpd_stderr']:.4f} bits/dim "
          f"over {len(bpd)} images")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.update_card:
        if args.limit:
            sys.exit("error: --update-card records full-split figures only; drop --limit")
        update_card(args.checkpoint, model, args.split, result, args.seed)


def update_card(checkpoint: str, model: torch.nn.Module, split: str, result: dict,
                seed: int) -> None:
    """Write ``<split>_bpd`` into the checkpoint's card (and so into card.json)."""
    path = Path(checkpoint)
    path = path / "model.pt" if path.is_dir() else path
    card = dict(model.card)
    card[f"{split}_bpd"] = result["bpd"]
    card[f"{split}_bpd_stderr"] = result["bpd_stderr"]
    card[f"{split}_measured"] = (f"python -m pipelines.evaluate {path} --split {split}: mean over "
                                 f"all {result['images']} {split} images, one uniform "
                                 f"dequantization sample each, seed {seed}")
    save_model(model.cpu(), path, card=card)


if __name__ == "__main__":
    main()
