"""The "your own images" figures: a folder of digits to a calibrated model, timed, then checked
against folders of other images. Regenerates ``benchmarks/folder.md`` (the README's numbers).

    python -m pipelines.folder_demo --data-root ../shared/data [--minutes 30] [--threads 2]

1. Writes image folders under ``--work`` (PNG files, as a user would have them):
   - ``train/``: the first ``--train-images`` MNIST training digits in class subfolders, plus
     one file that is not an image and one truncated PNG (both must be skipped);
   - ``in/``: held-out handwritten digits (a random draw from the MNIST test split);
   - out sets: typed digits (system fonts, ``inpaint_app.synthetic.rendered_digits``),
     Fashion-MNIST test images, rendered letters and pen scribbles.
2. Runs ``flowpaint train --images train/ --max-minutes M`` (``--init-from`` a trained model of
   the same image shape, e.g. the shipped Fashion-MNIST Glow, to start from its weights) and
   times the whole command.
3. Runs ``flowpaint folder-eval`` of the model on ``in/`` against every out set.

Both commands run as subprocesses (``python -m pipelines.train``, ``python -m
pipelines.folder_eval``), exactly as a user runs them; a failing one stops the demo.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from inpaint_app.data import DatasetNotFound, load_split
from inpaint_app.images import save_png
from inpaint_app.models import read_card
from inpaint_app.synthetic import rendered_digits, rendered_letters, scribbles


def run_command(module: str, *args: str) -> None:
    """``python -m module args``; a failure ends the demo with the command's exit status."""
    done = subprocess.run([sys.executable, "-m", module, *args], check=False)
    if done.returncode:
        sys.exit(f"error: python -m {module} failed (exit status {done.returncode})")


def write_folder(images: torch.Tensor, folder: Path, labels: torch.Tensor | None = None) -> None:
    """Images as PNG files (in label subfolders when given)."""
    for i, image in enumerate(images):
        sub = folder / str(int(labels[i])) if labels is not None else folder
        sub.mkdir(parents=True, exist_ok=True)
        save_png(image, sub / f"{i:05d}.png")


def write_sets(work: Path, root: str | None, train_images: int, eval_images: int) -> None:
    """The training folder (with two bad files) and the evaluation folders."""
    digits = load_split("mnist", "train", root)[:train_images]
    write_folder(digits, work / "train", torch.arange(len(digits)) % 10)
    (work / "train" / "README.txt").write_text("not an image: skipped with a reason\n")
    (work / "train" / "truncated.png").write_bytes((work / "train" / "0" / "00000.png")
                                                  .read_bytes()[:60])
    gen = torch.Generator().manual_seed(1)

    def draw(images: torch.Tensor) -> torch.Tensor:
        return images[torch.randperm(len(images), generator=gen)[:eval_images].sort().values]

    write_folder(draw(load_split("mnist", "test", root)), work / "in")
    sets = {"typed-digits": rendered_digits(eval_images), "fashion-mnist":
            draw(load_split("fashion-mnist", "test", root)),
            "letters": rendered_letters(eval_images), "scribbles": scribbles(eval_images)}
    for name, images in sets.items():
        write_folder(images, work / "out" / name)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=None, help="default $FLOWPAINT_DATA or ./data")
    p.add_argument("--work", default="runs/folder-demo", help="folders and the model go here")
    p.add_argument("--minutes", type=float, default=30.0, help="the training command's budget")
    p.add_argument("--train-images", type=int, default=3000)
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start the flow from this model's weights (same image shape)")
    p.add_argument("--report", default="benchmarks/folder", help="writes REPORT.md and .json")
    args = p.parse_args(argv)
    work = Path(args.work)
    try:
        write_sets(work, args.data_root, args.train_images, args.eval_images)
    except DatasetNotFound as err:
        sys.exit(f"error: {err}")
    model = work / "model"
    start = time.monotonic()
    init = ["--init-from", args.init_from] if args.init_from else []
    run_command("pipelines.train", "--images", str(work / "train"), "--out", str(model),
                "--max-minutes", str(args.minutes), "--threads", str(args.threads), *init)
    minutes = (time.monotonic() - start) / 60
    out_sets = [f"{d.name}={d}" for d in sorted((work / "out").iterdir())]
    evaluation = work / "evaluation"  # folder-eval's report: .json (the result), .md (the table)
    run_command("pipelines.folder_eval", str(model), "--in", str(work / "in"), "--limit",
                str(args.eval_images), "--threads", str(args.threads), "--report",
                str(evaluation), *[a for s in out_sets for a in ("--out-set", s)])
    result = json.loads(evaluation.with_suffix(".json").read_text())
    card = read_card(model / "model.pt")
    summary = {"command_minutes": round(minutes, 1), "budget_minutes": args.minutes,
               "threads": args.threads, "init_from": args.init_from, "val_bpd": card.val_bpd,
               "training_minutes": card.training_minutes, "folder": card.folder,
               "hparams": card.hparams, "evaluation": result}
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    report.with_suffix(".md").write_text(
        f"# Your own images: {args.train_images:,} handwritten digits\n\n"
        f"`python -m pipelines.folder_demo --minutes {args.minutes:g} --threads "
        f"{args.threads}" + (f" --init-from {args.init_from}" if args.init_from else "")
        + f"`: `flowpaint train --images` on {card.folder['files']:,} files "
        f"({card.folder['skipped']} skipped) took **{minutes:.1f} min** end to end "
        f"(flow {card.training_minutes} min, then background model, bank and calibration); "
        f"validation {card.val_bpd:.4f} bits/dim ({card.folder['val']} files).\n\n"
        f"In: {args.eval_images:,} held-out MNIST test digits (files the model never saw).\n\n"
        + evaluation.with_suffix(".md").read_text())
    print(report.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
