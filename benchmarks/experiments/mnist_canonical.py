"""A canonical MNIST verdict. Every image, training and scored alike, is binarized at
127 and blurred by 0.6 px before the flow sees it, so that resampling, JPEG and blur leave less
to tell apart; a Glow (warm-started from the shipped one) and a background flow are trained on
such images. Does the evidence verdict then keep A's clean AUROCs with robust flag rates?
It does not (docs/anomaly.md, "A canonical MNIST verdict"); the table there comes from this
script.

    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/mnist_canonical.py train \\
        --config pipelines/configs/mnist-glow-capture-cpu.json --capture 0 \\
        --out runs/mnist-canon --max-minutes 55 --keep last          # 55 min, one thread
    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/mnist_canonical.py train \\
        --config pipelines/configs/mnist-background.json --out runs/mnist-canon-background
    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/mnist_canonical.py evaluate \\
        runs/mnist-canon/model.pt runs/mnist-canon-background/model.pt [--threads 2]

``train`` is ``pipelines.train`` with its training and validation images made canonical.
``evaluate`` calibrates both verdicts (the shipped bundle A on normalized images, the canonical
pair C on canonical normalized images; same parts and rule as ``evidence``, exemplar bank made
canonical too) at 5 % on 2,000 validation images, and scores 200 test images per set and
capture nuisance, as ``pipelines.ood_eval``'s nuisance section does (about 10 minutes). Then
a router: C's verdict where A's bits/dim exceeds C's by more than ``ROUTE_CUT`` (a captured
image costs A far more than C: median 3.9 bits/dim under JPEG, 0.4 on clean digits), A's
elsewhere, recalibrated at 5 %.
"""

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

from inpaint_app.anomaly import _latent_and_bpd, _part_stats, _threshold, png_bits_per_dim
from inpaint_app.bundle import load_bundle
from inpaint_app.data import load_split
from inpaint_app.density import DensityModel
from inpaint_app.models import load_model
from inpaint_app.normalize import normalize_images
from inpaint_app.nuisances import NUISANCES, apply_all
from inpaint_app.ood_metrics import auroc
from pipelines.ood_eval import build_sets, model_inputs

LEVEL, RADIUS = 127, 0.6
OUT_SETS = ("letters", "scribbles", "rotated", "other", "noise", "constant")
ROUTE_CUT = 0.7  # bits/dim; the validation digits' 99th percentile of bpd_A - bpd_C is 0.73


def canonical(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 1, H, W]``: ink where a pixel is above ``LEVEL``, then a Gaussian blur."""
    out = []
    for image in images:
        ink = Image.fromarray((image[0].numpy() > LEVEL).astype(np.uint8) * 255)
        out.append(torch.from_numpy(np.asarray(ink.filter(ImageFilter.GaussianBlur(RADIUS)))
                                    .copy())[None])
    return torch.stack(out)


def train(argv: list[str]) -> None:
    import pipelines.train as training

    load = training.load_data

    def canonical_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
        images, val = load(args)
        return canonical(images), canonical(val)

    training.load_data = canonical_data
    training.main(argv)


def evaluate(flow: str, background: str) -> None:
    shipped = load_bundle("trained/mnist-glow")
    canon_flow, canon_background = load_model(flow), load_model(background)
    rows = (shipped.exemplars.rows.view(-1, 1, 28, 28) * 255).round().to(torch.uint8)
    canon_bank = canonical(rows).flatten(1).float() / 255

    def nearest(bank: torch.Tensor, x: torch.Tensor) -> np.ndarray:
        flat = x.flatten(1).float() / 255
        squared = flat.square().sum(1, keepdim=True) - 2 * flat @ bank.T + bank.square().sum(1)
        return (squared.min(1).values.clamp(min=0) / flat.shape[1]).double().numpy()

    def turns(model: DensityModel, x: torch.Tensor, count: int) -> np.ndarray:
        with torch.inference_mode():
            chunks = [_latent_and_bpd(model, torch.cat([torch.rot90(b, k, (2, 3))
                                                        for k in range(count)]), 0)[1]
                      .view(count, -1).T for b in x.split(64)]
        return torch.cat(chunks).double().numpy()

    def parts(x: torch.Tensor) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for name, model, bg, images, bank in (
                ("A", shipped.model, shipped.background, x, shipped.exemplars.rows),
                ("C", canon_flow, canon_background, canonical(x), canon_bank)):
            bpd = turns(model, images, 4)
            out[name] = {"complexity": bpd[:, 0] - np.array([png_bits_per_dim(i)
                                                              for i in images]),
                         "orientation": bpd[:, 0] - bpd[:, 1:].min(1),
                         "exemplar_distance": nearest(bank, images),
                         "likelihood_ratio": bpd[:, 0] - turns(bg, images, 1)[:, 0]}
            out[f"bpd {name}"] = {"bpd": bpd[:, 0]}
        return out

    val = parts(normalize_images(load_split("mnist", "val")[:2000], shipped.recipe))
    sets = build_sets("mnist", 200, None)
    scored = {(nuisance, key): parts(model_inputs(shipped, apply_all(nuisance, images[:200]),
                                                  True))
              for nuisance in NUISANCES for key, images in sets.items() if key != "inverted"}
    own = {name: _verdict(val[name]) for name in ("A", "C")}
    verdicts = {name: (lambda p, name=name: own[name](p[name])) for name in own}

    def routed_raw(p: dict) -> np.ndarray:
        captured = p["bpd A"]["bpd"] - p["bpd C"]["bpd"] > ROUTE_CUT
        return np.where(captured, verdicts["C"](p), verdicts["A"](p))

    threshold = _threshold(routed_raw(val), 0.05)
    verdicts[f"router at {ROUTE_CUT}"] = lambda p: routed_raw(p) / threshold
    for name, verdict in verdicts.items():
        print(f"\n{name}: flag rate on 200 test digits and AUROC against each set")
        for nuisance in NUISANCES:
            inside = verdict(scored[nuisance, "in"])
            aurocs = " ".join(f"{o} {auroc(inside, verdict(scored[nuisance, o])):.3f}"
                              for o in OUT_SETS)
            print(f"  {nuisance:20s} flagged {np.mean(inside > 1):6.1%}  {aurocs}")


def _verdict(val: dict[str, np.ndarray]) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """``evidence``'s rule calibrated on ``val``, in units of its 5 % threshold."""
    stats = {k: _part_stats(v) for k, v in val.items()}

    def score(p: dict[str, np.ndarray]) -> np.ndarray:
        return np.sum([np.clip((p[k] - s["median"]) / s["spread_above"], 0, None)
                       for k, s in stats.items()], 0)

    threshold = _threshold(score(val), 0.05)
    return lambda p: score(p) / threshold


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "train":
        return train(sys.argv[2:])
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["evaluate"])
    p.add_argument("flow")
    p.add_argument("background")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    evaluate(args.flow, args.background)


if __name__ == "__main__":
    main()
