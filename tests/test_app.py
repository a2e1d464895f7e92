"""The web app's handlers, model cache, command line and API (through ``gradio_client``).

Handlers run on a tiny untrained Glow over 8x8 images, calibrated on random images, so every
test is fast; the API test starts the real server on a free loopback port.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio.components.image_editor import EditorData
from gradio.data_classes import FileData
from PIL import Image, ImageFont

from inpaint_app.__main__ import main
from inpaint_app.anomaly import DEFAULT_SCORE, calibrate
from inpaint_app.app import create_app, launch_kwargs
from inpaint_app.app.handlers import (
    DEFAULT_MASK,
    DISPLAY_SIDE,
    MAX_FILES,
    TABLE_COLUMNS,
    Handlers,
    painted_mask,
)
from inpaint_app.app.layout import check_sizes
from inpaint_app.app.pictures import mark_layout
from inpaint_app.app.registry import DEFAULT_MODEL, ModelCache, checkpoints_for, discover
from inpaint_app.app.wording import plain_verdict
from inpaint_app.bundle import ModelBundle
from inpaint_app.masks import MASK_PRESETS
from inpaint_app.models import CheckpointError, build_model, save_model
from inpaint_app.normalize import RECIPES

SHAPE = (1, 8, 8)
# Gradio's queue calls pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting",
                                        "ignore:The copy keyword is deprecated")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``trained/``-like folder with one tiny calibrated checkpoint."""
    torch.manual_seed(0)
    model = build_model("glow", image_shape=SHAPE, steps=2).eval()
    val = torch.randint(0, 256, (200, *SHAPE), dtype=torch.uint8)
    card = {"dataset": "noise", "model": "glow", "test_bpd": 8.1, "test_bpd_stderr": 0.01,
            "test_images": 200, "test_subset": "first", "training_minutes": 0.0,
            "hardware": "none", "command": "tests/test_app.py",
            "anomaly": calibrate(model, val, fpr=0.05, source="noise val (200)")}
    folder = tmp_path_factory.mktemp("trained")
    save_model(model, folder / "tiny-glow" / "model.pt", card)
    return folder


@pytest.fixture(scope="module")
def handlers(root: Path) -> Handlers:
    paths, default = checkpoints_for(None, root)
    return Handlers(ModelCache(paths, default))


@pytest.fixture(scope="module")
def shipped() -> Handlers:
    """Handlers over the checkpoints in trained/ (loaded only when a test asks for a model)."""
    return Handlers(ModelCache(*checkpoints_for(None)))


def _digit(size: int = 8) -> Image.Image:
    """A bright bar on black, like a thin digit."""
    array = np.zeros((size, size), np.uint8)
    array[1:-1, size // 2 - 1:size // 2 + 1] = 230
    return Image.fromarray(array)


def _strokes(size: int, rows: slice, cols: slice) -> Image.Image:
    """An RGBA layer, transparent except an opaque magenta rectangle (a brush stroke)."""
    layer = np.zeros((size, size, 4), np.uint8)
    layer[rows, cols] = (255, 0, 255, 255)
    return Image.fromarray(layer, "RGBA")


def _editor(background: Image.Image, *layers: Image.Image) -> dict:
    return {"background": background.convert("RGBA"), "layers": list(layers), "composite": None}


def test_discover_lists_every_shipped_checkpoint() -> None:
    paths, default = checkpoints_for(None)
    assert set(paths) == set(discover())
    assert "mnist-glow" in paths and default == DEFAULT_MODEL
    with pytest.raises(CheckpointError, match="not found"):
        checkpoints_for("/nonexistent/model.pt")


def test_cache_loads_each_model_once(root: Path) -> None:
    cache = ModelCache(*checkpoints_for(None, root))
    first, second = cache.get("tiny-glow"), cache.get("")
    assert first is second and cache.loads == 1
    assert isinstance(first, ModelBundle) and first.dataset == "noise"
    with pytest.raises(gr.Error, match="unknown model"):
        cache.get("../../etc/passwd")


def test_painted_mask_keeps_thin_strokes_when_downscaling() -> None:
    mask = painted_mask([_strokes(80, slice(30, 33), slice(0, 80))], (8, 8))
    assert mask.shape == (8, 8) and mask.dtype == torch.bool
    assert mask[3].all() and mask.sum() == 8
    assert not painted_mask([_strokes(80, slice(0, 0), slice(0, 0))], (8, 8)).any()


def test_inpaint_changes_only_painted_pixels(handlers: Handlers) -> None:
    image = _digit()
    editor = _editor(image, _strokes(8, slice(2, 5), slice(2, 6)))
    filled, samples, uncertainty, trajectory, view, summary, metrics = handlers.inpaint(
        editor, "tiny-glow", "painted", "default", 20, 1, 0)
    before, after = np.asarray(image), np.asarray(filled)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:6] = True
    assert after.shape == before.shape
    assert (after[~mask] == before[~mask]).all()
    assert samples == [] and uncertainty is None
    assert list(trajectory["value"].columns) == ["step", "bits/dim"]
    assert (np.asarray(view)[mask] == (255, 0, 255)).all()
    assert metrics["missing_pixels"] == 12 and "bits/dim" in summary
    assert {"plot", "bpd_before", "bpd_after", "steps", "seconds", "fit"} <= set(metrics)


