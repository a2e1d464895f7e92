"""Regenerate the README's results table: test bits/dim of every model in ``trained/``.

    python -m benchmarks.results [--trained trained] [--limit N]

Each figure is the mean over the full test set (one fixed-seed uniform dequantization per image),
exactly what ``python -m pipelines.evaluate CHECKPOINT`` prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from inpaint_app.card import ModelCard
from inpaint_app.data import DatasetNotFound, load_split
from inpaint_app.models import load_model, read_card
from inpaint_app.training import bpd_summary, evaluate_bpd


def training_minutes(card: ModelCard) -> str:
    """The minutes of every budget that made a checkpoint, oldest first: a warm restart's card
    holds its source's card summary under ``init_from``, which may hold its own."""
    budgets = ["?" if card.training_minutes is None else str(card.training_minutes)]
    node = card.init_from
    while node:
        budgets.append(str(node.get("training_minutes", "?")))
        node = node.get("init_from")
    return " + ".join(reversed(budgets))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Test bits/dim of every shipped model, as Markdown.")
    p.add_argument("--trained", default="trained")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    rows = ["| model | dataset | parameters | test bits/dim | training | hardware |",
            "|---|---|---:|---:|---:|---|"]
    for path in sorted(Path(args.trained).glob("*/model.pt")):
        model, card = load_model(path), read_card(path)
        try:
            images = load_split(card.dataset, "test", args.data_root)
        except DatasetNotFound as err:
            raise SystemExit(f"error: {err}") from err
        images = images[: args.limit] if args.limit else images
        with torch.inference_mode():
            bpd = evaluate_bpd(model, images)
        mean, stderr = bpd_summary(bpd)
        minutes = training_minutes(card)
        rows.append(f"| `{path.parent.name}` | {card.dataset} | "
                    f"{sum(p.numel() for p in model.parameters()):,} | "
                    f"{mean:.3f} ± {stderr:.3f} | "
                    f"{minutes} min | "
                    f"{card.hardware or '?'} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
