"""Anomaly scores for every image in a folder, one CSV row per file.

    python -m pipelines.score_batch --checkpoint trained/mnist-glow/model.pt --images DIR \
        --out scores.csv [--score combined]

Each image is read with ``inpaint_app.images`` (any size and mode, in colour for a colour model),
brought to the model's conventions by its input normalization (``inpaint_app.normalize``:
polarity, the dataset's framing, levels; colour models and ``--no-normalize``: a plain Lanczos
resize) and scored with
``inpaint_app.uploads.score_uploads`` on both axes: ``flag``, ``p_value`` and ``score`` are the
content verdict; ``capture_flag``, ``capture_p_value`` and ``capture_why`` the capture axis
(was it captured like the training images? ``inpaint_app.capture_axis``; empty for a calibration
without it). The ``normalization`` column says what was done, and ``captured`` whether the
model's capture-trained flow judged the image (empty for models without one). A file that
cannot be read gets a row with its ``error`` and the run goes on. The CSV is written to a
temporary file and renamed, so no half-written file is left behind.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from inpaint_app.anomaly import NEEDS_CALIBRATION, SCORES
from inpaint_app.atomic import atomic_write, ensure_writable_dir
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.images import ImageError, open_image
from inpaint_app.models import CheckpointError, ConfigError
from inpaint_app.uploads import Prepared, prepare_upload, score_uploads

COLUMNS = ["file", "bpd", "score", *(s for s in SCORES if s != "bpd"), "p_value", "flag",
           "threshold", "why", "capture_flag", "capture_p_value", "capture_why", "captured",
           "normalization", "error"]


def read_folder(folder: Path, bundle: ModelBundle, normalize: bool = True
                ) -> tuple[dict[str, Prepared], dict[str, str]]:
    """Every readable file prepared for ``bundle`` (its input, what the normalization did, its
    capture facts), and an error message for each other one."""
    prepared, errors = {}, {}
    for path in tqdm(sorted(p for p in folder.iterdir() if p.is_file()
                            and not p.name.startswith(".")), desc="read", unit="file"):
        try:
            prepared[path.name] = prepare_upload(open_image(path), bundle, normalize)
        except ImageError as err:
            errors[path.name] = str(err)
        except OSError as err:  # unreadable (permissions, I/O): named, and the run goes on
            errors[path.name] = f"cannot read file: {err.strerror or err}"
    return prepared, errors


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(rows: list[dict[str, Any]], out: Path) -> None:
    """Write the rows atomically: a temporary file in the same folder, then rename."""
    with atomic_write(out, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Score every image in a folder for anomaly.")
    p.add_argument("--checkpoint", required=True, help="model.pt (or the folder holding it)")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--score", default=None, choices=SCORES,
                   help="score for score/p_value/flag (default: the card's default score)")
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="plain resize instead of the model's input normalization")
    p.add_argument("--batch-size", type=int, default=256, help="images read and scored per step")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    try:
        model = load_bundle(args.checkpoint)
        stale = model.stale_note  # resolves the card's input recipe: ValueError if unknown
    except (CheckpointError, ConfigError, ValueError) as err:
        sys.exit(f"error: {err}")
    if args.normalize and stale:
        print(f"warning: {stale}", file=sys.stderr)
    folder = Path(args.images)
    if not folder.is_dir():
        sys.exit(f"error: --images {folder} is not a folder")
    if args.score and model.calibration is None and args.score in NEEDS_CALIBRATION:
        sys.exit(f"error: score {args.score!r} needs a calibrated checkpoint "
                 f"(run python -m pipelines.calibrate {args.checkpoint})")
    try:
        ensure_writable_dir(Path(args.out).parent)
    except OSError as err:
        sys.exit(f"error: cannot write {args.out}: {err.strerror or err}")
    prepared, errors = read_folder(folder, model, args.normalize)
    names = list(prepared)
    scored: dict[str, dict[str, Any]] = {}
    for start in tqdm(range(0, len(names), args.batch_size), desc="score", unit="batch"):
        batch = names[start:start + args.batch_size]
        results = score_uploads(model, [prepared[n] for n in batch], score=args.score)
        scored.update(zip(batch, results, strict=True))
    rows = [{"file": name, **scored[name], "normalization": prepared[name].note}
            if name in scored else {"file": name, "error": errors[name]}
            for name in sorted({*scored, *errors})]
    write_csv(rows, Path(args.out))
    flagged = sum(bool(r.get("flag")) for r in rows)
    print(f"wrote {args.out}: {len(scored)} scored, {flagged} flagged, {len(errors)} unreadable")


if __name__ == "__main__":
    main()