@pytest.mark.parametrize(("method", "steps"), [("default", 20), ("nice", 5), ("langevin", 5)])
def test_plot_and_summary_show_one_quantity(handlers: Handlers, method: str, steps: int) -> None:
    """Issue 18.5: the summary's numbers are the plot's first and last values, under its name."""
    *_, plot, _, summary, metrics = handlers.inpaint(_editor(_digit()), "tiny-glow", "center",
                                                     method, steps, 2, 0)
    values = plot["value"]["bits/dim"].tolist()
    quantity = metrics["plot"]["quantity"]
    assert len(values) == steps + 1 and quantity in summary
    assert f"{values[0]:.3f} at step 0 → {values[-1]:.3f} at step {steps}" in summary
    assert metrics["plot"]["start"] == values[0] and metrics["plot"]["end"] == values[-1]
    assert plot["label"].startswith(quantity)
    # Issue 36.1: a plot update that changes the axis title keeps the last run's dots
    # (Gradio 6.31); the quantity is named in the label, the axis title never changes.
    assert "y_title" not in plot
    assert "gradient ascent" not in summary


def test_a_run_without_steps_says_so(handlers: Handlers) -> None:
    """Issue 18.5: one value is one dot; the plot's label says so and gives it."""
    *_, plot, _, summary, _ = handlers.inpaint(_editor(_digit()), "tiny-glow", "center",
                                               "exemplar", 0, 0, 0)
    value = plot["value"]["bits/dim"].tolist()
    assert len(value) == 1 and f"one value, {value[0]:.3f}" in plot["label"]
    assert f"{value[0]:.3f} (no steps ran)" in summary


def test_inpaint_langevin_gives_samples_and_uncertainty(handlers: Handlers) -> None:
    shown = []
    out = handlers.inpaint(_editor(_digit()), "tiny-glow", "center", "langevin", 10, 3, 1,
                           progress=lambda done, desc, unit: shown.append(desc))
    filled, samples, uncertainty = out[:3]
    assert len(samples) == 3 and all(s.size == (8, 8) for s in samples)
    assert uncertainty is not None and uncertainty.size == (8, 8)
    assert shown and all("Langevin sampling" in d and "ascent" not in d for d in shown)


def test_controls_show_only_what_the_method_reads(handlers: Handlers) -> None:
    """Issue 18.8: samples and seed only where used; poor methods say so beside them."""
    def shown(method: str) -> tuple:
        steps, samples, seed, info = handlers.controls(method, "tiny-glow")
        return samples["visible"], seed["visible"], steps["info"], info["info"]

    assert shown("exemplar")[:2] == (False, False)
    assert shown("default")[:2] == (False, False)  # no conditional model: a deterministic climb
    assert shown("nice")[:2] == (False, True) and "poor fills" in shown("nice")[3]
    samples, seed, steps, info = shown("langevin")
    assert samples and seed and "not an ascent" in steps and "3 dB" not in info
    assert "Langevin sampling" in info and "poor fills" in info and "10 dB" in info
    with pytest.raises(gr.Error, match="unknown method"):
        handlers.controls("magic", "tiny-glow")


