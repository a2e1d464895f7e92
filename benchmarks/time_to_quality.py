"""Time to quality against a peer (issue 21): the same Glow trained two ways for the same budget.

    python -m benchmarks.time_to_quality                  # 30 min each, 2 threads -> benchmarks/
    python -m benchmarks.time_to_quality --minutes 0.5 --val-every 5 --out /tmp/ttq   # a smoke run
    pip install -e ".[bench]"                            # normflows, the peer library

One run trains, one after the other (``--first``), each for ``--minutes`` of training:

- **ours**: ``build_model("glow")`` with ``pipelines.train``'s default CPU recipe, read from
  ``pipelines/configs/mnist-glow-cpu.json`` (``inpaint_app.trainer.recipe_from_config``) and run
  by its own ``TrainState.start`` and ``train_batch``: fused Adam at lr 1e-3, 200 linear warm-up
  steps, then a cosine to 2 % that anneals within the time budget (``--max-minutes``),
  gradient-norm clip 50, batch 64, float32 (the config sets no ``amp``), validated with its EMA
  (0.999, warmed up as (1 + t) / (10 + t)) weights, ActNorm initialised from 512 training images.
- **peer**: the same architecture built with normflows (``inpaint_app.peers.PEERS["glow"]``:
  ``GlowBlock`` x steps per level, a split-prior coupling, ``transforms.Logit(0.05)``) trained as
  normflows' own Glow example does (``examples/glow.ipynb``, identical at tag v1.7.3 and on
  master): ``torch.optim.Adamax(lr=1e-3, weight_decay=1e-5)``, batch 128, a constant learning
  rate, no gradient clipping, no EMA, the loss ``forward_kld`` (mean negative log-likelihood in
  nats, not bits/dim: Adamax's coupled weight decay depends on the loss scale), a step with a
  non-finite loss skipped; normflows' ActNorm initialises itself on the first training batch.

Both see the same training images in the same kind of order (a fresh permutation an epoch), the
same dequantization y = (x + u) / 256 (the example's ``Scale(255/256)`` + ``Jitter(1/256)``), and
are validated every ``--val-every`` training seconds on the same first ``--val-images``
validation images with the same seeded noise (``inpaint_app.training.evaluate_bpd``; the peer
through ``inpaint_app.peers.PeerDensity``, logit Jacobian included, so the bits/dim are the
same quantity). The clock counts training steps only: it stops while validating. After its budget
each side scores the test set (``--test-images``: the first N, default all) with its final
weights (ours: the EMA's). The ratio is (training seconds at ours' first validation at or below
the peer's final validation bits/dim) / (the peer's budget); the issue's target is <= 0.5.
``benchmarks/time_to_quality.json`` and ``.md`` hold the machine, load, versions, both curves,
the finals and the ratio.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from inpaint_app.data import DatasetNotFound, load_split
from inpaint_app.density import bits_per_dim_from_log_prob, dequantize
from inpaint_app.models import build_model
from inpaint_app.peers import (
    INSTALL_HINT,
    PEERS,
    RECIPES,
    SHAPE,
    PeerDensity,
    import_peer,
    machine,
    n_params,
)
from inpaint_app.train_state import Process, TrainState
from inpaint_app.trainer import init_weights, recipe_from_config, settle_amp, train_batch
from inpaint_app.training import LogProb, bpd_summary, evaluate_bpd

OUR_CONFIG = Path(__file__).resolve().parents[1] / "pipelines" / "configs" / "mnist-glow-cpu.json"
PEER_SOURCE = ("normflows examples/glow.ipynb (v1.7.3): https://github.com/VincentStimper/"
               "normalizing-flows/blob/v1.7.3/examples/glow.ipynb")
PEER_RECIPE = {"optimizer": "Adamax", "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 128,
               "schedule": "constant", "clip": None, "ema": None,
               "loss": "forward_kld (mean NLL in nats)", "non_finite": "update skipped",
               "actnorm_init": "first training batch", "source": PEER_SOURCE}
TARGET_RATIO = 0.5  # issue 21: ours reaches the peer's 30-minute bits/dim within 15 minutes
HPARAM_KEYS = ("steps", "hidden")  # what both builders take


@dataclass
class Side:
    """One contender: its training step on a uint8 batch (given the training seconds so far,
    which ours' time-driven schedule reads; returns the batch's bits/dim) and its per-image
    validation bits/dim of uint8 images."""

    name: str
    step: Callable[[torch.Tensor, float], float]
    evaluate: Callable[[torch.Tensor], torch.Tensor]
    batch_size: int
    parameters: int
    recipe: dict


def batch_stream(images: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless full batches, a fresh permutation an epoch (``pipelines.train``'s seeds)."""
    for epoch in itertools.count():
        perm = torch.randperm(len(images),
                              generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        for start in range(0, len(images) - batch_size + 1, batch_size):
            yield images[perm[start:start + batch_size]]


def our_side(args: argparse.Namespace, train: torch.Tensor) -> Side:
    """Our Glow and ``pipelines.train``'s recipe (its config, its state, its step)."""
    recipe = recipe_from_config(args.config, max_minutes=args.minutes, threads=args.threads,
                                seed=args.seed, hparams=json.dumps(args.hparams))
    proc = Process(0, 1, torch.device("cpu"))
    settle_amp(recipe, proc.device)
    torch.manual_seed(args.seed)
    density = build_model("glow", image_shape=SHAPE, **args.hparams)
    init_weights(recipe, density, None, train, proc.device)
    state = TrainState.start(recipe, density, max(1, len(train) // recipe.batch_size), proc)
    state.remember_good()  # what the non-finite guard falls back to
    model = LogProb(density)

    def step(batch: torch.Tensor, elapsed: float) -> float:
        state.elapsed = elapsed  # the cosine anneals within the budget, as in pipelines.train
        return train_batch(recipe, state, model, batch)

    def evaluate(images: torch.Tensor) -> torch.Tensor:
        with state.eval_weights_loaded() as weights:
            return evaluate_bpd(weights, images)

    return Side("ours", step, evaluate, recipe.batch_size, n_params(density), {
        "optimizer": "Adam (fused)", "lr": recipe.lr, "batch_size": recipe.batch_size,
        "schedule": f"{recipe.warmup} warm-up steps, cosine to 2% within the budget",
        "clip": recipe.clip, "ema": recipe.ema or None, "amp": recipe.amp,
        "loss": "bits/dim", "non_finite": "update skipped; 3 in a row: last good weights, lr/2",
        "actnorm_init": "512 training images", "source": _shown(args.config)})


def peer_side(nf: object, args: argparse.Namespace, first_batch: torch.Tensor) -> Side:
    """The same architecture built with normflows, trained as its Glow example does."""
    torch.manual_seed(args.seed)
    peer = PeerDensity(PEERS["glow"](nf, **args.hparams), flat=False)
    generator = torch.Generator().manual_seed(args.seed * 1000)
    with torch.no_grad():  # normflows' ActNorm initialises on the first batch it sees
        peer(dequantize(first_batch, generator))
    optimizer = torch.optim.Adamax(peer.parameters(), lr=PEER_RECIPE["lr"],
                                   weight_decay=PEER_RECIPE["weight_decay"])

    def step(batch: torch.Tensor, _elapsed: float) -> float:
        log_prob = peer(dequantize(batch, generator))[0]
        loss = -log_prob.mean()  # = MultiscaleFlow.forward_kld
        optimizer.zero_grad()
        if torch.isfinite(loss):
            loss.backward()
            optimizer.step()
        return bits_per_dim_from_log_prob(log_prob.detach().mean(), peer.dim).item()

    return Side("peer", step, lambda images: evaluate_bpd(peer, images),
                PEER_RECIPE["batch_size"], n_params(peer), dict(PEER_RECIPE))


def train_for(side: Side, stream: Iterator[torch.Tensor], val: torch.Tensor, budget: float,
              val_every: float) -> dict:
    """Train ``side`` for ``budget`` seconds of training steps, validating at the start, every
    ``val_every`` training seconds and at the end; the clock stops while validating."""
    curve: list[dict] = []
    clock, steps, losses = 0.0, 0, []
    wall_start = time.perf_counter()

    def validate() -> None:
        val_bpd = side.evaluate(val).mean().item()
        finite = [x for x in losses if math.isfinite(x)]
        train_bpd = round(sum(finite) / len(finite), 4) if finite else None
        curve.append({"seconds": round(clock, 2), "step": steps, "train_bpd": train_bpd,
                      "val_bpd": round(val_bpd, 4),
                      "wall_seconds": round(time.perf_counter() - wall_start, 2)})
        losses.clear()
        print(f"{side.name}: {clock:7.1f} s of training, step {steps:6d}, train "
              f"{'-' if train_bpd is None else f'{train_bpd:.4f}'}, val {val_bpd:.4f} bits/dim",
              flush=True)

    validate()
    next_val = val_every
    for batch in stream:
        start = time.perf_counter()
        losses.append(side.step(batch, clock))
        clock += time.perf_counter() - start
        steps += 1
        if clock >= budget:
            break
        if clock >= next_val:
            validate()
            next_val = (clock // val_every + 1) * val_every
    validate()
    return {"curve": curve, "steps": steps, "train_seconds": round(clock, 2),
            "images_per_second": round(steps * side.batch_size / clock, 1)}


def first_time_at_or_below(curve: list[dict], target: float) -> float | None:
    """Training seconds of the first validation point at or below ``target`` (None: never)."""
    return next((p["seconds"] for p in curve if p["val_bpd"] <= target), None)


def time_to_quality(ours: list[dict], peer: list[dict], peer_budget: float) -> dict:
    """The peer's final validation bits/dim, when ours first reached it, and that time over the
    peer's budget (None when ours never did; resolution: the validation interval)."""
    target = peer[-1]["val_bpd"]
    seconds = first_time_at_or_below(ours, target)
    ratio = None if seconds is None else round(seconds / peer_budget, 4)
    return {"target_val_bpd": target, "ours_seconds": seconds, "ratio": ratio,
            "target_ratio": TARGET_RATIO, "met": ratio is not None and ratio <= TARGET_RATIO}


def run_side(name: str, nf: object, args: argparse.Namespace, data: dict) -> dict:
    """Build, train and test one side; its record for the report."""
    load_start = os.getloadavg()
    if name == "ours":
        side = our_side(args, data["train"])
        stream = batch_stream(data["train"], side.batch_size, args.seed)
    else:
        stream = batch_stream(data["train"], PEER_RECIPE["batch_size"], args.seed)
        first = next(stream)
        side = peer_side(nf, args, first)
        stream = itertools.chain([first], stream)
    print(f"{name}: {side.parameters:,} parameters, recipe {json.dumps(side.recipe)}", flush=True)
    record = train_for(side, stream, data["val"], 60 * args.minutes, args.val_every)
    test_mean, test_stderr = bpd_summary(side.evaluate(data["test"]))
    print(f"{name}: test {test_mean:.4f} +- {test_stderr:.4f} bits/dim "
          f"({len(data['test'])} images)", flush=True)
    return {"recipe": side.recipe, "parameters": side.parameters, **record,
            "final_val_bpd": record["curve"][-1]["val_bpd"], "test_bpd": round(test_mean, 4),
            "test_stderr": round(test_stderr, 4),
            "load_average": {"start": load_start, "end": os.getloadavg()}}


def load_data(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Training, the fixed validation subset and the test images (the first N of each split)."""
    try:
        splits = {s: load_split(args.dataset, s, args.data_root) for s in ("train", "val", "test")}
    except DatasetNotFound as err:
        sys.exit(f"error: {err}")
    limits = {"train": args.limit_train, "val": args.val_images, "test": args.test_images}
    for split, n in limits.items():
        if n is not None and n > len(splits[split]):
            sys.exit(f"error: {n} {split} images asked for, the {split} split has "
                     f"{len(splits[split])}")
        splits[split] = splits[split][:n]
    return splits


def _curve_rows(ours: list[dict], peer: list[dict], most: int = 24) -> list[str]:
    """The two curves side by side, point by point (at most ``most`` rows, the last kept)."""
    n = max(len(ours), len(peer))
    keep = sorted(set(range(0, n, max(1, math.ceil(n / most)))) | {n - 1})

    def cells(curve: list[dict], i: int) -> str:
        if i >= len(curve):
            return "| | |"
        return f"| {curve[i]['seconds']:.0f} | {curve[i]['val_bpd']:.4f} |"

    return [cells(ours, i) + cells(peer, i)[1:] for i in keep]


def to_markdown(report: dict) -> str:
    m, ours, peer, ttq = (report["machine"], report["sides"]["ours"], report["sides"]["peer"],
                          report["result"])
    minutes = report["budget_seconds"] / 60
    head = (f"`{report['command']}` on {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch "
            f"thread(s), torch {m['torch']}, normflows {m['normflows']}, python {m['python']}), "
            f"{report['date']}. Glow {json.dumps(report['hparams'])} on {report['dataset']}, "
            f"{minutes:g} min of training each, one after the other ({report['order'][0]} "
            f"first); the clock stops while validating. Validation: the first "
            f"{report['images']['val']} validation images every {report['val_every']:g} s; test: "
            f"{report['images']['test']} images; training: {report['images']['train']} images.")
    reached = ("never" if ttq["ours_seconds"] is None
               else f"after {ttq['ours_seconds']:.0f} s of training")
    ratio = "none (never reached)" if ttq["ratio"] is None else f"{ttq['ratio']:.3f}"
    lines = [f"# Time to quality: ours vs normflows\n\n{head}\n",
             f"**Ratio** (time for ours to reach the peer's final validation bits/dim, "
             f"{ttq['target_val_bpd']:.4f}: {reached}) / (the peer's budget, "
             f"{report['budget_seconds']:.0f} s) = **{ratio}**; target <= {ttq['target_ratio']}: "
             f"{'met' if ttq['met'] else 'not met'}.\n",
             "| | ours | normflows |", "|---|---|---|"]
    for key in ("optimizer", "lr", "batch_size", "schedule", "clip", "ema", "loss"):
        lines.append(f"| {key} | {ours['recipe'].get(key)} | {peer['recipe'].get(key)} |")
    for label, key in (("parameters", "parameters"), ("training steps", "steps"),
                       ("training images/s", "images_per_second"),
                       ("final validation bits/dim", "final_val_bpd")):
        lines.append(f"| {label} | {ours[key]:,} | {peer[key]:,} |")
    lines.append(f"| test bits/dim | {ours['test_bpd']:.4f} +- {ours['test_stderr']:.4f} | "
                 f"{peer['test_bpd']:.4f} +- {peer['test_stderr']:.4f} |")
    lines.append(f"| load average, start -> end | {_load(ours)} | {_load(peer)} |")
    lines += ["", f"Peer recipe: {PEER_SOURCE}.", "",
              "| ours s | ours val bits/dim | peer s | peer val bits/dim |",
              "|---:|---:|---:|---:|"]
    lines += _curve_rows(ours["curve"], peer["curve"])
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    """A path relative to the working folder when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _load(side: dict) -> str:
    start, end = side["load_average"]["start"], side["load_average"]["end"]
    return f"{start[0]:.2f} -> {end[0]:.2f}"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time to quality: our Glow and recipe vs normflows' Glow example recipe, "
                    "the same architecture and wall-clock budget, one after the other.")
    p.add_argument("--minutes", type=float, default=30.0,
                   help="training minutes per side (the clock stops while validating)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads, both sides")
    p.add_argument("--dataset", default="mnist", choices=["mnist"])
    p.add_argument("--hparams", default=json.dumps(RECIPES["glow"]),
                   help="JSON of the Glow's steps and hidden width, both sides (default: the "
                        "shipped MNIST Glow's)")
    p.add_argument("--val-every", type=float, default=60.0, metavar="SECONDS",
                   help="training seconds between validations")
    p.add_argument("--val-images", type=int, default=1000,
                   help="validate on the first N validation images (the same on both sides)")
    p.add_argument("--test-images", type=int, default=None,
                   help="score the first N test images at the end (default: all)")
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images")
    p.add_argument("--data-root", default=None, help="default $FLOWPAINT_DATA or ./data")
    p.add_argument("--config", type=Path, default=OUR_CONFIG,
                   help="our recipe: a pipelines.train config")
    p.add_argument("--first", choices=["ours", "peer"], default="ours",
                   help="which side runs first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks", help="folder of time_to_quality.json / .md")
    args = p.parse_args(argv)
    for name in ("minutes", "val_every"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    for name in ("threads", "val_images", "test_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not args.config.is_file():
        p.error(f"--config {args.config}: no such file")
    batch = max(PEER_RECIPE["batch_size"],
                json.loads(args.config.read_text()).get("batch_size", 64))
    if args.limit_train is not None and args.limit_train < batch:
        p.error(f"--limit-train must be at least one batch of either side ({batch}), got "
                f"{args.limit_train}")
    try:
        args.hparams = json.loads(args.hparams)
    except json.JSONDecodeError as err:
        p.error(f"--hparams is not JSON: {err}")
    if (not isinstance(args.hparams, dict) or set(args.hparams) - set(HPARAM_KEYS)
            or not all(isinstance(v, int) and v > 0 for v in args.hparams.values())):
        p.error(f"--hparams must be a JSON object of positive integers with keys among "
                f"{list(HPARAM_KEYS)}, got {args.hparams!r}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    nf = import_peer()
    if nf is None:
        sys.exit(f"error: normflows is not installed; the peer side needs it ({INSTALL_HINT})")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", "torch.lu is deprecated")  # normflows' LU 1x1 conv
    data = load_data(args)
    order = [args.first, "peer" if args.first == "ours" else "ours"]
    sides = {}
    for name in order:
        sides[name] = run_side(name, nf, args, data)
        gc.collect()
    budget = 60 * args.minutes
    command = "python -m benchmarks.time_to_quality " + " ".join(
        sys.argv[1:] if argv is None else argv)
    report = {"command": command.strip(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(nf), "dataset": args.dataset, "hparams": args.hparams,
              "budget_seconds": budget, "threads": args.threads, "val_every": args.val_every,
              "order": order, "images": {k: len(v) for k, v in data.items()},
              "sides": sides,
              "result": time_to_quality(sides["ours"]["curve"], sides["peer"]["curve"], budget)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "time_to_quality.json").write_text(json.dumps(report, indent=2) + "\n")
    md = to_markdown(report)
    (out / "time_to_quality.md").write_text(md)
    print(md, flush=True)
    return report


if __name__ == "__main__":
    main()
