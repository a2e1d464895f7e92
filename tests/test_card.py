"""The model card (``inpaint_app.card``) and the bundle (``inpaint_app.bundle``): one schema read
and written in one place, measurements as fields (their sentences rendered, never parsed), and
everything that ships beside a checkpoint carried by ``load_bundle``, not attached to the model."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inpaint_app.bundle import ModelBundle, as_bundle, load_bundle
from inpaint_app.card import Measurement, ModelCard
from inpaint_app.conditional import ConditionalInpainter
from inpaint_app.density import DensityModel
from inpaint_app.exemplars import BANK_FILE, save_bank
from inpaint_app.models import (
    BACKGROUND_FILE,
    INPAINTER_FILE,
    CheckpointError,
    build_model,
    load_model,
    read_card,
    save_model,
)

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 8, 8)
ATTACHED = ("exemplars", "background", "inpainters", "inpainter", "card")


def full_card() -> ModelCard:
    return ModelCard(
        name="tiny-glow", dataset="mnist", model="glow", image_shape=(1, 28, 28),
        hparams={"steps": 2, "hidden": 16}, parameters=1234,
        val=Measurement(1.5, images=256, subset="first"),
        test=Measurement(1.4, images=10000, stderr=0.003, seed=0,
                         command="python -m pipelines.evaluate runs/x/model.pt"),
        training_minutes=12.5, hardware="1 process(es) x 1 CPU thread(s), x86_64",
        command="python -m pipelines.train --model glow", commit="abc1234",
        date="2026-11-26T06:01:11+00:00",
        history=({"epoch": 1, "val_bpd": 1.6}, {"epoch": 2, "val_bpd": 1.5}),
        init_from={"checkpoint": "runs/a/model.pt", "training_minutes": 30.0},
        anomaly={"default_score": "evidence"}, exemplars={"images": 40},
        notes={"gpu_run": {"recipe": {"limit_val": 256}}, "brought_home": {"files": ["a.pt"]},
               "precision_note": "weights travelled as bfloat16"})


def test_a_card_round_trips_through_its_dict_and_json() -> None:
    card = full_card()
    data = card.to_dict()
    assert ModelCard.from_dict(data) == card
    assert ModelCard.from_dict(json.loads(json.dumps(data))) == card  # tuples come back
    # measurements are flat keys, with a rendered sentence beside them
    assert {k: data[k] for k in ("test_bpd", "test_images", "test_subset", "test_seed",
                                 "test_bpd_stderr", "test_command")} == {
        "test_bpd": 1.4, "test_images": 10000, "test_subset": "all", "test_seed": 0,
        "test_bpd_stderr": 0.003, "test_command": "python -m pipelines.evaluate runs/x/model.pt"}
    assert data["test_measured"] == ("python -m pipelines.evaluate runs/x/model.pt: mean over all "
                                     "10,000 test images, one uniform dequantization sample "
                                     "each, seed 0")
    assert (data["val_images"], data["val_subset"]) == (256, "first")
    assert "the first 256 held-out training images" in data["val_measured"]
    assert "val_command" not in data and "val_bpd_stderr" not in data  # absent stays absent
    # keys the card does not model are kept verbatim, at the top level where they were
    assert {k: data[k] for k in card.notes} == card.notes
    assert "notes" not in data and "val" not in data and "test" not in data
    assert (card.val_bpd, card.test_bpd) == (1.5, 1.4)
    assert ModelCard.from_dict(None) == ModelCard() and ModelCard().to_dict() == {}


def test_a_measurement_sentence_is_rendered_from_the_fields_and_never_parsed() -> None:
    data = full_card().to_dict()
    data["test_measured"] = "mean over a random subset of 7 test images"  # contradicts the fields
    card = ModelCard.from_dict(data)
    assert (card.test.images, card.test.subset, card.test.text) == (10000, "all", None)
    assert card.to_dict()["test_measured"] == full_card().to_dict()["test_measured"]
    random = Measurement(3.0, images=2000, subset="random", seed=1)
    assert random.describe("test") == ("mean over a random subset of 2,000 test images, one "
                                       "uniform dequantization sample each, seed 1")
    conditional = Measurement(0.9, images=500, subset="first", per_missing_dim=True)
    assert "bits per missing dim" in conditional.describe("val")
    saved = ModelCard(val=conditional).to_dict()
    assert saved["val_per_missing_dim"] is True
    assert ModelCard.from_dict(saved).val == conditional
    with pytest.raises(ValueError, match="subset"):
        Measurement(1.0, images=10, subset="some")


def test_a_pre_schema_card_keeps_its_sentence_for_display_only() -> None:
    sentence = "python -m pipelines.evaluate x: mean over all 10000 test images, seed 0"
    old = {"dataset": "mnist", "test_bpd": 1.404, "test_bpd_stderr": 0.0029,
           "test_measured": sentence, "val_bpd": 1.42,
           "val_measured": "mean over the 5,000 held-out training images"}
    card = ModelCard.from_dict(old)
    assert card.test == Measurement(1.404, images=None, stderr=0.0029, text=sentence)
    assert card.test.describe("test") == sentence  # shown as it is; nothing read out of it
    assert card.val.images is None and card.val.subset == "all" and card.val_bpd == 1.42
    saved = card.to_dict()
    assert saved == old  # re-saved as it was: no images, subset or seed it never recorded
    again = ModelCard.from_dict(json.loads(json.dumps(saved)))
    assert again == card and again.to_dict()["test_measured"] == sentence
    assert ModelCard.from_dict({"val_bpd": 2.0}).to_dict() == {"val_bpd": 2.0}
    assert ModelCard(val=Measurement(2.0, images=None)).val.describe("val") == "not recorded"


def test_cards_are_values() -> None:
    card = full_card()
    later = card.replace(test=None, anomaly={"default_score": "bpd"})
    assert card.test_bpd == 1.4 and card.anomaly == {"default_score": "evidence"}
    assert later.test_bpd is None and "test_bpd" not in later.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"  # type: ignore[misc]


def test_save_model_writes_the_card_and_read_card_reads_it(tmp_path: Path) -> None:
    model = build_model("glow", image_shape=SHAPE, steps=1, hidden=4)
    card = full_card().replace(image_shape=SHAPE)
    save_model(model, tmp_path / "model.pt", card=card)
    assert read_card(tmp_path) == card and read_card(tmp_path / "model.pt") == card
    assert json.loads((tmp_path / "card.json").read_text()) == card.to_dict()
    save_model(model, tmp_path / "model.pt", card=card.to_dict())  # a dict reads as a card
    assert read_card(tmp_path) == card
    save_model(model, tmp_path / "model.pt")
    assert read_card(tmp_path) == ModelCard()


def _image_model(seed: int = 0) -> DensityModel:
    torch.manual_seed(seed)
    model = build_model("glow", image_shape=SHAPE, steps=2, hidden=8)
    with torch.no_grad():
        model.log_prob(torch.rand(16, *SHAPE) * 0.9 + 0.05)  # ActNorm init
    return model.eval()


def _folder(tmp_path: Path) -> Path:
    """A trained/-like folder: model.pt and card, exemplar bank, background, inpainter."""
    folder = tmp_path / "tiny-glow"
    save_model(_image_model(), folder / "model.pt",
               card=ModelCard(name="tiny-glow", dataset="noise", model="glow",
                              anomaly={"default_score": "complexity"}))
    save_bank(torch.randint(0, 256, (12, *SHAPE), dtype=torch.uint8), folder / BANK_FILE)
    save_model(_image_model(1), tmp_path / "bg" / "model.pt", card={"perturb": 0.2})
    shutil.copy(tmp_path / "bg" / "model.pt", folder / BACKGROUND_FILE)
    save_model(build_model("cflow", SHAPE, steps=2, hidden=8, features=4, width=8),
               folder / INPAINTER_FILE, card={"dataset": "noise", "inpainting": {"samples": 3}})
    return folder


def test_load_bundle_carries_what_ships_beside_the_model(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    bundle = load_bundle(folder)
    assert isinstance(bundle.model, DensityModel) and bundle.path == folder / "model.pt"
    assert (bundle.card.name, bundle.dataset, bundle.image_shape) == ("tiny-glow", "noise", SHAPE)
    assert bundle.calibration == {"default_score": "complexity"}
    assert len(bundle.exemplars) == 12
    assert isinstance(bundle.background, DensityModel)
    assert isinstance(bundle.inpainter, ConditionalInpainter)
    assert bundle.inpainter_card.inpainting == {"samples": 3}
    for part in (bundle.model, bundle.background, bundle.inpainter):  # served: frozen, eval
        assert not part.training and not any(p.requires_grad for p in part.parameters())
    with pytest.raises(dataclasses.FrozenInstanceError):
        bundle.exemplars = None  # type: ignore[misc]
    # the bare model has none of it attached, and its weights are the same
    bare = load_model(folder)
    assert not any(hasattr(bare, name) for name in ATTACHED)
    assert not any(hasattr(bundle.model, name) for name in ATTACHED)
    assert all(torch.equal(a, b) for a, b in zip(bare.state_dict().values(),
                                                 bundle.model.state_dict().values(), strict=True))
    # a model alone in its folder: nothing beside it, an empty inpainter card
    alone = load_bundle(tmp_path / "bg")
    assert (alone.exemplars, alone.background, alone.inpainter) == (None, None, None)
    assert alone.inpainter_card == ModelCard() and alone.card.perturb == 0.2
    # the background file loaded as a model of its own is not its own background
    assert load_bundle(folder / BACKGROUND_FILE).background is None


def test_as_bundle_and_load_bundle_refusals(tmp_path: Path) -> None:
    model = _image_model()
    bundle = as_bundle(model)
    assert isinstance(bundle, ModelBundle) and bundle.model is model
    assert bundle.card == ModelCard() and bundle.calibration is None and bundle.dataset is None
    assert as_bundle(bundle) is bundle
    with pytest.raises(TypeError, match="ModelBundle or DensityModel"):
        as_bundle("trained/mnist-glow")  # type: ignore[arg-type]
    save_model(build_model("cflow", SHAPE, steps=2, hidden=8, features=4, width=8),
               tmp_path / "cflow" / "model.pt")
    with pytest.raises(CheckpointError, match="is a conditional inpainting model, not an image "
                                              "model"):
        load_bundle(tmp_path / "cflow")
    with pytest.raises(CheckpointError, match="not found"):
        load_bundle(tmp_path / "nothing")


def test_loading_a_model_imports_no_scikit_image(tmp_path: Path) -> None:
    """load_model (and load_bundle, exemplar bank included) stay light: scikit-image is needed
    only to fill holes."""
    folder = _folder(tmp_path)
    code = ("import sys\n"
            "from inpaint_app.models import load_model\n"
            f"load_model({str(folder)!r})\n"
            "assert 'skimage' not in sys.modules, 'load_model imported skimage'\n"
            "from inpaint_app.bundle import load_bundle\n"
            f"assert load_bundle({str(folder)!r}).exemplars is not None\n"
            "assert 'skimage' not in sys.modules, 'load_bundle imported skimage'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