def test_controls_of_the_conditional_default(shipped: Handlers) -> None:
    steps, samples, seed, info = shipped.controls("default", "mnist-glow")
    assert samples["visible"] and seed["visible"] and "poor" not in info["info"]
    assert "(16)" in samples["info"]


def test_inpaint_resizes_a_large_rgb_upload(handlers: Handlers) -> None:
    big = _digit(64).convert("RGB")
    out = handlers.inpaint(_editor(big), "tiny-glow", "bottom", "nice", 5, 1, 0)
    assert out[0].size == (64, 64) and "resized to 8x8" in out[6]["fit"]  # back in its frame
    top = np.asarray(big.convert("L"))[:32]
    assert np.array_equal(np.asarray(out[0])[:24], top[:24])  # observed rows untouched
    plain = handlers.inpaint(_editor(big), "tiny-glow", "bottom", "nice", 5, 1, 0, False)
    assert plain[0].size == (8, 8) and "resized to 8x8" in plain[6]["fit"]


def _scan(size: int = 140) -> Image.Image:
    """A dark '1' on a white page, as a scan or a drawing would be."""
    page = Image.new("L", (size, size), 255)
    page.paste(0, (size // 2 - 6, size // 5, size // 2 + 6, size * 4 // 5))
    return page


def test_a_black_on_white_upload_is_filled_on_its_own_page(shipped: Handlers) -> None:
    out = shipped.inpaint(_editor(_scan()), "mnist-glow", "bottom", "default", 0, 0, 0)
    assert "light background: inverted" in out[6]["fit"] and "fitted into" in out[6]["fit"]
    filled = np.asarray(out[0])
    assert out[0].size == (140, 140) and filled[2, 2] == 255  # the page stays white
    assert filled[100:112, 64:76].mean() < 128  # the bar's missing lower part comes back dark
    view = np.asarray(out[4].convert("L"))
    assert view[0, 0] < 30  # the model saw white on black


def test_a_black_on_white_upload_scores_as_its_inverse(shipped: Handlers, tmp_path: Path) -> None:
    _scan().save(tmp_path / "scan.png")
    Image.eval(_scan(), lambda v: 255 - v).save(tmp_path / "negative.png")
    table, _, _ = shipped.score([str(tmp_path / "scan.png"), str(tmp_path / "negative.png")],
                                "mnist-glow")
    assert table["bits/dim"][0] == pytest.approx(table["bits/dim"][1])
    assert "inverted" in table["note"][0] and "inverted" not in table["note"][1]
    plain, _, _ = shipped.score([str(tmp_path / "scan.png")], "mnist-glow", False)
    assert plain["bits/dim"][0] > table["bits/dim"][0] + 5


def test_a_jpeg_upload_passes_and_its_capture_is_named(shipped: Handlers, tmp_path: Path
                                                       ) -> None:
    """Issue 18: the MNIST model's gallery digits that pass as PNG (a few of its validation
    digits; 5 % of those are flagged by design) pass as JPEG q75 too; the capture column names
    the JPEG's halo, and the explanation says the bits come from a flow that also learned
    captured copies (MNIST only)."""
    pngs = []
    for example in shipped.cache.get("mnist-glow").examples[:6]:
        digit = Image.open(example.path).convert("L")
        digit.save(tmp_path / f"{example.path.stem}.png")
        digit.save(tmp_path / f"{example.path.stem}.jpg", quality=75)
        pngs.append(str(tmp_path / f"{example.path.stem}.png"))
    verdicts = shipped.score(pngs, "mnist-glow")[0]["verdict"]
    passing = [n for n, v in zip(pngs, verdicts, strict=True) if v.startswith("in distribution")]
    assert len(passing) >= 3
    names = [name for png in passing[:3] for name in (png, png[:-4] + ".jpg")]
    table, _, note = shipped.score(names, "mnist-glow")
    assert all(v.startswith("in distribution") for v in table["verdict"])
    # The capture axis says so in plain words: the PNGs as MNIST's, the JPEGs with their halo.
    assert [c.startswith("captured like MNIST") for c in table["capture"]] == [True, False] * 3
    assert all("faint halo" in c for c in table["capture"][1::2])
    assert "a flow that also learned captured copies" in note
    assert "captured copies" not in shipped.score(names[:1], "fashion-mnist-glow")[2]


@pytest.mark.parametrize(("editor", "mask", "method", "steps", "message"), [
    (None, "painted", "default", 10, "no image"),
    ({"background": None, "layers": []}, "painted", "default", 10, "no image"),
    ("digit", "painted", "default", 10, "mask is empty"),
    ("digit", "nowhere", "default", 10, "unknown mask"),
    ("digit", "top", "magic", 10, "unknown method"),
    ("digit", "top", "default", -1, "steps must be"),
    ("digit", "top", "default", 2.5, "steps must be"),
    ("digit", "top", "default", float("nan"), "steps must be"),
])
def test_inpaint_refuses_bad_input(handlers: Handlers, editor: object, mask: str, method: str,
                                   steps: float, message: str) -> None:
    editor = _editor(_digit()) if editor == "digit" else editor
    with pytest.raises(gr.Error, match=message):
        handlers.inpaint(editor, "tiny-glow", mask, method, steps, 1, 0)


def test_score_gives_a_verdict_per_image_and_keeps_going(handlers: Handlers,
                                                         tmp_path: Path) -> None:
    good, noise = tmp_path / "digit.png", tmp_path / "noise.png"
    _digit(28).save(good)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), np.uint8)).save(noise)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image at all")
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (20 * 2**20 + 1))
    table, histogram, note = handlers.score([str(good), str(noise), str(fake), str(huge)],
                                            "tiny-glow")
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 4
    for verdict in table["verdict"][:2]:
        assert verdict.startswith(("anomalous: unlike the noise images",
                                   "in distribution: like the noise images"))
    assert table["verdict"][2] == "unreadable" and "not an image" in table["note"][2]
    assert table["verdict"][3] == "unreadable" and "larger than" in table["note"][3]
    assert 0 < table["p-value"][0] <= 1 and "resized to 8x8" in table["note"][0]
    assert table["model input"][0].startswith('<img src="data:image/png;base64,')
    assert table["model input"][2] == ""
    assert histogram is not None and histogram.size[0] > 100
    assert DEFAULT_SCORE in note and "mislead" in note and "**p-value**" in note


