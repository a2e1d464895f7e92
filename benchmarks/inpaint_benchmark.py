"""Inpainting benchmark: our methods against biharmonic and mean fills on test subsets.

    python -m benchmarks.inpaint_benchmark                       # writes benchmarks/inpainting.*
    python -m benchmarks.inpaint_benchmark --limit 40 --slow-limit 4 --datasets mnist

For each dataset and mask preset: masked-region PSNR and SSIM (skimage.metrics, [0, 1] units,
SSIM averaged over the missing pixels of its map), the accuracy of a small CNN on the
completed images (trained once on the training split, cached under runs/; its accuracy on the
true images is reported as the reference), and the median
seconds per image. ``nice`` and ``langevin`` are slow, so they run on the first ``--slow-limit``
images of each subset. With a conditional inpainting model beside the checkpoint it also
reports one of the default's samples as its own column (``sample``), the conditional bits per
missing dim of the true pixels, and how the unconditional model scores images completed by one
sample against the true images (bits/dim gap). Also draws docs/inpainting-examples.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn
from tqdm import tqdm

from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.card import ModelCard
from inpaint_app.data import default_data_root, load_labels, load_split
from inpaint_app.density import dequantize
from inpaint_app.fills import biharmonic_fill, mean_fill
from inpaint_app.images import save_png, to_pil
from inpaint_app.inpainting import (
    MASK_PRESETS,
    discrete_bits_per_dim,
    inpaint,
    inpaint_batch,
    make_mask,
)
from inpaint_app.methods import conditional_settings, describe_temperatures
from inpaint_app.metrics import masked_psnr, masked_ssim

CHECKPOINTS = {"mnist": "trained/mnist-glow/model.pt",
               "fashion-mnist": "trained/fashion-mnist-glow/model.pt"}
METHOD_COLUMNS = ("mean", "biharmonic", "exemplar", "default", "sample", "nice", "langevin")
CLASSICAL = ("mean", "biharmonic")


def classifier(dataset: str, root: Path, cache: Path) -> nn.Module:
    """The judge of the accuracy columns: a small CNN trained on the training split (four
    epochs, seed 0, a few CPU minutes once, then cached under ``cache``). Its accuracy on the
    true test images is reported above the table, the reference for every column. (Until stop
    28 the judge was a one-hidden-layer MLP, right on 87 % of the true Fashion-MNIST test
    images, which held down and blurred every Fashion-MNIST accuracy here.)"""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    path = cache / f"judge-cnn-{dataset}.pt"
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    labels = load_labels(dataset, "train", root)
    x = load_split(dataset, "train", root).float().div(255.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in tqdm(range(4), desc=f"judge ({dataset})", unit="epoch"):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = nn.functional.cross_entropy(net(x[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net.eval()


def run_methods(model: ModelBundle, images: torch.Tensor, masks: torch.Tensor, slow: int
                ) -> dict[str, tuple[torch.Tensor, float]]:
    """Filled uint8 images and seconds per image for every method column (``sample``: the
    default's first sample, when the default samples a conditional model)."""
    out = {}
    y = dequantize(images, noise="centre")
    m4 = masks[:, None].expand_as(images)
    # "exemplar" is the default's start alone (the shipped bank, no flow): the gap between it
    # and "default" is what the likelihood ascent adds.
    for name, fill in (("mean", mean_fill), ("biharmonic", biharmonic_fill),
                       ("exemplar", model.exemplars.fill)):
        start = time.perf_counter()
        filled = (fill(y, m4) * 256.0).floor().clamp(0, 255).to(torch.uint8)
        out[name] = (torch.where(m4, filled, images), (time.perf_counter() - start) / len(y))
    for method, count, n in (("default", len(images), None), ("nice", slow, 1),
                             ("langevin", slow, 4)):
        results = []
        for start in range(0, count, 100):  # bounded memory: K samples of every image
            results += inpaint_batch(model, images[start:count][:100],
                                     masks[start:count][:100], method=method, n_samples=n)
        out[method] = (torch.stack([r.image for r in results]), results[0].seconds)
        if method == "default":
            out["sample"] = (torch.stack([r.samples[0] for r in results]), results[0].seconds)
    return out


def conditional_bpd(model: ModelBundle, images: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean bits per missing dim of the true missing pixels under the conditional model (one
    dequantization draw per image, seed 0), or nan without one."""
    if model.inpainter is None:
        return float("nan")
    with torch.no_grad():
        bpd = model.inpainter.bits_per_dim(images, masks,
                                           generator=torch.Generator().manual_seed(0))
    return bpd.mean().item()


def single_image_p50(model: ModelBundle, images: torch.Tensor, preset: str, n: int) -> float:
    """Median wall time of one default-method call on one image (the app's latency)."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        inpaint(model, images[i], make_mask(preset, images.shape[2:], seed=i))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def evaluate(dataset: str, args: argparse.Namespace) -> dict:
    model = load_bundle(CHECKPOINTS[dataset])
    images = load_split(dataset, "test", args.data_root)[:args.limit]
    labels = load_labels(dataset, "test", args.data_root)[:args.limit]
    net = classifier(dataset, args.data_root, Path(args.cache))
    with torch.no_grad():
        judge = (net(images.float() / 255.0).argmax(1) == labels).float().mean().item()
    table, examples = {}, {}
    true_bpd = discrete_bits_per_dim(model.model, images)
    for preset in tqdm(list(MASK_PRESETS), desc=dataset):
        masks = torch.stack([make_mask(preset, images.shape[2:], seed=i)
                             for i in range(len(images))])
        outputs = run_methods(model, images, masks, args.slow_limit)
        row = {"conditional_bpd": conditional_bpd(model, images, masks),
               "sample_bpd_gap": (discrete_bits_per_dim(model.model, outputs["sample"][0])
                                  - true_bpd).mean().item()}
        for name, (filled, seconds) in outputs.items():
            k = len(filled)
            m = masks[:k, None].expand_as(filled)
            with torch.no_grad():
                acc = (net(filled.float() / 255.0).argmax(1) == labels[:k]).float().mean()
            row[name] = {"psnr": statistics.fmean(masked_psnr(f, t, mm) for f, t, mm
                                                  in zip(filled, images[:k], m, strict=True)),
                         "ssim": statistics.fmean(masked_ssim(f, t, mm) for f, t, mm
                                                  in zip(filled, images[:k], m, strict=True)),
                         "accuracy": acc.item(), "seconds_per_image": seconds, "images": k}
        table[preset] = row
        examples[preset] = (images[0], masks[0], {k: v[0][0] for k, v in outputs.items()},
                            inpaint(model, images[0], masks[0]).samples[:4])
    p50 = single_image_p50(model, images, "bottom", args.timing_images)
    return {"checkpoint": CHECKPOINTS[dataset], "table": table,
            "default": (default_description(model.inpainter_card)
                        if model.inpainter is not None
                        else "exemplar start + ascent (no conditional model)"),
            "default_single_image_p50_s": p50, "judge_accuracy_on_true_images": judge,
            "examples": examples}


def default_description(card: ModelCard) -> str:
    """What the default method ran: the conditional model's validated settings."""
    settings = conditional_settings(card)
    return (f"conditional flow, {settings['samples']} samples at "
            f"{describe_temperatures(settings['temperature_by_mask'])}, fill = their mean"
            + (f" climbed {settings['ascent_steps']} steps" if settings["ascent_steps"] else ""))


def markdown(results: dict, args: argparse.Namespace) -> str:
    lines = ["# Inpainting benchmark", "",
             f"Command: `python -m benchmarks.inpaint_benchmark --limit {args.limit} "
             f"--slow-limit {args.slow_limit}`", "",
             "Masked-region PSNR (dB) / SSIM / classifier accuracy (%) of the completed test "
             f"images; first {args.limit} test images per dataset (nice, langevin: first "
             f"{args.slow_limit}), one mask per image (seed = index). `exemplar`: the mean of "
             "the nearest training images on the observed pixels, no flow. `default`: the "
             "method's fill; `sample`: one of its samples. `cond. bits`: bits per missing dim "
             "of the true pixels under the conditional flow. `sample gap`: the unconditional "
             "model's bits/dim of images completed by one sample minus that of the true "
             "images.", ""]
    for dataset, res in results.items():
        lines += [f"## {dataset} ({res['checkpoint']})", "", f"Default: {res['default']}.", "",
                  "Accuracy judge: a small CNN trained on the training split; on the true "
                  f"(uncorrupted) test images it is right on "
                  f"{100 * res['judge_accuracy_on_true_images']:.1f} % of them (the first "
                  f"{args.limit}), the reference for every accuracy below.", "",
                  "| preset | " + " | ".join(METHOD_COLUMNS) + " | cond. bits | sample gap |",
                  "|---" * (len(METHOD_COLUMNS) + 3) + "|"]
        for preset, row in res["table"].items():
            cells = [f"{row[m]['psnr']:.2f} / {row[m]['ssim']:.3f} / "
                     f"{100 * row[m]['accuracy']:.0f}" for m in METHOD_COLUMNS]
            lines.append(f"| {preset} | " + " | ".join(cells) +
                         f" | {row['conditional_bpd']:.3f} | {row['sample_bpd_gap']:+.2f} |")
        table = list(res["table"].values())
        avg = [statistics.fmean(r[m]["psnr"] for r in table) for m in METHOD_COLUMNS]
        lines.append("| **mean PSNR** | " + " | ".join(f"**{a:.2f}**" for a in avg) + " | "
                     f"{statistics.fmean(r['conditional_bpd'] for r in table):.3f} | |")
        secs = [statistics.median(r[m]["seconds_per_image"] for r in table)
                for m in METHOD_COLUMNS]
        lines.append("| median s/image (batched) | " + " | ".join(f"{s:.3f}" for s in secs)
                     + " | | |")
        gaps = [r["default"]["psnr"] - r["exemplar"]["psnr"] for r in table]
        agree = sum(r["default"]["accuracy"] >= r["exemplar"]["accuracy"] for r in table)
        lines += ["", f"Default against the exemplar start: {statistics.fmean(gaps):+.2f} dB on "
                  f"average, worst preset {min(gaps):+.2f} dB; classifier accuracy at least the "
                  f"exemplar start's on {agree} of {len(table)} presets."]
        lines += ["", f"Default method, one image at a time (bottom mask): p50 "
                  f"{res['default_single_image_p50_s']:.3f} s.", ""]
    lines.append(f"Hardware: {platform.machine()}, torch {torch.__version__}, "
                 f"{torch.get_num_threads()} thread(s).")
    return "\n".join(lines) + "\n"


def figure(examples: dict, path: Path, scale: int = 3) -> None:
    """One row per preset: input (hole grey), mask, exemplar, default, four of the default's
    samples, nice, langevin, truth."""
    columns = ("input", "mask", "exemplar", "default", "sample 1", "sample 2", "sample 3",
               "sample 4", "nice", "langevin", "truth")
    presets = list(examples)
    image = examples[presets[0]][0]
    h, w = image.shape[1] * scale, image.shape[2] * scale
    pad, label = 4, 14
    canvas = Image.new("L", (len(columns) * (w + pad) + 70, len(presets) * (h + pad) + label),
                       255)
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        draw.text((70 + j * (w + pad), 1), name, fill=0)
    for i, preset in enumerate(presets):
        truth, mask, outs, samples = examples[preset]
        shown = torch.where(mask[None], torch.tensor(128, dtype=torch.uint8), truth)
        samples = list(samples) + [samples[-1]] * (4 - len(samples))
        tiles = [shown, (mask[None].to(torch.uint8) * 255), outs["exemplar"], outs["default"],
                 *samples[:4], outs["nice"], outs["langevin"], truth]
        y0 = label + i * (h + pad)
        draw.text((2, y0 + h // 2 - 5), preset, fill=0)
        for j, tile in enumerate(tiles):
            pil = to_pil(tile).convert("L").resize((w, h), Image.Resampling.NEAREST)
            canvas.paste(pil, (70 + j * (w + pad), y0))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(canvas, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(CHECKPOINTS),
                        choices=list(CHECKPOINTS))
    parser.add_argument("--limit", type=int, default=100, help="test images per dataset")
    parser.add_argument("--slow-limit", type=int, default=8,
                        help="images per preset for the slow nice and langevin methods")
    parser.add_argument("--timing-images", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--cache", default="runs/inpaint-benchmark")
    parser.add_argument("--out", default="benchmarks/inpainting")
    parser.add_argument("--figure", default="docs/inpainting-examples.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {d: evaluate(d, args) for d in args.datasets}
    figure(results[args.datasets[0]].pop("examples"), Path(args.figure))
    for res in results.values():
        res.pop("examples", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps({"args": {k: str(v) for k, v in
                                                        vars(args).items()},
                                               "results": results}, indent=2) + "\n"),
                         (".md", markdown(results, args))):
        tmp = out.with_name(f".{out.name}{suffix}.tmp")
        tmp.write_text(text)
        tmp.replace(out.with_suffix(suffix))
    print(markdown(results, args))


if __name__ == "__main__":
    main()
