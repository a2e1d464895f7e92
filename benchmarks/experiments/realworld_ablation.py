"""Which part of the verdict earns its place on the real-world corpus? Each evidence part on and
off, and the flow parts read from the main flow or from the capture-trained flow.

    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/realworld_ablation.py \
        [--model mnist] [--capture PATH] [--limit 500] [--out benchmarks/realworld-ablation]

Every file of the corpus (``benchmarks/realworld``, fetched by its get.py scripts into
``DATA_ROOT/realworld`` or ``--real-copies``) is read as a user has it and prepared as
``score_batch`` does (``inpaint_app.uploads``). The flows score every image once, under the main
model and under the capture model (``--capture``: another capture-trained checkpoint in place of
the shipped ``capture.pt``; cached in ``runs/``), so every variant below is array arithmetic on
the same scores: its parts' validation statistics and its threshold are set on the same 2,000
validation images at 5 %.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inpaint_app.anomaly import (
    EVIDENCE_PARTS,
    _part_stats,
    _threshold,
    base_scores,
    evidence_parts,
)
from inpaint_app.bundle import load_bundle
from inpaint_app.capture_axis import calibrate_capture
from inpaint_app.corpus import real_sets
from inpaint_app.data import load_split
from inpaint_app.detector import COMBINE, Calibration, DetectorSpec, PartScale
from inpaint_app.images import open_image
from inpaint_app.models import load_model
from inpaint_app.ood_metrics import auroc
from inpaint_app.uploads import prepare_upload

FPR = 0.05
# What the ablation switches on and off: every evidence part, and orientation, a part until
# 0.28.0 (a score since), so that the table keeps showing why it was removed.
CANDIDATES = (*EVIDENCE_PARTS, "orientation")
CHECKPOINTS = {"mnist": "trained/mnist-glow", "fashion-mnist": "trained/fashion-mnist-glow"}


def scored(bundle, uploads: list[Image.Image]) -> dict[str, np.ndarray]:
    """Both flows' parts for every upload, and its capture facts."""
    prepared = [prepare_upload(u, bundle) for u in uploads]
    x = torch.stack([p.x for p in prepared])
    base = base_scores(bundle, x, progress=False)
    base["facts"] = [p.facts for p in prepared]
    return base


def verdict(base: dict, val: dict, parts: list[str], flow: str, combine: str = COMBINE
            ) -> tuple[np.ndarray, float]:
    """The evidence of ``base`` under one variant (its ``parts``, their flow parts read from
    ``flow``: "model" or "capture", their excesses entering as ``combine`` says), and the
    variant's threshold on ``val``."""
    spec = DetectorSpec(parts=tuple(parts), flow=flow, combine=combine)
    detector = Calibration(spec=spec, thresholds={}, n=len(val["bpd"]), tail={}, parts={
        p: PartScale.from_dict(_part_stats(val[spec.source(p)])) for p in parts})

    def evidence(b: dict) -> np.ndarray:
        return np.sum(list(detector.evidence_terms(b).values()), axis=0)

    return evidence(base), _threshold(evidence(val), FPR)


