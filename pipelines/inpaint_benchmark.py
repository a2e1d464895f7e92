"""Inpainting benchmark: our methods against biharmonic and mean fills on test subsets.

    python -m pipelines.inpaint_benchmark                       # writes benchmarks/inpainting.*
    python -m pipelines.inpaint_benchmark --limit 40 --slow-limit 4 --datasets mnist

For each dataset and mask preset: masked-region PSNR and SSIM (skimage.metrics, [0, 1] units,
SSIM averaged over the missing pixels of its map), the accuracy of a small classifier on the
completed images (trained once on the training split, cached under runs/), and the median
seconds per image. ``nice`` and ``langevin`` are slow, so they run on the first ``--slow-limit``
images of each subset. Also draws docs/inpainting-examples.png.
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
from skimage.metrics import structural_similarity
from torch import nn
from tqdm import tqdm

from inpaint_app.data import default_data_root, load_split
from inpaint_app.fills import biharmonic_fill, mean_fill
from inpaint_app.images import save_png, to_pil
from inpaint_app.inpainting import MASK_PRESETS, inpaint, inpaint_batch, make_mask
from inpaint_app.models import load_model

CHECKPOINTS = {"mnist": "trained/mnist-glow/model.pt",
               "fashion-mnist": "trained/fashion-mnist-glow/model.pt"}
METHOD_COLUMNS = ("mean", "biharmonic", "exemplar", "default", "nice", "langevin")
CLASSICAL = ("mean", "biharmonic")


def masked_psnr(filled: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR in dB over the missing pixels only, images in [0, 1]."""
    err = ((filled.float() - truth.float()) / 255.0)[mask].pow(2).mean().item()
    return 10.0 * torch.log10(torch.tensor(1.0 / max(err, 1e-10))).item()


