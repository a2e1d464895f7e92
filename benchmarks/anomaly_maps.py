"""Anomaly maps (``inpaint_app.anomaly_map``) against foreign strokes pasted over test images:
where the map is hot, whether the image has a hot spot, how often a clean image has one, and
what a map costs. Writes ``benchmarks/anomaly-maps.md`` and ``.json`` and the README figure
``docs/anomaly-maps.png``.

    python -m benchmarks.anomaly_maps --data-root /work/shared/data [--images 50]
        [--clean 400] [--threads 2]
    python -m benchmarks.anomaly_maps --data-root DATA --checkpoint trained/digits \
        --dataset mnist --other fashion-mnist --out benchmarks/anomaly-maps-folder

For each shipped model with a calibrated map, ``--images`` test images per foreign source get a
10x10 crop pasted at a random place: crops of the other dataset's test images (Fashion-MNIST on
MNIST and the other way round), of pen scribbles (``synthetic.scribbles``), of rendered letters
(``synthetic.rendered_letters``), each with at least 15 % ink, and a block of uniform noise.
Pasted *over* the image (the brighter of crop and image, as ink on ink): the pasted pixels are
those the paste changed by more than 32 grey levels (an image with fewer than 10 is drawn
again), the rest of the image those it left alone (faint changes count as neither). Pasted as a
*block* (the crop replaces the 10x10 pixels): the pasted pixels are the block. Pixel AUROC: per
image, the map of the pasted pixels against the rest, then the mean (and median) over images.
Image AUROC: the map's peak against that of ``--clean`` other clean test images, which also
give the share with a hot spot above the calibrated level. Time: the median of 10 maps of one
image, at ``--threads``. Uploads: the first 20 images pasted over of each source, enlarged
three times and inverted (dark ink on a light page, as a scan), go through the input
normalization as uploads do, and their maps come back in the upload's frame
(``anomaly_map.to_upload_frame``): the pixel AUROC there, at the upload's size, and in the
model's frame of the normalized input (``upload_aurocs``).

The exploration that chose the windows and the statistic used other test images (numbers
2,000-5,024 and 0-99) and other crop seeds; this benchmark's are 6,000 onwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpaint_app.anomaly_map import anomaly_map, map_calibration, overlay, to_upload_frame
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.data import load_split
from inpaint_app.normalize import fit_input
from inpaint_app.ood_metrics import auroc
from inpaint_app.synthetic import rendered_letters, scribbles

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"mnist-glow": ("mnist", "fashion-mnist"),  # model: (its dataset, the foreign one)
          "fashion-mnist-glow": ("fashion-mnist", "mnist")}
SOURCES = ("crops of the other dataset", "scribbles", "rendered letters", "noise block")
SIDE, INK, CHANGED, MIN_PASTED = 10, 0.15, 32, 10
PASTED_BASE, CLEAN_BASE = 6000, 9000  # test image numbers: away from the exploration's


def _crop(pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A ``SIDE`` x ``SIDE`` crop of a random image of ``pool`` with at least ``INK`` ink."""
    while True:
        image = pool[rng.integers(len(pool))]
        top, left = rng.integers(0, image.shape[0] - SIDE + 1, 2)
        crop = image[top:top + SIDE, left:left + SIDE]
        if (crop > 128).mean() >= INK:
            return crop


def pasted_sets(test: torch.Tensor, other: torch.Tensor, n: int, mode: str
                ) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """Per source, ``n`` pasted images (uint8 ``[n, 1, 28, 28]``) and their pasted pixels."""
    pools = [other[:, 0].numpy(), scribbles(400, seed=31)[:, 0].numpy(),
             rendered_letters(400, seed=31)[:, 0].numpy(), None]
    out = {}
    for number, (source, pool) in enumerate(zip(SOURCES, pools, strict=True)):
        rng = np.random.default_rng(1000 + number)
        images, truths, index = [], [], PASTED_BASE + number * n
        while len(images) < n:
            original = test[index % len(test), 0].numpy()
            index += 1
            crop = (rng.integers(0, 256, (SIDE, SIDE)).astype(np.uint8) if pool is None
                    else _crop(pool, rng))
            top, left = rng.integers(0, original.shape[0] - SIDE + 1, 2)
            image = original.copy()
            block = image[top:top + SIDE, left:left + SIDE]
            image[top:top + SIDE, left:left + SIDE] = crop if mode == "block" else np.maximum(
                block, crop)
            change = np.abs(image.astype(int) - original)
            truth = np.zeros(image.shape, np.int8)  # 1 pasted, 0 the rest, -1 neither
            if mode == "block":
                truth[top:top + SIDE, left:left + SIDE] = 1
            else:
                truth[(change > 0) & (change <= CHANGED)] = -1
                truth[change > CHANGED] = 1
            if (truth == 1).sum() >= MIN_PASTED and (truth == 0).any():
                images.append(image)
                truths.append(truth)
        out[source] = torch.from_numpy(np.stack(images))[:, None], np.stack(truths)
    return out


