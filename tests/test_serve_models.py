"""``serve --models DIR``: every bundle of a models folder that loads is offered, each bad one is
skipped with its reason (listed on the Models tab), and a bundle's own examples select it."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
import torch

from inpaint_app.__main__ import main
from inpaint_app.app import create_app
from inpaint_app.app.handlers import Handlers
from inpaint_app.app.registry import ModelCache, checkpoints_for
from inpaint_app.images import save_png
from inpaint_app.models import build_model, save_model

SHAPE = (1, 8, 8)


def _glow(shape: tuple[int, int, int] = SHAPE) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("glow", shape, steps=1, hidden=8).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One good bundle with two examples, and four bad ones."""
    root = tmp_path_factory.mktemp("models")
    save_model(_glow(), root / "good" / "model.pt", {"dataset": "dots"})
    (root / "good" / "examples").mkdir()
    for i in range(2):
        save_png(torch.full(SHAPE, 40 * i, dtype=torch.uint8), root / "good" / "examples"
                 / f"val-{i}.png")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "model.pt").write_bytes(b"not a checkpoint")
    save_model(_glow(), root / "mismatched" / "model.pt")
    save_model(_glow((1, 4, 4)), root / "mismatched" / "background.pt")
    save_model(build_model("cflow", SHAPE, steps=1, hidden=8), root / "conditional" / "model.pt")
    save_model(_glow(), root / "bad-recipe" / "model.pt", {"input_recipe": "sepia"})
    (root / "notes").mkdir()  # a folder without model.pt: not a bundle, not listed
    return root


@pytest.fixture(scope="module")
def handlers(models: Path) -> Handlers:
    return Handlers(ModelCache.survey(*checkpoints_for(None, models)))


def test_good_bundles_are_offered_and_bad_ones_skipped_with_why(handlers: Handlers) -> None:
    cache = handlers.cache
    assert cache.names == ["good"] and cache.default == "good" and cache.loads == 1
    assert set(cache.skipped) == {"corrupt", "mismatched", "conditional", "bad-recipe"}
    assert "not a safe flowpaint checkpoint" in cache.skipped["corrupt"]
    assert "background.pt models images of shape (1, 4, 4)" in cache.skipped["mismatched"]
    assert "conditional inpainting model" in cache.skipped["conditional"]
    assert "unknown input recipe 'sepia'" in cache.skipped["bad-recipe"]
    listed = handlers.skipped()
    assert all(f"**{name}**" in listed for name in cache.skipped) and "good" not in listed
    with pytest.raises(gr.Error, match="unknown model"):
        cache.get("corrupt")


def test_a_bundles_examples_select_it(handlers: Handlers, models: Path) -> None:
    assert [(example.path, model) for example, model in handlers.examples] == [
        (models / "good" / "examples" / f"val-{i}.png", "good") for i in range(2)]
    chosen, mask, note, *_ = handlers.example(gr.SelectData(None, {"index": 1, "value": None}))
    assert (chosen, mask) == ("good", "center") and "val-1.png" in note  # nothing said of it
    assert "validation images" in note


def test_the_models_tab_lists_the_skipped(models: Path) -> None:
    demo = create_app(root=models)
    texts = [block.value for block in demo.blocks.values()
             if isinstance(block, gr.Markdown) and block.elem_id == "skipped-models"]
    assert len(texts) == 1 and "**corrupt**" in texts[0] and "Not offered" in texts[0]


def test_a_checkpoint_must_load_and_a_folder_must_hold_one(models: Path, tmp_path: Path
                                                           ) -> None:
    with pytest.raises(SystemExit, match="cannot load .*corrupt"):
        main(["serve", "--models", str(models), "--checkpoint", str(models / "corrupt")])
    with pytest.raises(SystemExit, match="no models under"):
        main(["serve", "--models", str(tmp_path)])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="no usable model.*broken"):
        main(["serve", "--models", str(tmp_path)])
