"""Out-of-distribution evaluation of the calibrated anomaly scores: AUROC, AUPR, FPR at 95 % TPR.

    python -m pipelines.ood_eval [--limit 2000] [--out benchmarks/ood]

For each shipped model (calibrate it first: ``python -m pipelines.calibrate CHECKPOINT``) the
in-distribution set is a fixed random subset of its test split, and the out-of-distribution sets
are: the other dataset's test split, uniform noise, constant images (one random grey level each),
the in-distribution images inverted (255 - x) and rotated by 90 degrees, and rendered letters
(Pillow's default font, A-Z and a-z with random size, offset, stroke and tilt): a synthetic
stand-in for an unseen handwritten-character set, which this project does not have, and random pen
scribbles (a set made after the default score was chosen, so one that played no part in it). Writes
``<out>.json``, ``<out>.md`` and a bits/dim histogram per set with the threshold drawn
(``docs/ood-histogram.png``), and reports scoring throughput (images/s).

Every set goes through the input normalization first, as uploads do (``--no-normalize``: as
stored); the inverted set is then left out, since black on white is normalized back by design.
The nuisance section (``--nuisance-limit``) re-captures every set (``inpaint_app.nuisances``:
shifts, resampling, JPEG, blur, gamma, contrast, black on white) and reports the default's flag
rate on the in-distribution images and its AUROC against each out set under the same nuisance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from inpaint_app.anomaly import SCORES, base_scores, scores_from_base
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.corpus import real_sets
from inpaint_app.data import DatasetNotFound, load_split
from inpaint_app.images import open_image
from inpaint_app.normalize import fit_input, normalize_images
from inpaint_app.nuisances import NUISANCES, apply_all, photographed
from inpaint_app.ood_metrics import auroc, summary
from inpaint_app.synthetic import rendered_letters, scribbles
from inpaint_app.uploads import prepare_upload, score_uploads

MODELS = {"mnist": "trained/mnist-glow/model.pt",
          "fashion-mnist": "trained/fashion-mnist-glow/model.pt"}
OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
SET_NAMES = {"other": "{other}", "noise": "uniform noise", "constant": "constant",
             "inverted": "inverted {name}", "rotated": "{name} rotated 90°",
             "letters": "rendered letters (synthetic)", "scribbles": "scribbles (synthetic)"}


def build_sets(name: str, limit: int, root: str | None, seed: int = 0
               ) -> dict[str, torch.Tensor]:
    """The in-distribution subset ("in") and every out-of-distribution set, ``limit`` each."""
    def subset(images: torch.Tensor) -> torch.Tensor:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed + 1))
        return images[order[:limit].sort().values]

    gen = torch.Generator().manual_seed(seed)
    test = subset(load_split(name, "test", root))
    shape = (len(test), *test.shape[1:])
    levels = torch.randint(0, 256, (len(test), 1, 1, 1), generator=gen, dtype=torch.uint8)
    return {"in": test, "other": subset(load_split(OTHER[name], "test", root)),
            "noise": torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8),
            "constant": levels.expand(shape).contiguous(), "inverted": 255 - test,
            "rotated": torch.rot90(test, 1, (2, 3)).contiguous(),
            "letters": rendered_letters(len(test), seed), "scribbles": scribbles(len(test), seed)}


def evaluate_model(name: str, checkpoint: str, limit: int, root: str | None,
                   nuisance_limit: int = 0, normalized: bool = True) -> dict[str, Any]:
    """Scores of every set under one model, the metrics per pair and score, and throughput.

    ``normalized``: every set goes through the input normalization first, as uploads do; the
    inverted set is then left out, since black on white is normalized back by design."""
    model = load_bundle(checkpoint)
    calibration = model.calibration
    if not calibration:
        sys.exit(f"error: {checkpoint} is not calibrated: run python -m pipelines.calibrate "
                 f"{checkpoint}")
    sets = build_sets(name, limit, root)
    if normalized:
        del sets["inverted"]
        sets = {key: normalize_images(images, model.recipe) for key, images in sets.items()}
    scores, bpd = {}, {}
    for key, images in sets.items():
        start = time.perf_counter()
        base = base_scores(model, images, progress=True)
        if key == "in":
            throughput = len(images) / (time.perf_counter() - start)
        scores[key] = scores_from_base(base, calibration)
        bpd[key] = base["bpd"]
    pairs = {}
    for key in sets:
        if key != "in":
            label = SET_NAMES[key].format(name=name, other=OTHER[name])
            pairs[label] = {s: summary(scores["in"][s], scores[key][s]) for s in SCORES}
    nuisance = (nuisance_section(model, build_sets(name, nuisance_limit, root), nuisance_limit)
                if nuisance_limit else None)
    return {"checkpoint": checkpoint, "n_per_set": limit, "pairs": pairs, "nuisance": nuisance,
            "normalized": normalized,
            "throughput_images_per_s": round(throughput, 1), "calibration": {
                k: calibration[k] for k in ("default_score", "fpr", "source", "n")},
            "bpd_threshold": calibration["scores"]["bpd"]["threshold"], "_bpd": bpd}


def model_inputs(model: ModelBundle, uploads: list[Image.Image], normalized: bool
                 ) -> torch.Tensor:
    """What the app feeds the model for these uploads: its input normalization (the default) or
    the plain fit (``--no-normalize``)."""
    return torch.stack([fit_input(u, model.image_shape, model.recipe, normalized)[0]
                        for u in uploads])


def nuisance_section(model: ModelBundle, sets: dict[str, torch.Tensor], limit: int
                     ) -> dict[str, Any]:
    """Capture nuisances (``inpaint_app.nuisances``) applied to the first ``limit`` images of every
    set: the default score's flag rate on the in-distribution images at its calibrated threshold,
    with the input normalization and without, and its AUROC against every out set under the same
    nuisance (normalized). The inverted set is left out: black on white is a nuisance here."""
    calibration = model.calibration
    default = calibration["default_score"]
    threshold = calibration["scores"][default]["threshold"]

    def score(images: torch.Tensor) -> np.ndarray:
        return scores_from_base(base_scores(model, images), calibration)[default]

    rows = {}
    for name in NUISANCES:
        uploads = {key: apply_all(name, images[:limit]) for key, images in sets.items()
                   if key != "inverted"}
        inside = score(model_inputs(model, uploads["in"], True))
        plain = score(model_inputs(model, uploads["in"], False))
        rows[name] = {"flag_rate": float(np.mean(inside > threshold)),
                      "flag_rate_plain": float(np.mean(plain > threshold)),
                      "auroc": {key: auroc(inside, score(model_inputs(model, images, True)))
                                for key, images in uploads.items() if key != "in"}}
        print(f"{name}: flagged {rows[name]['flag_rate']:.1%} normalized, "
              f"{rows[name]['flag_rate_plain']:.1%} plain", flush=True)
    return {"n": min(limit, len(sets["in"])), "score": default, "rows": rows}


def nuisance_markdown(results: dict[str, Any]) -> str:
    """Flag rates and the worst AUROC per nuisance, per model."""
    lines = ["| model | nuisance | flagged (normalized) | flagged (plain fit) | "
             "worst AUROC (normalized) | against |", "|---|---|---|---|---|---|"]
    for name, result in results.items():
        section = result.get("nuisance")
        if not section:
            continue
        for nuisance, row in section["rows"].items():
            key, worst = min(row["auroc"].items(), key=lambda item: item[1])
            label = SET_NAMES[key].format(name=name, other=OTHER[name])
            lines.append(f"| {name} | {nuisance} | {row['flag_rate']:.1%} | "
                         f"{row['flag_rate_plain']:.1%} | {worst:.3f} | {label} |")
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Any], default: str) -> str:
    """The README table: AUROC of every score, and AUPR / FPR@95 % TPR of the default."""
    head = ("| in (model) | out | " + " | ".join(f"AUROC {s}" for s in SCORES)
            + f" | AUPR {default} | FPR@95%TPR {default} |")
    lines = [head, "|" + "---|" * (len(SCORES) + 4)]
    for name, result in results.items():
        for label, metrics in result["pairs"].items():
            cells = [f"{metrics[s]['auroc']:.3f}" for s in SCORES]
            cells[SCORES.index(default)] = f"**{cells[SCORES.index(default)]}**"
            tail = f"{metrics[default]['aupr']:.3f} | {metrics[default]['fpr95']:.3f}"
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + f" | {tail} |")
    return "\n".join(lines) + "\n"


COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
          (140, 86, 75), (227, 119, 194)]


def draw_histograms(panels: dict[str, tuple[dict[str, np.ndarray], float]], path: Path,
                    bins: int = 60) -> None:
    """One panel per model: bits/dim histograms of every set (outlines, clipped to the panel's
    range, which is set by the in-distribution set) and the calibrated threshold (dashed)."""
    width, height, pad = 900, 300, 50
    image = Image.new("RGB", (width, height * len(panels)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    for row, (name, (sets, threshold)) in enumerate(panels.items()):
        top = row * height
        finite_in = sets["in"][np.isfinite(sets["in"])]
        lo = float(min(np.quantile(finite_in, 0.001), *(np.nanmin(np.where(
            np.isfinite(v), v, np.nan)) for v in sets.values())))
        hi = float(max(np.quantile(finite_in, 0.999), threshold) * 1.6 - lo * 0.6)
        edges = np.linspace(lo, hi, bins + 1)

        def x_of(value: float, lo: float = lo, hi: float = hi) -> float:
            return pad + (value - lo) / (hi - lo) * (width - 2 * pad)

        peak = max(np.histogram(np.clip(v, lo, hi), edges)[0][:-1].max() / len(v)
                   for v in sets.values())  # the overflow bin may be drawn off the top
        for color, (key, values) in zip(COLORS, sets.items(), strict=False):
            counts = np.histogram(np.clip(values, lo, hi), edges)[0] / len(values)
            points = []
            for i, c in enumerate(counts):
                y = top + height - pad - min(c / peak, 1.05) * (height - 2 * pad)
                points += [(x_of(edges[i]), y), (x_of(edges[i + 1]), y)]
            draw.line(points, fill=color, width=2)
            draw.text((width - pad - 170, top + pad + 14 * list(sets).index(key)),
                      f"{key} (n={len(values)})", fill=color, font=font)
        x = x_of(threshold)
        for y in range(top + pad, top + height - pad, 8):
            draw.line([(x, y), (x, y + 4)], fill="black", width=1)
        draw.line([(pad, top + height - pad), (width - pad, top + height - pad)], fill="black")
        for tick in np.linspace(lo, hi, 6):
            draw.text((x_of(tick) - 10, top + height - pad + 4), f"{tick:.1f}", fill="black",
                      font=font)
        draw.text((pad, top + 10), f"{name} Glow: bits/dim per set; dashed = bpd threshold "
                  f"{threshold:.3f} (values past the right edge are piled in the last bin)",
                  fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)


FALLOFFS = (0, 20, 40, 60, 80, 100, 120)  # grey levels of light lost across the page


def _score_uploads(model: ModelBundle, uploads: list[Image.Image]) -> dict[str, np.ndarray]:
    """What ``score_batch`` gives these uploads with its defaults: the content score, flag and
    bits/dim, and the capture axis's flag."""
    rows = score_uploads(model, [prepare_upload(u, model) for u in uploads])
    out = {key: np.asarray([np.nan if r[key] is None else r[key] for r in rows],
                           dtype=np.float64)
           for key in ("score", "flag", "bpd", "capture_flag")}
    out["parts"] = {part: np.asarray([r["parts"][part] for r in rows])
                    for part in (rows[0]["parts"] if rows else {})}
    return out