@pytest.mark.parametrize(("flag", "p", "words"), [
    (True, 1 / 5001, "anomalous: unlike the MNIST images it learned; none of 5,000 of them "
                     "scores this high"),
    (True, 0.0005, "anomalous: unlike the MNIST images it learned; only 1 in 2,000 of them "
                   "scores this high"),
    (False, 0.3, "in distribution: like the MNIST images it learned; only 1 in 3 of them "
                 "scores this high"),
    (False, 0.8, "in distribution: like the MNIST images it learned; 80% of them score at "
                 "least this high"),
    (None, None, "no verdict: this model is not calibrated"),
])
def test_verdicts_in_plain_words(flag: bool | None, p: float | None, words: str) -> None:
    """Issue 18.9: the verdict says how rare the score is among held-out images."""
    assert plain_verdict(flag, p, 5000, "mnist") == words


def test_every_upload_is_on_the_histogram(handlers: Handlers) -> None:
    """Issue 18.4: ten uploads, eight beyond the axis and two at one score: each is found."""
    calibration = handlers.cache.get("tiny-glow").calibration
    lo, hi = calibration["histogram"]["edges"][0], calibration["histogram"]["edges"][-1]
    scores = [hi + 1 + i for i in range(7)] + [lo - 1, (lo + hi) / 2, (lo + hi) / 2]
    marks = [(f"#{i}", score) for i, score in enumerate(scores, start=1)]
    font = ImageFont.load_default(size=12)
    placed, below, above = mark_layout(marks, lo, hi, lambda s: 100 + s, font.getlength, 640)
    assert [m for m, *_ in placed] == ["#9", "#10"] and placed[0][3] != placed[1][3]
    assert below == [marks[7]] and above == marks[:7]
    one = Handlers._histogram(calibration, marks[-1:])
    ten = Handlers._histogram(calibration, marks)
    assert ten.height > one.height  # a second label row and the lists below the axis


