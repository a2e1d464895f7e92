"""2-D density gallery: every flow family on toy data sets, plus planar flows fitted to U1..U4.

    python -m benchmarks.toy2d                       # all families x all data sets -> docs/toy2d/
    python -m benchmarks.toy2d --families maf,ffjord --datasets moons --steps 300 --out /tmp/t

Writes ``gallery.png`` (a data row, then one row of learned densities per family; a column per
data set), ``loglik.csv`` and ``loglik.json`` (mean test log-likelihood in nats per point, with its
standard error, per family and data set) and ``planar_energies.png`` (target exp(-U) above the
planar flow's q fitted by reverse KL, for the four test energies of Rezende & Mohamed 2015).
Heatmaps are drawn with torch and Pillow (no matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from inpaint_app.flows.base import Flow, Sequential
from inpaint_app.flows.ffjord import total_nfe
from inpaint_app.flows.planar import ENERGIES, Planar, planar_log_q, reverse_kl
from inpaint_app.flows.toy import DATASETS, TOY_FAMILIES, build_toy_flow, toy_log_prob

BOUND = 4.0  # every panel shows [-BOUND, BOUND]^2
# Anchor colours of a viridis-like map, low to high.
_ANCHORS = torch.tensor([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                         [253, 231, 37]], dtype=torch.float32)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--families", default=",".join(TOY_FAMILIES))
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--steps", type=int, default=500, help="Adam steps per (family, data set)")
    p.add_argument("--ffjord-steps", type=int, default=None,
                   help="steps for FFJORD (default: steps / 2; each step solves an ODE)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--grid", type=int, default=100, help="heatmap resolution per panel")
    p.add_argument("--energy-steps", type=int, default=1000, help="reverse-KL steps per energy")
    p.add_argument("--skip-energies", action="store_true")
    p.add_argument("--out", default="docs/toy2d")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def colorize(values: torch.Tensor) -> Image.Image:
    """A ``[H, W]`` tensor in [0, 1] (row 0 at the top) as a viridis-like RGB image."""
    pos = values.clamp(0, 1) * (len(_ANCHORS) - 1)
    low = pos.floor().long().clamp(max=len(_ANCHORS) - 2)
    frac = (pos - low)[..., None]
    rgb = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    return Image.fromarray(rgb.round().to(torch.uint8).numpy(), mode="RGB")


def grid_points(n: int) -> torch.Tensor:
    """``[n*n, 2]`` pixel centres over [-BOUND, BOUND]^2, rows from top (high y) to bottom."""
    axis = (torch.arange(n) + 0.5) / n * 2 * BOUND - BOUND
    y, x = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def density_panel(log_density: torch.Tensor, n: int) -> Image.Image:
    """exp(log density) on the grid, scaled to its own maximum."""
    finite = torch.nan_to_num(log_density, nan=-math.inf)
    dens = (finite - finite.max()).exp()
    return colorize(dens.reshape(n, n))


def histogram_panel(points: torch.Tensor, n: int) -> Image.Image:
    """A 2-D histogram of samples on the same grid, scaled to its maximum."""
    idx = ((points + BOUND) / (2 * BOUND) * n).floor().long()
    keep = ((idx >= 0) & (idx < n)).all(dim=1)
    col, row = idx[keep, 0], n - 1 - idx[keep, 1]
    counts = torch.bincount(row * n + col, minlength=n * n).float()
    return colorize((counts / counts.max().clamp_min(1)).reshape(n, n))


def grid_image(rows: list[tuple[str, list[Image.Image]]], columns: list[str],
               cell: int = 160) -> Image.Image:
    """Panels with row labels on the left and column titles on top."""
    left, top, pad = 90, 22, 4
    width = left + len(columns) * (cell + pad)
    height = top + len(rows) * (cell + pad)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        draw.text((left + j * (cell + pad) + 4, 4), name, fill="black")
    for i, (label, panels) in enumerate(rows):
        y = top + i * (cell + pad)
        draw.text((4, y + cell // 2 - 6), label, fill="black")
        for j, panel in enumerate(panels):
            canvas.paste(panel.resize((cell, cell), Image.NEAREST),
                         (left + j * (cell + pad), y))
    return canvas


def train_toy(flow: Flow, sampler, steps: int, batch_size: int, lr: float,
              g: torch.Generator) -> float:
    """Maximum likelihood with Adam and a cosine learning rate; returns the last batch's NLL."""
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    flow.train()
    loss = torch.tensor(math.nan)
    for _ in range(steps):
        loss = -toy_log_prob(flow, sampler(batch_size, g)).mean()
        opt.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
        sched.step()
    return loss.item()


