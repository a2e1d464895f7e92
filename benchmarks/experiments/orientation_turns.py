"""Does the evidence verdict need all three quarter turns for its orientation part?

Each turn is one more flow pass per image (the verdict's passes are most of its cost: issue 21).
For each shipped model this computes, once, the bits/dim of every image at 0, 90, 180 and 270
degrees, the background's bits/dim, the PNG bits/dim and the exemplar distance, then rebuilds the
``evidence`` verdict (same parts and rule, calibrated at 5 %) with the orientation part taken over
several sets of turns:

- calibration: validation images 0-2,999 (normalized, as the shipped calibration);
- selection (to choose, without the test split): validation images 3,000-4,999 against the other
  dataset's validation images, those validation images turned by 90/180/270 degrees, rendered
  letters and scribbles of another seed;
- test (to report): ``pipelines.ood_eval``'s sets (2,000 each), plus test images turned by 180 and
  270 degrees, and its capture nuisances on 200 images per set.

    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/orientation_turns.py [--threads 1]

The per-image numbers are cached in ``runs/orientation_turns_<model>.npz`` (about 10 minutes per
model on one thread the first time).
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from inpaint_app.anomaly import _latent_and_bpd, _part_stats, _threshold, png_bits_per_dim
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.data import load_split
from inpaint_app.normalize import normalize_images
from inpaint_app.nuisances import NUISANCES, apply_all
from inpaint_app.ood_metrics import auroc
from inpaint_app.synthetic import rendered_letters, scribbles
from pipelines.ood_eval import OTHER, build_sets, model_inputs

MODELS = {"mnist": "trained/mnist-glow", "fashion-mnist": "trained/fashion-mnist-glow"}
TURN_SETS = ((1, 2, 3), (1, 3), (1,), (3,), (2,))
SELECTION_SEED = 101


def numbers(bundle: ModelBundle, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: bits/dim at each quarter turn, background bits/dim, PNG bits/dim, exemplar."""
    turns, background = [], []
    with torch.inference_mode():
        for batch in x.split(32):
            stacked = torch.cat([torch.rot90(batch, k, (2, 3)) for k in range(4)])
            turns.append(_latent_and_bpd(bundle.model, stacked, 0)[1].view(4, -1).T)
            background.append(_latent_and_bpd(bundle.background, batch, 0)[1])
        exemplar = torch.cat([bundle.exemplars.nearest_distance(b.float() / 255)
                              for b in x.split(128)])
    return {"turns": torch.cat(turns).double().numpy(),
            "bg": torch.cat(background).double().numpy(),
            "png": np.array([png_bits_per_dim(image) for image in x]),
            "ex": exemplar.double().numpy()}


def collect(name: str, bundle: ModelBundle) -> dict[str, np.ndarray]:
    def put(prefix: str, x: torch.Tensor) -> None:
        data.update({f"{prefix}|{k}": v for k, v in numbers(bundle, x).items()})

    recipe = bundle.recipe
    data: dict[str, np.ndarray] = {}
    val = normalize_images(load_split(name, "val"), recipe)
    put("calibration", val[:3000])
    held = val[3000:]
    put("select|in", held)
    put("select|other", normalize_images(load_split(OTHER[name], "val")[:2000], recipe))
    for k in (1, 2, 3):
        put(f"select|turned {90 * k}", torch.rot90(held, k, (2, 3)).contiguous())
    put("select|letters", normalize_images(rendered_letters(2000, SELECTION_SEED), recipe))
    put("select|scribbles", normalize_images(scribbles(2000, SELECTION_SEED), recipe))
    print(name, "selection sets done", flush=True)
    sets = build_sets(name, 2000, None)
    del sets["inverted"]
    test = sets["in"]
    sets["turned 180"] = torch.rot90(test, 2, (2, 3)).contiguous()
    sets["turned 270"] = torch.rot90(test, 3, (2, 3)).contiguous()
    for key, images in sets.items():
        put(f"test|{key}", normalize_images(images, recipe))
    print(name, "test sets done", flush=True)
    for nuisance in NUISANCES:
        for key, images in sets.items():
            if not key.startswith("turned"):
                put(f"{nuisance}|{key}", model_inputs(bundle, apply_all(nuisance, images[:200]),
                                                      True))
        print(name, nuisance, flush=True)
    return data


def verdict(data: dict[str, np.ndarray], turns: tuple[int, ...]):
    """The evidence score with orientation over ``turns``, in units of its 5 % threshold."""
    def parts(prefix: str) -> dict[str, np.ndarray]:
        t = data[f"{prefix}|turns"]
        return {"complexity": t[:, 0] - data[f"{prefix}|png"],
                "orientation": t[:, 0] - t[:, list(turns)].min(1),
                "exemplar_distance": data[f"{prefix}|ex"],
                "likelihood_ratio": t[:, 0] - data[f"{prefix}|bg"]}

    stats = {k: _part_stats(v) for k, v in parts("calibration").items()}

    def score(prefix: str) -> np.ndarray:
        p = parts(prefix)
        return np.sum([np.clip((p[k] - s["median"]) / s["spread_above"], 0, None)
                       for k, s in stats.items()], 0)

    threshold = _threshold(score("calibration"), 0.05)
    return lambda prefix: score(prefix) / threshold


def table(data: dict[str, np.ndarray], split: str) -> None:
    outs = sorted({k.split("|")[1] for k in data if k.startswith(f"{split}|")} - {"in"})
    print(f"| turns | flagged in | {' | '.join(outs)} | worst |")
    print("|---|---:|" + "---:|" * (len(outs) + 1))
    for turns in TURN_SETS:
        score = verdict(data, turns)
        inside = score(f"{split}|in")
        aurocs = [auroc(inside, score(f"{split}|{o}")) for o in outs]
        print(f"| {', '.join(str(90 * k) for k in turns)} | {np.mean(inside > 1):.1%} | "
              + " | ".join(f"{a:.3f}" for a in aurocs) + f" | {min(aurocs):.3f} |")


def nuisance_table(data: dict[str, np.ndarray]) -> None:
    print("| turns | nuisance | flagged | worst AUROC | against |")
    print("|---|---|---:|---:|---|")
    for turns in TURN_SETS:
        score = verdict(data, turns)
        for nuisance in NUISANCES:
            inside = score(f"{nuisance}|in")
            outs = {k.split("|")[1] for k in data if k.startswith(f"{nuisance}|")} - {"in"}
            aurocs = {o: auroc(inside, score(f"{nuisance}|{o}")) for o in outs}
            worst = min(aurocs, key=aurocs.get)
            print(f"| {', '.join(str(90 * k) for k in turns)} | {nuisance} | "
                  f"{np.mean(inside > 1):.1%} | {aurocs[worst]:.3f} | {worst} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        cache = Path(f"runs/orientation_turns_{name}.npz")
        if cache.is_file():
            data = dict(np.load(cache))
        else:
            data = collect(name, load_bundle(MODELS[name]))
            cache.parent.mkdir(exist_ok=True)
            np.savez(cache, **data)
        for split in ("select", "test"):
            print(f"\n### {name}, {split} (AUROC of evidence against each set)\n")
            table(data, split)
        print(f"\n### {name}, capture nuisances (200 test images per set)\n")
        nuisance_table(data)


if __name__ == "__main__":
    main()