def test_score_refuses_no_files_and_too_many(handlers: Handlers) -> None:
    with pytest.raises(gr.Error, match="no images"):
        handlers.score([], "tiny-glow")
    with pytest.raises(gr.Error, match="at most"):
        handlers.score(["x.png"] * (MAX_FILES + 1), "tiny-glow")


def test_sample_and_card(handlers: Handlers) -> None:
    assert len(handlers.sample("tiny-glow", 16, 0.0, 0)) == 1  # every draw would be the same
    images = handlers.sample("tiny-glow", 3, 0.7, 0)
    assert len(images) == 3 and images[0].size == (8, 8)
    assert [np.asarray(i).tolist() for i in handlers.sample("tiny-glow", 3, 0.7, 0)] == \
        [np.asarray(i).tolist() for i in images]
    with pytest.raises(gr.Error, match="temperature"):
        handlers.sample("tiny-glow", 3, 9.0, 0)
    card = handlers.card("tiny-glow")
    assert "noise" in card and "8.1" in card and f"{DEFAULT_SCORE} (flag)" in card
    assert "the first 200 test images" in card  # rendered from the structured measurement


def test_stale_thresholds_are_shown_with_the_card_and_the_verdict(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bundle calibrated under other normalization settings than uploads now get is served,
    with a warning in the log, on the Models tab and in the explanation under its verdicts."""
    torch.manual_seed(0)
    model = build_model("glow", image_shape=SHAPE, steps=1).eval()
    anomaly = calibrate(model, torch.randint(0, 256, (100, *SHAPE), dtype=torch.uint8),
                        fpr=0.05, source="noise val (100)")
    recorded = {**RECIPES["resize-dark"].settings(), "dark_background": False}
    save_model(model, tmp_path / "stale" / "model.pt",
               {"dataset": "noise", "input_recipe": "resize-dark",
                "anomaly": {**anomaly, "input_normalization": "resize-dark",
                            "input_normalization_settings": recorded}})
    with caplog.at_level(logging.WARNING, logger="inpaint_app.app.registry"):
        stale = Handlers(ModelCache.survey(*checkpoints_for(None, tmp_path)))
    assert "dark_background False -> True" in caplog.text
    assert "**Warning**: calibrated with another input normalization" in stale.card("stale")
    upload = tmp_path / "digit.png"
    _digit(8).save(upload)
    note = stale.score([str(upload)], "stale")[2]
    assert note.startswith("**Warning**") and "python -m pipelines.calibrate" in note
    assert "Warning" not in stale.score([str(upload)], "stale", False)[2]  # no normalization


def test_shipped_card_renders(shipped: Handlers) -> None:
    card = shipped.card("mnist-glow")
    assert "mnist" in card and "test bits/dim" in card and "training" in card


@pytest.mark.parametrize(("model", "data", "shows"), [
    ("fashion-mnist-glow", "Fashion-MNIST", "an ankle boot|a T-shirt or top|a bag"),
    ("mnist-glow", "MNIST", "a handwritten [0-9]"),
])
def test_an_example_selects_its_model_and_mask(shipped: Handlers, model: str, data: str,
                                               shows: str) -> None:
    """Issue 18.6 and 20: each shipped model's gallery images are its own validation images;
    picking one brings that model and the example's preset, and says what it shows."""
    ours = [i for i, (_, name) in enumerate(shipped.examples) if name == model]
    assert len(ours) == 6
    for index in ours[:2]:
        example = shipped.examples[index][0]
        assert example.path.parent == shipped.cache.get(model).path.parent / "examples"
        chosen, mask, note, upload, editor = shipped.example(
            gr.SelectData(None, {"index": index, "value": None}))
        assert (chosen, mask) == (model, example.mask) and mask in MASK_PRESETS
        # an earlier upload is forgotten; the brush fits the example's 28-pixel canvas
        assert upload is None and editor["brush"].default_size == 1
        assert re.search(shows, note) and f"{data} validation image" in note


def test_the_normalize_switch_describes_each_models_recipe(shipped: Handlers) -> None:
    mnist, fashion = (shipped.normalize_info(name) for name in ("mnist-glow",
                                                               "fashion-mnist-glow"))
    assert "fitted into 20x20, centred by mass" in mnist and "faded ink" in mnist
    assert "background level subtracted" in mnist
    assert "fitted into 28x28, centred," in fashion and "faded ink" not in fashion
    assert all("light background is inverted" in info for info in (mnist, fashion))


def test_the_default_mask_is_a_preset(handlers: Handlers) -> None:
    """Issue 18.7: an example followed by Inpaint works without painting."""
    assert DEFAULT_MASK in MASK_PRESETS
    out = handlers.inpaint(_editor(_digit()), "tiny-glow", DEFAULT_MASK, "exemplar", 0, 0, 0)
    assert out[6]["missing_pixels"] > 0 and "strokes were not used" not in out[5]
    strokes = _editor(_digit(), _strokes(8, slice(0, 2), slice(0, 2)))
    out = handlers.inpaint(strokes, "tiny-glow", DEFAULT_MASK, "exemplar", 0, 0, 0)
    assert "strokes were not used: choose the mask *painted*" in out[5]


@contextlib.contextmanager
def _no_decoding(monkeypatch: pytest.MonkeyPatch):
    """Within the block, decoding any image's pixels fails the test: a refusal read from the
    header must come before Pillow decodes (which takes seconds for a huge image)."""
    def refuse_to_decode(image: Image.Image, *args, **kwargs):
        raise AssertionError(f"decoded a {image.size} image before refusing it")
    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "load", refuse_to_decode)
        yield


