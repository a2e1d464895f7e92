"""Throughput rows on a borrowed accelerator for the performance table (issue 21, part 4).

    python -m benchmarks.gpu_bench --out "$OUT"                 # on the GPU machine
    python -m benchmarks.gpu_bench --out runs/gpu-bench --device cpu --quick   # a CPU dry run

Rows, each with the device named:

- training: the GPU Glow recipe (``pipelines/configs/mnist-glow-gpu.json``: 16 steps x 320,
  batch 256) in bf16 autocast, as ``pipelines.train --amp`` runs it, on random images;
- the same through DistributedDataParallel, launched by ``torchrun`` with one process per
  device (``--ddp-processes``), images/s summed over the ranks;
- scoring: the shipped MNIST Glow's exact bits/dim at batch 1,024, eager and compiled
  (``inpaint_app.compiled``);
- the default verdict (``evidence``: four flow passes, the background pass, PNG sizes and the
  exemplar search) on 2,048 images, eager and with the scoring passes compiled.

Writes ``OUT/gpu_bench.json`` and ``OUT/gpu_bench.md`` (copy the latter to
``benchmarks/gpu.md`` at home). Timings are medians of ``--repeats`` runs after a warm-up, with
the device synchronized around each. Random images stand in for data, which the borrowed
machine does not have: throughput does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from inpaint_app.anomaly import score_images
from inpaint_app.bundle import load_bundle
from inpaint_app.compiled import register, unregister
from inpaint_app.density import dequantize
from inpaint_app.models import build_model
from inpaint_app.trainer import leave_process_group
from inpaint_app.training import LogProb, initialize_actnorm, select_device, train_step

RECIPE = Path(__file__).resolve().parents[1] / "pipelines" / "configs" / "mnist-glow-gpu.json"
SHIPPED = Path(__file__).resolve().parents[1] / "trained" / "mnist-glow"
SHAPE = (1, 28, 28)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], int], device: torch.device, repeats: int) -> float:
    """Median items/s of ``run`` (which returns how many items it did), after one warm-up."""
    run()
    rates = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        items = run()
        synchronize(device)
        rates.append(items / (time.perf_counter() - start))
    return statistics.median(rates)


def images(n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, generator=generator).to(device)


def recipe_model(device: torch.device, hparams: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("glow", SHAPE, **hparams).to(device)
    initialize_actnorm(model, images(64, 1, device))
    return model


def training_rate(device: torch.device, hparams: dict, batch: int, steps: int,
                  repeats: int, ddp: bool = False) -> float:
    """Training images/s of this process (bf16 autocast, fused Adam as pipelines.train)."""
    density = recipe_model(device, hparams)
    model = LogProb(density)
    if ddp:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    optimizer = torch.optim.Adam(density.parameters(), lr=1e-4,
                                 fused=device.type == "cuda" or None)
    data = images(batch, 2, device)

    def run() -> int:
        for _ in range(steps):
            train_step(model, density, data, optimizer, amp=True)
        return steps * batch

    return timed(run, device, repeats)


def scoring_rows(device: torch.device, batch: int, verdict_images: int, repeats: int,
                 compile_too: bool = True) -> list[dict]:
    """The shipped MNIST Glow's scoring pass and the default verdict, eager then compiled."""
    bundle = load_bundle(SHIPPED, map_location=device)
    y = dequantize(images(batch, 3), noise="fixed", seed=0).to(device)
    x = images(verdict_images, 4)

    def score() -> int:
        with torch.inference_mode():
            bundle.model.latent_and_log_prob(y)
        return batch

    def verdict() -> int:
        score_images(bundle, x)
        return verdict_images

    rows = [row(f"shipped MNIST Glow scoring (batch {batch}), eager", timed(score, device,
                                                                          repeats)),
            row(f"default verdict (evidence, {verdict_images} images), eager",
                timed(verdict, device, repeats))]
    models = [m for m in (bundle.model, bundle.background) if m is not None]
    start = time.perf_counter()
    if compile_too and all([register(m).warm_up(batch) for m in models]):
        seconds = time.perf_counter() - start
        scorer = register(bundle.model)

        def compiled_score() -> int:
            with torch.inference_mode():
                scorer(y)
            return batch

        rows += [row(f"shipped MNIST Glow scoring (batch {batch}), compiled",
                     timed(compiled_score, device, repeats)),
                 row(f"default verdict (evidence, {verdict_images} images), scoring compiled",
                     timed(verdict, device, repeats)),
                 row("compile warm-up of the scoring passes", seconds, unit="s")]
    for m in models:
        unregister(m)
    return rows


