"""Can the MNIST verdict read two densities, the shipped Glow A and the capture-trained
Glow B, and keep A's clean AUROCs with B's flag rates? (docs/anomaly.md, "Training on captured
images"). It cannot: the table there comes from this script.

    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/mnist_two_densities.py

Needs B and its background, which are not shipped: ``runs/mnist-glow-capture-cpu/model.pt`` and
``runs/mnist-background-capture/model.pt`` (``pipelines/configs/mnist-glow-capture-cpu.json`` and
``mnist-background.json`` with ``--capture 1``). The per-image bits/dim (each image and its three
quarter turns under A and B, both backgrounds, PNG bits/dim, exemplar distance) are computed once,
about 3 minutes on 2 threads, and cached in ``runs/mnist_two_densities.npz``. Every verdict below
uses the same parts and rule as ``evidence``, calibrated at 5 % on 2,000 normalized validation
images; 200 test images per set and nuisance.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from inpaint_app.anomaly import _latent_and_bpd, _part_stats, _threshold, png_bits_per_dim
from inpaint_app.bundle import load_bundle
from inpaint_app.data import load_split
from inpaint_app.models import load_model
from inpaint_app.normalize import normalize_images
from inpaint_app.nuisances import NUISANCES, apply_all
from inpaint_app.ood_metrics import auroc
from pipelines.ood_eval import build_sets, model_inputs

CACHE = Path("runs/mnist_two_densities.npz")
D = 28 * 28
OUT_SETS = ("letters", "scribbles", "rotated", "other", "noise", "constant")


def collect() -> dict[str, np.ndarray]:
    shipped = load_bundle("trained/mnist-glow")
    models = {"A": shipped.model, "B": load_model("runs/mnist-glow-capture-cpu/model.pt"),
              "bgA": shipped.background,
              "bgB": load_model("runs/mnist-background-capture/model.pt")}

    def numbers(x: torch.Tensor) -> dict[str, np.ndarray]:
        out = {}
        with torch.inference_mode():
            for name, model in models.items():
                turns = 1 if name.startswith("bg") else 4
                chunks = []
                for batch in x.split(64):
                    stacked = torch.cat([torch.rot90(batch, k, (2, 3)) for k in range(turns)])
                    chunks.append(_latent_and_bpd(model, stacked, 0)[1].view(turns, -1).T)
                out[name] = torch.cat(chunks).double().numpy()
        out["png"] = np.array([png_bits_per_dim(image) for image in x])
        out["ex"] = torch.cat([shipped.exemplars.nearest_distance(b.float() / 255)
                               for b in x.split(64)]).double().numpy()
        return out

    data = {f"val|{k}": v for k, v in numbers(
        normalize_images(load_split("mnist", "val")[:2000], shipped.recipe)).items()}
    sets = build_sets("mnist", 200, None)
    for nuisance in NUISANCES:
        for key, images in sets.items():
            if key != "inverted":
                x = model_inputs(shipped, apply_all(nuisance, images[:200]), True)
                data.update({f"{nuisance}|{key}|{k}": v for k, v in numbers(x).items()})
        print(nuisance, flush=True)
    CACHE.parent.mkdir(exist_ok=True)
    np.savez(CACHE, **data)
    return data


def mixture(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits/dim of the mixture (p_a + p_b) / 2, from bits/dim a and b of D dimensions."""
    low = np.minimum(a, b)
    return low - np.log2(0.5 * 2.0 ** (-D * (a - low)) + 0.5 * 2.0 ** (-D * (b - low))) / D


DENSITIES = {  # name: (bits/dim of the image and its turns, background bits/dim)
    "A (shipped)": lambda r: (r["A"], r["bgA"][:, 0]),
    "B, A's background": lambda r: (r["B"], r["bgA"][:, 0]),
    "B, B's background": lambda r: (r["B"], r["bgB"][:, 0]),
    "mixture, A's background": lambda r: (mixture(r["A"], r["B"]), r["bgA"][:, 0]),
}


def parts(r: dict[str, np.ndarray], density: str, ratio_only: bool) -> dict[str, np.ndarray]:
    """The evidence parts; ``ratio_only``: the density in the likelihood ratio, A elsewhere."""
    flow, background = DENSITIES[density](r)
    own = r["A"] if ratio_only else flow
    return {"complexity": own[:, 0] - r["png"], "orientation": own[:, 0] - own[:, 1:].min(1),
            "exemplar_distance": r["ex"], "likelihood_ratio": flow[:, 0] - background}


def evidence(density: str, ratio_only: bool, val: dict) -> Callable:
    """The verdict in units of its 5 % validation threshold."""
    stats = {k: _part_stats(v) for k, v in parts(val, density, ratio_only).items()}

    def score(r: dict[str, np.ndarray]) -> np.ndarray:
        p = parts(r, density, ratio_only)
        return np.sum([np.clip((p[k] - s["median"]) / s["spread_above"], 0, None)
                       for k, s in stats.items()], 0)

    threshold = _threshold(score(val), 0.05)
    return lambda r: score(r) / threshold


def report(name: str, verdict: Callable, get: Callable) -> None:
    print(f"== {name}")
    for nuisance in NUISANCES:
        inside = verdict(get(f"{nuisance}|in"))
        aurocs = " ".join(f"{o[:4]} {auroc(inside, verdict(get(f'{nuisance}|{o}'))):.3f}"
                          for o in OUT_SETS)
        print(f"  {nuisance:20s} flagged {np.mean(inside > 1):6.1%}  {aurocs}")


def main() -> None:
    torch.set_num_threads(2)
    raw = dict(np.load(CACHE)) if CACHE.is_file() else collect()

    def get(prefix: str) -> dict[str, np.ndarray]:
        return {k: raw[f"{prefix}|{k}"] for k in ("A", "B", "bgA", "bgB", "png", "ex")}

    val = get("val")
    for density in DENSITIES:
        report(density, evidence(density, False, val), get)
    report("B in the likelihood ratio only", evidence("B, A's background", True, val), get)
    verdict_a = evidence("A (shipped)", False, val)
    verdict_b = evidence("B, A's background", False, val)
    for cut in (0.1, 0.2, 0.4):  # a capture detector: B explains the image better than A
        def routed(r: dict[str, np.ndarray], cut: float = cut) -> np.ndarray:
            return np.where(r["A"][:, 0] - r["B"][:, 0] > cut, verdict_b(r), verdict_a(r))
        threshold = _threshold(routed(val), 0.05)
        report(f"A's verdict, or B's where bpd_A - bpd_B > {cut}",
               lambda r, f=routed, t=threshold: f(r) / t, get)


if __name__ == "__main__":
    main()
