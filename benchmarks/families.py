"""Every MNIST flow family side by side: bits/dim, size, training cost, sampling and scoring speed.

    python -m benchmarks.families                      # defaults below -> benchmarks/families.*
    python -m benchmarks.families runs/mnist-maf/model.pt --threads 1 --out /tmp/fam

Checkpoints (default: ``trained/*/model.pt`` whose card says mnist, then ``runs/mnist-*/model.pt``)
give the family, parameters, test bits/dim, training time and hardware from their cards (a card
without a test figure falls back to ``evaluate.json`` beside the checkpoint, as written by
``pipelines.evaluate --json``, then to its validation figure). Cards
without a checkpoint (default: ``docs/mnist-nice-paper.card.json``, whose 77 MB model is not
shipped) are timed on the same architecture with fresh weights, rebuilt from the card's family,
image shape and hparams; a card whose run is already among the checkpoints is skipped.
Sampling: ``model.sample(64)``; scoring: bits/dim of 256 MNIST test images (random pixels
without the data) under ``torch.inference_mode``; after a warm-up on two images, medians over
``--repeats`` calls (fewer once ``--max-seconds`` are spent).
For FFJORD the function evaluations (NFE, summed over its CNF blocks) of one scoring pass and one
sampling pass are reported as well.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from inpaint_app.card import Measurement, ModelCard
from inpaint_app.data import DatasetNotFound, load_split
from inpaint_app.density import DensityModel
from inpaint_app.flows.ffjord import cnf_blocks, total_nfe
from inpaint_app.models import build_model, load_model, read_card
from inpaint_app.runs import machine

PAPER_CARD = Path("docs/mnist-nice-paper.card.json")
SHAPE = (1, 28, 28)


def default_checkpoints() -> list[Path]:
    """Shipped MNIST checkpoints, then the runs/mnist-* ones that exist (not the anomaly
    background models: trained on noise-corrupted images, they are not density models of MNIST)."""
    shipped = [p for p in sorted(Path("trained").glob("*/model.pt"))
               if read_card(p).dataset == "mnist"]
    runs = [p for p in sorted(Path("runs").glob("mnist-*/model.pt"))
            if not read_card(p).perturb]
    return shipped + runs


def same_run(a: ModelCard, b: ModelCard) -> bool:
    return (a.model, a.command, a.date) == (b.model, b.command, b.date)


def model_from_card(card: ModelCard) -> DensityModel:
    """The card's architecture (its family, image shape and ``hparams``) with fresh weights."""
    if not card.model:
        raise ValueError("the card names no model family")
    torch.manual_seed(0)
    return build_model(card.model, image_shape=tuple(card.image_shape or SHAPE),
                       **card.hparams).eval()


def timed(fn, repeats: int, max_seconds: float) -> float:
    """Median seconds of ``fn()`` over up to ``repeats`` calls (at least one), stopping early
    once ``max_seconds`` have been spent."""
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (not times or spent < max_seconds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return statistics.median(times)


def score_images(n: int, data_root: str | None) -> tuple[torch.Tensor, str]:
    """n MNIST test images (a fixed random subset), or random pixels without the data."""
    try:
        test = load_split("mnist", "test", data_root)
    except DatasetNotFound:
        return (torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0)), "random pixels")
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n]
    return test[idx], "MNIST test images"


def bpd_text(card: ModelCard, evaluation: dict | None = None
             ) -> tuple[float | None, float | None, str]:
    """(bits/dim, its standard error, what it was measured on): the card's test figure, else a
    ``pipelines.evaluate --json`` result on the test split, else the card's validation figure."""
    if card.test is not None:
        return card.test.bpd, card.test.stderr, "test, " + subset_text(card.test)
    if evaluation and evaluation.get("split") == "test":
        return (evaluation["bpd"], evaluation.get("bpd_stderr"),
                f"test, random subset of {evaluation['images']:,} (evaluate.json)")
    if card.val is not None:
        return card.val.bpd, None, f"val, {subset_text(card.val)} held out; no test figure"
    return None, None, "-"


def subset_text(measured: Measurement) -> str:
    """"all 10,000", "first 2,000", "random subset of 500", or "as the card says" for a card
    written before the schema recorded it."""
    if measured.images is None:
        return "as the card says"
    return {"all": "all", "first": "first", "random": "random subset of"}[measured.subset] + \
        f" {measured.images:,}"


