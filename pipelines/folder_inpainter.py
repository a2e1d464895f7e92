"""Give a bundle trained on a folder (``flowpaint train --images``) a conditional inpainting
flow, so that it gets anomaly maps and the conditional fill.

    python -m pipelines.folder_inpainter trained/photos [--max-minutes 20] [--threads 2]

Trains the flow on the folder's training files for ``--max-minutes``, installs it as
``inpainter.pt`` and calibrates its map on the validation files (``inpaint_app.folder_inpainter``).
"""

from __future__ import annotations

import argparse
import sys

import torch

from inpaint_app.anomaly_map import MapUnavailable
from inpaint_app.folder_inpainter import add_inpainter
from inpaint_app.models import CheckpointError
from inpaint_app.trainer import TrainingError
from inpaint_app.training import select_device


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="the folder bundle (model.pt or its folder)")
    p.add_argument("--max-minutes", type=float, default=20.0,
                   help="training time of the conditional flow")
    p.add_argument("--data-root", default=None,
                   help="the image folder, when it moved since the bundle was trained")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        add_inpainter(args.checkpoint, minutes=args.max_minutes, data_root=args.data_root,
                      device=str(select_device(args.device)), seed=args.seed)
    except (TrainingError, CheckpointError, MapUnavailable) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