def fit_one(family: str, dataset: str, args: argparse.Namespace, n: int
            ) -> tuple[dict, Image.Image]:
    """Train one family on one data set; its test log-likelihood row and density panel."""
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    sampler = DATASETS[dataset]
    flow = build_toy_flow(family)
    steps = args.steps if family != "ffjord" else (args.ffjord_steps or max(1, args.steps // 2))
    start = time.time()
    train_toy(flow, sampler, steps, args.batch_size, args.lr, g)
    seconds = time.time() - start
    flow.eval()
    test = sampler(args.test_size, torch.Generator().manual_seed(10_000 + args.seed))
    with torch.no_grad():
        ll = toy_log_prob(flow, test)
        nfe = total_nfe(flow)
        panel = density_panel(toy_log_prob(flow, grid_points(n)), n)
    row = {"family": family, "dataset": dataset, "test_loglik": round(ll.mean().item(), 4),
           "stderr": round((ll.std() / math.sqrt(len(ll))).item(), 4), "steps": steps,
           "train_seconds": round(seconds, 1)}
    if family == "ffjord":
        row["nfe"] = nfe
    return row, panel


def fit_energy(energy, steps: int, seed: int, layers: int = 32) -> Sequential:
    """Planar flow (sampling direction = ``forward``) fitted by reverse KL, annealing beta from
    0.01 to 1 over the first half (as in Rezende & Mohamed, sec. 6.1)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    flow = Sequential(*[Planar(2) for _ in range(layers)])
    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    for step in range(steps):
        beta = min(1.0, 0.01 + step / max(1, steps // 2))
        loss = reverse_kl(flow, energy, 256, beta=beta, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return flow.eval()


def energy_figure(args: argparse.Namespace, n: int) -> tuple[Image.Image, dict]:
    """Targets exp(-U) above the fitted q (through the planar numerical inverse)."""
    pts = grid_points(n)
    targets, fits, kls = [], [], {}
    for i, (name, energy) in enumerate(ENERGIES.items()):
        targets.append(density_panel(-energy(pts), n))
        flow = fit_energy(energy, args.energy_steps, args.seed + i)
        fits.append(density_panel(planar_log_q(flow, pts), n))
        with torch.no_grad():
            kls[name] = round(reverse_kl(flow, energy, 4096,
                                         generator=torch.Generator().manual_seed(1)).item(), 4)
    image = grid_image([("exp(-U)", targets), ("planar q", fits)], list(ENERGIES))
    return image, kls


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    families = [f for f in args.families.split(",") if f]
    datasets = [d for d in args.datasets.split(",") if d]
    for name in families:
        if name not in TOY_FAMILIES:
            raise SystemExit(f"error: unknown family {name!r}: choose from {TOY_FAMILIES}")
    for name in datasets:
        if name not in DATASETS:
            raise SystemExit(f"error: unknown data set {name!r}: choose from {list(DATASETS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = args.grid
    data_row = [histogram_panel(DATASETS[d](20_000, torch.Generator().manual_seed(1)), n)
                for d in datasets]
    rows: list[tuple[str, list[Image.Image]]] = [("data", data_row)]
    results = []
    for family in families:
        panels = []
        for dataset in datasets:
            row, panel = fit_one(family, dataset, args, n)
            print(f"{family:8s} {dataset:13s} test log-lik {row['test_loglik']:8.4f} "
                  f"± {row['stderr']:.4f} nats  ({row['train_seconds']} s)", flush=True)
            results.append(row)
            panels.append(panel)
        rows.append((family, panels))
    grid_image(rows, datasets).save(out / "gallery.png")
    write_tables(out, results)
    summary = {"results": results, "args": vars(args)}
    if not args.skip_energies:
        image, kls = energy_figure(args, n)
        image.save(out / "planar_energies.png")
        summary["planar_reverse_kl"] = kls
        print("planar reverse KL (up to log Z):", kls)
    (out / "loglik.json").write_text(json.dumps(summary, indent=2) + "\n")


def write_tables(out: Path, results: list[dict]) -> None:
    keys = ["family", "dataset", "test_loglik", "stderr", "steps", "train_seconds", "nfe"]
    with open(out / "loglik.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in results:
            writer.writerow({k: row.get(k, "") for k in keys})


if __name__ == "__main__":
    main()