def pixel_aurocs(maps: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """Per image, the AUROC of the map's pasted pixels against the rest."""
    return np.array([auroc(m[t == 0], m[t == 1]) for m, t in zip(maps, truths, strict=True)])


def peaks(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.nanmax(np.asarray(maps).reshape(len(maps), -1), axis=1)


def timing(bundle: ModelBundle, image: torch.Tensor, threads: int) -> float:
    """Median seconds of one image's map over 10 runs (after one warm-up)."""
    torch.set_num_threads(threads)
    anomaly_map(bundle, image[None])
    times = []
    for _ in range(10):
        start = time.perf_counter()
        anomaly_map(bundle, image[None])
        times.append(time.perf_counter() - start)
    torch.set_num_threads(1)
    return statistics.median(times)


def as_upload(image: np.ndarray) -> Image.Image:
    """A model-size image as an upload: three times larger, dark ink on a light page."""
    big = Image.fromarray(image).resize((84, 84), Image.Resampling.BICUBIC)
    return Image.fromarray(255 - np.asarray(big))


def upload_aurocs(bundle: ModelBundle, images: torch.Tensor, truths: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel AUROCs of maps that went the uploads' way, through the input normalization: back
    in the upload's frame at its size (pixels the model did not see left out), and in the
    model's frame of the normalized input (the truth carried there by the framing). Equal
    figures say the map comes back faithfully; what both lose against the stored image is the
    normalization's doing."""
    uploads = [as_upload(x[0].numpy()) for x in images]
    fitted = [fit_input(u, bundle.image_shape, bundle.recipe) for u in uploads]
    maps = anomaly_map(bundle, torch.stack([x for x, _, _ in fitted]))
    back_frame, model_frame = [], []
    for upload, (_, framing, _), values, truth in zip(uploads, fitted, maps, truths,
                                                      strict=True):
        big = np.asarray(Image.fromarray((truth + 1).astype(np.uint8)).resize(
            upload.size, Image.Resampling.NEAREST)).astype(int) - 1
        back = to_upload_frame(values, framing, upload.size)
        seen = np.isfinite(back)
        back_frame.append(auroc(back[seen & (big == 0)], back[seen & (big == 1)]))
        pasted = framing.to_model_mask(big == 1).numpy()
        rest = ~framing.to_model_mask(big != 0).numpy()
        model_frame.append(auroc(values.numpy()[rest], values.numpy()[pasted]))
    return np.array(back_frame), np.array(model_frame)


def evaluate(name: str, args: argparse.Namespace) -> tuple[dict, list]:
    """The rows of one model, and a few (image, map) pairs for the figure."""
    dataset, other = MODELS.get(name) or (args.dataset, args.other)
    bundle = load_bundle(args.checkpoint or ROOT / "trained" / name)
    calibration = map_calibration(bundle)
    level = calibration["level"]
    test = load_split(dataset, "test", args.data_root)
    clean = test[CLEAN_BASE:CLEAN_BASE + args.clean]
    clean_peaks = peaks(anomaly_map(bundle, clean))
    result = {"model": name, "dataset": dataset, "level": level, "calibration": {
        k: calibration[k] for k in ("windows", "n", "source", "fpr", "seconds_per_image")},
        "clean": {"images": len(clean), "hot_spot_share": float((clean_peaks > level).mean())},
        "modes": {}}
    shown = []
    for mode in ("over", "block"):
        rows = {}
        for source, (images, truths) in pasted_sets(test, load_split(other, "test",
                                                                     args.data_root),
                                                    args.images, mode).items():
            maps = anomaly_map(bundle, images).numpy()
            pixel = pixel_aurocs(maps, truths)
            rows[source] = {"images": len(images), "pixel_auroc_mean": float(pixel.mean()),
                            "pixel_auroc_median": float(np.median(pixel)),
                            "image_auroc": auroc(clean_peaks, peaks(maps)),
                            "hot_spot_share": float((peaks(maps) > level).mean())}
            if mode == "over":
                up, normalized = upload_aurocs(bundle, images[:20], truths[:20])
                rows[source]["upload_pixel_auroc_mean"] = float(up.mean())
                rows[source]["normalized_model_frame_pixel_auroc_mean"] = float(
                    normalized.mean())
                rows[source]["stored_same_20"] = float(pixel[:20].mean())
                shown.append((images[0, 0].numpy(), maps[0], level, source))
            print(f"{name} {mode} {source}: {rows[source]}", flush=True)
        result["modes"][mode] = rows
    clean_maps = anomaly_map(bundle, clean[:2]).numpy()
    shown += [(clean[i, 0].numpy(), clean_maps[i], level, "clean") for i in range(2)]
    result["seconds_per_map"] = {f"{t} threads": timing(bundle, clean[0], t)
                                 for t in sorted({1, args.threads})}
    return result, shown


def figure(shown: list, out: Path) -> None:
    """Each image beside its map over it, two rows (one per model), enlarged four times."""
    scale, pad = 4, 6
    per_row = len(shown) // 2
    tile = 28 * scale
    sheet = Image.new("RGB", (per_row * (2 * tile + 3 * pad), 2 * (tile + pad) + pad), "white")
    for i, (image, values, level, _) in enumerate(shown):
        row, col = divmod(i, per_row)
        x, y = col * (2 * tile + 3 * pad) + pad, row * (tile + pad) + pad
        big = Image.fromarray(image).resize((tile, tile), Image.Resampling.NEAREST)
        smooth = np.asarray(Image.fromarray(values).resize((tile, tile),
                                                           Image.Resampling.BILINEAR))
        sheet.paste(big.convert("RGB"), (x, y))
        sheet.paste(overlay(big, smooth, level), (x + tile + pad, y))
    sheet.save(out, optimize=True)


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Anomaly maps: foreign strokes pasted over test images", "",
             f"`{command}`: maps from the bundles' conditional inpainting flows "
             "(`inpaint_app.anomaly_map`, calibrated by `python -m pipelines.calibrate MODEL "
             "--maps` or `flowpaint folder-inpainter`). Pixel AUROC: per image, the map of the "
             "pasted pixels against the rest of the image, mean (median) over images. Image "
             "AUROC: the map's "
             "peak against clean test images. Hot spots: images whose peak exceeds the "
             "calibrated level. Uploads: the first 20 images of each source, enlarged 3x and "
             "inverted (dark ink on a light page), through the input normalization; their maps "
             "back in the upload's frame at its size, and in the model's frame of the "
             "normalized input, beside the same 20 images' maps as stored (module docstring of "
             "`benchmarks/anomaly_maps.py`).", ""]
    for r in results:
        seconds = ", ".join(f"{v:.3f} s ({k.replace('1 threads', '1 thread')})"
                            for k, v in r["seconds_per_map"].items())
        lines += [f"## {r['model']}", "",
                  f"Calibrated on {r['calibration']['source']}; windows "
                  f"{r['calibration']['windows']}; level {r['level']:.3f}. Clean test images "
                  f"with a hot spot: **{100 * r['clean']['hot_spot_share']:.1f} %** of "
                  f"{r['clean']['images']}. One map: {seconds}.", "",
                  "| pasted | source | images | pixel AUROC mean (median) | image AUROC | "
                  "with a hot spot | uploads: pixel AUROC in the upload's frame / in the "
                  "model's frame / the same 20 as stored |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for mode, rows in r["modes"].items():
            for source, row in rows.items():
                upload = (f"{row['upload_pixel_auroc_mean']:.3f} / "
                          f"{row['normalized_model_frame_pixel_auroc_mean']:.3f} / "
                          f"{row['stored_same_20']:.3f}"
                          if "upload_pixel_auroc_mean" in row else "")
                lines.append(f"| {mode} | {source} | {row['images']} | "
                             f"{row['pixel_auroc_mean']:.3f} ({row['pixel_auroc_median']:.3f}) "
                             f"| {row['image_auroc']:.3f} | "
                             f"{100 * row['hot_spot_share']:.0f} % | {upload} |")
            mean = statistics.fmean(row["pixel_auroc_mean"] for row in rows.values())
            image = statistics.fmean(row["image_auroc"] for row in rows.values())
            lines.append(f"| {mode} | **all sources** | | **{mean:.3f}** | **{image:.3f}** | "
                         "| |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--images", type=int, default=50, help="pasted images per source and mode")
    p.add_argument("--clean", type=int, default=400, help="clean test images")
    p.add_argument("--threads", type=int, default=2, help="threads for the timing")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--checkpoint", default=None,
                   help="measure this bundle instead (e.g. a folder bundle with "
                        "flowpaint folder-inpainter), on --dataset's test images")
    p.add_argument("--dataset", default="mnist", help="--checkpoint: its test images")
    p.add_argument("--other", default="fashion-mnist", help="--checkpoint: the foreign crops")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "anomaly-maps"))
    p.add_argument("--figure", default=str(ROOT / "docs" / "anomaly-maps.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = ("python -m benchmarks.anomaly_maps --data-root DATA "
               f"--images {args.images} --clean {args.clean} --threads {args.threads}")
    if args.checkpoint:
        args.models = [Path(args.checkpoint).name]
        command += (f" --checkpoint {args.checkpoint} --dataset {args.dataset} "
                    f"--other {args.other} --out {args.out}")
    results, shown = [], []
    for name in args.models:
        result, pictures = evaluate(name, args)
        results.append(result)
        shown += pictures
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results},
                                                   indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results, command) + "\n")
    if len(args.models) == 2:
        figure(shown, Path(args.figure))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
