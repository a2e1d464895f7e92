"""Write the exemplar bank that ships beside a checkpoint (the default inpainting start).

    python -m pipelines.exemplars --checkpoint trained/mnist-glow [--count 20000] [--data-root DIR]

Draws ``--count`` images at random (seed 0) from the checkpoint's training split, never from the
validation or test images, and writes ``<checkpoint folder>/exemplars.npz``; the card records it.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from inpaint_app.exemplars import BANK_FILE, save_bank
from inpaint_app.models import (
    CheckpointError,
    checkpoint_file,
    load_model,
    read_card,
    save_model,
)
from inpaint_app.runs import model_and_split


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="model.pt or its folder")
    p.add_argument("--count", type=int, default=20_000, help="images in the bank")
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
    dataset = card.dataset
    _, _, train = model_and_split(path, None, "train", args.data_root, download=args.download)
    if not 1 <= args.count <= len(train):
        sys.exit(f"error: --count must be in [1, {len(train)}]")
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.count]
    bank_path = path.with_name(BANK_FILE)
    save_bank(train[chosen.sort().values].contiguous(), bank_path)
    save_model(load_model(path), path, card=card.replace(exemplars={
        "file": BANK_FILE, "images": args.count, "source": f"{dataset} training split "
        "(validation and test images excluded), random draw, seed 0",
        "command": f"python -m pipelines.exemplars --checkpoint {args.checkpoint} "
                   f"--count {args.count}"}))
    size = bank_path.stat().st_size / 1e6
    print(json.dumps({"bank": str(bank_path), "images": args.count, "megabytes": round(size, 2)}))


if __name__ == "__main__":
    main()
