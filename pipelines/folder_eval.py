"""How well a model tells a folder of its own kind from folders of another: AUROC of every
anomaly score and the default's flag rates, on image files, as uploads are scored.

    flowpaint folder-eval trained/digits --in held-out/ --out-set typed=typed-digits/ \\
        --out-set shirts=fashion/ [--limit 1000] [--report benchmarks/folder]

``--in`` is a folder of images of the kind the model was trained on but did not see (default:
the model's validation files, which also set its threshold, so their flag rate is 5 % by
construction). Every file goes through ``images.open_image`` and the model's input
normalization (``--no-normalize``: the plain fit), exactly as in the app and ``score_batch``;
unreadable files are skipped and counted. This is the check for data the project does not have:
point it at your own folders.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inpaint_app.anomaly import SCORES, base_scores, scores_from_base
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.folder import FolderError, display_name, list_files
from inpaint_app.images import ImageError, open_image
from inpaint_app.models import CheckpointError, ConfigError
from inpaint_app.normalize import fit_input
from inpaint_app.ood_metrics import summary
from inpaint_app.runs import RunInputError, model_and_split


def read_set(model: ModelBundle, root: str | Path, limit: int, normalize: bool
             ) -> tuple[torch.Tensor, int]:
    """The first ``limit`` readable images below ``root`` (in path order) as model inputs, and
    how many files were skipped as unreadable."""
    try:
        files = list_files(root)
    except FolderError as err:
        sys.exit(f"error: {err}")
    inputs, skipped = [], 0
    for path in files:
        if len(inputs) == limit:
            break
        try:
            image = open_image(path)
        except (ImageError, OSError):
            skipped += 1
            continue
        inputs.append(fit_input(image, model.image_shape, model.recipe, normalize)[0])
    if not inputs:
        sys.exit(f"error: no readable image under {display_name(root)}")
    return torch.stack(inputs), skipped


def evaluate(model: ModelBundle, sets: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Every score's AUROC/AUPR/FPR@95 of "in" against each other set, and the default's flag
    rate on every set at its calibrated threshold."""
    calibration = model.calibration
    default = calibration["default_score"]
    threshold = calibration["scores"][default]["threshold"]
    scores = {key: scores_from_base(base_scores(model, images, progress=True), calibration)
              for key, images in sets.items()}
    return {"default_score": default, "threshold": threshold,
            "flag_rate": {key: float(np.mean(s[default] > threshold))
                          for key, s in scores.items()},
            "pairs": {key: {name: summary(scores["in"][name], s[name]) for name in SCORES}
                      for key, s in scores.items() if key != "in"}}


def markdown(result: dict[str, Any], counts: dict[str, int]) -> str:
    """The table: per out set, the default's AUROC (bold), every score's AUROC, flag rates."""
    default = result["default_score"]
    lines = ["| out set | images | " + " | ".join(f"AUROC {s}" for s in SCORES)
             + f" | flagged ({default}) |", "|---|---|" + "---|" * (len(SCORES) + 1)]
    for key, metrics in result["pairs"].items():
        cells = [f"{metrics[s]['auroc']:.3f}" for s in SCORES]
        cells[SCORES.index(default)] = f"**{cells[SCORES.index(default)]}**"
        lines.append(f"| {key} | {counts[key]:,} | " + " | ".join(cells)
                     + f" | {result['flag_rate'][key]:.1%} |")
    lines.append(f"\nIn-distribution set: {counts['in']:,} images, flagged "
                 f"{result['flag_rate']['in']:.1%} at the calibrated threshold "
                 f"({default} > {result['threshold']:.4f}).")
    return "\n".join(lines) + "\n"


def load_checkpoint_bundle(checkpoint: str) -> ModelBundle:
    """The bundle, or exit with the reason it does not load."""
    try:
        return load_bundle(checkpoint)
    except (CheckpointError, ConfigError) as err:
        sys.exit(f"error: {err}")


def parse_out_sets(items: list[str]) -> dict[str, str]:
    sets = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder or name == "in":
            sys.exit(f"error: --out-set takes NAME=FOLDER (NAME not 'in'), got {item!r}")
        sets[name] = folder
    return sets


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="model.pt or its folder (calibrated)")
    p.add_argument("--in", dest="inside", default=None, metavar="FOLDER",
                   help="held-out images of the model's own kind (default: its validation "
                        "files)")
    p.add_argument("--out-set", action="append", default=[], metavar="NAME=FOLDER",
                   help="a folder of another kind of image (repeat for more)")
    p.add_argument("--limit", type=int, default=1000, help="images per set at most")
    p.add_argument("--report", default=None, metavar="OUT", help="write OUT.json and OUT.md")
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="the plain fit instead of the model's input normalization")
    p.add_argument("--data-root", default=None,
                   help="without --in: where the model's dataset (or moved folder) is")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out_sets = parse_out_sets(args.out_set)
    if not out_sets:
        p.error("give at least one --out-set NAME=FOLDER")
    if args.inside:
        model = load_checkpoint_bundle(args.checkpoint)
        sets = {"in": read_set(model, args.inside, args.limit, args.normalize)[0]}
    else:
        try:
            model, _, val = model_and_split(args.checkpoint, None, "val", args.data_root,
                                            warn=partial(print, file=sys.stderr))
        except RunInputError as err:
            sys.exit(f"error: {err}")
        sets = {"in": val[:args.limit]}
    if not model.calibration:
        sys.exit(f"error: {args.checkpoint} is not calibrated: run flowpaint calibrate first")
    skipped = {}
    for name, folder in out_sets.items():
        sets[name], skipped[name] = read_set(model, folder, args.limit, args.normalize)
    result = evaluate(model, sets)
    counts = {key: len(images) for key, images in sets.items()}
    result.update({"checkpoint": str(args.checkpoint), "images": counts, "skipped": skipped,
                   "in": args.inside or "the model's validation files",
                   "out_sets": out_sets, "normalized": args.normalize})
    table = markdown(result, counts)
    print(table)
    if args.report:
        report = Path(args.report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        report.with_suffix(".md").write_text(table)
    return result


if __name__ == "__main__":
    main()