def test_an_upload_is_checked_before_the_editor_sees_it(handlers: Handlers, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18.2/18.3: a non-image gets a clear warning; a huge one is refused from its
    header; a large one reaches the editor at display size. Issue 36.9: a refused file leaves
    the box empty (no error state to clear), the note and a warning saying why."""
    fake, huge, large = tmp_path / "fake.png", tmp_path / "huge.png", tmp_path / "large.png"
    fake.write_bytes(b"plain text, renamed to .png")
    Image.new("1", (7000, 7000)).save(huge)
    _digit(2000).save(large)
    with pytest.warns(UserWarning, match="fake.png: not an image this app reads"):
        box, editor, note, upload = handlers.upload(str(fake), "tiny-glow")
    assert box is None and "**Not loaded**: fake.png: not an image" in note
    assert editor == gr.update() and upload == gr.update()  # the last image stays
    with _no_decoding(monkeypatch), pytest.warns(
            UserWarning, match="huge.png: image is 7000x7000; at most 40,000,000"):
        handlers.upload(str(huge), "tiny-glow")
    box, editor, note, upload = handlers.upload(str(large), "tiny-glow")
    assert box is None and editor["value"]["background"].size == (DISPLAY_SIDE, DISPLAY_SIDE)
    assert "2000x2000 L, shown at 512x512" in note and "noise images" in note
    # the page remembers the upload itself; the brush is a model pixel (512 / 8) wide
    assert upload == {"path": str(large), "shown": [DISPLAY_SIDE, DISPLAY_SIDE]}
    assert editor["brush"].default_size == 32


def test_the_editor_refuses_a_huge_image_before_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18.3: an API call sending a 7000 x 7000 image to the editor is refused quickly."""
    huge = tmp_path / "huge.png"
    Image.new("1", (7000, 7000)).save(huge)
    editor = check_sizes(gr.ImageEditor(type="pil", image_mode="RGBA"))
    with _no_decoding(monkeypatch), pytest.raises(gr.Error, match="7000x7000") as err:
        editor.preprocess(EditorData(background=FileData(path=str(huge)), layers=[],
                                     composite=None))
    assert not err.value.print_exception


def test_user_errors_log_one_line_and_bugs_keep_their_traceback(
        handlers: Handlers, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18.10: Gradio prints a traceback only for errors with print_exception set."""
    with caplog.at_level(logging.WARNING), pytest.raises(gr.Error) as err:
        handlers.inpaint(None, "tiny-glow", "top", "default", 0, 0, 0)
    assert not err.value.print_exception
    assert [r.getMessage() for r in caplog.records] == [
        "inpaint refused: no image: pick an example or upload one first"]
    with pytest.raises(gr.Error) as err:
        handlers.score([], "tiny-glow")
    assert not err.value.print_exception
    monkeypatch.setattr("inpaint_app.app.handlers.inpaint_upload", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a bug: not dressed up as the user's error
        handlers.inpaint(_editor(_digit()), "tiny-glow", "top", "default", 0, 0, 0)


def test_cli_reports_a_missing_checkpoint() -> None:
    with pytest.raises(SystemExit, match="checkpoint not found"):
        main(["serve", "--checkpoint", "/nonexistent/model.pt"])


def test_launch_is_loopback_without_share() -> None:
    settings = launch_kwargs()
    assert settings["server_name"] == "127.0.0.1" and settings["share"] is False
    assert settings["max_file_size"] == 20 * 2**20


@pytest.mark.slow
def test_every_action_through_gradio_client(root: Path, tmp_path: Path, free_port) -> None:
    from gradio_client import Client, handle_file

    demo = create_app(root=root)
    demo.launch(**{**launch_kwargs(port=free_port()), "prevent_thread_lock": True,
                   "quiet": True})
    try:
        client = Client(demo.local_url, verbose=False)
        image = tmp_path / "digit.png"
        _digit().save(image)
        table = client.predict([handle_file(str(image))], "tiny-glow", api_name="/score")[0]
        assert table["headers"] == TABLE_COLUMNS and len(table["data"]) == 1
        editor = {"background": handle_file(str(image)), "layers": [], "composite": None}
        filled, *_, metrics = client.predict(editor, "tiny-glow", "top", "default", 5, 1, 0,
                                             api_name="/inpaint")
        assert Image.open(filled).size == (8, 8) and metrics["missing_pixels"] == 32
        gallery = client.predict("tiny-glow", 2, 0.5, 0, api_name="/sample")
        assert len(gallery) == 2
        assert "tiny-glow" in client.predict("tiny-glow", api_name="/model_card")
        with pytest.raises(Exception, match="mask is empty"):
            client.predict(editor, "tiny-glow", "painted", "default", 5, 1, 0,
                           api_name="/inpaint")
    finally:
        demo.close()


@pytest.mark.slow
def test_no_user_path_reaches_the_filesystem(root: Path, tmp_path: Path, free_port) -> None:
    """A raw API call naming a server-side file (not uploaded) is refused before the handler."""
    import httpx

    secret = tmp_path / "secret.png"
    _digit().save(secret)
    demo = create_app(root=root)
    demo.launch(**{**launch_kwargs(port=free_port()), "prevent_thread_lock": True,
                   "quiet": True})
    try:
        url = demo.local_url.rstrip("/") + "/gradio_api/call/score"
        payload = {"data": [[{"path": str(secret), "meta": {"_type": "gradio.FileData"}}],
                            "tiny-glow"]}
        event = httpx.post(url, json=payload, timeout=30).json()["event_id"]
        stream = httpx.get(f"{url}/{event}", timeout=60).text
        assert "event: error" in stream and "secret" not in stream.split("event: error")[1]
    finally:
        demo.close()


def test_every_touched_model_pixel_counts_however_thin_the_stroke(handlers: Handlers) -> None:
    """Issue 36.3: on an upload shown at 64 px for an 8 px model, one-pixel strokes (an eighth
    of a model pixel) mark the model pixels they touch; under the quarter rule none counted."""
    layer = np.zeros((64, 64, 4), np.uint8)
    for row in (4, 20, 36, 52):  # four thin strokes, one per pair of model rows
        layer[row, 10:50] = (255, 0, 255, 255)
    editor = _editor(_digit(64), Image.fromarray(layer, "RGBA"))
    *_, view, _, metrics = handlers.inpaint(editor, "tiny-glow", "painted", "exemplar", 0, 0, 0,
                                            False)
    masked = (np.asarray(view) == (255, 0, 255)).all(axis=-1)
    assert masked.any(axis=1).tolist() == [True, False] * 4
    assert metrics["missing_pixels"] == 4 * 6  # columns 10-49 touch model columns 1-6


def test_the_upload_itself_is_filled_and_keeps_its_colours(handlers: Handlers,
                                                           tmp_path: Path) -> None:
    """Issue 36.5: the editor shows a copy at most 512 px a side; the model reads the upload
    and the fill comes back at its size. Issues 36.6 and 36.8: outside the mask the colour
    upload keeps its own pixels; the grey fill is smooth and blended over the mask's edge."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8))
    photo.save(tmp_path / "photo.png")
    _, editor, _, original = handlers.upload(str(tmp_path / "photo.png"), "tiny-glow")
    shown = editor["value"]["background"]
    assert shown.size == (512, 512) and original["shown"] == [512, 512]
    filled, *_, summary, _ = handlers.inpaint(editor["value"], "tiny-glow", "bottom", "nice", 5,
                                              0, 0, True, original)
    assert filled.size == (600, 600) and filled.mode == "RGB"
    out, before = np.asarray(filled).astype(int), np.asarray(photo).astype(int)
    assert (out[:250] == before[:250]).all()  # above the mask and its 37-pixel blend
    fill = out[400:, 100:]  # well inside the mask (the bottom half)
    assert (fill[..., 0] == fill[..., 1]).all() and (fill[..., 1] == fill[..., 2]).all()
    assert np.abs(np.diff(fill[..., 0], axis=1)).max() < 40  # smooth: no 75-pixel blocks
    assert "Colour upload, grayscale model" in summary
    # a stale state (the editor now shows something else) is ignored
    small = handlers.inpaint(_editor(_digit()), "tiny-glow", "bottom", "nice", 5, 0, 0, True,
                             original)[0]
    assert small.size == (8, 8)


def test_a_blank_canvas_is_no_image(handlers: Handlers) -> None:
    """Issue 36.10: the editor's blank canvas with a drawing on it is refused."""
    blank = Image.new("RGBA", (800, 800), (255, 255, 255, 255))
    editor = _editor(blank, _strokes(800, slice(390, 400), slice(300, 500)))
    with pytest.raises(gr.Error, match="upload an image first"):
        handlers.inpaint(editor, "tiny-glow", "painted", "default", 0, 0, 0)


def test_a_file_the_page_kept_back_gets_its_own_row(handlers: Handlers, tmp_path: Path) -> None:
    """Issue 36.4: the page keeps files over 20 MB out of the batch and names them; each gets a
    row saying so and the others are scored. Alone, they still make a table."""
    image = tmp_path / "digit.png"
    _digit().save(image)
    table, _, _ = handlers.score([str(image)], "tiny-glow", True, "big.png\n")
    assert table["file"].tolist() == ["digit.png", "big.png"]
    assert table["#"].tolist() == [1, 2] and table["verdict"][1] == "refused"
    assert "larger than 20 MB" in table["note"][1] and table["verdict"][0] != "refused"
    only = handlers.score([], "tiny-glow", True, "a.png\nb.png")[0]
    assert only["verdict"].tolist() == ["refused", "refused"]


def test_serve_compiles_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 36.7: compiling at start cost minutes of both cores for no speed-up on CPU;
    ``serve`` stays eager unless given ``--compile`` (``--no-compile`` is still accepted)."""
    import inpaint_app.app

    assert inspect.signature(inpaint_app.app.serve).parameters["compile"].default is False
    asked = []
    monkeypatch.setattr(inpaint_app.app, "serve", lambda *a, **k: asked.append(k["compile"]))
    for argv in (["serve"], ["serve", "--no-compile"], ["serve", "--compile"]):
        main(argv)
    assert asked == [False, False, True]