def measure(model: DensityModel, images: torch.Tensor, args: argparse.Namespace) -> dict:
    """Sampling and scoring images/s (and NFE for continuous flows)."""
    gen = torch.Generator().manual_seed(0)
    out: dict = {}
    with torch.inference_mode():  # warm-up on two images: allocations, lazy shapes
        model.sample(2, generator=gen)
        model.bits_per_dim(images[:2], generator=torch.Generator().manual_seed(0))

    def sample() -> None:
        model.sample(args.sample_batch, generator=gen)

    out["sample_images_per_s"] = round(args.sample_batch / timed(sample, args.repeats,
                                                                 args.max_seconds), 2)
    blocks = cnf_blocks(model)
    if blocks:
        out["nfe_sample"] = sum(b.nfe_inverse for b in blocks)

    def score() -> None:
        with torch.inference_mode():
            model.bits_per_dim(images, generator=torch.Generator().manual_seed(0))

    out["score_images_per_s"] = round(len(images) / timed(score, args.repeats,
                                                          args.max_seconds), 2)
    if blocks:
        out["nfe_score"] = total_nfe(model)
        out["cnf_blocks"] = len(blocks)
    return out


def family_row(model: DensityModel, card: ModelCard, source: str, weights: str,
               images: torch.Tensor, args: argparse.Namespace) -> dict:
    evaluation = Path(source).with_name("evaluate.json")
    bpd, stderr, where = bpd_text(card, json.loads(evaluation.read_text())
                                  if evaluation.is_file() else None)
    row = {"family": model.config["family"], "checkpoint": source, "weights": weights,
           "test_bpd": bpd, "bpd_stderr": stderr, "bpd_measured": where,
           "parameters": sum(p.numel() for p in model.parameters()),
           "training_minutes": card.training_minutes, "hardware": card.hardware,
           "command": card.command}
    row.update(measure(model, images, args))
    print(json.dumps(row), flush=True)
    return row


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def to_markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"`{report['command']}` on {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch "
        f"thread(s), torch {m['torch']}), {report['date']}; load average at start "
        f"{report['load_start']}, at end {m['load_average']}. Sampling: batch "
        f"{report['sample_batch']} at temperature 1; scoring: batch {report['score_batch']} of "
        f"{report['score_images']}, `torch.inference_mode`; medians of repeats. Bits/dim, "
        "parameters, training time and hardware come from each model's card.", "",
        "| family | checkpoint | test bits/dim | measured on | parameters | training | "
        "hardware | sampling images/s | scoring images/s | NFE (score / sample) |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|"]
    for r in report["rows"]:
        bpd = _num(r["test_bpd"], ".3f")
        if r["bpd_stderr"] is not None:
            bpd += f" ± {r['bpd_stderr']:.3f}"
        nfe = f"{r['nfe_score']} / {r['nfe_sample']}" if "nfe_score" in r else "-"
        train = "-" if r["training_minutes"] is None else f"{r['training_minutes']} min"
        source = r["checkpoint"] + ("" if r["weights"] == "trained" else f" ({r['weights']})")
        lines.append(f"| {r['family']} | `{source}` | {bpd} | {r['bpd_measured']} | "
                     f"{r['parameters']:,} | {train} | {r['hardware'] or '-'} | "
                     f"{_num(r['sample_images_per_s'], '.4g')} | "
                     f"{_num(r['score_images_per_s'], '.4g')} | {nfe} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*", type=Path,
                   help="model.pt files (default: trained/* with an mnist card, runs/mnist-*)")
    p.add_argument("--cards", nargs="*", type=Path, default=[PAPER_CARD],
                   help="cards without a checkpoint, timed with fresh weights")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--score-batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=20.0,
                   help="stop repeating a measurement after this many seconds")
    p.add_argument("--data-root", default=None, help="default $FLOWPAINT_DATA or ./data")
    p.add_argument("--out", type=Path, default=Path("benchmarks"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    images, image_kind = score_images(args.score_batch, args.data_root)
    rows, seen = [], []
    for path in args.checkpoints or default_checkpoints():
        model, card = load_model(path), read_card(path)
        seen.append(card)
        rows.append(family_row(model, card, str(path), "trained", images, args))
    for path in args.cards:
        if not path.is_file():
            print(f"card {path} not found: skipped", file=sys.stderr)
            continue
        card = ModelCard.from_dict(json.loads(path.read_text()))
        if any(same_run(card, c) for c in seen):
            continue
        rows.append(family_row(model_from_card(card), card, str(path),
                               "card only; speed timed on fresh weights", images, args))
    command = "python -m benchmarks.families " + " ".join(
        sys.argv[1:] if argv is None else argv)
    report = {"command": command.strip(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(), "load_start": load_start, "sample_batch": args.sample_batch,
              "score_batch": args.score_batch, "score_images": image_kind, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "families.json").write_text(json.dumps(report, indent=2) + "\n")
    md = to_markdown(report)
    (args.out / "families.md").write_text(md)
    print(md)
    return report


if __name__ == "__main__":
    main()
