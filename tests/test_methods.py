"""The method registry (``inpaint_app.methods``): one name per algorithm, ``default`` an alias
that says which one it ran, and the app, the command and the card all reading the same list."""

from __future__ import annotations

import pytest
import torch

from inpaint_app import algorithms
from inpaint_app.card import ModelCard
from inpaint_app.inpainting import inpaint
from inpaint_app.masks import make_mask
from inpaint_app.methods import (
    CHOICES,
    DEFAULT,
    METHODS,
    NO_CONDITIONAL,
    available,
    describe_default,
    resolve,
)
from inpaint_app.models import build_model


@pytest.fixture(scope="module")
def glow() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 8, 8), hidden=8, steps=2)
    with torch.no_grad():
        model.log_prob(torch.rand(16, 1, 8, 8) * 0.9 + 0.05)  # ActNorm init
    return model.eval()


def test_default_is_an_alias_for_the_bundles_best() -> None:
    assert resolve(DEFAULT, has_conditional=True) == "conditional"
    assert resolve(DEFAULT, has_conditional=False) == "ascent"
    assert all(resolve(name, has_conditional=False) == name for name in METHODS)
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        resolve("magic", has_conditional=True)
    assert CHOICES == (DEFAULT, *METHODS) and DEFAULT not in METHODS
    assert available(False) == ("ascent", "exemplar", "nice", "langevin")
    assert available(True) == tuple(METHODS)


def test_every_method_names_its_model_and_its_algorithm() -> None:
    assert METHODS["conditional"].run is algorithms.sample_conditional
    assert METHODS["ascent"].run is algorithms.ascend_adam
    assert METHODS["nice"].run is algorithms.ascend_nice
    assert "NICE sec. 5.2" in METHODS["ascent"].summary
    assert "conditional flow" in METHODS["conditional"].summary
    for method in METHODS.values():
        assert method.summary and method.label.split(":")[0].lower() in (method.name, "nice")


def test_the_fallback_says_what_ran(glow) -> None:
    image = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))
    mask = make_mask("bottom", (8, 8))
    fallback = inpaint(glow, image, mask, seed=0)
    ascent = inpaint(glow, image, mask, method="ascent", seed=0)
    assert fallback.method == ascent.method == "ascent"
    assert torch.equal(fallback.image, ascent.image) and fallback.steps == 10
    assert NO_CONDITIONAL in fallback.message and NO_CONDITIONAL not in ascent.message
    with pytest.raises(ValueError, match="needs a conditional inpainting flow"):
        inpaint(glow, image, mask, method="conditional")


def test_the_card_line_says_what_default_runs() -> None:
    assert describe_default(None).startswith("default = **ascent**")
    assert "inpainter.pt" in describe_default(None)
    card = ModelCard(inpainting={"samples": 4, "temperature": 0.7, "ascent_steps": 0})
    line = describe_default(card)
    assert line.startswith("default = **conditional**: 4 samples") and "temperature 0.7" in line


def test_the_command_and_the_app_offer_the_registry() -> None:
    from inpaint_app.app.cards import card_markdown
    from pipelines.inpaint_batch import parse_args

    args = ["--checkpoint", "c", "--images", "i", "--mask-preset", "top", "--out", "o"]
    assert parse_args(args).method == DEFAULT
    for name in CHOICES:
        assert parse_args([*args, "--method", name]).method == name
    markdown = card_markdown("m", ModelCard(), (1, 8, 8), inpainting=describe_default(None))
    assert "- **inpainting**: default = **ascent**" in markdown
