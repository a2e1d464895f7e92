"""Bring home what ``benchmarks.gpu_run`` sent back: float32 checkpoints, test bits/dim, shipping.

    python -m benchmarks.gpu_home OUTDIR [--data-root ../shared/data] [--threads 2] [--ship]
        [--limit-test N] [--runs runs/gpu-home]

For every ``OUTDIR/<name>.pt`` (or ``<name>.part0.pt`` ...): checks it against ``summary.json``
(SHA-256), restores the weights to their float32 dtypes, evaluates the test set (the full one
unless ``--limit-test``), writes ``runs/gpu-home/<name>/model.pt`` + ``card.json`` +
``samples.png`` with the card naming the GPU (``trained_on``, ``hardware``), and prints test
bits/dim against the shipped ``trained/<dataset>-glow``. ``--ship`` copies a Glow that beats the
shipped one on the full test set into ``trained/<dataset>-glow/`` (its ``exemplars.npz`` and
``background.pt`` stay) and rebuilds the exemplar bank and the anomaly calibration, as for any
new model (``pipelines.exemplars``, ``pipelines.calibrate``). Other model kinds are restored but
not scored or shipped: there is no ship rule for them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from inpaint_app.anomaly import evidence_parts
from inpaint_app.card import Measurement, ModelCard
from inpaint_app.data import DatasetNotFound, load_split
from inpaint_app.models import (
    FAMILIES,
    CheckpointError,
    ConfigError,
    build_model,
    read_card,
    save_model,
)
from inpaint_app.runs import git_commit
from inpaint_app.training import bpd_summary, evaluate_bpd

PART = re.compile(r"^(?P<name>.+)\.part(?P<k>\d+)\.pt$")
SHIP_FAMILIES = {"glow"}
PRECISION_NOTE = ("weights stored in {dtype} in transit from the training machine and restored to "
                  "float32 here; every figure on this card is of the restored float32 weights")


def collect(out_dir: Path) -> dict[str, list[Path]]:
    """name -> its file(s), parts in order."""
    groups: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(out_dir.glob("*.pt")):
        match = PART.match(path.name)
        name, k = (match["name"], int(match["k"])) if match else (path.stem, 0)
        groups.setdefault(name, []).append((k, path))
    return {name: [p for _, p in sorted(parts)] for name, parts in groups.items()}


def restore(paths: list[Path], summary: dict | None) -> dict:
    """The float32 checkpoint ``{config, state_dict, card}`` from transit file(s)."""
    expected = {}
    for run in (summary or {}).get("runs", []):
        expected.update({f: info["sha256"] for f, info in run.get("files", {}).items()})
    state, first = {}, None
    for path in paths:
        if path.name in expected and \
                hashlib.sha256(path.read_bytes()).hexdigest() != expected[path.name]:
            raise CheckpointError(f"{path}: SHA-256 differs from summary.json "
                                  "(damaged in transit)")
        try:
            part = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure: an unusable file
            raise CheckpointError(f"refusing to load {path}: {type(err).__name__}") from err
        first = first or part
        state.update(part["state_dict"])
    transit = first.get("transit", {"dtype": "float32", "dtypes": {}, "parts": 1})
    if len(paths) != transit.get("parts", 1):
        raise CheckpointError(f"{paths[0].name}: {len(paths)} of {transit['parts']} parts "
                              "came back")
    for key, dtype in transit.get("dtypes", {}).items():
        state[key] = state[key].to(getattr(torch, dtype))
    return {"config": first["config"], "state_dict": state, "card": dict(first.get("card", {})),
            "transit_dtype": transit.get("dtype", "float32")}


def shipped_card(dataset: str, trained: Path) -> tuple[Path, ModelCard | None]:
    folder = trained / f"{dataset}-glow"
    model = folder / "model.pt"
    return folder, (read_card(model) if model.is_file() else None)


def home(name: str, paths: list[Path], args: argparse.Namespace, summary: dict | None) -> dict:
    """Restore, evaluate and write one run; returns its result row."""
    ckpt = restore(paths, summary)
    card = ModelCard.from_dict(ckpt["card"])
    try:
        model = build_model(ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
    except (ConfigError, RuntimeError) as err:
        raise CheckpointError(f"{paths[0].name}: {str(err).splitlines()[0]}") from err
    model.eval().requires_grad_(False)
    family = ckpt["config"].get("family", card.model or "?")
    # hardware is train.py's "1 x NVIDIA H100 80GB HBM3" on CUDA (kept); trained_on names the GPU
    notes = {**card.notes,
             "trained_on": re.sub(r"^\d+ x (?=\D)", "", card.hardware or "unknown"),
             "precision_note": PRECISION_NOTE.format(dtype=ckpt["transit_dtype"]),
             "brought_home": {"from": str(paths[0].parent), "files": [p.name for p in paths],
                              "command": "python -m benchmarks.gpu_home " + " ".join(args.argv),
                              "date": datetime.now(UTC).isoformat(timespec="seconds")}}
    card = card.replace(notes=notes)
    if (card.commit or "unknown") == "unknown":  # the borrowed machine gets no .git
        card = card.replace(commit=git_commit() + " (at home; the training machine had no git "
                                                  "history)")
    out = Path(args.runs) / name
    row = {"name": name, "family": family, "dataset": card.dataset, "val_bpd": card.val_bpd,
           "home": str(out / "model.pt")}
    if family not in FAMILIES:  # the unconditional flows; a conditional one needs its own test
        save_model(model, out / "model.pt", card=card)
        row["note"] = f"restored, not evaluated: no ship rule for {family}"
        print(f"{name}: {row['note']}")
        return row
    try:
        test = load_split(card.dataset, "test", args.data_root)
    except (DatasetNotFound, KeyError) as err:
        sys.exit(f"error: {err}")
    if args.limit_test:  # a fixed random subset, as pipelines.evaluate --limit does
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
        test = test[pick[: args.limit_test]]
    with torch.inference_mode():
        bpd = evaluate_bpd(model, test, progress=True)
    mean, stderr = bpd_summary(bpd)
    card = card.replace(parameters=sum(p.numel() for p in model.parameters()), test=Measurement(
        bpd=round(mean, 4), stderr=round(stderr, 4), images=len(test),
        subset="random" if args.limit_test else "all",
        command="python -m benchmarks.gpu_home (evaluate_bpd as pipelines.evaluate)"))
    if args.check_val:
        row["home_val_bpd"], card = check_val(model, card, args)
    save_model(model, out / "model.pt", card=card)
    from torchvision.utils import save_image

    with torch.inference_mode():
        samples = model.sample(64, temperature=0.8, generator=torch.Generator().manual_seed(0))
    save_image(samples, out / "samples.png", nrow=8)
    folder, shipped = shipped_card(card.dataset, Path(args.trained))
    row.update(test_bpd=card.test_bpd, test_n=len(test),
               shipped_bpd=shipped.test_bpd if shipped else None)
    verdict = "no shipped model to compare"
    if shipped is not None:
        better = card.test_bpd < shipped.test_bpd
        verdict = f"{'better' if better else 'not better'} than shipped {shipped.test_bpd:.4f}"
    print(f"{name}: test {card.test_bpd:.4f} ± {card.test.stderr:.4f} bits/dim over "
          f"{len(test)} images (val where it trained: {card.val_bpd}), {verdict}", flush=True)
    if args.ship:
        row["shipped"] = ship(out, card, family, folder, shipped, args)
    return row


def check_val(model: torch.nn.Module, card: ModelCard, args: argparse.Namespace
              ) -> tuple[float, ModelCard]:
    """Validation bits/dim of the restored weights on the images the training machine used
    (its card's ``val`` measurement): the difference to the card's figure is what the bf16
    transit (and the hardware) cost."""
    val = load_split(card.dataset, "val", args.data_root)
    if card.val is not None and card.val.subset == "first" and card.val.images:
        val = val[:card.val.images]
    with torch.inference_mode():
        home_val = round(evaluate_bpd(model, val).mean().item(), 4)
    print(f"val over {len(val)} images: {home_val:.4f} bits/dim restored here, "
          f"{card.val_bpd} on the training machine", flush=True)
    return home_val, card.replace(notes={**card.notes, "val_bpd_restored": home_val})


def kept_parts(shipped: ModelCard | None) -> list[str]:
    """``--evidence-parts`` of the replaced model's calibration, where it chose them: the new
    card has no calibration yet, so the choice would otherwise fall back to the default."""
    parts = evidence_parts(shipped.anomaly if shipped is not None else None)
    return ["--evidence-parts", ",".join(parts)] if parts else []


def ship(out: Path, card: ModelCard, family: str, folder: Path, shipped: ModelCard | None,
         args: argparse.Namespace) -> bool:
    """Copy into trained/<dataset>-glow and rebuild bank and calibration, if it is better."""
    if family not in SHIP_FAMILIES:
        print(f"not shipped: no ship rule for {family}")
        return False
    if args.limit_test:
        print("not shipped: --limit-test scores a subset; shipping compares the full test set")
        return False
    if shipped is not None and card.test_bpd >= shipped.test_bpd:
        print(f"not shipped: test {card.test_bpd:.4f} >= shipped {shipped.test_bpd:.4f}")
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for file in ("model.pt", "card.json", "samples.png"):  # exemplars.npz, background.pt stay
        tmp = folder / f".{file}.tmp"
        shutil.copyfile(out / file, tmp)
        tmp.replace(folder / file)
    data = ["--data-root", args.data_root] if args.data_root else []
    for step in (["pipelines.exemplars", "--checkpoint", str(folder), *data],
                 ["pipelines.calibrate", str(folder / "model.pt"), *data,
                  "--threads", str(args.threads), *kept_parts(shipped)]):
        print("$ python -m " + " ".join(step), flush=True)
        subprocess.run([sys.executable, "-m", *step], check=True)
    print(f"shipped {folder}: run `python -m benchmarks.results` for the README table")
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir", metavar="OUTDIR", help="what benchmarks.gpu_run wrote under $OUT")
    p.add_argument("--data-root", default=None, help="dataset root with the test split")
    p.add_argument("--runs", default="runs/gpu-home", help="where the float32 checkpoints go")
    p.add_argument("--trained", default="trained", help="the shipped models")
    p.add_argument("--limit-test", type=int, default=None,
                   help="score a fixed random subset of N test images (no --ship then)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--check-val", action="store_true",
                   help="also score the validation images the run used (bf16 transit cost)")
    p.add_argument("--ship", action="store_true",
                   help="ship a Glow that beats trained/<dataset>-glow on the full test set")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    groups = collect(out_dir)
    if not groups:
        sys.exit(f"error: no <name>.pt under {out_dir}")
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    rows = []
    for name, paths in groups.items():
        try:
            rows.append(home(name, paths, args, summary))
        except CheckpointError as err:
            print(f"{name}: error: {err}", file=sys.stderr)
            rows.append({"name": name, "error": str(err)})
    print(f"\n{'name':<28} {'family':<8} {'val (run)':>9} {'test':>8} {'shipped':>8}  note")
    for r in rows:
        def fmt(x: float | None) -> str:
            return f"{x:.4f}" if isinstance(x, float) else "-"
        note = r.get("error") or r.get("note") or (
            "shipped" if r.get("shipped") else f"{r.get('test_n')} test images")
        print(f"{r['name']:<28} {r.get('family', '?'):<8} {fmt(r.get('val_bpd')):>9} "
              f"{fmt(r.get('test_bpd')):>8} {fmt(r.get('shipped_bpd')):>8}  {note}")
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