def masked_ssim(filled: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """SSIM map (7x7 windows) averaged over the missing pixels."""
    a, b = (t.float().numpy().transpose(1, 2, 0) / 255.0 for t in (filled, truth))
    _, full = structural_similarity(a, b, data_range=1.0, channel_axis=-1, full=True)
    return float(full[mask.permute(1, 2, 0).numpy()].mean())


def classifier(dataset: str, root: Path, cache: Path) -> nn.Module:
    """A small MLP on the training split, trained once (about 20 s) and cached."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    path = cache / f"classifier-{dataset}.pt"
    if path.is_file():
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    from torchvision import datasets
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[dataset]
    labels = torch.as_tensor(cls(root=str(root), train=True).targets)[:-5000]
    x = load_split(dataset, "train", root).float().div(255.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = nn.functional.cross_entropy(net(x[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net.eval()


def run_methods(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, slow: int
                ) -> dict[str, tuple[torch.Tensor, float]]:
    """Filled uint8 images and seconds per image for every method column."""
    out = {}
    y = (images.float() + 0.5) / 256.0
    m4 = masks[:, None].expand_as(images)
    # "exemplar" is the default's start alone (the shipped bank, no flow): the gap between it
    # and "default" is what the likelihood ascent adds.
    for name, fill in (("mean", mean_fill), ("biharmonic", biharmonic_fill),
                       ("exemplar", model.exemplars.fill)):
        start = time.perf_counter()
        filled = (fill(y, m4) * 256.0).floor().clamp(0, 255).to(torch.uint8)
        out[name] = (torch.where(m4, filled, images), (time.perf_counter() - start) / len(y))
    for method, count, n in (("default", len(images), 1), ("nice", slow, 1),
                             ("langevin", slow, 4)):
        results = inpaint_batch(model, images[:count], masks[:count], method=method,
                                n_samples=n)
        out[method] = (torch.stack([r.image for r in results]), results[0].seconds)
    return out


def single_image_p50(model: nn.Module, images: torch.Tensor, preset: str, n: int) -> float:
    """Median wall time of one default-method call on one image (the app's latency)."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        inpaint(model, images[i], make_mask(preset, images.shape[2:], seed=i))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def evaluate(dataset: str, args: argparse.Namespace) -> dict:
    model = load_model(CHECKPOINTS[dataset])
    for p in model.parameters():
        p.requires_grad_(False)
    images = load_split(dataset, "test", args.data_root)[:args.limit]
    from torchvision import datasets
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[dataset]
    labels = torch.as_tensor(cls(root=str(args.data_root), train=False).targets)[:args.limit]
    net = classifier(dataset, args.data_root, Path(args.cache))
    table, examples = {}, {}
    for preset in tqdm(list(MASK_PRESETS), desc=dataset):
        masks = torch.stack([make_mask(preset, images.shape[2:], seed=i)
                             for i in range(len(images))])
        outputs = run_methods(model, images, masks, args.slow_limit)
        row = {}
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
        examples[preset] = (images[0], masks[0], {k: v[0][0] for k, v in outputs.items()})
    p50 = single_image_p50(model, images, "bottom", args.timing_images)
    return {"checkpoint": CHECKPOINTS[dataset], "table": table,
            "default_single_image_p50_s": p50, "examples": examples}


def markdown(results: dict, args: argparse.Namespace) -> str:
    lines = ["# Inpainting benchmark", "",
             f"Command: `python -m pipelines.inpaint_benchmark --limit {args.limit} "
             f"--slow-limit {args.slow_limit}`", "",
             "Masked-region PSNR (dB) / SSIM / classifier accuracy (%) of the completed test "
             f"images; first {args.limit} test images per dataset (nice, langevin: first "
             f"{args.slow_limit}), one mask per image (seed = index).", ""]
    for dataset, res in results.items():
        lines += [f"## {dataset} ({res['checkpoint']})", "",
                  "| preset | " + " | ".join(METHOD_COLUMNS) + " |",
                  "|---" * (len(METHOD_COLUMNS) + 1) + "|"]
        for preset, row in res["table"].items():
            cells = [f"{row[m]['psnr']:.2f} / {row[m]['ssim']:.3f} / "
                     f"{100 * row[m]['accuracy']:.0f}" for m in METHOD_COLUMNS]
            lines.append(f"| {preset} | " + " | ".join(cells) + " |")
        avg = [statistics.fmean(r[m]["psnr"] for r in res["table"].values())
               for m in METHOD_COLUMNS]
        lines.append("| **mean PSNR** | " + " | ".join(f"**{a:.2f}**" for a in avg) + " |")
        secs = [statistics.median(r[m]["seconds_per_image"] for r in res["table"].values())
                for m in METHOD_COLUMNS]
        lines.append("| median s/image (batched) | " + " | ".join(f"{s:.3f}" for s in secs)
                     + " |")
        table = res["table"].values()
        gaps = [r["default"]["psnr"] - max(r[c]["psnr"] for c in CLASSICAL) for r in table]
        ascent = statistics.fmean(r["default"]["psnr"] - r["exemplar"]["psnr"] for r in table)
        lines += ["", f"Default against the better classical fill of each preset: "
                  f"{statistics.fmean(gaps):+.2f} dB on average, worst preset "
                  f"{min(gaps):+.2f} dB. Against its own exemplar start (no flow): "
                  f"{ascent:+.2f} dB, which is what the likelihood ascent adds."]
        lines += ["", f"Default method, one image at a time (bottom mask): p50 "
                  f"{res['default_single_image_p50_s']:.3f} s.", ""]
    lines.append(f"Hardware: {platform.machine()}, torch {torch.__version__}, "
                 f"{torch.get_num_threads()} thread(s).")
    return "\n".join(lines) + "\n"


def figure(examples: dict, path: Path, scale: int = 3) -> None:
    """One row per preset: input (hole grey), mask, nice, default, langevin, biharmonic, truth."""
    columns = ("input", "mask", "nice", "default", "langevin", "biharmonic", "truth")
    presets = list(examples)
    image, _, _ = examples[presets[0]]
    h, w = image.shape[1] * scale, image.shape[2] * scale
    pad, label = 4, 14
    canvas = Image.new("L", (len(columns) * (w + pad) + 70, len(presets) * (h + pad) + label),
                       255)
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        draw.text((70 + j * (w + pad), 1), name, fill=0)
    for i, preset in enumerate(presets):
        truth, mask, outs = examples[preset]
        shown = torch.where(mask[None], torch.tensor(128, dtype=torch.uint8), truth)
        tiles = [shown, (mask[None].to(torch.uint8) * 255), outs["nice"], outs["default"],
                 outs["langevin"], outs["biharmonic"], truth]
        y0 = label + i * (h + pad)
        draw.text((2, y0 + h // 2 - 5), preset, fill=0)
        for j, tile in enumerate(tiles):
            pil = to_pil(tile).convert("L").resize((w, h), Image.Resampling.NEAREST)
            canvas.paste(pil, (70 + j * (w + pad), y0))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(canvas, path)


def main() -> None:
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
    args = parser.parse_args()
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
