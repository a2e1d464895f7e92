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
without it). The ``normalization`` column says what was done. A file that
cannot be read gets a row with its ``error`` and the run goes on. The CSV is written to a
temporary file and renamed, so no half-written file is left behind.

``--maps DIR`` also writes, for every readable file, where the model finds it unlike its training
images (``inpaint_app.anomaly_map``): ``DIR/<name>.png``, the upload at its own size and in its
own frame with the calibrated anomaly map laid over it (clear below half the hot-spot level,
yellow, red at the level and above), and the columns ``map`` (that file), ``map_peak`` (the
hottest value over the level: above 1 is a hot spot) and ``hot_spot``. It needs a model with a
conditional inpainting flow whose map is calibrated (``pipelines.calibrate --maps``).
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
from inpaint_app.anomaly_map import (
    MapUnavailable,
    anomaly_map,
    map_calibration,
    overlay,
    to_upload_frame,
)
from inpaint_app.atomic import atomic_write, ensure_writable_dir
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.images import ImageError, open_image, save_png
from inpaint_app.models import CheckpointError, ConfigError
from inpaint_app.uploads import Prepared, prepare_upload, score_uploads

COLUMNS = ["file", "bpd", "score", *(s for s in SCORES if s != "bpd"), "p_value", "flag",
           "threshold", "why", "capture_flag", "capture_p_value", "capture_why",
           "normalization", "error"]
MAP_COLUMNS = ["map", "map_peak", "hot_spot"]  # with --maps, before "error"


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


def write_csv(rows: list[dict[str, Any]], out: Path, columns: list[str] = COLUMNS) -> None:
    """Write the rows atomically: a temporary file in the same folder, then rename."""
    with atomic_write(out, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)


def map_names(names: list[str]) -> dict[str, str]:
    """Each file's map file: ``<stem>.png``, or ``<name>.png`` where two files share a stem."""
    stems = [Path(name).stem for name in names]
    return {name: f"{stem if stems.count(stem) == 1 else name}.png"
            for name, stem in zip(names, stems, strict=True)}


def write_maps(bundle: ModelBundle, folder: Path, prepared: dict[str, Prepared],
               names: list[str], out: Path) -> dict[str, dict[str, Any]]:
    """The anomaly map of each of ``names``, laid over its upload in the upload's frame and
    written to ``out``; its columns per file."""
    level = map_calibration(bundle)["level"]
    maps = anomaly_map(bundle, torch.stack([prepared[name].x for name in names]))
    files, columns = map_names(names), {}
    for name, values in zip(names, maps, strict=True):
        upload = open_image(folder / name)
        back = to_upload_frame(values, prepared[name].framing, upload.size)
        save_png(overlay(upload, back, level), out / files[name])
        peak = float(values.max()) / level
        columns[name] = {"map": files[name], "map_peak": peak, "hot_spot": peak > 1}
    return columns


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
    p.add_argument("--maps", default=None, metavar="DIR",
                   help="also write each image's anomaly map, laid over it, as DIR/<name>.png "
                        "(a model with a calibrated conditional inpainting flow)")
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
        if args.maps:
            map_calibration(model)
    except MapUnavailable as err:
        sys.exit(f"error: --maps: {err}")
    for where in [args.out, *([Path(args.maps) / "map.png"] if args.maps else [])]:
        try:
            ensure_writable_dir(Path(where).parent)
        except OSError as err:
            sys.exit(f"error: cannot write {where}: {err.strerror or err}")
    prepared, errors = read_folder(folder, model, args.normalize)
    names = list(prepared)
    scored: dict[str, dict[str, Any]] = {}
    for start in tqdm(range(0, len(names), args.batch_size), desc="score", unit="batch"):
        batch = names[start:start + args.batch_size]
        results = score_uploads(model, [prepared[n] for n in batch], score=args.score)
        scored.update(zip(batch, results, strict=True))
        if args.maps:
            for name, columns in write_maps(model, folder, prepared, batch,
                                            Path(args.maps)).items():
                scored[name].update(columns)
    rows = [{"file": name, **scored[name], "normalization": prepared[name].note}
            if name in scored else {"file": name, "error": errors[name]}
            for name in sorted({*scored, *errors})]
    columns = COLUMNS if not args.maps else [*COLUMNS[:-1], *MAP_COLUMNS, COLUMNS[-1]]
    write_csv(rows, Path(args.out), columns)
    flagged = sum(bool(r.get("flag")) for r in rows)
    print(f"wrote {args.out}: {len(scored)} scored, {flagged} flagged, {len(errors)} unreadable"
          + (f"; {len(scored)} maps in {args.maps}" if args.maps else ""))


if __name__ == "__main__":
    main()
