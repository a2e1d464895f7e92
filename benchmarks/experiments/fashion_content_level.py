"""The shipped Fashion-MNIST model's flag rate at its calibrated threshold, on 1,000 test
items under each capture nuisance, with the framing's content level at 5, 10, 15 and 20 % of the
brightest pixel (docs/anomaly.md, "Preprocessing").

    FLOWPAINT_DATA=../shared/data python benchmarks/experiments/fashion_content_level.py

About 10 minutes on 2 threads. The threshold is the one in the model's card, so the rows compare
framings, not calibrations.
"""

import dataclasses

import torch

from inpaint_app.anomaly import base_scores, scores_from_base
from inpaint_app.bundle import load_bundle
from inpaint_app.normalize import RECIPES, fit_input
from inpaint_app.nuisances import apply_all
from pipelines.ood_eval import build_sets

N = 1000
NUISANCES = ("none", "JPEG quality 75", "shifted 1 px", "shifted 2 px", "blur 0.5 px",
             "upscaled to 400 px")

torch.set_num_threads(2)
bundle = load_bundle("trained/fashion-mnist-glow")
calibration = bundle.calibration
threshold = calibration["scores"]["evidence"]["threshold"]
items = build_sets("fashion-mnist", N, None)["in"][:N]
for nuisance in NUISANCES:
    uploads = apply_all(nuisance, items)
    for level in (0.05, 0.1, 0.15, 0.2):
        recipe = dataclasses.replace(RECIPES["fashion-mnist"], content_level=level)
        x = torch.stack([fit_input(u, bundle.image_shape, recipe)[0] for u in uploads])
        evidence = scores_from_base(base_scores(bundle, x), calibration)["evidence"]
        print(f"{nuisance:20s} level {level:.2f}  flagged {(evidence > threshold).mean():6.1%}",
              flush=True)
