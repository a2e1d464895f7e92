"""Exact test bits/dim of a checkpoint.

    python -m pipelines.evaluate trained/mnist-glow/model.pt --limit 2000 --json out.json

One uniform dequantization sample per image with a fixed seed, so the figure is reproducible;
the standard error over images is printed beside the mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

from inpaint_app.bundle import ModelBundle
from inpaint_app.card import Measurement
from inpaint_app.density import dequantize
from inpaint_app.models import checkpoint_file, save_model
from inpaint_app.runs import RunInputError, model_and_split
from inpaint_app.training import bpd_summary, evaluate_bpd, select_device


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Print a checkpoint's bits/dim on a dataset split.")
    p.add_argument("checkpoint", help="model.pt (or the folder holding it)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--dataset", default=None, help="default: the dataset named in the card")
    p.add_argument("--limit", type=int, default=None,
                   help="score a fixed random subset of N images (an unbiased estimate of the "
                        "full-split figure; the first N of MNIST test are easier than the rest)")
    p.add_argument("--first", action="store_true",
                   help="with --limit: the first N images instead (as training's --limit-val)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0, help="dequantization noise seed")
    p.add_argument("--data-root", default=None,
                   help="dataset root (default $FLOWPAINT_DATA or ./data)")
    p.add_argument("--download", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the result to this JSON file")
    p.add_argument("--check-invertibility", action="store_true",
                   help="also report the round-trip error |f^-1(f(y)) - y| on the same images")
    p.add_argument("--update-card", action="store_true",
                   help="record the figure in the checkpoint's card (full split only)")
    args = p.parse_args(argv)

    if args.update_card and args.split == "train":
        sys.exit("error: --update-card records val or test figures, not train")
    try:
        bundle, dataset, images = model_and_split(
            args.checkpoint, args.dataset, args.split, args.data_root, download=args.download,
            device=select_device(args.device), warn=partial(print, file=sys.stderr))
    except RunInputError as err:
        sys.exit(f"error: {err}")
    model = bundle.model
    if args.limit and args.first:
        images = images[: args.limit]
    elif args.limit and args.limit < len(images):
        subset = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
        images = images[subset[: args.limit].sort().values]
    with torch.inference_mode():
        bpd = evaluate_bpd(model, images, batch_size=args.batch_size, seed=args.seed,
                           progress=True)
    mean, stderr = bpd_summary(bpd)
    result = {"checkpoint": str(args.checkpoint), "dataset": dataset, "split": args.split,
              "images": len(bpd), "bpd": round(mean, 4), "bpd_stderr": round(stderr, 4),
              "card_test_bpd": bundle.card.test_bpd}
    if args.check_invertibility:
        error = round_trip_error(model, images, batch_size=args.batch_size, seed=args.seed)
        result["round_trip_max_abs_error"] = error.max().item()
        result["round_trip_mean_abs_error"] = error.mean().item()
        print(f"round trip: max |f^-1(f(y)) - y| = {error.max().item():.2e} "
              f"(worst image {int(error.argmax())}), mean {error.mean().item():.2e}")
    which = (f"the first {len(bpd)}" if args.limit and args.first
             else f"a random subset of {len(bpd)}" if args.limit else f"all {len(bpd)}")
    print(f"{dataset} {args.split}: {result['bpd']:.4f} ± {result['bpd_stderr']:.4f} bits/dim "
          f"over {which} images")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.update_card:
        if args.limit:
            sys.exit("error: --update-card records full-split figures only; drop --limit")
        update_card(args.checkpoint, bundle, args.split, result, args.seed)


@torch.inference_mode()
def round_trip_error(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 500,
                     seed: int = 0) -> torch.Tensor:
    """Per-image max abs error of data -> latent -> data, in pixel units of [0, 1] (float32)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    errors = []
    for start in range(0, len(images), batch_size):
        y = dequantize(images[start:start + batch_size], generator).to(device)
        z, _ = model.to_latent(y)
        back = model.preprocess.inverse(model.flow.inverse(z))
        errors.append((back - y).abs().flatten(1).amax(1).cpu())
    return torch.cat(errors)


def update_card(checkpoint: str, bundle: ModelBundle, split: str, result: dict,
                seed: int) -> None:
    """Record the full-split figure as the card's ``val`` or ``test`` measurement (in the
    checkpoint and card.json)."""
    path = checkpoint_file(checkpoint)
    measured = Measurement(bpd=result["bpd"], images=result["images"], subset="all",
                           stderr=result["bpd_stderr"], seed=seed,
                           command=f"python -m pipelines.evaluate {path} --split {split}")
    save_model(bundle.model.cpu(), path, card=bundle.card.replace(**{split: measured}))


if __name__ == "__main__":
    main()