def _part_shares(parts: dict[str, np.ndarray]) -> dict[str, float]:
    """Each evidence part's share of the set's summed evidence: what its verdicts rest on."""
    total = sum(float(v.sum()) for v in parts.values())
    return {part: float(v.sum()) / total for part, v in parts.items()} if total > 0 else {}


def _mean(values: np.ndarray) -> float | None:
    """The mean of what is known (None where nothing is: a calibration without that axis)."""
    return None if np.isnan(values).all() else float(np.nanmean(values))


def _read(files: tuple[Path, ...]) -> list[Image.Image]:
    return [open_image(path) for path in files]


def real_section(name: str, checkpoint: str, limit: int, root: str | None,
                 copies: str | None) -> dict[str, Any]:
    """The real-world corpus (``inpaint_app.corpus``) under one model, every file read as a
    user has it and scored with ``score_batch``'s defaults: per in-domain set the content and
    capture flag rates; per outlier set (the corpus's outliers, and the other model's in-domain
    sets) the content AUROC against the pooled real in-domain sets and against the model's own
    test set; and photos of test digits on paper lit with a measured fall-off."""
    model = load_bundle(checkpoint)
    test = build_sets(name, limit, root)["in"]
    results: dict[str, dict[str, Any]] = {}
    scored = {"test set": _score_uploads(model, [Image.fromarray(x[0].numpy()) for x in test])}
    sets = real_sets(copies, limit=limit)
    for missing in (s for s in sets if not s.files):
        print(f"{name}: {missing.name} not fetched (run benchmarks/realworld/{missing.name}/"
              "get.py): left out", file=sys.stderr)
    sets = [s for s in sets if s.files]
    inside = [s for s in sets if s.role == "in" and s.model == name]
    outside = [s for s in sets if s.role == "out" or (s.role == "in" and s.model != name)]
    for real in inside + outside:
        print(f"{name}: {real.name} ({len(real.files)} files)", flush=True)
        scored[real.name] = _score_uploads(model, _read(real.files))
    pooled = np.concatenate([scored[s.name]["score"] for s in inside]) if inside else None
    for key, values in scored.items():
        real = next((s for s in sets if s.name == key), None)
        role = "in" if real is None or real in inside else "out"
        row = {"role": role, "kind": real.kind if real else f"{name} test split",
               "n": len(values["score"]),
               "flagged": float(values["flag"].mean()),
               "capture_flagged": _mean(values["capture_flag"]),
               "part_shares": _part_shares(values["parts"]),
               "median_bpd": float(np.median(values["bpd"]))}
        if role == "out":
            row["auroc_vs_test"] = auroc(scored["test set"]["score"], values["score"])
            if pooled is not None:
                row["auroc_vs_real"] = auroc(pooled, values["score"])
        results[key] = row
    falloff = {}
    if name == "mnist":  # photos of digits on paper: the normalization's lighting test
        for level in FALLOFFS:
            shot = photographed(level)
            values = _score_uploads(model, [shot(x, i) for i, x in enumerate(test[:limit])])
            falloff[level] = {"flagged": float(values["flag"].mean()),
                              "capture_flagged": _mean(values["capture_flag"])}
            print(f"{name}: fall-off {level}: flagged {falloff[level]['flagged']:.1%}",
                  flush=True)
    return {"checkpoint": checkpoint, "sets": results, "falloff": falloff}


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def real_markdown(results: dict[str, Any]) -> str:
    """The README's real-world table: per model and set, flag rates and AUROCs."""
    lines = ["| model | set | role | n | content flagged | capture axis fired | AUROC vs real "
             "in-domain | AUROC vs test set | evidence by part |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, section in results.items():
        for key, row in section["sets"].items():
            real = f"{row['auroc_vs_real']:.3f}" if "auroc_vs_real" in row else ""
            test = f"{row['auroc_vs_test']:.3f}" if "auroc_vs_test" in row else ""
            shares = ", ".join(f"{part.replace('_', ' ')} {share:.0%}"
                               for part, share in row.get("part_shares", {}).items())
            lines.append(f"| {name} | {key} | {row['role']} | {row['n']} | {row['flagged']:.1%} "
                         f"| {_percent(row['capture_flagged'])} | {real} | {test} | {shares} |")
    for name, section in results.items():
        if section["falloff"]:
            lines += ["", f"Photos of {name} test digits on paper, light falling off across the "
                      "page:", "", "| fall-off (grey levels) | content flagged | capture axis "
                      "fired |", "|---|---|---|"]
            lines += [f"| {level} | {row['flagged']:.1%} | {_percent(row['capture_flagged'])} |"
                      for level, row in section["falloff"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="AUROC/AUPR/FPR@95%TPR of the anomaly scores.")
    p.add_argument("--limit", type=int, default=2000, help="images per set (test subset)")
    p.add_argument("--out", default="benchmarks/ood", help="writes OUT.json and OUT.md")
    p.add_argument("--histogram", default="docs/ood-histogram.png")
    p.add_argument("--data-root", default=None,
                   help="dataset root (default $FLOWPAINT_DATA or ./data)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="score the sets as stored, without the input normalization")
    p.add_argument("--nuisance-limit", type=int, default=300,
                   help="images per set in the nuisance section (0: skip it)")
    p.add_argument("--real-limit", type=int, default=500,
                   help="files per set in the real-world section (0: skip it)")
    p.add_argument("--real-copies", default=None, metavar="DIR",
                   help="where the corpus's get.py scripts wrote the sets (default: "
                        "DATA_ROOT/realworld); a set not there is listed as not fetched")
    p.add_argument("--only-real", action="store_true",
                   help="run the real-world section alone (writes OUT-real.json/.md only)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.real_limit:
        copies = args.real_copies or str(Path(args.data_root or os.environ.get(
            "FLOWPAINT_DATA", "data")) / "realworld")
        real = {name: real_section(name, checkpoint, args.real_limit, args.data_root, copies)
                for name, checkpoint in MODELS.items()}
        table = real_markdown(real)
        real_out = out.with_name(out.name + "-real")
        real_out.with_suffix(".json").write_text(json.dumps(real, indent=2) + "\n")
        real_out.with_suffix(".md").write_text(
            "# Real-world corpus\n\nEvery file read as its user has it and scored with "
            "`score_batch`'s defaults (benchmarks/realworld/; at most "
            f"{args.real_limit} files a set).\n\n" + table)
        print(table)
    if args.only_real:
        return

    results = {}
    try:
        for name, checkpoint in MODELS.items():
            results[name] = evaluate_model(name, checkpoint, args.limit, args.data_root,
                                           args.nuisance_limit, args.normalize)
    except DatasetNotFound as err:
        sys.exit(f"error: {err}")
    default = results["mnist"]["calibration"]["default_score"]
    draw_histograms({n: (r["_bpd"], r["bpd_threshold"]) for n, r in results.items()},
                    Path(args.histogram))
    for result in results.values():
        del result["_bpd"]
    table = markdown(results, default)
    speed = results["mnist"]["throughput_images_per_s"]
    note = (f"\n{args.limit:,} images per set (a fixed random subset of each test split), "
            + ("each through the input normalization, as uploads are (so the inverted set, "
               "normalized back by design, is left out); " if args.normalize else "as stored; ")
            + f"default score: {default}; MNIST Glow scoring throughput {speed} images/s "
            f"(batch 256, {args.threads} CPU thread(s)).\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    nuisances = ""
    if args.nuisance_limit:
        nuisances = ("\n## Capture nuisances\n\nThe default score's flag rate on in-distribution "
                     "test images at its calibrated 5 % threshold, after each nuisance, through "
                     "the app's input normalization (`inpaint_app.normalize`) and through the "
                     "plain fit; and its lowest AUROC against the out sets under the same "
                     f"nuisance ({args.nuisance_limit} images per set).\n\n"
                     + nuisance_markdown(results))
    out.with_suffix(".md").write_text("# OOD evaluation\n\n" + table + note + nuisances)
    print(table + note + nuisances)


if __name__ == "__main__":
    main()
