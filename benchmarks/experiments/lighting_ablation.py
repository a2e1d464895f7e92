"""What the input normalization's page steps earn on photos of digits on unevenly lit paper.

    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/lighting_ablation.py

500 MNIST test digits photographed on paper (``inpaint_app.nuisances.photographed``: a linear
light fall-off of 0-120 grey levels across the page, grain, lens blur, JPEG q90), scored by the
MNIST verdict as ``score_batch`` does, with the flattening and without it (``UNEVEN_LEVELS``
out of reach). Clearing the page's grain (every pixel within three robust deviations of the
ring's noise) was measured here too and removed: it raised the flag rate at every fall-off
(2.2-3.6 % against 0.4-0.8 % without it, 500 digits each).
"""

import os

import numpy as np
import torch

import inpaint_app.normalize as normalize
from inpaint_app.bundle import load_bundle
from inpaint_app.data import load_split
from inpaint_app.nuisances import photographed
from inpaint_app.uploads import prepare_upload, score_uploads

FALLOFFS = (0, 20, 40, 60, 80, 100, 120)


def flagged(bundle, digits: torch.Tensor, level: int) -> float:
    shot = photographed(level)
    rows = score_uploads(bundle, [prepare_upload(shot(x, i), bundle)
                                  for i, x in enumerate(digits)])
    return float(np.mean([r["flag"] for r in rows]))


def main() -> None:
    torch.set_num_threads(1)
    bundle = load_bundle("trained/mnist-glow")
    test = load_split("mnist", "test", os.environ.get("FLOWPAINT_DATA", "data"))
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))[:500]
    digits = test[order]
    variants = {"as shipped": {}, "without flattening": {"UNEVEN_LEVELS": 1e9}}
    print("| fall-off (grey levels) | " + " | ".join(variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    rates = {}
    for name, change in variants.items():
        normalize.UNEVEN_LEVELS = change.get("UNEVEN_LEVELS", 12)
        rates[name] = [flagged(bundle, digits, level) for level in FALLOFFS]
    for i, level in enumerate(FALLOFFS):
        print(f"| {level} | " + " | ".join(f"{rates[n][i]:.1%}" for n in variants) + " |")


if __name__ == "__main__":
    main()