def ddp_row(args: argparse.Namespace, hparams: dict) -> dict | None:
    """The training row through torchrun: ``--ddp-processes`` ranks, images/s summed."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "ddp.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={args.ddp_processes}", "-m", "benchmarks.gpu_bench",
                   "--ddp-worker", str(result), "--device", args.device, "--batch",
                   str(args.batch), "--steps", str(args.steps), "--repeats", str(args.repeats),
                   *(["--quick"] if args.quick else [])]
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # leave the ranks the memory this process cached
        # A session of its own: torchrun starts its ranks in new sessions too, so on a timeout
        # the whole group is stopped, not just the launcher (a hung rank would keep the GPU).
        launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        try:
            _, stderr = launcher.communicate(timeout=args.ddp_timeout)
        except subprocess.TimeoutExpired:
            stop_group(launcher)
            print(f"DDP row skipped: torchrun still running after {args.ddp_timeout:.0f} s",
                  file=sys.stderr)
            return None
        if launcher.returncode != 0 or not result.is_file():
            print(f"DDP row skipped: torchrun exited {launcher.returncode}\n{stderr[-2000:]}",
                  file=sys.stderr)
            return None
        rate = json.loads(result.read_text())["images_per_s"]
    return row(f"Glow {hparams['steps']}x{hparams['hidden']} training (batch {args.batch} per "
               f"rank), bf16, DDP over {args.ddp_processes} process(es) (torchrun)", rate)


def stop_group(launcher: subprocess.Popen) -> None:
    """SIGTERM to the launcher's process group, SIGKILL if it lingers; the ranks that torchrun
    put in sessions of their own go with their launcher's SIGTERM handler."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(launcher.pid, sig)
        except ProcessLookupError:
            return
        try:
            launcher.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def ddp_worker(args: argparse.Namespace, hparams: dict) -> None:
    """One torchrun rank: DDP training for the row; rank 0 writes the summed images/s."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = select_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rate = training_rate(device, hparams, args.batch, args.steps, args.repeats, ddp=True)
    total = torch.tensor([rate], dtype=torch.float64)
    if device.type == "cuda":
        total = total.to(device)
    torch.distributed.all_reduce(total)
    if rank == 0:
        Path(args.ddp_worker).write_text(json.dumps({"images_per_s": total.item(),
                                                     "world": world}))
    leave_process_group()


def row(name: str, value: float, unit: str = "images/s") -> dict:
    return {"name": name, "unit": unit, "value": round(value, 3 if unit == "s" else 1)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)} ({torch.cuda.device_count()} visible: the "
                "single-process rows use one, the DDP row one per rank)")
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def markdown(report: dict) -> str:
    lines = [f"`{report['command']}` on {report['device']}, torch {report['torch']}, "
             f"{report['date']}. Medians of {report['repeats']} timed runs after a warm-up.", "",
             "| row | unit | value |", "|---|---|---:|"]
    lines += [f"| {r['name']} | {r['unit']} | {r['value']:,} |" for r in report["rows"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="folder for gpu_bench.json and gpu_bench.md")
    p.add_argument("--device", default="cuda", help="cuda (default), cpu for a dry run, auto")
    p.add_argument("--batch", type=int, default=None, help="training batch (the recipe's)")
    p.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--score-batch", type=int, default=1024)
    p.add_argument("--verdict-images", type=int, default=2048)
    p.add_argument("--ddp-processes", type=int, default=None,
                   help="torchrun ranks (default: the GPU count; 0 leaves the row out)")
    p.add_argument("--ddp-timeout", type=float, default=300.0)
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="leave out the compiled rows")
    p.add_argument("--quick", action="store_true", help="tiny model and batches (a smoke run)")
    p.add_argument("--ddp-worker", help=argparse.SUPPRESS)  # internal: one torchrun rank
    args = p.parse_args(argv)
    if not args.ddp_worker and not args.out:
        p.error("--out is required")
    if args.quick:
        args.steps, args.repeats, args.score_batch, args.verdict_images = 2, 1, 32, 32
    if args.ddp_processes is None:
        cuda = args.device != "cpu" and torch.cuda.is_available()
        args.ddp_processes = torch.cuda.device_count() if cuda else 0
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    recipe = json.loads(RECIPE.read_text())
    hparams = {"steps": 2, "hidden": 16} if args.quick else recipe["hparams"]
    args.batch = args.batch or (8 if args.quick else recipe["batch_size"])
    if args.ddp_worker:
        ddp_worker(args, hparams)
        return {}
    device = select_device(args.device)
    rows = [row(f"Glow {hparams['steps']}x{hparams['hidden']} training (batch {args.batch}), "
                "bf16 autocast", training_rate(device, hparams, args.batch, args.steps,
                                               args.repeats))]
    if args.ddp_processes:
        rows += [r for r in [ddp_row(args, hparams)] if r is not None]
    rows += scoring_rows(device, args.score_batch, args.verdict_images, args.repeats,
                         args.compile)
    report = {"command": "python -m benchmarks.gpu_bench " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "device": device_name(device), "torch": torch.__version__,
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "repeats": args.repeats, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_bench.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
