"""Inpaint a folder of images with a trained model.

    python -m pipelines.inpaint_batch --checkpoint trained/mnist-glow --images in/ \
        (--masks masks/ | --mask-preset bottom) --out filled/ [--method M] [--steps N] \
        [--seed S] [--ground-truth truth/]

A mask is a PNG of the image's size paired by file name; white (>= 128) marks missing pixels.
Each image takes the app's path (``inpaint_app.predictor``): grayscale models see it through
their input normalization (``inpaint_app.normalize``:
polarity, the dataset's framing, levels), colour models a plain resize (``images.Resize``), and
the fill is mapped back, so ``<out>/<name>.png`` has the upload's size and polarity (in colour
for a colour model) with only its missing pixels replaced (``--no-normalize``: the model-size
image, plainly resized, as before). Ground-truth scores are then taken in the upload's
frame. Writes ``<out>/<name>.png`` (atomically) and ``<out>/metrics.csv``; outputs that exist are
skipped. A file that cannot be used (unreadable, mask missing or of the wrong size) gets an
``error`` row and no image; the run goes on.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from inpaint_app.atomic import atomic_write, ensure_writable_dir
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.images import (
    ImageError,
    open_image,
    save_png,
    to_mask,
    to_model_input,
)
from inpaint_app.masks import MASK_PRESETS
from inpaint_app.methods import CHOICES, DEFAULT
from inpaint_app.methods import help_text as method_help
from inpaint_app.metrics import masked_psnr, masked_ssim
from inpaint_app.models import CheckpointError, ConfigError
from inpaint_app.predictor import Fitted, inpaint_upload

SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
FIELDS = ["file", "output", "status", "bpd_before", "bpd_after", "seconds", "psnr_masked",
          "ssim_masked", "missing_fraction", "note", "error"]


def find_pair(folder: Path, stem: str) -> Path | None:
    """The file in ``folder`` with this stem (any image suffix), or None."""
    for path in sorted(folder.glob(f"{stem}.*")):
        if path.suffix.lower() in SUFFIXES:
            return path
    return None


def load_mask(path: Path | None, image_size: tuple[int, int], model_size: tuple[int, int]
              ) -> torch.Tensor:
    """bool ``[H, W]`` at ``model_size`` from a mask PNG that must have the image's size."""
    if path is None:
        raise ImageError("no mask with this file name in --masks")
    mask_image = open_image(path)
    if (mask_image.height, mask_image.width) != image_size:
        raise ImageError(f"mask {path.name} is {mask_image.width}x{mask_image.height}; "
                         f"the image is {image_size[1]}x{image_size[0]}")
    return to_mask(mask_image, model_size)


def masked_scores(filled: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor
                  ) -> tuple[float, float]:
    """Masked-region PSNR and SSIM (the benchmark's definitions)."""
    full = mask.expand_as(filled)
    return masked_psnr(filled, truth, full), masked_ssim(filled, truth, full)


def process(path: Path, model: ModelBundle, args: argparse.Namespace, index: int) -> dict:
    """Inpaint one file; returns its metrics row (raises ImageError for unusable input)."""
    image = open_image(path)
    fitted = Fitted.of(image, model, args.normalize)
    size = fitted.frame  # where masks and scores live
    if args.mask_preset is not None:
        mask, user_mask = fitted.preset(args.mask_preset, seed=args.seed + index)
    else:
        user_mask = load_mask(find_pair(args.masks, path.stem), (image.height, image.width),
                              size).numpy()
        mask = fitted.model_mask(user_mask)
    if not mask.any():
        raise ImageError("the mask misses the model's view of the image: nothing to fill")
    # Pasted over the mask alone, in the model's channels: observed pixels stay as they were.
    filled = inpaint_upload(model, fitted, mask, user_mask, keep_colour=False,
                            method=args.method, steps=args.steps, seed=args.seed)
    result = filled.result
    output = to_model_input(filled.image, (model.image_shape[0], *size))
    row = {"bpd_before": f"{result.bpd_before:.4f}", "bpd_after": f"{result.bpd_after:.4f}",
           "seconds": f"{result.seconds:.3f}", "missing_fraction": f"{mask.float().mean():.4f}",
           "note": "; ".join(s for s in (fitted.note, result.message) if s)}
    if args.ground_truth is not None:
        truth_path = find_pair(args.ground_truth, path.stem)
        if truth_path is None:
            raise ImageError("no ground-truth image with this file name")
        truth = to_model_input(open_image(truth_path), (output.shape[0], *size))
        psnr, ssim = masked_scores(output, truth, torch.from_numpy(user_mask)[None])
        row.update(psnr_masked=f"{psnr:.3f}", ssim_masked=f"{ssim:.4f}")
    save_png(output, args.out / f"{path.stem}.png")
    return row


def write_csv(rows: list[dict], path: Path) -> None:
    """metrics.csv, written atomically."""
    with atomic_write(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", type=Path, required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--masks", type=Path)
    source.add_argument("--mask-preset", choices=list(MASK_PRESETS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--method", choices=CHOICES, default=DEFAULT, help=method_help())
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ground-truth", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="plain resize to the model's size instead of its input "
                             "normalization (the output is then at the model's size)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model = load_bundle(args.checkpoint, map_location=args.device)
    except (CheckpointError, ConfigError) as err:
        sys.exit(f"error: {err}")
    if not args.images.is_dir():
        sys.exit(f"error: --images {args.images} is not a folder")
    try:
        ensure_writable_dir(args.out)
    except OSError as err:
        sys.exit(f"error: cannot write to --out {args.out}: {err.strerror or err}")
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in SUFFIXES)
    rows, failures = [], 0
    for index, path in enumerate(tqdm(files, desc="inpainting", unit="image")):
        out = args.out / f"{path.stem}.png"
        row = {"file": path.name, "output": out.name}
        if out.exists():
            rows.append({**row, "status": "skipped (output exists)"})
            continue
        try:
            row.update(process(path, model, args, index), status="ok")
        except (ImageError, ValueError) as err:
            failures += 1
            row.update(output="", status="error", error=str(err))
            tqdm.write(f"{path.name}: {err}", file=sys.stderr)
        rows.append(row)
    write_csv(rows, args.out / "metrics.csv")
    print(f"{len(files) - failures} of {len(files)} images done; metrics in "
          f"{args.out / 'metrics.csv'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
