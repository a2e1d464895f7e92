"""Write what ships beside a dataset checkpoint for inpainting and the app: the exemplar bank
(the default inpainting start) and the gallery examples.

    python -m pipelines.exemplars --checkpoint trained/mnist-glow [--count 20000] [--examples 6]

Draws ``--count`` images at random (seed 0) from the checkpoint's training split, never from the
validation or test images, and writes ``<checkpoint folder>/exemplars.npz``; the card records it.
Then writes ``--examples`` validation images to ``<checkpoint folder>/examples/``: the first of
each class in validation order, with what it shows and a mask preset (``inpaint_app.gallery``).
``--count 0`` leaves the bank alone, ``--examples 0`` the examples.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

from inpaint_app.bundle import EXAMPLES_DIR
from inpaint_app.card import ModelCard
from inpaint_app.data import DATASETS, DISPLAY_NAMES, load_labels
from inpaint_app.exemplars import BANK_FILE, save_bank
from inpaint_app.gallery import Example, write_examples
from inpaint_app.models import (
    CheckpointError,
    checkpoint_file,
    load_model,
    read_card,
    save_model,
)
from inpaint_app.runs import RunInputError, model_and_split


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model.pt or its folder")
    p.add_argument("--count", type=int, default=20_000,
                   help="images in the bank (0: leave the bank alone)")
    p.add_argument("--examples", type=int, default=6,
                   help="validation images for the app's gallery (0: leave them alone)")
    p.add_argument("--data-root", default=None, help="dataset root (default $FLOWPAINT_DATA)")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    args = p.parse_args(argv)
    path = checkpoint_file(args.checkpoint)
    try:
        card = read_card(path)
    except CheckpointError as err:
        sys.exit(f"error: {err}")
    if card.dataset is None:
        sys.exit(f"error: the card of {path} names no dataset")
    report: dict = {}
    if args.count:
        report.update(write_bank(path, card, args))
    if args.examples > 0:
        val = split_images(path, "val", args)
        labels = load_labels(card.dataset, "val", args.data_root) if card.dataset in DATASETS \
            else None
        written = write_dataset_examples(path.parent / EXAMPLES_DIR, val, labels, card.dataset,
                                args.examples)
        report["examples"] = [example.shows or example.path.name for example in written]
    print(json.dumps(report))


def split_images(path: Path, split: str, args: argparse.Namespace) -> torch.Tensor:
    """The images of ``split`` of the model's dataset, or exit with why they cannot be read."""
    try:
        return model_and_split(path, None, split, args.data_root, download=args.download,
                               warn=partial(print, file=sys.stderr))[2]
    except RunInputError as err:
        sys.exit(f"error: {err}")


def write_bank(path: Path, card: ModelCard, args: argparse.Namespace) -> dict:
    """``--count`` training images drawn at random (seed 0) as the bank; the card records it."""
    train = split_images(path, "train", args)
    if not 1 <= args.count <= len(train):
        sys.exit(f"error: --count must be in [1, {len(train)}]")
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.count]
    bank_path = path.with_name(BANK_FILE)
    save_bank(train[chosen.sort().values].contiguous(), bank_path)
    save_model(load_model(path), path, card=card.replace(exemplars={
        "file": BANK_FILE, "images": args.count, "source": f"{card.dataset} training split "
        "(validation and test images excluded), random draw, seed 0",
        "command": f"python -m pipelines.exemplars --checkpoint {args.checkpoint} "
                   f"--count {args.count}"}))
    size = bank_path.stat().st_size / 1e6
    return {"bank": str(bank_path), "images": args.count, "megabytes": round(size, 2)}


# What an example of each class shows, in words, where the dataset's classes are known.
CLASS_WORDS = {"mnist": [f"a handwritten {digit}" for digit in range(10)],
               "fashion-mnist": ["a T-shirt or top", "a pair of trousers", "a pullover",
                                 "a dress", "a coat", "a sandal", "a shirt", "a sneaker",
                                 "a bag", "an ankle boot"]}
EXAMPLE_MASKS = ("bottom", "center", "top", "right", "left", "random50")


def write_dataset_examples(folder: Path, images: torch.Tensor, labels: torch.Tensor | None,
                  dataset: str, count: int) -> list[Example]:
    """Up to ``count`` validation images, each with a mask preset from ``EXAMPLE_MASKS`` in
    turn: with labels, the first image of each class in order (then the next ones) and what
    it shows; without, evenly spaced ones."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if labels is None:
        step = max(1, len(images) // count)
        chosen = list(range(0, len(images), step))[:count]
    else:
        first: dict[int, int] = {}
        for i, label in enumerate(labels.tolist()):
            first.setdefault(label, i)
        chosen = list(first.values())[:count]
        chosen += [i for i in range(len(images)) if i not in chosen][:count - len(chosen)]
    words = CLASS_WORDS.get(dataset)
    name = DISPLAY_NAMES.get(dataset, dataset)
    return write_examples(
        folder, images[chosen],
        shows=[None if labels is None else words[int(labels[i])] if words
               else f"class {int(labels[i])}" for i in chosen],
        masks=[EXAMPLE_MASKS[k % len(EXAMPLE_MASKS)] for k in range(len(chosen))],
        sources=[f"{name} validation image {i:,}" for i in chosen], prefix=f"{dataset}-val")


if __name__ == "__main__":
    main()