def by_class(sets: dict, roles: dict, val: dict, parts: list[str], flow: str, copies: str,
             limit: int) -> str:
    """The shipped verdict's AUROC against the pooled real in-domain sets for each class of
    each outlier set (a file's class: its name up to the first ``_``), as a Markdown section:
    which characters of another script a content axis can tell from digits."""
    if not parts:
        return ""
    files = {real.name: real.files for real in real_sets(copies, limit=limit)}
    evidence = {key: verdict(base, val, parts, flow)[0] for key, base in sets.items()}
    inside = [k for k, r in roles.items() if r == "in" and k != "test set"]
    if not inside:
        return ""
    pooled = np.concatenate([evidence[k] for k in inside])
    lines = ["", "The shipped verdict by class of each outlier set (AUROC against the pooled "
             "real in-domain sets; files in the class):", "", "| set | class: AUROC (files) |",
             "|---|---|"]
    for key, role in roles.items():
        if role != "out" or len(files.get(key, ())) != len(evidence[key]):
            continue
        classes = np.array([f.name.split("_")[0] for f in files[key]])
        cells = [f"{c}: {auroc(pooled, evidence[key][classes == c]):.3f} "
                 f"({int((classes == c).sum())})" for c in sorted(set(classes))]
        lines.append(f"| {key} | " + ", ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def collect(args: argparse.Namespace, root: str, copies: str) -> tuple:
    """Both flows' scores of the validation images, the test subset and every fetched set."""
    bundle = load_bundle(CHECKPOINTS[args.model])
    if args.capture:
        bundle = dataclasses.replace(bundle, capture=load_model(args.capture).eval())
    val_raw = load_split(args.model, "val", root)[:args.val]
    axis = calibrate_capture(val_raw, bundle.recipe, FPR)
    val = scored(bundle, [Image.fromarray(x[0].numpy()) for x in val_raw])
    test = load_split(args.model, "test", root)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))[:args.limit]
    sets = {"test set": scored(bundle, [Image.fromarray(x[0].numpy()) for x in test[order]])}
    roles = {"test set": "in"}
    for real in real_sets(copies, limit=args.limit):
        if not real.files:
            continue
        print(f"{real.name}: {len(real.files)} files", flush=True)
        sets[real.name] = scored(bundle, [open_image(f) for f in real.files])
        roles[real.name] = ("in" if real.role == "in" and real.model == args.model else "out")
    return val, sets, roles, axis


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mnist", choices=CHECKPOINTS)
    p.add_argument("--capture", default=None, help="a capture-trained model.pt to try instead")
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--val", type=int, default=2000)
    p.add_argument("--real-copies", default=None)
    p.add_argument("--out", default=None, help="writes OUT.json and OUT.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = os.environ.get("FLOWPAINT_DATA", "data")
    copies = args.real_copies or str(Path(root) / "realworld")
    cache = Path("runs") / (f"realworld_ablation_{args.model}_"
                            f"{Path(args.capture).parent.name if args.capture else 'shipped'}"
                            f"_{args.limit}{'' if args.val == 2000 else f'_val{args.val}'}.pkl")
    if cache.exists():  # the flows' scores of every image, from an earlier run
        val, sets, roles, axis = pickle.loads(cache.read_bytes())
    else:
        val, sets, roles, axis = collect(args, root, copies)
        cache.parent.mkdir(exist_ok=True)
        cache.write_bytes(pickle.dumps((val, sets, roles, axis)))
    parts = [name for name in CANDIDATES if name in val]
    flow = "capture" if "capture_bpd" in val else "model"
    shipped = set(evidence_parts(load_bundle(CHECKPOINTS[args.model]).calibration) or ())
    variants = {"all parts, main flow": (parts, "model", COMBINE)}
    if flow == "capture":
        variants["all parts, capture flow"] = (parts, "capture", COMBINE)
    for size in range(1, len(parts) - 1):  # every part, pair and triple left out
        for dropped in itertools.combinations(parts, size):
            variants[f"without {' and '.join(dropped)}"] = (
                [q for q in parts if q not in dropped], flow, COMBINE)
    if shipped:  # how the parts combine: the shipped parts with their excesses summed
        variants["the shipped parts, excesses summed (before 0.29.0)"] = (
            [q for q in parts if q in shipped], flow, "sum")
    results = {}
    for label, (chosen, source, combine) in variants.items():
        row = {}
        values = {}
        for key, base in sets.items():
            evidence, threshold = verdict(base, val, chosen, source, combine)
            values[key] = evidence
            row[key] = {"flagged": float(np.mean(evidence > threshold))}
        inside = [k for k, r in roles.items() if r == "in" and k != "test set"]
        pooled = np.concatenate([values[k] for k in inside]) if inside else None
        for key, role in roles.items():
            if role == "out":
                row[key]["auroc_vs_test"] = auroc(values["test set"], values[key])
                if pooled is not None:
                    row[key]["auroc_vs_real"] = auroc(pooled, values[key])
        results[label] = row
        worst_in = max(row[k]["flagged"] for k in inside) if inside else float("nan")
        worst_out = min((row[k].get("auroc_vs_real", 1.0) for k, r in roles.items()
                         if r == "out"), default=float("nan"))
        print(f"{label}: worst real in-domain flagged {worst_in:.1%}, worst outlier AUROC "
              f"vs real {worst_out:.3f}", flush=True)
    keys = list(sets)
    lines = ["| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for label, row in results.items():
        cells = [f"{row[k]['flagged']:.1%}" if roles[k] == "in"
                 else f"{row[k].get('auroc_vs_real', float('nan')):.3f}" for k in keys]
        chosen, source, combine = variants[label]
        if set(chosen) == shipped and source == flow and combine == COMBINE:
            label = f"**{label} (the shipped verdict)**"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    command = ("FLOWPAINT_DATA=../shared/data python benchmarks/experiments/realworld_ablation.py "
               + " ".join(sys.argv[1:]))
    table = (f"`{command}`: {args.limit} files a set, thresholds at 5 % on {args.val:,} "
             "validation images. In-domain sets: the share flagged; outlier sets: AUROC against "
             "the pooled real in-domain sets. \"All parts\": " + ", ".join(parts) + "; each "
             "part enters as log(1 + its excess) unless the row says its excess is summed.\n\n"
             + "\n".join(lines) + "\n"
             + by_class(sets, roles, val, sorted(shipped), flow, copies, args.limit))
    print(table)
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(
            {"model": args.model, "capture": args.capture or "shipped", "limit": args.limit,
             "roles": roles, "variants": results}, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text(f"# Ablation on the real-world corpus "
                                                     f"({args.model})\n\n" + table)


if __name__ == "__main__":
    main()
