"""Training and scoring throughput of each flow family on this machine.

    python -m pipelines.benchmark [--families nice realnvp glow] [--steps 20] [--threads N]

Times the training step itself (``inpaint_app.training.train_step``) on 28x28 inputs at the
training batch size, and scoring (``bits_per_dim`` under ``torch.inference_mode``) at batch 256.
Writes ``benchmarks/latest.json`` and ``benchmarks/latest.md``; never used as a timed test.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from inpaint_app.models import build_model
from inpaint_app.training import LogProb, initialize_actnorm, train_step

TRAIN_IMAGES_PER_EPOCH = 55_000
# The configurations we train: Glow as shipped, RealNVP's defaults, NICE as in the paper.
RECIPES = {
    "nice": {"hidden": 1000, "depth": 5},
    "realnvp": {},
    "glow": {"steps": 8, "hidden": 128},
}


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def bench_family(family: str, *, steps: int, batch_size: int, score_batch: int) -> dict:
    """Training images/s, epoch minutes, scoring images/s for one family."""
    model = build_model(family, image_shape=(1, 28, 28), **RECIPES[family])
    initialize_actnorm(model, _images(256, 0))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    runner = LogProb(model)
    batches = [_images(batch_size, i) for i in range(steps + 3)]
    for batch in batches[:3]:
        train_step(runner, model, batch, optimizer)
    start = time.perf_counter()
    for batch in batches[3:]:
        train_step(runner, model, batch, optimizer)
    train_ips = steps * batch_size / (time.perf_counter() - start)

    model.eval()
    scores = _images(score_batch, 99)
    with torch.inference_mode():
        model.bits_per_dim(scores)
        start = time.perf_counter()
        repeats = 3
        for _ in range(repeats):
            model.bits_per_dim(scores)
        score_ips = repeats * score_batch / (time.perf_counter() - start)
    return {"family": family, "parameters": sum(p.numel() for p in model.parameters()),
            "train_images_per_s": round(train_ips, 1),
            "epoch_minutes": round(TRAIN_IMAGES_PER_EPOCH / train_ips / 60, 2),
            "score_images_per_s": round(score_ips, 1), "batch_size": batch_size,
            "config": RECIPES[family]}


def machine() -> str:
    return (f"{platform.machine()} {platform.processor() or ''} "
            f"{torch.get_num_threads()} torch threads, torch {torch.__version__}"
            ).replace("  ", " ")


def to_markdown(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| family | parameters | train images/s (batch 64) | minutes / MNIST epoch "
             "| scoring images/s (batch 256) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['parameters']:,} | {r['train_images_per_s']:.0f} | "
                     f"{r['epoch_minutes']:.1f} | {r['score_images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Training and scoring throughput per flow family.")
    p.add_argument("--families", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--steps", type=int, default=20, help="timed training steps per family")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--score-batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="benchmarks")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for family in args.families:
        rows.append(bench_family(family, steps=args.steps, batch_size=args.batch_size,
                                 score_batch=args.score_batch))
        print(json.dumps(rows[-1]), flush=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(
        {"machine": machine(), "date": stamp, "rows": rows}, indent=2) + "\n")
    md = to_markdown(rows, f"Machine: {machine()}; {stamp}; `python -m pipelines.benchmark`.")
    (out / "latest.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
